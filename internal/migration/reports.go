package migration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/fhir-migrator/fhir-migrator/internal/store"
)

// Reports live in the document store beside the migration documents, not in the staging container: cleanup
// deletes that container, and the report must outlive it.
const reportPrefix = "reports/"

func reportDocName(id string) string { return reportPrefix + id + ".md" }

// missingReportPrefix names the missing-id lists of one verification round, one part per exported file.
func missingReportPrefix(id string, generation int) string {
	return fmt.Sprintf("%s%s-missing/%d/", reportPrefix, id, generation)
}

func missingPartName(id string, generation, file int) string {
	return fmt.Sprintf("%s%06d.txt", missingReportPrefix(id, generation), file)
}

// putReport writes a report document, replacing an older one (a re-verify, or a re-sent message).
func (s *Service) putReport(ctx context.Context, name string, data []byte) error {
	etag := ""
	for range maxConflictRetries {
		_, err := s.cfg.Store.Put(ctx, name, data, etag, map[string]string{"kind": "report"})
		if !errors.Is(err, store.ErrConflict) {
			return err
		}
		_, etag, err = s.cfg.Store.Get(ctx, name)
		if errors.Is(err, store.ErrNotFound) {
			etag = ""
		} else if err != nil {
			return err
		}
	}
	return fmt.Errorf("write %s: %w", name, store.ErrConflict)
}

// Report returns the readable (Markdown) verification report of a migration.
func (s *Service) Report(ctx context.Context, id string) ([]byte, error) {
	m, _, err := s.load(ctx, id)
	if err != nil {
		return nil, err
	}
	if m.Verification == nil || m.Verification.Report == "" {
		return nil, notReady("migration %s has no verification report yet (status %s)", id, m.Status)
	}
	data, _, err := s.cfg.Store.Get(ctx, m.Verification.Report)
	if errors.Is(err, store.ErrNotFound) {
		return nil, notReady("the report is not written yet")
	}
	if err != nil {
		return nil, fmt.Errorf("read report of %s: %w", id, err)
	}
	return data, nil
}

// SearchParameterBundle returns the batch Bundle of the SearchParameters a destination in initial import mode
// could not take, every copy job's entries in one Bundle, for the operator to post once the mode is off.
func (s *Service) SearchParameterBundle(ctx context.Context, id string) ([]byte, error) {
	m, _, err := s.load(ctx, id)
	if err != nil {
		return nil, err
	}
	merged := map[string]any{"resourceType": "Bundle", "type": "batch"}
	var entries []json.RawMessage
	for _, j := range m.Jobs {
		if j.Kind != KindCopy || j.Bundle == "" {
			continue
		}
		data, _, err := s.cfg.Store.Get(ctx, j.Bundle)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", j.Bundle, err)
		}
		var b struct {
			Entry []json.RawMessage `json:"entry"`
		}
		if err := json.Unmarshal(data, &b); err != nil {
			return nil, fmt.Errorf("decode %s: %w", j.Bundle, err)
		}
		entries = append(entries, b.Entry...)
	}
	if len(entries) == 0 {
		return nil, refuse(NotFound, "not_found", "", "migration %s holds no SearchParameters back (they are copied unless the import mode is InitialLoad)", id)
	}
	merged["entry"] = entries
	out, err := json.MarshalIndent(merged, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode the SearchParameter batch of %s: %w", id, err)
	}
	return out, nil
}

// MissingIDs writes every missing id of the latest verification, one Type/id a line, part after part.
func (s *Service) MissingIDs(ctx context.Context, id string, w io.Writer) error {
	m, _, err := s.load(ctx, id)
	if err != nil {
		return err
	}
	v := m.Verification
	if v == nil || v.CheckedAt == nil || v.IDs == nil {
		return notReady("migration %s has no finished id verification", id)
	}
	if v.MissingReport == "" {
		return nil
	}
	items, err := s.cfg.Store.List(ctx, v.MissingReport)
	if err != nil {
		return fmt.Errorf("list missing ids of %s: %w", id, err)
	}
	for _, it := range items {
		data, _, err := s.cfg.Store.Get(ctx, it.Name)
		if err != nil {
			return fmt.Errorf("read %s: %w", it.Name, err)
		}
		if _, err := w.Write(data); err != nil {
			return fmt.Errorf("write missing ids of %s: %w", id, err)
		}
	}
	return nil
}
