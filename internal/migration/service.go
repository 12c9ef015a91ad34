package migration

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"time"

	"github.com/fhir-migrator/fhir-migrator/internal/bus"
	"github.com/fhir-migrator/fhir-migrator/internal/store"
)

// Config is everything the engine needs: its parts and its Tuning (start from DefaultTuning).
type Config struct {
	Tuning
	Store store.Store
	Bus   bus.Sender
	FHIR  ClientFactory
	// SMARTFHIR is the client factory of SMART Backend Services (bulk-data sources); nil: none configured.
	SMARTFHIR ClientFactory
	// SourceFiles reads a bulk-data source's export files (bulkfetch) for the base URL; nil: none configured.
	SourceFiles func(baseURL string) (SourceFiles, error)
	Policy      URLPolicy
	Staging     Staging
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
	// pages caches job pages by name (a name is its content's hash).
	pages *pageCache
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
	return &Service{cfg: cfg, log: cfg.Logger, pages: newPageCache()}, nil
}

func defaultID(now time.Time) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return "m-" + now.UTC().Format("20060102-150405") + "-" + hex.EncodeToString(b[:])
}

func (s *Service) now() time.Time { return s.cfg.Clock().UTC() }
