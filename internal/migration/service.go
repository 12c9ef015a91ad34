// Package migration is the engine of the service: the migration document, its job state machine, and the steps
// that drive it (start, the poll sweep, run-import, verify-counts, cancel).
//
// The stored documents are the only truth. Every step loads a document, decides, and saves it with the ETag it
// read (reloading and deciding again on a conflict); calls to FHIR servers that start work are recorded in the
// document before they are made, and messages are sent only after the save that decided them.
package migration

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/url"
	"sync"
	"time"

	"github.com/fhir-migrator/fhir-migrator/internal/bus"
	"github.com/fhir-migrator/fhir-migrator/internal/fhir"
	"github.com/fhir-migrator/fhir-migrator/internal/staging"
	"github.com/fhir-migrator/fhir-migrator/internal/store"
)

// FHIRClient is what the engine needs of a FHIR server; *fhir.Client satisfies it.
type FHIRClient interface {
	BaseURL() string
	ResourceTypes(ctx context.Context) ([]string, error)
	ExportKickoff(ctx context.Context, r fhir.ExportRequest) (string, error)
	ExportStatus(ctx context.Context, contentLocation string) (*fhir.ExportStatus, error)
	ImportKickoff(ctx context.Context, r fhir.ImportRequest) (string, error)
	ImportStatus(ctx context.Context, contentLocation string) (*fhir.ImportStatus, error)
	CancelJob(ctx context.Context, contentLocation string) error
	Count(ctx context.Context, resourceType string, query url.Values) (int64, error)
	// Search calls each with every resource of the search's pages (the ids and full checks).
	Search(ctx context.Context, resourceType string, query url.Values, each func(resource json.RawMessage) error) error
	Batch(ctx context.Context, entries []fhir.BatchEntry) (*fhir.BatchResult, error)
}

// ClientFactory returns the client of the FHIR server at baseURL (already checked by the URLPolicy).
type ClientFactory func(baseURL string) (FHIRClient, error)

// URLPolicy validates and normalises a FHIR base URL from a start request; *fhir.HostPolicy satisfies it.
type URLPolicy interface {
	CheckBaseURL(raw string) (string, error)
}

// Staging is the storage account the source exports into and the destination imports from: each migration owns
// one container there. *staging.Account implements it; its sentinel errors are the staging package's.
type Staging interface {
	// ClaimContainer creates the export container when missing and marks it as owned by migrationID;
	// staging.ErrContainerTaken when the container belongs to another migration (or holds data of unknown origin).
	ClaimContainer(ctx context.Context, container, migrationID string) error
	// ReleaseContainer undoes the claim of a start that stored no document (the container must still be empty).
	ReleaseContainer(ctx context.Context, container, migrationID string) error
	// Open streams one staged blob, addressed by its full URL as written in an export manifest.
	Open(ctx context.Context, blobURL string) (io.ReadCloser, error)
	// ListContainer lists the blobs of a migration's container with their sizes; staging.ErrNotOwned when the
	// container is not migrationID's; an empty list when it does not exist.
	ListContainer(ctx context.Context, container, migrationID string) ([]staging.BlobInfo, error)
	// DeleteContainer deletes a migration's container with everything in it; staging.ErrNotOwned when it is
	// not migrationID's; nil when it does not exist.
	DeleteContainer(ctx context.Context, container, migrationID string) error
	// BlobSize and DeleteBlob address one blob of the account by URL; a missing blob is staging.ErrBlobNotFound.
	BlobSize(ctx context.Context, blobURL string) (int64, error)
	DeleteBlob(ctx context.Context, blobURL string) error
}

// Config is everything the engine needs: its parts and its Tuning (start from DefaultTuning).
type Config struct {
	Tuning
	Store   store.Store
	Bus     bus.Sender
	FHIR    ClientFactory
	Policy  URLPolicy
	Staging Staging
	// Clock defaults to time.Now.
	Clock  func() time.Time
	Logger *slog.Logger
	// NewID defaults to m-{yyyyMMdd-HHmmss}-{6 random hex}.
	NewID func() string
	// Random returns a number in [0,1) for backoff jitter; defaults to math/rand/v2.
	Random func() float64
}

// Service runs migrations. It keeps no state between calls: everything is in the Store.
type Service struct {
	cfg Config
	log *slog.Logger
}

// NewService validates cfg and fills the defaults of its optional parts (clock, logger, ids, randomness).
func NewService(cfg Config) (*Service, error) {
	switch {
	case cfg.Store == nil:
		return nil, errors.New("migration config: Store is required")
	case cfg.Bus == nil:
		return nil, errors.New("migration config: Bus is required")
	case cfg.FHIR == nil:
		return nil, errors.New("migration config: FHIR client factory is required")
	case cfg.Policy == nil:
		return nil, errors.New("migration config: Policy is required")
	case cfg.Staging == nil:
		return nil, errors.New("migration config: Staging is required")
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Random == nil {
		cfg.Random = mrand.Float64
	}
	if cfg.NewID == nil {
		clock := cfg.Clock
		cfg.NewID = func() string { return defaultID(clock()) }
	}
	if err := cfg.Tuning.Validate(); err != nil {
		return nil, fmt.Errorf("migration tuning: %w", err)
	}
	return &Service{cfg: cfg, log: cfg.Logger}, nil
}

func defaultID(now time.Time) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return "m-" + now.UTC().Format("20060102-150405") + "-" + hex.EncodeToString(b[:])
}

func (s *Service) now() time.Time { return s.cfg.Clock().UTC() }

// backoff is the delay before poll number n (0-based) of a job: PollInitial doubled per poll, capped at PollMax,
// jittered into [d/2, d] so that jobs started together do not poll together.
func (s *Service) backoff(n int) time.Duration {
	d := s.cfg.PollInitial
	for i := 0; i < n && d < s.cfg.PollMax; i++ {
		d *= 2
	}
	d = min(d, s.cfg.PollMax)
	return d/2 + time.Duration(s.cfg.Random()*float64(d/2))
}

// fanOut runs fn(0) .. fn(n-1) with at most limit of them at a time, and returns when all have.
func fanOut(n, limit int, fn func(i int)) {
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			fn(i)
		})
	}
	wg.Wait()
}
