package migration

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/fhir-migrator/fhir-migrator/internal/fhir"
)

// DefaultWindowTarget is the most resources one export window holds unless the request says otherwise: about half
// an hour of a non-parallel export (2,900 resources/s), so that a failed or stalled window costs at most that to
// run again, and about 500 files of 10,000 resources, one import payload far below the 10,000-file limit.
const DefaultWindowTarget = 5_000_000

// Planning work per sweep: a step stops after this many count calls or this long, saves, and goes on at the next.
const (
	planningCountsPerStep = 50
	planningStepBudget    = 20 * time.Second
	// dryRunBudget bounds the counting of a dry run, which answers an HTTP call.
	dryRunBudget = 10 * time.Second
)

// instant is the resolution of a FHIR instant as Azure API for FHIR selects by it: its windows end 100 ns before
// the next begins (other kinds have their own: SourceKind.Bounds).
const instant = 100 * time.Nanosecond

// Planning is the progress of a migration's plan: the ranges still to count, and what was found.
type Planning struct {
	// Till ends the last window when the request has no till: when planning started.
	Till time.Time `json:"till"`
	// Pending are the ranges still to count or split, in order; planning ends when none is left.
	Pending []PlanRange `json:"pending,omitempty"`
	// Empty are the ranges the source held nothing of when counted: no job (verification counts each type's whole
	// range, so they are counted again).
	Empty []PlanRange `json:"empty,omitempty"`
	// Windows numbers the windows of each split type (their job ids are export-{Type}-{n}).
	Windows map[string]int `json:"windows,omitempty"`
	// Counts counts the count calls made (bounded by MaxPlanningCounts); Step numbers the saved steps.
	Counts int `json:"counts"`
	Step   int `json:"step"`
	// Failures counts the steps in a row that could not count; LastError is the latest.
	Failures  int    `json:"failures,omitempty"`
	LastError string `json:"lastError,omitempty"`
	// Versions says how a migration with history or deletes counts its ranges: "history" (every version and
	// deletion by its own lastUpdated, _history?_summary=count, what such an export selects), or "live" when the
	// source refused that count (VersionsNote says why): then only current resources are counted, so no range is
	// taken as empty (each is exported), since older versions and deletions may lie where nothing is live.
	Versions     string `json:"versions,omitempty"`
	VersionsNote string `json:"versionsNote,omitempty"`
}

// Ways of counting the versions of a range (Planning.Versions).
const (
	countVersions = "history"
	countLive     = "live"
)

// PlanRange is a range of one type's resources by lastUpdated, both ends inclusive, each on a boundary of the
// source kind's WindowBounds.
type PlanRange struct {
	// Type is a resource type, or "*" for the whole request (a system export not yet known to be under the
	// target).
	Type string `json:"type"`
	// Since is nil for "from the beginning" (the request's since is absent): the first window of a type has no
	// _since, so nothing older than what planning found is ever left out.
	Since *time.Time `json:"since,omitempty"`
	// From, with Since nil, is where the type's data starts (its oldest resource, or oldest version with history
	// or deletes): where halving measures from, never where the window starts.
	From *time.Time `json:"from,omitempty"`
	Till time.Time  `json:"till"`
	// Whole is a type's whole range: planned as one window, it keeps the job id export-{Type}.
	Whole bool `json:"whole,omitempty"`
}

// newPlanning starts the plan of a request: the whole request for a system export (split by type when over the
// target), else each type's whole range.
func newPlanning(req *Request, sourceTypes []string, now time.Time) *Planning {
	b := kindOf(req).Bounds()
	till := b.align(now)
	if req.Till != nil {
		till = b.align(*req.Till)
	}
	p := &Planning{Till: till, Windows: map[string]int{}}
	if req.History || req.Deletes {
		p.Versions = countVersions
	}
	if req.ExportStrategy == StrategySystem || b.OneExport {
		p.Pending = []PlanRange{{Type: allTypes, Since: req.Since, Till: till, Whole: true}}
		return p
	}
	for _, t := range planTypes(req, sourceTypes) {
		p.Pending = append(p.Pending, PlanRange{Type: t, Since: req.Since, Till: till, Whole: true})
	}
	return p
}

// planTypes are the types a request moves: its own, or every type of the source's CapabilityStatement.
func planTypes(req *Request, sourceTypes []string) []string {
	if len(req.Types) > 0 {
		return req.Types
	}
	return sourceTypes
}

// filtersOf are the request's typeFilter entries of the given types (all of them for none).
func filtersOf(req *Request, types []string) []string {
	var out []string
	for _, f := range req.TypeFilter {
		typ, _, _ := strings.Cut(f, "?")
		if len(types) == 0 || slices.Contains(types, typ) {
			out = append(out, f)
		}
	}
	return out
}

// planner runs the plan of one migration against its source: it pops pending ranges, counts them, and turns each
// into a window (an export job), an empty range, or two halves. It changes only its own copy of the planning.
type planner struct {
	req         *Request
	sourceTypes []string
	target      int64
	maxCounts   int
	// bounds are the source kind's window boundaries.
	bounds WindowBounds
	source FHIRClient
	p      *Planning
	jobs   []*Job
	now    time.Time
}

// errPlanningBudget stops a step whose budget is spent; the rest is planned at the next.
var errPlanningBudget = errors.New("planning budget spent")

// run plans until nothing is pending or one of the bounds is reached: counts this step may make, and a deadline.
func (pl *planner) run(ctx context.Context, counts int, deadline time.Time, clock func() time.Time) error {
	made := 0
	for len(pl.p.Pending) > 0 {
		if made >= counts || !clock().Before(deadline) {
			return errPlanningBudget
		}
		r := pl.p.Pending[0]
		if pl.bounds.OneExport {
			// A source without a time upper bound: the request is one export, never split, never counted.
			pl.p.Pending = pl.p.Pending[1:]
			pl.systemWindow(r, 0)
			continue
		}
		if pl.p.Counts >= pl.maxCounts {
			// Past the bound, what is not split yet is exported as it is: never a failure.
			pl.p.Pending = pl.p.Pending[1:]
			pl.window(r, 0)
			continue
		}
		n, err := pl.count(ctx, r)
		if err != nil {
			return err
		}
		made++
		pl.p.Pending = pl.p.Pending[1:]
		if err := pl.decide(ctx, r, n); err != nil {
			pl.p.Pending = append([]PlanRange{r}, pl.p.Pending...)
			return err
		}
	}
	return nil
}

// count is the upper bound of a range's resources (each typeFilter entry counted, summed): a window is sized by
// what it may hold. With history or deletes it counts versions and deletions instead, unless the source refuses.
func (pl *planner) count(ctx context.Context, r PlanRange) (int64, error) {
	pl.p.Counts++
	if pl.p.Versions == countVersions {
		n, err := pl.countVersions(ctx, r)
		if err == nil || !fhir.Refused(err) {
			return n, err
		}
		// The source does not count history: live counts size the windows, and no range is taken as empty.
		pl.p.Versions, pl.p.VersionsNote = countLive, truncate(err.Error(), maxErrorMessage)
	}
	if r.Type != allTypes {
		rc, err := countRange(ctx, pl.source, pl.bounds, pl.rangeJob(r), r.Type, nil)
		return rc.upper, err
	}
	types := pl.req.Types
	if len(types) == 0 {
		rc, err := countRange(ctx, pl.source, pl.bounds, pl.rangeJob(r), allTypes, nil)
		return rc.upper, err
	}
	var total int64
	for _, t := range types {
		rc, err := countRange(ctx, pl.source, pl.bounds, pl.rangeJob(PlanRange{Type: t, Since: r.Since, Till: r.Till}), t, nil)
		if err != nil {
			return 0, err
		}
		total += rc.upper
	}
	return total, nil
}

// countVersions counts every version and deletion of a range by its own lastUpdated, as an export with
// includeAssociatedData selects them (ExportJobTask.cs puts ge{since} and le{till} on every row). A range that ends
// where the migration does (now, when the request has no till) is counted without _before, which the server
// refuses in the future and which its clock may see as such: an upper bound, as planning wants.
func (pl *planner) countVersions(ctx context.Context, r PlanRange) (int64, error) {
	hr := fhir.HistoryRange{Since: r.Since}
	if pl.req.Till != nil || !r.Till.Equal(pl.p.Till) {
		hr.Before = timePtr(pl.bounds.next(r.Till))
	}
	types := []string{r.Type}
	switch {
	case r.Type != allTypes:
	case len(pl.req.Types) == 0:
		types = []string{""}
	default:
		types = pl.req.Types
	}
	var total int64
	for _, t := range types {
		n, err := pl.source.HistoryCount(ctx, t, hr)
		if err != nil {
			return 0, fmt.Errorf("count the versions of %s on the source: %w", cmp.Or(t, "every type"), err)
		}
		total += max(n, 0)
	}
	return total, nil
}

// rangeJob is the export job a range would be: the window and the filters of its type.
func (pl *planner) rangeJob(r PlanRange) *Job {
	var types []string
	if r.Type != allTypes {
		types = []string{r.Type}
	}
	till := r.Till
	return &Job{Kind: KindExport, Types: types, Since: r.Since, Till: &till, TypeFilter: filtersOf(pl.req, types)}
}

// decide turns a counted range into a window, an empty range, a split by type, or two halves.
func (pl *planner) decide(ctx context.Context, r PlanRange, n int64) error {
	switch {
	case r.Type == allTypes && n <= pl.target:
		pl.systemWindow(r, n)
	case r.Type == allTypes:
		// Over the target: windows make the plan per type.
		var byType []PlanRange
		for _, t := range planTypes(pl.req, pl.sourceTypes) {
			byType = append(byType, PlanRange{Type: t, Since: r.Since, Till: r.Till, Whole: true})
		}
		pl.p.Pending = append(byType, pl.p.Pending...)
	case n == 0 && pl.p.Versions != countLive:
		pl.p.Empty = append(pl.p.Empty, r)
	case n <= pl.target:
		pl.window(r, n)
	default:
		return pl.split(ctx, r, n)
	}
	return nil
}

// split halves a range over the target; one that spans a single instant stays one window, over the target. A
// range from the beginning keeps no _since on its first half: halving measures from where the data starts, found
// once, but the window starts at the beginning, so that nothing older (a version or deletion before the oldest
// live resource) falls out of every window.
func (pl *planner) split(ctx context.Context, r PlanRange, n int64) error {
	if r.Since == nil && r.From == nil {
		oldest, found, err := pl.oldest(ctx, r.Type, r.Till)
		if err != nil {
			return err
		}
		if !found {
			pl.window(r, n)
			return nil
		}
		r.From = &oldest
	}
	lo := r.From
	if r.Since != nil {
		lo = r.Since
	}
	mid, after, ok := pl.bounds.split(*lo, r.Till)
	if !ok {
		pl.window(r, n)
		return nil
	}
	left := PlanRange{Type: r.Type, Since: r.Since, From: r.From, Till: mid}
	right := PlanRange{Type: r.Type, Since: &after, Till: r.Till}
	pl.p.Pending = append([]PlanRange{left, right}, pl.p.Pending...)
	return nil
}

// oldest is where a type's data starts: its oldest version (history or deletes, counted by version), else its
// oldest current resource.
func (pl *planner) oldest(ctx context.Context, typ string, till time.Time) (time.Time, bool, error) {
	if pl.p.Versions != countVersions {
		return oldestLastUpdated(ctx, pl.source, pl.bounds, typ, till)
	}
	var oldest time.Time
	found := false
	errFound := errors.New("found")
	err := pl.source.History(ctx, typ, fhir.HistoryRange{}, true, 1, func(e fhir.HistoryEntry) error {
		oldest, found = e.LastUpdated, true
		return errFound // one version is enough
	})
	if err != nil && !errors.Is(err, errFound) {
		return time.Time{}, false, fmt.Errorf("find the oldest version of %s on the source: %w", typ, err)
	}
	return oldest, found && !oldest.After(till), nil
}

// window adds the export job of one range.
func (pl *planner) window(r PlanRange, n int64) {
	if r.Type == allTypes {
		pl.systemWindow(r, n)
		return
	}
	id := "export-" + r.Type
	if !r.Whole {
		pl.p.Windows[r.Type]++
		id = fmt.Sprintf("export-%s-%d", r.Type, pl.p.Windows[r.Type])
	}
	j := pl.rangeJob(r)
	j.ID, j.State, j.CreatedAt, j.Planned = id, JobQueued, pl.now, n
	pl.jobs = append(pl.jobs, j)
}

// systemWindow adds the one system export of a request under the target.
func (pl *planner) systemWindow(r PlanRange, n int64) {
	types := pl.req.Types
	if len(types) == 0 && len(pl.req.TypeFilter) > 0 {
		// _typeFilter needs _type: name every type the source has, which exports the same as none.
		types = pl.sourceTypes
	}
	till := r.Till
	pl.jobs = append(pl.jobs, &Job{ID: "export-system", Kind: KindExport, Types: types, Since: r.Since, Till: &till,
		TypeFilter: filtersOf(pl.req, types), State: JobQueued, CreatedAt: pl.now, Planned: n})
}

// oldestLastUpdated is the lastUpdated of the type's oldest resource up to till (_sort=_lastUpdated&_count=1), till
// ending the search as it ends a count (WindowBounds.countTill).
func oldestLastUpdated(ctx context.Context, source FHIRClient, b WindowBounds, typ string, till time.Time) (time.Time, bool, error) {
	q := url.Values{"_sort": {"_lastUpdated"}, "_count": {"1"}, "_lastUpdated": {b.countTill(till)}}
	var oldest time.Time
	found := false
	errFound := errors.New("found")
	err := source.Search(ctx, typ, q, func(raw json.RawMessage) error {
		var head struct {
			Meta struct {
				LastUpdated string `json:"lastUpdated"`
			} `json:"meta"`
		}
		if err := json.Unmarshal(raw, &head); err != nil {
			return fmt.Errorf("the oldest %s: %w", typ, err)
		}
		t, err := time.Parse(time.RFC3339Nano, head.Meta.LastUpdated)
		if err != nil {
			return fmt.Errorf("the oldest %s has no meta.lastUpdated: %w", typ, err)
		}
		oldest, found = t, true
		return errFound // one resource is enough: the search must not follow the next pages
	})
	if err != nil && !errors.Is(err, errFound) {
		return time.Time{}, false, fmt.Errorf("find the oldest %s on the source: %w", typ, err)
	}
	return oldest, found, nil
}

// orderWindows orders the export jobs as they should start: smallest first. The first imports start as soon as
// the smallest exports are done, and from then on the exports, which run several at once, finish windows faster
// than the destination's single import capacity takes them in, so the imports never starve; the larger windows
// exported later only add to a queue of imports that is already waiting.
func orderWindows(jobs []*Job) {
	slices.SortStableFunc(jobs, func(a, b *Job) int { return cmp.Compare(a.Planned, b.Planned) })
}

// planStep does one bounded step of a migration's planning and saves it; the last step orders the windows and
// starts the exports.
func (s *Service) planStep(ctx context.Context, m *Migration) error {
	source, err := s.sourceClient(&m.Request)
	if err != nil {
		return fmt.Errorf("client for %s: %w", m.Request.Source, err)
	}
	p := clonePlanning(m.Planning)
	pl := &planner{req: &m.Request, sourceTypes: m.SourceTypes, target: windowTarget(&m.Request),
		maxCounts: s.cfg.MaxPlanningCounts, bounds: kindOf(&m.Request).Bounds(), source: source, p: p, now: s.now()}
	runErr := pl.run(ctx, planningCountsPerStep, s.now().Add(planningStepBudget), s.now)
	if errors.Is(runErr, errPlanningBudget) {
		runErr = nil
	}
	step := m.Planning.Step
	_, _, err = s.update(ctx, m.ID, func(m *Migration) (*effects, error) {
		if m.Status != StatusPlanning || m.Planning == nil || m.Planning.Step != step {
			return nil, errUnchanged // another step got there first
		}
		next := clonePlanning(p)
		next.Step = step + 1
		m.Planning = next
		for _, j := range pl.jobs {
			if m.job(j.ID) == nil {
				m.Jobs = append(m.Jobs, j)
			}
		}
		now := s.now()
		if runErr != nil {
			next.Failures++
			next.LastError = truncate(runErr.Error(), maxErrorMessage)
			if next.Failures >= s.cfg.MaxAttempts {
				m.Error = &Failure{Code: codeSourceCountUnavailable,
					Message: fmt.Sprintf("planning could not count the source after %d attempts: %s", next.Failures, runErr)}
				stopMigration(m, StatusFailed, now, &effects{})
			}
			return nil, nil
		}
		next.Failures, next.LastError = 0, ""
		if len(next.Pending) == 0 {
			orderWindows(m.Jobs)
			m.Status = StatusExporting
			s.log.Info("migration planned", "migration", m.ID, "windows", len(m.Jobs), "counts", next.Counts,
				"maxCounts", s.cfg.MaxPlanningCounts, "emptyRanges", len(next.Empty))
		}
		return nil, nil
	})
	if err != nil {
		return fmt.Errorf("save planning step: %w", err)
	}
	if runErr != nil {
		s.log.Warn("planning could not count the source; it goes on at the next sweep", "migration", m.ID, "err", runErr)
	}
	return nil
}

func clonePlanning(p *Planning) *Planning {
	if p == nil {
		return &Planning{Windows: map[string]int{}}
	}
	c := *p
	c.Pending = slices.Clone(p.Pending)
	c.Empty = slices.Clone(p.Empty)
	c.Windows = map[string]int{}
	for k, v := range p.Windows {
		c.Windows[k] = v
	}
	return &c
}

// windowTarget is the request's window target, or the default.
func windowTarget(req *Request) int64 {
	if req.WindowTarget > 0 {
		return req.WindowTarget
	}
	return DefaultWindowTarget
}
