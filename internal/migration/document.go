package migration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/fhir-migrator/fhir-migrator/internal/store"
)

const (
	migrationPrefix = "migrations/"
	// maxConflictRetries bounds the reload-and-decide loop of one update.
	maxConflictRetries = 20
)

// errUnchanged, returned by a mutation, means "nothing to save": update returns without writing.
var errUnchanged = errors.New("migration unchanged")

func docName(id string) string { return migrationPrefix + id + ".json" }

func idFromName(name string) string {
	return strings.TrimSuffix(strings.TrimPrefix(name, migrationPrefix), ".json")
}

// docMetadata is what a listing tells without loading the document: the status, and whether DELETEs of server
// jobs are still to be seen through (the sweep visits a finished migration only then), and the migration's summary
// (the paged list is built from it).
func docMetadata(m *Migration) map[string]string {
	p := m.progress()
	md := map[string]string{
		"status":      string(m.Status),
		"created":     m.CreatedAt.UTC().Format(time.RFC3339Nano),
		"updated":     m.UpdatedAt.UTC().Format(time.RFC3339Nano),
		"source":      m.Request.Source,
		"destination": m.Request.Destination,
		"exports":     fmt.Sprintf("%d/%d", p.Exports.Done, p.Exports.Total),
		"imports":     fmt.Sprintf("%d/%d", p.Imports.Done, p.Imports.Total),
		"copies":      fmt.Sprintf("%d/%d", p.Copies.Done, p.Copies.Total),
		"exported":    strconv.FormatInt(p.ResourcesExported, 10),
		"imported":    strconv.FormatInt(p.ResourcesImported, 10),
		"orphans":     strconv.Itoa(p.OrphanedAttempts),
	}
	if n := pendingCancels(m); n > 0 {
		md["cancels"] = strconv.Itoa(n)
	}
	if m.Error != nil {
		md["error"] = m.Error.Code
	}
	return md
}

// summaryOf reads a migration's summary back from its listed metadata (what cannot be read stays zero).
func summaryOf(id string, md map[string]string) Summary {
	sum := Summary{ID: id, Status: Status(metaValue(md, "status")), Source: metaValue(md, "source"),
		Destination: metaValue(md, "destination")}
	sum.CreatedAt, _ = time.Parse(time.RFC3339Nano, metaValue(md, "created"))
	sum.UpdatedAt, _ = time.Parse(time.RFC3339Nano, metaValue(md, "updated"))
	tally := func(key string) JobTally {
		var t JobTally
		_, _ = fmt.Sscanf(metaValue(md, key), "%d/%d", &t.Done, &t.Total)
		return t
	}
	sum.Progress.Exports, sum.Progress.Imports, sum.Progress.Copies = tally("exports"), tally("imports"), tally("copies")
	sum.Progress.ResourcesExported, _ = strconv.ParseInt(metaValue(md, "exported"), 10, 64)
	sum.Progress.ResourcesImported, _ = strconv.ParseInt(metaValue(md, "imported"), 10, 64)
	sum.Progress.OrphanedAttempts, _ = strconv.Atoi(metaValue(md, "orphans"))
	if code := metaValue(md, "error"); code != "" {
		sum.Error = &Failure{Code: code}
	}
	return sum
}

func encodeDoc(m *Migration) ([]byte, error) {
	m.Progress = nil
	data, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode migration %s: %w", m.ID, err)
	}
	return data, nil
}

// load reads a migration and its ETag; a missing one is the not_found refusal, which is also store.ErrNotFound.
func (s *Service) load(ctx context.Context, id string) (*Migration, string, error) {
	if !validID(id) {
		return nil, "", notFound(id)
	}
	data, etag, err := s.cfg.Store.Get(ctx, docName(id))
	if errors.Is(err, store.ErrNotFound) {
		return nil, "", notFound(id)
	}
	if err != nil {
		return nil, "", fmt.Errorf("load migration %s: %w", id, err)
	}
	var m Migration
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, "", fmt.Errorf("decode migration %s: %w", id, err)
	}
	if m.Request.SourceKind == "" {
		m.Request.SourceKind = SourceKindAPIForFHIR // a document from before sourceKind: the only kind there was
	}
	if err := s.readPages(ctx, &m); err != nil {
		return nil, "", err
	}
	return &m, etag, nil
}

// validID keeps ids from the outside (URL paths, messages) from naming anything but a migration document.
func validID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// update is the one way a migration changes: load, let mutate decide on the fresh document, save with If-Match,
// and on a conflict do it all again. mutate must be a pure decision on the document it is given (it may run more
// than once); the effects it returns for the run that was saved are executed by the caller after the save.
// A mutation returning errUnchanged saves nothing; its effects are still returned.
func (s *Service) update(ctx context.Context, id string, mutate func(*Migration) (*effects, error)) (*Migration, *effects, error) {
	for range maxConflictRetries {
		m, etag, err := s.load(ctx, id)
		if err != nil {
			return nil, nil, err
		}
		b := snapshot(m)
		eff, err := mutate(m)
		if errors.Is(err, errUnchanged) {
			return m, eff, nil
		}
		if err != nil {
			return m, nil, err
		}
		m.UpdatedAt = s.now()
		// The request this change serves is recorded in the same save (audit.go).
		audit, err := s.recordAudit(ctx, m, false)
		if err != nil {
			return nil, nil, err
		}
		data, err := s.encodeForSave(ctx, m)
		if err != nil {
			return nil, nil, err
		}
		_, err = s.cfg.Store.Put(ctx, docName(id), data, etag, docMetadata(m))
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("save migration %s: %w", id, err)
		}
		audit.markSaved()
		s.logChanges(ctx, b, m)
		return m, eff, nil
	}
	return nil, nil, fmt.Errorf("save migration %s: %w after %d attempts", id, store.ErrConflict, maxConflictRetries)
}

// messageTarget loads the migration a chained message names. A nil migration with a nil error means there is
// none: the message is acknowledged (logged), since no redelivery can change that.
func (s *Service) messageTarget(ctx context.Context, queue, id string, log *slog.Logger) (*Migration, error) {
	m, _, err := s.load(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		log.Warn(queue + " for an unknown migration acknowledged")
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return m, nil
}
