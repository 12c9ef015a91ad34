package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/fhir-migrator/fhir-migrator/internal/migration"
	"github.com/fhir-migrator/fhir-migrator/internal/staging"
)

// stagingAdapter serves the engine's staging needs from the staging account: its errors and types become the
// engine's.
type stagingAdapter struct{ *staging.Account }

// The engine releases the claim of a start that stored no document through this optional method.
var _ interface {
	ReleaseContainer(ctx context.Context, name, migrationID string) error
} = stagingAdapter{}

func (s stagingAdapter) ClaimContainer(ctx context.Context, name, migrationID string) error {
	return stagingError(s.Account.ClaimContainer(ctx, name, migrationID))
}

func (s stagingAdapter) ListContainer(ctx context.Context, name, migrationID string) ([]migration.StagedBlob, error) {
	list, err := s.Account.ListContainer(ctx, name, migrationID)
	if err != nil {
		return nil, stagingError(err)
	}
	out := make([]migration.StagedBlob, len(list))
	for i, b := range list {
		out[i] = migration.StagedBlob{Name: b.Name, Size: b.Size}
	}
	return out, nil
}

func (s stagingAdapter) DeleteContainer(ctx context.Context, name, migrationID string) error {
	return stagingError(s.Account.DeleteContainer(ctx, name, migrationID))
}

func (s stagingAdapter) BlobSize(ctx context.Context, blobURL string) (int64, error) {
	n, err := s.Account.BlobSize(ctx, blobURL)
	return n, stagingError(err)
}

func (s stagingAdapter) DeleteBlob(ctx context.Context, blobURL string) error {
	return stagingError(s.Account.DeleteBlob(ctx, blobURL))
}

func stagingError(err error) error {
	switch {
	case errors.Is(err, staging.ErrContainerTaken):
		return fmt.Errorf("%w: %w", migration.ErrContainerTaken, err)
	case errors.Is(err, staging.ErrNotOwned):
		return fmt.Errorf("%w: %w", migration.ErrContainerNotOwned, err)
	case errors.Is(err, staging.ErrBlobNotFound):
		return fmt.Errorf("%w: %w", migration.ErrBlobNotFound, err)
	}
	return err
}

var _ migration.StagingCleaner = stagingAdapter{}
