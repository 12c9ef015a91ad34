package assess

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"time"

	"github.com/fhir-migrator/fhir-migrator/internal/fhir"
	"github.com/fhir-migrator/fhir-migrator/internal/migration"
	"github.com/fhir-migrator/fhir-migrator/internal/store"
)

// docPrefix is where assessment documents live in the document store, beside the migrations' (migrations/).
const docPrefix = "assessments/"

// Client is what an assessment needs of a FHIR server: what the engine needs (its planning runs on it), and the
// probes that write nothing; *fhir.Client satisfies it.
type Client interface {
	migration.FHIRClient
	Capability(ctx context.Context) (*fhir.Capability, error)
	ImportProbe(ctx context.Context, inputURL string) (*fhir.ProbeAnswer, error)
	LockProbe(ctx context.Context) (*fhir.ProbeAnswer, error)
}

// Staging is what an assessment needs of the staging account; *staging.Account satisfies it.
type Staging interface {
	Endpoint() string
	ContainerExists(ctx context.Context, name string) (bool, error)
	ClaimContainer(ctx context.Context, name, owner string) error
	PutBlob(ctx context.Context, container, name, owner string, data []byte) (string, error)
	Open(ctx context.Context, blobURL string) (io.ReadCloser, error)
	DeleteContainer(ctx context.Context, name, owner string) error
}

// Validator validates a start request as POST /api/migrations does; *migration.Service satisfies it.
type Validator interface {
	ValidateStart(raw migration.StartRequest) (*migration.Request, *migration.Error)
}

// Config is what the service needs.
type Config struct {
	Store     store.Store
	FHIR      func(baseURL string) (Client, error)
	Staging   Staging
	Validator Validator
	// MaxExportsPerSource is the migrations' export concurrency per source (the estimate's export slots);
	// MaxPlanningCounts bounds the plan's count calls, as a migration's.
	MaxExportsPerSource int
	MaxPlanningCounts   int
	Rates               Rates
	// StepBudget is how long one sweep works on one assessment (default 20 s); ExportDeadline how long the probe
	// export may run before it is canceled (default 15 min); PollInterval the probe export's polls (default 2 s);
	// MaxFailures the failures in a row of one step before the assessment fails (default 5).
	StepBudget     time.Duration
	ExportDeadline time.Duration
	PollInterval   time.Duration
	MaxFailures    int
	Clock          func() time.Time
	Logger         *slog.Logger
	NewID          func() string
}

// Service runs assessments; it keeps nothing between calls: everything is in the Store.
type Service struct {
	cfg Config
	log *slog.Logger
}

// NewService checks cfg and fills its defaults.
func NewService(cfg Config) (*Service, error) {
	switch {
	case cfg.Store == nil:
		return nil, errors.New("assessment config: Store is required")
	case cfg.FHIR == nil:
		return nil, errors.New("assessment config: FHIR is required")
	case cfg.Staging == nil:
		return nil, errors.New("assessment config: Staging is required")
	case cfg.Validator == nil:
		return nil, errors.New("assessment config: Validator is required")
	}
	def := migration.DefaultTuning()
	if cfg.MaxExportsPerSource <= 0 {
		cfg.MaxExportsPerSource = def.MaxExportsPerSource
	}
	if cfg.MaxPlanningCounts <= 0 {
		cfg.MaxPlanningCounts = def.MaxPlanningCounts
	}
	if cfg.Rates == (Rates{}) {
		cfg.Rates = DefaultRates()
	}
	if cfg.StepBudget <= 0 {
		cfg.StepBudget = 20 * time.Second
	}
	if cfg.ExportDeadline <= 0 {
		cfg.ExportDeadline = 15 * time.Minute
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 2 * time.Second
	}
	if cfg.MaxFailures <= 0 {
		cfg.MaxFailures = 5
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.NewID == nil {
		clock := cfg.Clock
		cfg.NewID = func() string { return defaultID(clock()) }
	}
	return &Service{cfg: cfg, log: cfg.Logger}, nil
}

// defaultID is a-{yyyyMMdd-HHmmss}-{6 random hex}: also a valid container name (the probe's).
func defaultID(now time.Time) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return "a-" + now.UTC().Format("20060102-150405") + "-" + hex.EncodeToString(b[:])
}

func (s *Service) now() time.Time { return s.cfg.Clock().UTC() }

var idPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

func docName(id string) string { return docPrefix + id + ".json" }

func notFound(id string) error {
	return &migration.Error{Kind: migration.NotFound, Code: "not_found", Message: fmt.Sprintf("no assessment %q", id)}
}

// Start validates a start request as POST /api/migrations does and stores a new assessment (status running); the
// sweep runs its checks. A request a migration refuses for a malformed or missing field is refused here the same
// way; one it refuses only for the combination of valid fields (history_not_combinable) is assessed, the
// combination a blocking item. Nothing is called but the document store.
func (s *Service) Start(ctx context.Context, raw migration.StartRequest) (*Assessment, error) {
	req, refusal := s.cfg.Validator.ValidateStart(raw)
	var combination *AssessmentError
	// Assess the rest as asked: validated without each field to blame (typeFilter, then importMode: both may be),
	// each then put back, the first refusal kept as the item.
	again := raw
	for range 2 {
		if refusal == nil || refusal.Code != "history_not_combinable" {
			break
		}
		if combination == nil {
			combination = &AssessmentError{Code: refusal.Code, Field: refusal.Field, Message: refusal.Message}
		}
		switch refusal.Field {
		case "importMode":
			again.ImportMode = nil
		case "typeFilter":
			again.TypeFilter = nil
		}
		req, refusal = s.cfg.Validator.ValidateStart(again)
	}
	if refusal != nil {
		return nil, refusal
	}
	if combination != nil {
		req.TypeFilter = raw.TypeFilter
		if raw.ImportMode != nil {
			req.ImportMode = *raw.ImportMode
		}
	}
	req.DryRun = false
	now := s.now()
	a := &Assessment{ID: s.cfg.NewID(), Status: StatusRunning, CreatedAt: now, UpdatedAt: now, Request: *req,
		Refusal: combination, Progress: StepProgress{Step: stepServers}}
	a.Items = judge(a)
	entry, recorded := migration.StartAudit(ctx)
	if entry != nil {
		e := *entry
		e.At = now
		a.Audit = []migration.AuditEntry{e}
	}
	if _, err := s.put(ctx, a, ""); err != nil {
		return nil, fmt.Errorf("create assessment %s: %w", a.ID, err)
	}
	recorded()
	s.log.Info("assessment started", "assessment", a.ID, "source", req.Source, "destination", req.Destination)
	return a, nil
}

// Get reads an assessment; not_found when there is none.
func (s *Service) Get(ctx context.Context, id string) (*Assessment, error) {
	a, _, err := s.load(ctx, id)
	return a, err
}

func (s *Service) load(ctx context.Context, id string) (*Assessment, string, error) {
	if !idPattern.MatchString(id) {
		return nil, "", notFound(id)
	}
	data, etag, err := s.cfg.Store.Get(ctx, docName(id))
	if errors.Is(err, store.ErrNotFound) {
		return nil, "", notFound(id)
	}
	if err != nil {
		return nil, "", fmt.Errorf("read assessment %s: %w", id, err)
	}
	var a Assessment
	if err := json.Unmarshal(data, &a); err != nil {
		return nil, "", fmt.Errorf("decode assessment %s: %w", id, err)
	}
	return &a, etag, nil
}

// put saves a with If-Match etag ("" creates), listing its status in the metadata for the sweep.
func (s *Service) put(ctx context.Context, a *Assessment, etag string) (string, error) {
	data, err := json.Marshal(a)
	if err != nil {
		return "", fmt.Errorf("encode assessment %s: %w", a.ID, err)
	}
	return s.cfg.Store.Put(ctx, docName(a.ID), data, etag, map[string]string{"status": string(a.Status)})
}

// Poll is the sweep: every running assessment is advanced for at most the step budget. One assessment's errors
// are logged and do not stop the others.
func (s *Service) Poll(ctx context.Context) error {
	items, err := s.cfg.Store.List(ctx, docPrefix)
	if err != nil {
		return fmt.Errorf("list assessments: %w", err)
	}
	for _, it := range items {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if status := metaValue(it.Metadata, "status"); status != "" && status != string(StatusRunning) {
			continue
		}
		id := strings.TrimSuffix(strings.TrimPrefix(it.Name, docPrefix), ".json")
		if err := s.Advance(ctx, id); err != nil {
			s.log.Error("advance assessment failed", "assessment", id, "err", err)
		}
	}
	return nil
}

func metaValue(md map[string]string, key string) string {
	for k, v := range md {
		if strings.EqualFold(k, key) {
			return v
		}
	}
	return ""
}

// errConflict: another sweep saved the assessment first; this one's work is dropped.
var errConflict = errors.New("assessment changed concurrently")

// Advance runs the next steps of one assessment until it ends or the step budget is spent, saving after each
// step, so that a handler killed mid-way redoes at most one step.
func (s *Service) Advance(ctx context.Context, id string) error {
	deadline := s.now().Add(s.cfg.StepBudget)
	for {
		a, etag, err := s.load(ctx, id)
		if err != nil {
			return err
		}
		if a.Status != StatusRunning {
			return nil
		}
		r := &run{s: s, a: a, deadline: deadline}
		wait, stepErr := r.step(ctx)
		a.Progress.Steps++
		// Failures counts one step's failures in a row (FailedStep): the probe export's polls between a failing
		// step's attempts neither reset its count nor add to it.
		if stepErr != nil {
			if a.Progress.FailedStep != a.Progress.Step {
				a.Progress.Failures = 0
			}
			a.Progress.FailedStep = a.Progress.Step
			a.Progress.Failures++
			a.Progress.LastError = truncate(stepErr.Error(), 1000)
			s.log.Warn("assessment step failed", "assessment", id, "step", a.Progress.Step, "failures", a.Progress.Failures, "err", stepErr)
			if a.Progress.Failures >= s.cfg.MaxFailures {
				r.fail(ctx, stepErr)
			}
		} else if !wait && a.Progress.FailedStep == a.Progress.Step {
			a.Progress.Failures, a.Progress.LastError, a.Progress.FailedStep = 0, "", ""
		}
		a.UpdatedAt = s.now()
		a.Items = judge(a)
		if a.Status != StatusRunning {
			a.Verdict = verdict(a.Items)
		}
		if _, err := s.put(ctx, a, etag); err != nil {
			if errors.Is(err, store.ErrConflict) {
				return nil // another sweep is at it
			}
			return fmt.Errorf("save assessment %s: %w", id, err)
		}
		if a.Status != StatusRunning {
			s.log.Info("assessment ended", "assessment", id, "status", a.Status, "verdict", a.Verdict)
			return nil
		}
		if stepErr != nil || wait || !s.now().Before(deadline) {
			return nil
		}
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
