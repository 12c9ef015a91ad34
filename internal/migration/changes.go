package migration

import (
	"context"
	"log/slog"
)

// Log messages of the changes a saved decision made. They are stable: the Azure dashboard
// (infra/modules/workbook.json) charts them. Their fields and values are captured from test migrations into
// testdata/change-lines.json (changelines_test.go), and handler/infra_deploy_test.go checks the dashboard's
// queries against that file.
const (
	LogStatusChanged = "migration status changed"
	LogJobEnded      = "job ended"
	LogRoundEnded    = "sync round ended"
)

// before is what a decision may change that the operator watches: the status, and the state of every job that
// has not ended (an ended job never changes again).
type before struct {
	status Status
	open   map[string]JobState
	rounds int
}

func snapshot(m *Migration) before {
	b := before{status: m.Status, open: map[string]JobState{}}
	if m.Sync != nil {
		b.rounds = m.Sync.Rounds
	}
	for _, j := range m.Jobs {
		if !j.State.Finished() {
			b.open[j.ID] = j.State
		}
	}
	return b
}

// logChanges writes one line per change between b and the saved m, each with the migration id: a status that
// changed (with the failure's code), and a job that ended (with its kind, types, resources and failures).
func (s *Service) logChanges(ctx context.Context, b before, m *Migration) {
	log := s.log.With("migration", m.ID)
	for _, j := range m.Jobs {
		if _, was := b.open[j.ID]; !was || !j.State.Finished() {
			continue
		}
		attrs := []any{"job", j.ID, "kind", j.Kind, "state", j.State, "types", j.Types, "resources", sum(j.Counts)}
		if j.ErrorSummary != nil {
			attrs = append(attrs, "failed", sum(j.ErrorSummary.ByType))
		}
		level := slog.LevelInfo
		if j.State == JobFailed {
			level = slog.LevelWarn
			attrs = append(attrs, "err", j.LastError)
		}
		log.Log(ctx, level, LogJobEnded, attrs...)
	}
	if sy := m.Sync; sy != nil && sy.Rounds > b.rounds {
		for _, r := range sy.Recent {
			if r.N <= b.rounds || r.Till == nil || r.FinishedAt == nil {
				continue
			}
			log.Log(ctx, slog.LevelInfo, LogRoundEnded, "round", r.N, "final", r.Final, "since", r.Since, "till", *r.Till,
				"exported", r.Exported, "imported", r.Imported, "failed", r.ImportErrors,
				"lagSeconds", r.FinishedAt.Sub(*r.Till).Seconds())
		}
	}
	if m.Status == b.status {
		return
	}
	attrs := []any{"from", b.status, "to", m.Status}
	level := slog.LevelInfo
	if m.Error != nil {
		level = slog.LevelError
		attrs = append(attrs, "code", m.Error.Code, "err", m.Error.Message)
	}
	log.Log(ctx, level, LogStatusChanged, attrs...)
}

func sum(counts map[string]int64) int64 {
	var n int64
	for _, c := range counts {
		n += c
	}
	return n
}
