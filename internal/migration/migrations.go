package migration

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
)

// Get returns a migration with its derived progress.
func (s *Service) Get(ctx context.Context, id string) (*Migration, error) {
	m, _, err := s.load(ctx, id)
	if err != nil {
		return nil, err
	}
	return m.served(s.now()), nil
}

// ListRequest asks for one page of the migration list: at most Top summaries (default 50, at most 500) after the
// page ContinuationToken names.
type ListRequest struct {
	Top               int
	ContinuationToken string
}

// ListResult is one page of the migration list, oldest first, and the token of the next page ("" at the end).
type ListResult struct {
	Migrations        []Summary `json:"migrations"`
	ContinuationToken string    `json:"continuationToken,omitempty"`
}

// Listing bounds.
const (
	defaultListTop = 50
	maxListTop     = 500
)

// List summarises one page of migrations from the documents' listed metadata: no document is read.
func (s *Service) List(ctx context.Context, req ListRequest) (*ListResult, error) {
	top := req.Top
	switch {
	case top == 0:
		top = defaultListTop
	case top < 1 || top > maxListTop:
		return nil, invalid("invalid_top", "top", "top must be 1 to %d", maxListTop)
	}
	marker := ""
	if req.ContinuationToken != "" {
		m, ok := readListToken(req.ContinuationToken)
		if !ok {
			return nil, invalid("invalid_continuation_token", "continuationToken", "the continuation token is not one this service gave")
		}
		marker = m
	}
	items, next, err := s.cfg.Store.ListPage(ctx, migrationPrefix, top, marker)
	if err != nil {
		return nil, fmt.Errorf("list migrations: %w", err)
	}
	res := &ListResult{Migrations: make([]Summary, 0, len(items))}
	for _, it := range items {
		res.Migrations = append(res.Migrations, summaryOf(idFromName(it.Name), it.Metadata))
	}
	if next != "" {
		res.ContinuationToken = listToken(next)
	}
	return res, nil
}

// listToken is the continuation token of a store marker: the marker and a digest of it, so that a token this
// service did not give is refused as such instead of reaching the store (which would fail on it).
func listToken(marker string) string {
	sum := sha256.Sum256([]byte("fhir-migrator list " + marker))
	return base64.RawURLEncoding.EncodeToString(append(sum[:8], marker...))
}

func readListToken(token string) (string, bool) {
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(raw) <= 8 {
		return "", false
	}
	marker := string(raw[8:])
	return marker, listToken(marker) == token
}

// Cancel stops a migration: every running server job is canceled (DELETE of its Content-Location), every
// unfinished job canceled and its slot released. A finished migration answers 409 already_finished.
func (s *Service) Cancel(ctx context.Context, id string) (*Migration, error) {
	m, eff, err := s.update(ctx, id, func(m *Migration) (*effects, error) {
		if m.Status.Terminal() {
			return nil, conflict("already_finished", "migration %s is already %s", m.ID, m.Status)
		}
		e := &effects{}
		stopMigration(m, StatusCanceled, s.now(), e)
		return e, nil
	})
	if err != nil {
		return nil, err
	}
	s.perform(ctx, id, eff)
	s.log.Info("migration canceled", "migration", id, "serverJobsCanceled", len(eff.cancels))
	return m.served(s.now()), nil
}
