package migration

import (
	"fmt"
	"time"
)

// Estimate is a migration's rates and expected end, from the windows, files and jobs finished so far: the
// services report no progress inside a running job, so a rate moves when a job ends.
type Estimate struct {
	// Expected is what the copy will move: the finished exports' counts, and the plan's count of each window not
	// exported yet (an upper bound).
	Expected int64 `json:"expected"`
	Exported int64 `json:"exported"`
	Imported int64 `json:"imported"`
	// ExportRate and ImportRate are resources per second, from the first job's start to now.
	ExportRate float64 `json:"exportRate"`
	ImportRate float64 `json:"importRate"`
	// ExportEnd is when the last export should end, ImportEnd (the end of the copy, before verification) when
	// the last import should; nil while no job of the kind has finished, or the plan counted no window.
	ExportEnd *time.Time `json:"exportEnd,omitempty"`
	ImportEnd *time.Time `json:"importEnd,omitempty"`
	// Basis says what the estimate rests on.
	Basis string `json:"basis"`
}

// estimate computes the full copy's rates and end at now; nil once the copy is over (verifying and after).
func (m *Migration) estimate(now time.Time) *Estimate {
	switch m.Status {
	case StatusExporting, StatusImporting:
	default:
		return nil
	}
	e := &Estimate{}
	var exportStart, importStart *time.Time
	var lastExportEnd *time.Time
	windows, exported, unplanned := 0, 0, 0
	for _, j := range m.Jobs {
		if j.Round > 0 {
			continue // a sync round is not part of the copy
		}
		switch j.Kind {
		case KindExport:
			windows++
			exportStart = earliest(exportStart, j.StartedAt)
			if j.State == JobDone {
				exported++
				n := sum(j.Counts)
				e.Expected += n
				e.Exported += n
				if j.FinishedAt != nil && (lastExportEnd == nil || j.FinishedAt.After(*lastExportEnd)) {
					lastExportEnd = j.FinishedAt
				}
				continue
			}
			if j.Planned == 0 && j.Estimated {
				unplanned++
			}
			e.Expected += j.Planned
		case KindImport:
			// A copy (the SearchParameters' PUTs: a few resources in seconds) is no import: counted, it would make a
			// rate of a handful a second and an end days away.
			importStart = earliest(importStart, j.StartedAt)
			if j.State == JobDone {
				e.Imported += sum(j.Counts)
			}
		}
	}
	e.ExportRate = rate(e.Exported, exportStart, now)
	e.ImportRate = rate(e.Imported, importStart, now)
	e.Basis = fmt.Sprintf("%d of %d windows exported, %d of %d resources imported", exported, windows, e.Imported, e.Expected)
	if unplanned > 0 {
		e.Basis += fmt.Sprintf("; %d windows were not counted, so the end is later than shown", unplanned)
	}
	switch {
	case exported == windows && lastExportEnd != nil:
		e.ExportEnd = timePtr(*lastExportEnd)
	case e.ExportRate > 0:
		e.ExportEnd = timePtr(now.Add(seconds(float64(e.Expected-e.Exported) / e.ExportRate)))
	}
	if e.ImportRate > 0 && e.ExportEnd != nil {
		end := now.Add(seconds(float64(max(e.Expected-e.Imported, 0)) / e.ImportRate))
		if end.Before(*e.ExportEnd) {
			end = *e.ExportEnd // the last import cannot end before the last export
		}
		e.ImportEnd = &end
	}
	return e
}

func earliest(a, b *time.Time) *time.Time {
	if b == nil || (a != nil && !b.Before(*a)) {
		return a
	}
	return b
}

func rate(n int64, since *time.Time, now time.Time) float64 {
	if since == nil || n <= 0 || !now.After(*since) {
		return 0
	}
	return float64(n) / now.Sub(*since).Seconds()
}

// seconds converts, clamped to a century (a tiny rate over much work would overflow a Duration).
func seconds(s float64) time.Duration {
	const century = 100 * 365 * 24 * time.Hour
	if s >= century.Seconds() {
		return century
	}
	return time.Duration(s * float64(time.Second))
}
