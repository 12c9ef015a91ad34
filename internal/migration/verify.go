package migration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/fhir-migrator/fhir-migrator/internal/store"
)

// Verify handles a verify-counts message: for every exported type it compares the resources exported with the
// destination's count, writes the report, and finishes the migration (completed, or failed with
// verification_mismatch). Stale and duplicate messages are acknowledged; a failed count is returned as a
// transient fault.
func (s *Service) Verify(ctx context.Context, body []byte) error {
	var msg VerifyMessage
	if err := json.Unmarshal(body, &msg); err != nil || msg.MigrationID == "" || msg.Generation <= 0 {
		s.log.Warn("malformed verify-counts message acknowledged", "body", truncate(string(body), 200))
		return nil
	}
	log := s.log.With("migration", msg.MigrationID, "generation", msg.Generation)
	m, _, err := s.load(ctx, msg.MigrationID)
	if errors.Is(err, store.ErrNotFound) {
		log.Warn("verify-counts for an unknown migration acknowledged")
		return nil
	}
	if err != nil {
		return err
	}
	if !verifiable(m, msg.Generation) {
		log.Info("stale verify-counts acknowledged", "status", m.Status)
		return nil
	}
	var rows []TypeRow
	if m.Request.Verify != VerifyNone {
		if rows, err = s.countRows(ctx, m); err != nil {
			return fmt.Errorf("verify migration %s: %w", m.ID, err)
		}
	}
	m, _, err = s.update(ctx, msg.MigrationID, func(m *Migration) (*effects, error) {
		if !verifiable(m, msg.Generation) {
			return nil, errUnchanged
		}
		now := s.now()
		v := m.Verification
		v.CheckedAt = timePtr(now)
		if m.Request.Verify == VerifyNone {
			v.Skipped = true
			m.Status = StatusCompleted
			return nil, nil
		}
		v.Rows = rows
		var mismatches []string
		for _, r := range rows {
			if !r.Match {
				mismatches = append(mismatches, fmt.Sprintf("%s exported %d, destination has %d", r.Type, r.Exported, r.Destination))
			}
		}
		if len(mismatches) == 0 {
			m.Status = StatusCompleted
			return nil, nil
		}
		m.Status = StatusFailed
		m.Error = &Failure{Code: "verification_mismatch", Message: strings.Join(mismatches, "; ")}
		return nil, nil
	})
	if err != nil {
		return fmt.Errorf("save verification: %w", err)
	}
	log.Info("migration verified", "status", m.Status)
	return nil
}

func verifiable(m *Migration, generation int) bool {
	return m.Status == StatusVerifying && m.Verification != nil && m.Verification.Generation == generation
}

// countRows builds one row per exported type; the destination counts are taken concurrently.
func (s *Service) countRows(ctx context.Context, m *Migration) ([]TypeRow, error) {
	byType := map[string]*TypeRow{}
	row := func(t string) *TypeRow {
		if byType[t] == nil {
			byType[t] = &TypeRow{Type: t}
		}
		return byType[t]
	}
	for _, j := range m.Jobs {
		if j.State != JobDone {
			continue
		}
		for t, n := range j.Counts {
			if j.Kind == KindExport {
				row(t).Exported += n
			} else {
				row(t).Imported += n
			}
		}
		if j.Kind != KindExport {
			for _, f := range j.Errors {
				row(f.Type).ImportErrors += f.Count
			}
		}
	}
	rows := make([]TypeRow, 0, len(byType))
	for _, r := range byType {
		rows = append(rows, *r)
	}
	slices.SortFunc(rows, func(a, b TypeRow) int { return strings.Compare(a.Type, b.Type) })

	client, err := s.cfg.FHIR(m.Request.Destination)
	if err != nil {
		return nil, fmt.Errorf("client for %s: %w", m.Request.Destination, err)
	}
	errs := make([]error, len(rows))
	sem := make(chan struct{}, s.cfg.PollConcurrency)
	var wg sync.WaitGroup
	for i := range rows {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			n, err := client.Count(ctx, rows[i].Type, nil)
			if err != nil {
				errs[i] = fmt.Errorf("count %s on the destination: %w", rows[i].Type, err)
				return
			}
			rows[i].Destination = n
			rows[i].Match = rows[i].Exported == n
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return rows, nil
}
