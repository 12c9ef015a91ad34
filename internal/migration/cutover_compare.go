package migration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fhir-migrator/fhir-migrator/internal/fhir"
)

// The fast cutover's reconciliation: instead of listing every id of both servers (hours at a billion), it counts.
// IncrementalLoad keeps each version's lastUpdated, so once writes have stopped and the final round is in, a
// resource sits at the same _lastUpdated on both servers, and for every range the two counts of current resources
// are equal unless something differs inside it. Per type it counts both servers over the migrated range cut into
// buckets of time (about compareBucketTarget resources each), and only a bucket whose counts differ is cut again,
// compareFanOut ways, down to ranges small enough to list the ids of both sides (compareLeaf); there the lists
// name what differs:
//
//   - an id only the destination holds is read on the source: gone there (404: hard-deleted or purged) it is
//     removed from the destination with a hard delete, deleted (410) with a delete (with reconcile report, both are
//     only listed as extra); held there (200) it sits at another lastUpdated (a repaired resource, whose
//     lastUpdated on the destination is the repair's, or a version the destination refused) and is not an extra;
//   - an id only the source holds is looked up on the destination by id: absent, it is missing (the cutover
//     fails, naming it); present, it sits at another lastUpdated, as above.
//
// A type whose versions are more on the destination (with history: purged on the source) and a type narrowed by a
// typeFilter (its counts are searches, not ranges of the index) have every id listed as before. What this cannot
// see: a loss and an extra of one type inside one range whose counts are compared equal cancel (the top-level
// buckets bound how far apart they may be), and a resource present on both at the same lastUpdated with other
// content (the ids checks and the full mode's comparison of the files are what see content). With
// cutoverVerify "full-ids" the cutover lists every id instead, and reads every staged file again.
//
// What this relies on, checked in microsoft/fhir-server: the destination (SQL) keeps an imported version's
// lastUpdated when the import keeps it (src/Microsoft.Health.Fhir.SqlServer/Features/Storage/SqlServerFhirDataStore.cs:
// KeepLastUpdated, LastModified.ToSurrogateId()), and turns a _lastUpdated predicate into a range of
// ResourceSurrogateId, the clustered key, at millisecond precision (src/Microsoft.Health.Fhir.SqlServer/Features/
// Search/Expressions/Visitors/LastUpdatedToResourceSurrogateIdRewriter.cs): a count over a range is a range scan of
// the index, and ranges cut on whole milliseconds mean the same thing on both servers. The source (Cosmos DB)
// answers _summary=count with a SELECT VALUE COUNT(1) over the same filter (src/Microsoft.Health.Fhir.CosmosDb/
// Features/Search/Queries/QueryBuilder.cs).

// Cutover verification choices (request cutoverVerify).
const (
	CutoverVerifyFast    = "fast"
	CutoverVerifyFullIDs = "full-ids"
)

var cutoverVerifyModes = []string{CutoverVerifyFast, CutoverVerifyFullIDs}

// CutoverVerifyModes are the values of cutoverVerify.
func CutoverVerifyModes() []string { return slices.Clone(cutoverVerifyModes) }

// checkCutoverVerify validates a start request's cutoverVerify: with sync only, one of cutoverVerifyModes; absent,
// a synced migration cuts over fast.
func checkCutoverVerify(raw *string, sync bool, req *Request) *Error {
	switch {
	case raw == nil && sync:
		req.CutoverVerify = CutoverVerifyFast
	case raw == nil:
	case !sync:
		return invalid("invalid_cutover_verify", "cutoverVerify", "cutoverVerify says how the cutover verifies: it needs sync: true")
	case slices.Contains(cutoverVerifyModes, *raw):
		req.CutoverVerify = *raw
	default:
		return invalid("invalid_cutover_verify", "cutoverVerify", "cutoverVerify must be %s", orList(cutoverVerifyModes))
	}
	return nil
}

// fastCutover reports whether this migration's cutover verifies fast (a document from before the field: fast).
func fastCutover(m *Migration) bool {
	return m.Sync != nil && m.Request.CutoverVerify != CutoverVerifyFullIDs
}

const (
	// compareBucketTarget is about how many resources (as the servers count them) a first-level bucket holds.
	compareBucketTarget = 1_000_000
	// maxCompareBuckets bounds the first-level buckets of one type.
	maxCompareBuckets = 65536
	// compareFanOut is how many ranges a range whose counts differ is cut into.
	compareFanOut = 8
	// compareLeaf: a range whose two counts add up to at most twice this is listed on both servers.
	compareLeaf = 1000
)

// CutoverCompare is the fast cutover's count comparison: its cursor while it runs, then what it found.
type CutoverCompare struct {
	// Since and Till are the compared range of lastUpdated (Since nil: from the oldest resource), Till inclusive.
	Since *time.Time `json:"since,omitempty"`
	Till  time.Time  `json:"till"`
	// PassStartedAt is when the last reconciliation pass completed while syncing started: the hard deletes made
	// since are what the counts must find (none completed: every one).
	PassStartedAt *time.Time `json:"passStartedAt,omitempty"`
	// Expected is, per type, how many hard deletes the cutover expects to find: the passes' rate of removals times
	// the time since the last pass started. The first level has at least twice as many buckets, so that each
	// difference is cut down from a small bucket.
	Expected map[string]int64 `json:"expected,omitempty"`
	// Types are the compared types; TypeIndex the cursor.
	Types     []string `json:"types"`
	TypeIndex int      `json:"typeIndex"`
	Done      bool     `json:"done,omitempty"`
	// Counts counts the count queries (both servers), Ranges the ranges whose counts differed, Listed the ids
	// listed (both servers), over every type.
	Counts int64                    `json:"counts"`
	Ranges int64                    `json:"ranges"`
	Listed int64                    `json:"listed"`
	ByType map[string]*CompareTally `json:"byType,omitempty"`
}

// CompareTally is one type's count comparison.
type CompareTally struct {
	// Source and Destination are the counts of the compared range (the sum of the first-level buckets, before
	// anything was removed); Outside is the destination's count outside it.
	Source      int64 `json:"source"`
	Destination int64 `json:"destination"`
	Outside     int64 `json:"outside,omitempty"`
	Buckets     int   `json:"buckets"`
	Counts      int64 `json:"counts"`
	Ranges      int64 `json:"ranges,omitempty"`
	Leaves      int64 `json:"leaves,omitempty"`
	Listed      int64 `json:"listed,omitempty"`
	// Removed, Extra and Missing are as the reconciliation counts them; Moved counts ids held by both at another
	// lastUpdated.
	Removed int64 `json:"removed,omitempty"`
	Extra   int64 `json:"extra,omitempty"`
	Missing int64 `json:"missing,omitempty"`
	Moved   int64 `json:"moved,omitempty"`
	// Purged and HistoryDiffers count, in the versions' comparison, the histories purged on the destination as the
	// source purged them, and those only listed.
	Purged         int64 `json:"purged,omitempty"`
	HistoryDiffers int64 `json:"historyDiffers,omitempty"`
	// History is the same comparison of the type's versions (with history: _history counts over the same ranges),
	// which finds what the source purged.
	History *CompareTally `json:"history,omitempty"`
	// Listing says why the type's every id is listed instead (its counts here are not reused).
	Listing string `json:"listing,omitempty"`
}

// newCutoverCompare sets up the comparison of a fast cutover over the reconciled types.
func newCutoverCompare(m *Migration, types []string) *CutoverCompare {
	c := &CutoverCompare{Since: m.Request.Since, Types: slices.Clone(types), ByType: map[string]*CompareTally{}}
	if till := migratedTill(m); till != nil {
		c.Till = *till
	}
	if ch := m.Sync.Checks; ch != nil && ch.LastPass != nil {
		c.PassStartedAt = timePtr(ch.LastPass.StartedAt)
		if ch.FirstPassAt != nil && ch.LastPass.FinishedAt != nil {
			span := ch.LastPass.FinishedAt.Sub(*ch.FirstPassAt).Seconds()
			since := c.Till.Sub(ch.LastPass.StartedAt).Seconds()
			for t, n := range ch.RemovedByType {
				if span > 0 && since > 0 {
					if c.Expected == nil {
						c.Expected = map[string]int64{}
					}
					c.Expected[t] = int64(math.Ceil(float64(n) / span * since))
				}
			}
		}
	}
	return c
}

// cRange is one range of one type's lastUpdated and its two counts.
type cRange struct {
	from *time.Time // ge (nil: open below)
	to   time.Time
	incl bool      // le to (else lt to)
	lo   time.Time // where time splits start (from, or the oldest resource)
	src  int64
	dst  int64
}

func (r cRange) query() url.Values {
	q := url.Values{}
	if r.from != nil {
		q.Add("_lastUpdated", "ge"+fhir.FormatInstant(*r.from))
	}
	op := "lt"
	if r.incl {
		op = "le"
	}
	q.Add("_lastUpdated", op+fhir.FormatInstant(r.to))
	return q
}

// split cuts r into up to k ranges of equal time, on whole milliseconds; none when r is narrower than two.
func (r cRange) split(k int) []cRange {
	width := r.to.Sub(r.lo)
	if ms := int(width / time.Millisecond); ms < k {
		k = ms
	}
	if k < 2 {
		return nil
	}
	step := (width / time.Duration(k)).Truncate(time.Millisecond)
	out := make([]cRange, 0, k)
	for i := range k {
		c := cRange{from: r.from, lo: r.lo, to: r.lo.Add(time.Duration(i+1) * step)}
		if i > 0 {
			at := r.lo.Add(time.Duration(i) * step)
			c.from, c.lo = &at, at
		}
		if i == k-1 {
			c.to, c.incl = r.to, r.incl
		}
		out = append(out, c)
	}
	return out
}

// rangeKind is what a comparison counts and lists in a range: current resources (a search's count, ids), or
// versions (_history's count, versions).
type rangeKind struct {
	name string
	// adjust, when set, is what the source's count of a range is lowered by before it is compared: the versions
	// the destination refused (they are judged with the import's records, and would hide a purge in the same
	// range).
	adjust func(r cRange) int64
	count  func(ctx context.Context, c FHIRClient, t string, r cRange) (int64, error)
	list   func(ctx context.Context, c FHIRClient, t string, r cRange) (map[string]bool, error)
	oldest func(ctx context.Context, c FHIRClient, t string, cc *CutoverCompare) (*time.Time, error)
}

// resourcesKind compares current resources: _lastUpdated ranges of a search, ids listed with _elements=id.
var resourcesKind = rangeKind{
	name: "resources",
	count: func(ctx context.Context, c FHIRClient, t string, r cRange) (int64, error) {
		return c.Count(ctx, t, r.query())
	},
	list: func(ctx context.Context, c FHIRClient, t string, r cRange) (map[string]bool, error) {
		q := r.query()
		q.Set("_elements", "id")
		q.Set("_count", strconv.Itoa(reconcilePage))
		out := map[string]bool{}
		next := ""
		for {
			page, link, err := c.SearchPage(ctx, t, q, next)
			if err != nil {
				return nil, err
			}
			for _, id := range idsOf(page, t) {
				out[id] = true
			}
			if link == "" {
				return out, nil
			}
			next = link
		}
	},
	oldest: func(ctx context.Context, c FHIRClient, t string, cc *CutoverCompare) (*time.Time, error) {
		// The compared range holds Till on both servers whatever the source's kind, as the ranges' own queries do
		// (cRange.query: le the last range's end).
		q := windowQuery(WindowBounds{Tick: instant}, cc.Since, &cc.Till)
		q.Set("_sort", "_lastUpdated")
		q.Set("_count", "1")
		q.Set("_elements", "id")
		page, _, err := c.SearchPage(ctx, t, q, "")
		if err != nil {
			return nil, err
		}
		for _, raw := range page {
			var head struct {
				Meta struct {
					LastUpdated string `json:"lastUpdated"`
				} `json:"meta"`
			}
			if json.Unmarshal(raw, &head) != nil {
				continue
			}
			at, err := time.Parse(time.RFC3339Nano, head.Meta.LastUpdated)
			if err != nil {
				return nil, fmt.Errorf("the oldest %s has no lastUpdated", t)
			}
			return &at, nil
		}
		return nil, nil
	},
}

// versionsKind compares versions (current, older and deleted, each by its own lastUpdated), keyed id/versionId.
var versionsKind = rangeKind{
	name: "versions",
	count: func(ctx context.Context, c FHIRClient, t string, r cRange) (int64, error) {
		return c.HistoryCount(ctx, t, r.history())
	},
	list: func(ctx context.Context, c FHIRClient, t string, r cRange) (map[string]bool, error) {
		out := map[string]bool{}
		err := c.History(ctx, t, r.history(), true, reconcilePage, func(e fhir.HistoryEntry) error {
			if e.Type == t {
				out[e.ID+"/"+e.VersionID] = true
			}
			return nil
		})
		return out, err
	},
	oldest: func(ctx context.Context, c FHIRClient, t string, cc *CutoverCompare) (*time.Time, error) {
		r := cRange{from: cc.Since, to: cc.Till, incl: true}
		var at *time.Time
		errFound := errors.New("found")
		err := c.History(ctx, t, r.history(), true, 1, func(e fhir.HistoryEntry) error {
			at = timePtr(e.LastUpdated)
			return errFound
		})
		if err != nil && !errors.Is(err, errFound) {
			return nil, err
		}
		return at, nil
	},
}

// history is the range as _history's _since (inclusive) and _before (exclusive).
func (r cRange) history() fhir.HistoryRange {
	before := r.to
	if r.incl {
		before = before.Add(instant)
	}
	return fhir.HistoryRange{Since: r.from, Before: &before}
}

// compareResult is what comparing one type found.
type compareResult struct {
	tally   CompareTally
	lines   []string
	missing []string
}

// compareType compares one type's counts (of kind) on both servers over the range, cuts what differs down to lists,
// and reconciles what the lists show (removing, with reconcile delete, what the source no longer holds).
func (s *Service) compareType(ctx context.Context, m *Migration, cc *CutoverCompare, t string, src, dst FHIRClient,
	written map[string]bool, kind rangeKind) (*compareResult, error) {
	res := &compareResult{}
	var mu sync.Mutex
	tl := &res.tally
	till := cc.Till
	var lo time.Time
	any := false
	for _, c := range []FHIRClient{src, dst} {
		at, err := kind.oldest(ctx, c, t, cc)
		if err != nil {
			return nil, fmt.Errorf("find the oldest of the %s of %s: %w", kind.name, t, err)
		}
		if at != nil && (!any || at.Before(lo)) {
			lo = *at
		}
		any = any || at != nil
	}
	switch {
	case !any:
		lo = till // neither server lists any in the range: counted whole, never cut
	case cc.Since != nil:
		lo = *cc.Since
	}
	lo = lo.Truncate(time.Millisecond)
	if kind.name == resourcesKind.name {
		// What the destination holds outside the range (written after the final mark, or before since): not
		// compared, but counted, so that the verification's destination count can be taken from here.
		outside := []url.Values{{"_lastUpdated": {"gt" + fhir.FormatInstant(till)}}}
		if cc.Since != nil {
			outside = append(outside, url.Values{"_lastUpdated": {"lt" + fhir.FormatInstant(*cc.Since)}})
		}
		for _, q := range outside {
			n, err := dst.Count(ctx, t, q)
			if err != nil {
				return nil, fmt.Errorf("count %s on the destination outside the compared range: %w", t, err)
			}
			tl.Outside += n
			tl.Counts++
		}
	}
	whole := cRange{from: cc.Since, to: till, incl: true, lo: lo}
	buckets := int(max((estimatedResources(m, t)+compareBucketTarget-1)/compareBucketTarget, 2*cc.Expected[t]))
	level := []cRange{whole}
	if buckets = min(max(buckets, 1), maxCompareBuckets); buckets > 1 && any {
		if parts := whole.split(buckets); parts != nil {
			level = parts
		}
	}
	tl.Buckets = len(level)
	if err := s.countRanges(ctx, t, src, dst, level, kind); err != nil {
		return nil, err
	}
	tl.Counts += int64(2 * len(level))
	for _, r := range level {
		tl.Source += r.src
		tl.Destination += r.dst
	}
	for len(level) > 0 {
		var leaves, children []cRange
		for _, r := range level {
			if r.src == r.dst {
				continue
			}
			tl.Ranges++
			if r.src+r.dst <= 2*compareLeaf {
				leaves = append(leaves, r)
			} else if parts := r.split(compareFanOut); parts != nil {
				children = append(children, parts...)
			} else {
				leaves = append(leaves, r) // a millisecond: listed, however many
			}
		}
		if err := s.countRanges(ctx, t, src, dst, children, kind); err != nil {
			return nil, err
		}
		tl.Counts += int64(2 * len(children))
		errs := make([]error, len(leaves))
		fanOut(len(leaves), s.cfg.PollConcurrency, func(i int) {
			if kind.name == versionsKind.name {
				errs[i] = s.compareVersionsLeaf(ctx, m, t, leaves[i], src, dst, written, res, &mu)
			} else {
				errs[i] = s.compareLeaf(ctx, m, t, leaves[i], src, dst, written, res, &mu)
			}
		})
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
		tl.Leaves += int64(len(leaves))
		level = children
	}
	return res, nil
}

// estimatedResources is about how many resources of a type the migration moved: the lines its exports wrote.
func estimatedResources(m *Migration, t string) int64 {
	var n int64
	for _, j := range m.Jobs {
		if j.Kind == KindExport && j.State == JobDone {
			n += j.Counts[t]
		}
	}
	return n
}

// countRanges counts each range on both servers, PollConcurrency queries at a time. The two counts of a range are
// taken at once by two goroutines, so each goroutine reads its own copy of the range and writes its own slot of
// counts; the ranges are filled in once every count is in (a goroutine copying the range while the other wrote its
// count into it was a data race).
func (s *Service) countRanges(ctx context.Context, t string, src, dst FHIRClient, ranges []cRange, kind rangeKind) error {
	in := slices.Clone(ranges)
	counts := make([]int64, 2*len(ranges))
	errs := make([]error, 2*len(ranges))
	fanOut(2*len(ranges), s.cfg.PollConcurrency, func(i int) {
		r := in[i/2]
		c, where := src, "source"
		if i%2 == 1 {
			c, where = dst, "destination"
		}
		n, err := kind.count(ctx, c, t, r)
		if err != nil {
			errs[i] = fmt.Errorf("count the %s of %s on the %s: %w", kind.name, t, where, err)
			return
		}
		if i%2 == 0 && kind.adjust != nil {
			n -= kind.adjust(r)
		}
		counts[i] = n
	})
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for i := range ranges {
		ranges[i].src, ranges[i].dst = counts[2*i], counts[2*i+1]
	}
	return nil
}

// compareLeaf lists a range's ids on both servers and reconciles what only one of them holds.
func (s *Service) compareLeaf(ctx context.Context, m *Migration, t string, r cRange, src, dst FHIRClient,
	written map[string]bool, res *compareResult, mu *sync.Mutex) error {
	list := func(c FHIRClient, where string) (map[string]bool, error) {
		out, err := resourcesKind.list(ctx, c, t, r)
		if err != nil {
			return nil, fmt.Errorf("list %s on the %s: %w", t, where, err)
		}
		return out, nil
	}
	onSrc, err := list(src, "source")
	if err != nil {
		return err
	}
	onDst, err := list(dst, "destination")
	if err != nil {
		return err
	}
	var dstOnly, srcOnly []string
	for id := range onDst {
		if !onSrc[id] && !written[t+"/"+id] {
			dstOnly = append(dstOnly, id)
		}
	}
	for id := range onSrc {
		if !onDst[id] {
			srcOnly = append(srcOnly, id)
		}
	}
	slices.Sort(dstOnly)
	slices.Sort(srcOnly)
	del := m.Request.Reconcile == ReconcileDelete
	var removed, extra, moved, missing int64
	var lines, missed []string
	for _, id := range dstOnly {
		key := t + "/" + id
		cur, err := src.Read(ctx, t, id)
		if err != nil {
			return fmt.Errorf("read %s on the source: %w", key, err)
		}
		if cur.Status == 200 {
			moved++ // the source holds it at another lastUpdated
			continue
		}
		what := "hard-deleted or purged on the source"
		if cur.Status == 410 {
			what = "deleted on the source"
		}
		if !del {
			extra++
			lines = append(lines, key+": "+what+", still on the destination")
			continue
		}
		if err := dst.Delete(ctx, t, id, cur.Status == 404); err != nil {
			return fmt.Errorf("remove %s from the destination: %w", key, err)
		}
		removed++
		lines = append(lines, key+": "+what+": removed from the destination")
	}
	for ch := range slices.Chunk(srcOnly, idsPerSearch) {
		found, err := lookUpIDs(ctx, dst, t, ch)
		if err != nil {
			return fmt.Errorf("look up %d %s ids on the destination: %w", len(ch), t, err)
		}
		for _, id := range ch {
			if found[id] {
				moved++
				continue
			}
			missing++
			missed = append(missed, t+"/"+id)
			lines = append(lines, t+"/"+id+": held by the source, missing from the destination")
		}
	}
	mu.Lock()
	defer mu.Unlock()
	tl := &res.tally
	tl.Listed += int64(len(onSrc) + len(onDst))
	tl.Removed += removed
	tl.Extra += extra
	tl.Moved += moved
	tl.Missing += missing
	res.lines = append(res.lines, lines...)
	res.missing = append(res.missing, missed...)
	return nil
}

// compareVersionsLeaf lists a range's versions on both servers; a resource with versions only the destination
// holds is compared version by version (reconcileHistory: purged on the destination when the source purged it).
// Versions only the source holds are the refused ones, judged with the import's records (refused.go).
func (s *Service) compareVersionsLeaf(ctx context.Context, m *Migration, t string, r cRange, src, dst FHIRClient,
	written map[string]bool, res *compareResult, mu *sync.Mutex) error {
	onSrc, err := versionsKind.list(ctx, src, t, r)
	if err != nil {
		return fmt.Errorf("list the versions of %s on the source: %w", t, err)
	}
	onDst, err := versionsKind.list(ctx, dst, t, r)
	if err != nil {
		return fmt.Errorf("list the versions of %s on the destination: %w", t, err)
	}
	seen := map[string]bool{}
	var ids []string
	for key := range onDst {
		id, _, _ := strings.Cut(key, "/")
		if !onSrc[key] && !seen[id] && !written[t+"/"+id] && idPattern.MatchString(id) {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	steps := make([]reconcileStep, len(ids))
	errs := make([]error, len(ids))
	del := m.Request.Reconcile == ReconcileDelete
	fanOut(len(ids), s.cfg.PollConcurrency, func(i int) {
		errs[i] = reconcileHistory(ctx, t, ids[i], src, dst, del, &steps[i])
	})
	if err := errors.Join(errs...); err != nil {
		return err
	}
	mu.Lock()
	defer mu.Unlock()
	tl := &res.tally
	tl.Listed += int64(len(onSrc) + len(onDst))
	for _, st := range steps {
		tl.Purged += st.purged
		tl.HistoryDiffers += st.differ
		res.lines = append(res.lines, st.lines...)
	}
	return nil
}

// compareStep compares the comparison's next type; a type whose ids must all be listed instead (versions purged on
// the source, a typeFilter) is handed to the listing.
func (s *Service) compareStep(ctx context.Context, m *Migration, rc *Reconcile, src, dst FHIRClient,
	written map[string]bool) (*compareResult, string, error) {
	cc := rc.Compare
	t := cc.Types[cc.TypeIndex]
	if len(filtersOf(&m.Request, []string{t})) > 0 {
		return &compareResult{tally: CompareTally{Listing: "narrowed by a typeFilter: its counts are searches, not ranges"}}, t, nil
	}
	res, err := s.compareType(ctx, m, cc, t, src, dst, written, resourcesKind)
	if err != nil {
		return nil, t, err
	}
	if m.Request.History {
		// A history purged on the source shows in the versions, not in the current resources: the versions are
		// compared the same way, over the same range.
		kind := versionsKind
		refused, _, err := s.readRefused(ctx, m)
		if err != nil {
			return nil, t, fmt.Errorf("read the refused versions: %w", err)
		}
		var at []time.Time
		for _, l := range refused {
			if u, err := time.Parse(time.RFC3339Nano, l.LastUpdated); err == nil && l.Type == t {
				at = append(at, u)
			}
		}
		kind.adjust = func(r cRange) int64 {
			var n int64
			for _, u := range at {
				if (r.from == nil || !u.Before(*r.from)) && (u.Before(r.to) || (r.incl && !u.After(r.to))) {
					n++
				}
			}
			return n
		}
		h, err := s.compareType(ctx, m, cc, t, src, dst, written, kind)
		if err != nil {
			return nil, t, err
		}
		ht := h.tally
		res.tally.History = &ht
		res.tally.Counts += ht.Counts
		res.tally.Ranges += ht.Ranges
		res.tally.Listed += ht.Listed
		res.tally.Purged += ht.Purged
		res.tally.HistoryDiffers += ht.HistoryDiffers
		res.lines = append(res.lines, h.lines...)
	}
	return res, t, nil
}

// saveCompare adds one type's comparison to the saved reconciliation (when its cursor is still the one the step
// started from) and, with more, sends the next message.
func (s *Service) saveCompare(ctx context.Context, id string, generation int, from *Reconcile, t string, res *compareResult, more bool) error {
	var part string
	if len(res.lines) > 0 {
		part = fmt.Sprintf("%s%s-reconcile/%d/compare-%04d.txt", reportPrefix, id, generation, from.Compare.TypeIndex)
		if err := s.putReport(ctx, part, []byte(strings.Join(res.lines, "\n")+"\n")); err != nil {
			return fmt.Errorf("write the comparison's list: %w", err)
		}
	}
	_, eff, err := s.update(ctx, id, func(m *Migration) (*effects, error) {
		if !verifiable(m, generation) {
			return nil, errUnchanged
		}
		cur := m.Verification.Reconcile
		if cur != nil && (cur.Compare == nil || cur.Compare.TypeIndex != from.Compare.TypeIndex || cur.Compare.Done) {
			return nil, errUnchanged
		}
		rc := cloneReconcile(from)
		cc := rc.Compare
		tl := res.tally
		cc.ByType[t] = &tl
		cc.Counts += tl.Counts
		cc.Ranges += tl.Ranges
		cc.Listed += tl.Listed
		rt := rc.ByType[t]
		if rt == nil {
			rt = &ReconcileTally{}
			rc.ByType[t] = rt
		}
		rt.Checked += tl.Listed
		rt.Removed += tl.Removed
		rt.Extra += tl.Extra
		rt.Missing += tl.Missing
		rt.Purged += tl.Purged
		rt.HistoryDiffers += tl.HistoryDiffers
		rc.Checked += tl.Listed
		rc.Removed += tl.Removed
		rc.Extra += tl.Extra
		rc.Purged += tl.Purged
		rc.HistoryDiffers += tl.HistoryDiffers
		rc.MissingCount += tl.Missing
		rc.Missing = append(rc.Missing, res.missing[:min(len(res.missing), max(maxListedMissing/10-len(rc.Missing), 0))]...)
		rc.Listed = append(rc.Listed, res.lines[:min(len(res.lines), max(maxListedRefused-len(rc.Listed), 0))]...)
		if part != "" {
			rc.Parts = append(rc.Parts, part)
		}
		if tl.Listing != "" {
			rc.Types = append(rc.Types, t)
		}
		cc.TypeIndex++
		cc.Done = cc.TypeIndex >= len(cc.Types)
		rc.Done = cc.Done && rc.TypeIndex >= len(rc.Types)
		if rc.Done {
			rc.FinishedAt = timePtr(s.now())
		}
		m.Verification.Reconcile = rc
		m.Verification.DispatchAt = s.now()
		if !more || rc.Done {
			return nil, nil
		}
		e := &effects{}
		m.Verification.Dispatch++
		e.send(verifyMessage(m.ID, generation, m.Verification.Dispatch, time.Time{}))
		return e, nil
	})
	if err != nil && !errors.Is(err, errUnchanged) {
		return fmt.Errorf("save the comparison: %w", err)
	}
	s.perform(ctx, id, eff)
	return nil
}

// cloneReconcile copies a reconciliation deep enough to change it.
func cloneReconcile(from *Reconcile) *Reconcile {
	rc := *from
	rc.Types = slices.Clone(from.Types)
	rc.Listed = slices.Clone(from.Listed)
	rc.Parts = slices.Clone(from.Parts)
	rc.Missing = slices.Clone(from.Missing)
	rc.ByType = map[string]*ReconcileTally{}
	for k, v := range from.ByType {
		c := *v
		rc.ByType[k] = &c
	}
	if from.Compare != nil {
		cc := *from.Compare
		cc.Types = slices.Clone(from.Compare.Types)
		cc.ByType = map[string]*CompareTally{}
		for k, v := range from.Compare.ByType {
			c := *v
			cc.ByType[k] = &c
		}
		rc.Compare = &cc
	}
	return &rc
}

// comparedCounts are the counts a done comparison took of a type, for the verification to use instead of counting
// again: the source's over the migrated range, and the destination's of the whole type less what was removed.
// None for a type whose ids were listed too (more may have been removed since) or narrowed by a typeFilter.
func comparedCounts(m *Migration, t string) (src, dst int64, ok bool) {
	v := m.Verification
	if v == nil || v.Reconcile == nil || v.Reconcile.Compare == nil || !v.Reconcile.Done {
		return 0, 0, false
	}
	tl := v.Reconcile.Compare.ByType[t]
	if tl == nil || tl.Listing != "" || slices.Contains(v.Reconcile.Types, t) || len(filtersOf(&m.Request, []string{t})) > 0 {
		return 0, 0, false
	}
	return tl.Source, tl.Destination + tl.Outside - tl.Removed, true
}
