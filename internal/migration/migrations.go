package migration

import (
	"context"
	"errors"
	"fmt"

	"github.com/fhir-migrator/fhir-migrator/internal/store"
)

// Get returns a migration with its derived progress.
func (s *Service) Get(ctx context.Context, id string) (*Migration, error) {
	m, _, err := s.load(ctx, id)
	if err != nil {
		return nil, err
	}
	return m.served(), nil
}

// List summarises every migration, oldest first.
func (s *Service) List(ctx context.Context) ([]Summary, error) {
	items, err := s.cfg.Store.List(ctx, migrationPrefix)
	if err != nil {
		return nil, fmt.Errorf("list migrations: %w", err)
	}
	out := make([]Summary, 0, len(items))
	for _, it := range items {
		m, _, err := s.load(ctx, idFromName(it.Name))
		if errors.Is(err, store.ErrNotFound) {
			continue // deleted since listed
		}
		if err != nil {
			return nil, err
		}
		out = append(out, Summary{ID: m.ID, Status: m.Status, CreatedAt: m.CreatedAt, UpdatedAt: m.UpdatedAt,
			Source: m.Request.Source, Destination: m.Request.Destination, Progress: m.progress(), Error: m.Error})
	}
	return out, nil
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
	return m.served(), nil
}
