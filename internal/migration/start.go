package migration

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/fhir-migrator/fhir-migrator/internal/fhir"
	"github.com/fhir-migrator/fhir-migrator/internal/staging"
)

// Request field values.
const (
	StrategySystem  = "system"
	StrategyPerType = "per-type"
	ModeIncremental = "IncrementalLoad"
	ModeInitial     = "InitialLoad"
)

var (
	// typePattern is a FHIR resource type, idPattern a FHIR id: only such names become request paths and _id searches.
	typePattern      = regexp.MustCompile(`^[A-Z][A-Za-z]{0,63}$`)
	idPattern        = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)
	containerPattern = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)
)

// StartRequest is the start request as sent; pointers tell "absent" from "empty". Start validates every field.
type StartRequest struct {
	Source      *string `json:"source"`
	Destination *string `json:"destination"`
	// SourceKind is api-for-fhir, fhir-service or bulk-data; absent, the source's host decides where it can
	// (defaultSourceKind).
	SourceKind *string `json:"sourceKind"`
	// Group, for a bulk-data source: the id of the Group whose patients are exported (Group/{id}/$export).
	Group          *string  `json:"group"`
	Types          []string `json:"types"`
	Since          *string  `json:"since"`
	Till           *string  `json:"till"`
	TypeFilter     []string `json:"typeFilter"`
	ExportStrategy *string  `json:"exportStrategy"`
	ImportMode     *string  `json:"importMode"`
	Container      *string  `json:"container"`
	Verify         *string  `json:"verify"`
	VerifySample   *int     `json:"verifySample"`
	DryRun         bool     `json:"dryRun"`
	WindowTarget   *int64   `json:"windowTarget"`
	Cleanup        *string  `json:"cleanup"`
	History        bool     `json:"history"`
	Deletes        bool     `json:"deletes"`
	Sync           bool     `json:"sync"`
	SyncInterval   *string  `json:"syncInterval"`
	SyncMargin     *string  `json:"syncMargin"`
	// Reconcile, with sync: "delete" (the default) removes from the destination, at the cutover, the resources the
	// source no longer has (hard-deleted or purged there); "report" only lists them.
	Reconcile *string `json:"reconcile"`
	// CutoverVerify, with sync: "fast" (the default) or "full-ids" (cutover_compare.go).
	CutoverVerify *string `json:"cutoverVerify"`
}

// StartResult is what a start request made: the new migration, or the plan of a dry run.
type StartResult struct {
	Migration *Migration
	Plan      *Plan
}

// Start validates a start request, checks both servers, and creates the migration (or, for a dry run, only
// answers its plan). A refused request is an *Error; nothing is stored when Start returns an error, and nothing
// is claimed unless the final save of the document fails (the claim is then released).
func (s *Service) Start(ctx context.Context, raw StartRequest) (*StartResult, error) {
	req, refusal := s.validate(&raw)
	if refusal != nil {
		return nil, refusal
	}
	sourceTypes, destTypes, err := s.preflight(ctx, req)
	if err != nil {
		return nil, err
	}
	id := s.cfg.NewID()
	now := s.now()
	if req.Container == "" {
		req.Container = id
		if !validContainer(req.Container) {
			return nil, fmt.Errorf("migration id %q is not a valid container name", id)
		}
	}
	if req.DryRun {
		jobs, err := s.dryRunPlan(ctx, req, sourceTypes, now)
		if err != nil {
			return nil, err
		}
		return &StartResult{Plan: &Plan{DryRun: true, Request: *req, Jobs: jobs}}, nil
	}
	if err := s.cfg.Staging.ClaimContainer(ctx, req.Container, id); err != nil {
		if errors.Is(err, staging.ErrContainerTaken) {
			return nil, refuse(Conflict, "container_in_use", "container", "container %s belongs to another migration or holds other data", req.Container)
		}
		return nil, fmt.Errorf("claim container %s: %w", req.Container, err)
	}
	// Planning counts the source from the poller: it may take longer than an HTTP call may.
	m := &Migration{ID: id, Status: StatusPlanning, CreatedAt: now, UpdatedAt: now, Request: *req,
		Planning: newPlanning(req, sourceTypes, now), Baseline: s.takeBaseline(ctx, id, req, sourceTypes, destTypes),
		SourceTypes: sourceTypes}
	audit, err := s.recordAudit(ctx, m, true)
	if err != nil {
		return nil, err
	}
	data, err := encodeDoc(m)
	if err != nil {
		return nil, err
	}
	if _, err := s.cfg.Store.Put(ctx, docName(id), data, "", docMetadata(m)); err != nil {
		s.releaseContainer(req.Container, id)
		return nil, fmt.Errorf("create migration %s: %w", id, err)
	}
	audit.markSaved()
	s.log.Info("migration started", "migration", id, "source", req.Source, "destination", req.Destination,
		"container", req.Container)
	return &StartResult{Migration: m.served(s.now())}, nil
}

// validate checks every field and applies the defaults that need no server.
func (s *Service) validate(r *StartRequest) (*Request, *Error) {
	req := &Request{DryRun: r.DryRun, History: r.History, Deletes: r.Deletes, Sync: r.Sync}
	var refusal *Error
	if req.Source, refusal = s.checkServer(r.Source, "source"); refusal != nil {
		return nil, refusal
	}
	if req.Destination, refusal = s.checkServer(r.Destination, "destination"); refusal != nil {
		return nil, refusal
	}
	if req.Source == req.Destination {
		return nil, invalid("same_server", "destination", "source and destination are the same server")
	}
	if req.SourceKind, refusal = checkSourceKind(r.SourceKind, req.Source); refusal != nil {
		return nil, refusal
	}
	if r.Group != nil {
		if !idPattern.MatchString(*r.Group) {
			return nil, invalid("invalid_group", "group", "group must be a FHIR id ([A-Za-z0-9-.]{1,64})")
		}
		req.Group = *r.Group
	}
	for i, t := range r.Types {
		field := fmt.Sprintf("types[%d]", i)
		if !typePattern.MatchString(t) {
			return nil, invalid("invalid_type", field, "%q is not a FHIR resource type", t)
		}
		if slices.Contains(r.Types[:i], t) {
			return nil, invalid("invalid_type", field, "%s is listed twice", t)
		}
	}
	req.Types = r.Types
	var err error
	if req.Since, err = parseTime(r.Since); err != nil {
		return nil, invalid("invalid_time", "since", "since must be an RFC 3339 time: %v", err)
	}
	if req.Till, err = parseTime(r.Till); err != nil {
		return nil, invalid("invalid_time", "till", "till must be an RFC 3339 time: %v", err)
	}
	if req.Since != nil && req.Till != nil && !req.Since.Before(*req.Till) {
		return nil, invalid("invalid_window", "since", "since must be before till")
	}
	if req.Since != nil && !req.Since.Before(s.now()) {
		return nil, invalid("invalid_window", "since", "since must be in the past")
	}
	for i, f := range r.TypeFilter {
		if refusal := checkTypeFilter(f, req.Types, fmt.Sprintf("typeFilter[%d]", i)); refusal != nil {
			return nil, refusal
		}
	}
	req.TypeFilter = r.TypeFilter
	req.ExportStrategy = StrategySystem
	if len(req.Types) > 0 {
		req.ExportStrategy = StrategyPerType
	}
	if r.ExportStrategy != nil {
		if !slices.Contains(exportStrategies, *r.ExportStrategy) {
			return nil, invalid("invalid_export_strategy", "exportStrategy", "exportStrategy must be %s", orList(exportStrategies))
		}
		req.ExportStrategy = *r.ExportStrategy
	}
	req.ImportMode = DefaultImportMode
	if r.ImportMode != nil {
		if !slices.Contains(importModes, *r.ImportMode) {
			return nil, invalid("invalid_import_mode", "importMode", "importMode must be %s", orList(importModes))
		}
		req.ImportMode = *r.ImportMode
	}
	if r.Container != nil {
		if !validContainer(*r.Container) {
			return nil, invalid("invalid_container", "container",
				"container must be 3-63 characters of lowercase letters, digits and single hyphens, starting and ending with a letter or digit")
		}
		req.Container = *r.Container
	}
	req.Verify = DefaultVerify
	if r.Verify != nil {
		if !slices.Contains(verifyModes, *r.Verify) {
			return nil, invalid("invalid_verify", "verify", "verify must be %s", orList(verifyModes))
		}
		req.Verify = *r.Verify
	}
	if r.VerifySample != nil {
		if *r.VerifySample < 0 {
			return nil, invalid("invalid_verify_sample", "verifySample", "verifySample must be 0 or more")
		}
		req.VerifySample = *r.VerifySample
	}
	if r.WindowTarget != nil {
		if *r.WindowTarget < 1 {
			return nil, invalid("invalid_window_target", "windowTarget", "windowTarget must be 1 or more (default %d)", DefaultWindowTarget)
		}
		req.WindowTarget = *r.WindowTarget
	}
	if r.Cleanup != nil {
		if !slices.Contains(cleanupModes, *r.Cleanup) {
			return nil, invalid("invalid_cleanup", "cleanup", "cleanup must be %q or absent", CleanupAfterVerify)
		}
		req.Cleanup = *r.Cleanup
	}
	if refusal := checkSync(r, req); refusal != nil {
		return nil, refusal
	}
	if req.associated() {
		what := "history"
		switch {
		case req.Sync:
			what = "sync (its deltas carry deletions)"
		case !req.History:
			what = "deletes"
		}
		switch {
		case len(req.TypeFilter) > 0:
			return nil, invalid("history_not_combinable", "typeFilter",
				"%s cannot be combined with typeFilter: the source refuses includeAssociatedData with _typeFilter", what)
		case req.ImportMode == ModeInitial:
			return nil, invalid("history_not_combinable", "importMode",
				"%s needs importMode %q, which keeps versions and deletions (InitialLoad does not)", what, ModeIncremental)
		}
	}
	return req, nil
}

// checkSync reads the sync fields: intervals are Go durations ("15m", "3s"), and a sync has no till (it follows
// the source until the cutover).
func checkSync(r *StartRequest, req *Request) *Error {
	if r.Sync {
		req.SyncInterval, req.SyncMargin = Duration(DefaultSyncInterval), Duration(DefaultSyncMargin)
	}
	for _, d := range []struct {
		raw   *string
		field string
		into  *Duration
		zero  bool
	}{{r.SyncInterval, "syncInterval", &req.SyncInterval, false}, {r.SyncMargin, "syncMargin", &req.SyncMargin, true}} {
		if d.raw == nil {
			continue
		}
		if !r.Sync {
			return invalid("invalid_sync", d.field, "%s needs sync: true", d.field)
		}
		v, err := time.ParseDuration(*d.raw)
		if err != nil || v < 0 || (v == 0 && !d.zero) {
			return invalid("invalid_sync", d.field, "%s must be a positive duration such as \"15m\" or \"3s\"", d.field)
		}
		*d.into = Duration(v)
	}
	if r.Sync && req.Till != nil {
		return invalid("invalid_sync", "till", "a sync follows the source until the cutover: it takes no till")
	}
	switch {
	case r.Reconcile == nil && r.Sync:
		req.Reconcile = DefaultReconcile
	case r.Reconcile == nil:
	case !r.Sync:
		return invalid("invalid_reconcile", "reconcile", "reconcile runs at the cutover: it needs sync: true")
	case slices.Contains(reconcileModes, *r.Reconcile):
		req.Reconcile = *r.Reconcile
	default:
		return invalid("invalid_reconcile", "reconcile", "reconcile must be %s", orList(reconcileModes))
	}
	return checkCutoverVerify(r.CutoverVerify, r.Sync, req)
}

// checkSourceKind reads sourceKind, or takes it from the source's host; a host that implies none needs it.
func checkSourceKind(raw *string, source string) (string, *Error) {
	if raw == nil {
		kind := defaultSourceKind(source)
		if kind == "" {
			return "", invalid("missing_field", "sourceKind",
				"sourceKind is required for a source that is not an Azure host (%s)", orList(sourceKindNames))
		}
		return kind, nil
	}
	if !slices.Contains(sourceKindNames, *raw) {
		return "", invalid("invalid_source_kind", "sourceKind", "sourceKind must be %s", orList(sourceKindNames))
	}
	return *raw, nil
}

func (s *Service) checkServer(raw *string, field string) (string, *Error) {
	if raw == nil || strings.TrimSpace(*raw) == "" {
		return "", invalid("missing_field", field, "%s is required", field)
	}
	u, err := url.Parse(strings.TrimSpace(*raw))
	if err != nil || !u.IsAbs() || u.Host == "" {
		return "", invalid("invalid_url", field, "%s is not an absolute URL", field)
	}
	base, err := s.cfg.Policy.CheckBaseURL(*raw)
	if errors.Is(err, fhir.ErrHostNotAllowed) {
		return "", invalid("host_not_allowed", field, "%s: %v", field, err)
	}
	if err != nil {
		return "", invalid("invalid_url", field, "%s: %v", field, err)
	}
	return base, nil
}

func parseTime(raw *string) (*time.Time, error) {
	if raw == nil {
		return nil, nil
	}
	t, err := time.Parse(time.RFC3339Nano, *raw)
	if err != nil {
		return nil, err
	}
	return &t, nil
}

// checkTypeFilter checks one _typeFilter entry as the service reads the parameter: entries are split on ",", their
// parameters on "&" and each parameter on "=", so a comma cannot be sent and every parameter is exactly name=value.
func checkTypeFilter(f string, types []string, field string) *Error {
	typ, query, ok := strings.Cut(f, "?")
	if !ok || query == "" || !typePattern.MatchString(typ) {
		return invalid("invalid_type_filter", field, "%q is not Type?query", f)
	}
	if strings.Contains(f, ",") {
		return invalid("invalid_type_filter", field, "%q holds a comma: the service splits _typeFilter on commas, "+
			"so it cannot be sent (give each value its own entry)", f)
	}
	for part := range strings.SplitSeq(query, "&") {
		if strings.Count(part, "=") != 1 || strings.HasPrefix(part, "=") {
			return invalid("invalid_type_filter", field, "the parameter %q of %q is not name=value", part, f)
		}
	}
	if _, err := url.ParseQuery(query); err != nil {
		return invalid("invalid_type_filter", field, "the query of %q is malformed: %v", f, err)
	}
	if len(types) > 0 && !slices.Contains(types, typ) {
		return invalid("invalid_type_filter", field, "%s is not among the requested types", typ)
	}
	return nil
}

func validContainer(c string) bool {
	return len(c) >= 3 && len(c) <= 63 && containerPattern.MatchString(c)
}

// preflight reads both servers' CapabilityStatements: their FHIR versions must agree; the source's resource types
// check the request and plan per-type exports; the destination's prove it answers.
func (s *Service) preflight(ctx context.Context, req *Request) (sourceTypes, destTypes []string, err error) {
	src, err := s.sourceClient(req)
	var srcCaps, dstCaps fhir.Capabilities
	if err == nil {
		srcCaps, err = src.Capabilities(ctx)
	}
	if err != nil {
		return nil, nil, unavailable("source_unreachable", "source", "the source's CapabilityStatement could not be read: %v", err)
	}
	dst, err := s.cfg.FHIR(req.Destination)
	if err == nil {
		dstCaps, err = dst.Capabilities(ctx)
	}
	if err != nil {
		return nil, nil, unavailable("destination_unreachable", "destination", "the destination's CapabilityStatement could not be read: %v", err)
	}
	if refusal := checkFHIRVersions(srcCaps.FHIRVersion, dstCaps.FHIRVersion); refusal != nil {
		return nil, nil, refusal
	}
	if refusal := kindOf(req).Prepare(ctx, src, srcCaps, req); refusal != nil {
		return nil, nil, refusal
	}
	sourceTypes = srcCaps.Types
	for i, t := range req.Types {
		if !slices.Contains(sourceTypes, t) {
			return nil, nil, invalid("unknown_type", fmt.Sprintf("types[%d]", i), "the source does not support %s", t)
		}
	}
	for i, f := range req.TypeFilter {
		typ, query, _ := strings.Cut(f, "?")
		field := fmt.Sprintf("typeFilter[%d]", i)
		if !slices.Contains(sourceTypes, typ) {
			return nil, nil, invalid("unknown_type", field, "the source does not support %s", typ)
		}
		// Each entry is counted before every kick-off: a search the source refuses is refused here, once.
		q, _ := url.ParseQuery(query) // checked by validate
		if _, err := src.Count(ctx, typ, q); err != nil {
			if fhir.Refused(err) {
				return nil, nil, invalid("invalid_type_filter", field, "the source refuses %q as a search: %v", f, err)
			}
			return nil, nil, unavailable("source_unreachable", field, "the source could not count %q: %v", f, err)
		}
	}
	return sourceTypes, dstCaps.Types, nil
}

// checkFHIRVersions refuses servers whose fhirVersion differ in major or minor version (4.0.1 and 4.0.0 agree;
// 3.0.2, STU3, and 4.0.1, R4, do not): an export of one is not resources the other imports. A version that is
// absent or unreadable is refused too, since nothing can show that it agrees.
func checkFHIRVersions(source, destination string) *Error {
	sv, sok := majorMinor(source)
	dv, dok := majorMinor(destination)
	if sok && dok && sv == dv {
		return nil
	}
	return invalid("fhir_version_mismatch", "source",
		"the source's fhirVersion %q and the destination's %q differ in major.minor version: "+
			"resources of one FHIR version cannot be imported into a server of another (see README: FHIR versions)",
		source, destination)
}

// majorMinor is the "major.minor" of a FHIR version such as "4.0.1" (or "4.0").
func majorMinor(v string) (string, bool) {
	parts := strings.Split(strings.TrimSpace(v), ".")
	if len(parts) < 2 || parts[0] == "" || parts[1] == "" {
		return "", false
	}
	for _, p := range parts[:2] {
		for _, r := range p {
			if r < '0' || r > '9' {
				return "", false
			}
		}
	}
	return parts[0] + "." + parts[1], true
}

// dryRunPlan plans the request in memory for about dryRunBudget: the windows it could count, and the ranges it
// could not marked as estimated. Nothing is stored.
func (s *Service) dryRunPlan(ctx context.Context, req *Request, sourceTypes []string, now time.Time) ([]*Job, error) {
	source, err := s.sourceClient(req)
	if err != nil {
		return nil, fmt.Errorf("client for %s: %w", req.Source, err)
	}
	pl := &planner{req: req, sourceTypes: sourceTypes, target: windowTarget(req), maxCounts: s.cfg.MaxPlanningCounts,
		bounds: kindOf(req).Bounds(), source: source, p: newPlanning(req, sourceTypes, now), now: now}
	err = pl.run(ctx, s.cfg.MaxPlanningCounts, s.now().Add(dryRunBudget), s.now)
	switch {
	case errors.Is(err, errPlanningBudget):
		for _, r := range pl.p.Pending {
			pl.window(r, 0)
			pl.jobs[len(pl.jobs)-1].Estimated = true
		}
	case err != nil:
		return nil, unavailable("source_unreachable", "source", "the source could not be counted for the plan: %v", err)
	}
	orderWindows(pl.jobs)
	return pl.jobs, nil
}

// releaseContainer undoes the claim of a start that stored no document, so that the same container name can be
// used again; a failure only leaves an empty container claimed by an id that does not exist, so it is logged.
func (s *Service) releaseContainer(container, id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.cfg.Staging.ReleaseContainer(ctx, container, id); err != nil {
		s.log.Warn("claim of the staging container not released", "migration", id, "container", container, "err", err)
	}
}
