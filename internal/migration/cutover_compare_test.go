package migration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/fhir"
)

// rangeServer is an in-memory FHIR server for the count comparison: current resources of one type by id with their
// lastUpdated, counted and listed over _lastUpdated ranges, looked up by _id, read, and deleted. It counts its
// count queries and the ids it listed.
type rangeServer struct {
	FHIRClient // the rest is not used
	mu         sync.Mutex
	typ        string
	at         map[string]time.Time
	gone       map[string]int // read status of an id it does not hold (404 when absent)
	counts     int
	listed     int
	deleted    []string
}

func newRangeServer(typ string) *rangeServer {
	return &rangeServer{typ: typ, at: map[string]time.Time{}, gone: map[string]int{}}
}

func (r *rangeServer) put(id string, at time.Time) { r.at[id] = at.UTC().Truncate(time.Millisecond) }

// inRange applies _lastUpdated ge/gt/le/lt values as the service reads instants of 7 digits.
func inRange(at time.Time, values []string) bool {
	for _, v := range values {
		t, err := time.Parse(time.RFC3339Nano, v[2:])
		if err != nil {
			panic(err)
		}
		switch v[:2] {
		case "ge":
			if at.Before(t) {
				return false
			}
		case "gt":
			if !at.After(t) {
				return false
			}
		case "le":
			if at.After(t) {
				return false
			}
		case "lt":
			if !at.Before(t) {
				return false
			}
		}
	}
	return true
}

func (r *rangeServer) Count(_ context.Context, t string, q url.Values) (int64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.counts++
	var n int64
	for _, at := range r.at {
		if t == r.typ && inRange(at, q["_lastUpdated"]) {
			n++
		}
	}
	return n, nil
}

func (r *rangeServer) SearchPage(_ context.Context, t string, q url.Values, next string) ([]json.RawMessage, string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	type hit struct {
		id string
		at time.Time
	}
	var hits []hit
	for id, at := range r.at {
		if t == r.typ && inRange(at, q["_lastUpdated"]) {
			hits = append(hits, hit{id, at})
		}
	}
	slices.SortFunc(hits, func(a, b hit) int {
		if c := a.at.Compare(b.at); c != 0 && q.Get("_sort") == "_lastUpdated" {
			return c
		}
		return strings.Compare(a.id, b.id)
	})
	start, _ := strconv.Atoi(next)
	size, _ := strconv.Atoi(q.Get("_count"))
	end := min(start+size, len(hits))
	var page []json.RawMessage
	for _, h := range hits[start:end] {
		page = append(page, json.RawMessage(fmt.Sprintf(`{"resourceType":%q,"id":%q,"meta":{"lastUpdated":%q}}`,
			t, h.id, h.at.Format(time.RFC3339Nano))))
	}
	r.listed += len(page)
	if end < len(hits) {
		return page, strconv.Itoa(end), nil
	}
	return page, "", nil
}

func (r *rangeServer) Search(_ context.Context, t string, q url.Values, each func(json.RawMessage) error) error {
	r.mu.Lock()
	var found []string
	for id := range strings.SplitSeq(q.Get("_id"), ",") {
		if _, ok := r.at[id]; ok && t == r.typ {
			found = append(found, id)
		}
	}
	r.mu.Unlock()
	for _, id := range found {
		if err := each(json.RawMessage(fmt.Sprintf(`{"resourceType":%q,"id":%q}`, t, id))); err != nil {
			return err
		}
	}
	return nil
}

func (r *rangeServer) Read(_ context.Context, t, id string) (fhir.ReadResult, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.at[id]; ok {
		return fhir.ReadResult{Status: 200, VersionID: "1"}, nil
	}
	if st := r.gone[id]; st != 0 {
		return fhir.ReadResult{Status: st}, nil
	}
	return fhir.ReadResult{Status: 404}, nil
}

func (r *rangeServer) Delete(_ context.Context, t, id string, hard bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.at, id)
	r.deleted = append(r.deleted, fmt.Sprintf("%s/%s hard=%v", t, id, hard))
	return nil
}

// comparePair builds two servers holding n Observations each, one every minute from t0, and a migration whose
// range ends after the last.
func comparePair(n int) (src, dst *rangeServer, m *Migration, cc *CutoverCompare) {
	t0 := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	src, dst = newRangeServer("Observation"), newRangeServer("Observation")
	for i := range n {
		id := fmt.Sprintf("o%06d", i)
		src.put(id, t0.Add(time.Duration(i)*time.Minute))
		dst.put(id, t0.Add(time.Duration(i)*time.Minute))
	}
	till := t0.Add(time.Duration(n) * time.Minute)
	m = &Migration{ID: "m-1", Request: Request{Reconcile: ReconcileDelete, Sync: true},
		Jobs: []*Job{{Kind: KindExport, State: JobDone, Counts: map[string]int64{"Observation": int64(n)}}}}
	cc = &CutoverCompare{Till: till, Types: []string{"Observation"}, ByType: map[string]*CompareTally{}}
	return src, dst, m, cc
}

func compareService(t *testing.T) *Service {
	t.Helper()
	h := newHarness(t, nil)
	return h.svc
}

// TestCompareFindsWhatDiffersByCounting: a resource lost on the destination is named missing, one the source
// hard-deleted is removed from the destination (one it deleted, with a delete), and one both hold at another
// lastUpdated (a repaired resource) is neither: the ranges around them are listed, the rest only counted.
func TestCompareFindsWhatDiffersByCounting(t *testing.T) {
	t.Parallel()
	s := compareService(t)
	src, dst, m, cc := comparePair(20_000)
	delete(dst.at, "o000100")                        // lost on the destination
	delete(src.at, "o009000")                        // hard-deleted on the source
	delete(src.at, "o015000")                        // deleted on the source (the stub never came)
	src.gone["o015000"] = 410                        //
	dst.put("o000500", cc.Till.Add(-30*time.Minute)) // repaired: the destination's own lastUpdated, within the range
	res, err := s.compareType(context.Background(), m, cc, "Observation", src, dst, nil, resourcesKind)
	require.NoError(t, err)
	tl := res.tally
	require.Equal(t, int64(19_998), tl.Source)
	require.Equal(t, int64(19_999), tl.Destination)
	require.Equal(t, int64(0), tl.Outside)
	require.Equal(t, int64(1), tl.Missing)
	require.Equal(t, []string{"Observation/o000100"}, res.missing)
	require.Equal(t, int64(2), tl.Removed)
	require.ElementsMatch(t, []string{"Observation/o009000 hard=true", "Observation/o015000 hard=false"}, dst.deleted)
	require.Equal(t, int64(2), tl.Moved, "the repaired resource, counted at both its lastUpdated")
	require.Contains(t, strings.Join(res.lines, "\n"), "Observation/o000100: held by the source, missing from the destination")
	require.Contains(t, strings.Join(res.lines, "\n"), "Observation/o009000: hard-deleted or purged on the source: removed from the destination")
	// Counting, not listing: a few hundred ids listed of 40,000 held, a few dozen count queries.
	require.Less(t, src.listed+dst.listed, 4*2*compareLeaf)
	require.Less(t, src.counts+dst.counts, 200)
	require.Positive(t, tl.Ranges)
}

// TestCompareOfEqualServersOnlyCounts: nothing differs, so each first-level range is counted once on each side and
// nothing is listed.
func TestCompareOfEqualServersOnlyCounts(t *testing.T) {
	t.Parallel()
	s := compareService(t)
	src, dst, m, cc := comparePair(5_000)
	m.Jobs[0].Counts["Observation"] = 3 * compareBucketTarget // buckets sized from what was exported
	res, err := s.compareType(context.Background(), m, cc, "Observation", src, dst, nil, resourcesKind)
	require.NoError(t, err)
	require.Equal(t, 3, res.tally.Buckets)
	require.Zero(t, res.tally.Ranges)
	require.Zero(t, src.listed-1, "only the oldest resource is read, to start the buckets")
	require.Equal(t, 3, src.counts, "a count per bucket")
	require.Equal(t, 3+1, dst.counts, "a count per bucket, and one outside the range")
}

// TestCompareBlindSpot: a loss and an extra in one range whose counts then agree cancel: the comparison does not see
// them (the README says so; cutoverVerify full-ids does).
func TestCompareBlindSpot(t *testing.T) {
	t.Parallel()
	s := compareService(t)
	src, dst, m, cc := comparePair(1_000)
	delete(dst.at, "o000010")
	delete(src.at, "o000020")
	res, err := s.compareType(context.Background(), m, cc, "Observation", src, dst, nil, resourcesKind)
	require.NoError(t, err)
	require.Zero(t, res.tally.Ranges)
	require.Zero(t, res.tally.Missing)
	require.Empty(t, dst.deleted)
}

// TestCompareLeavesDirectWritesAlone: an id written directly on the destination (recorded by the rounds' checks) is
// never removed: it is named as a direct write elsewhere.
func TestCompareLeavesDirectWritesAlone(t *testing.T) {
	t.Parallel()
	s := compareService(t)
	src, dst, m, cc := comparePair(1_000)
	dst.put("direct", cc.Till.Add(-time.Second))
	res, err := s.compareType(context.Background(), m, cc, "Observation", src, dst, map[string]bool{"Observation/direct": true}, resourcesKind)
	require.NoError(t, err)
	require.Positive(t, res.tally.Ranges, "the range with the direct write is cut down and listed")
	require.Empty(t, dst.deleted)
	require.Zero(t, res.tally.Removed+res.tally.Extra+res.tally.Missing)
}

// TestCompareReportModeOnlyLists: with reconcile report nothing is removed; what the source no longer holds is
// extra.
func TestCompareReportModeOnlyLists(t *testing.T) {
	t.Parallel()
	s := compareService(t)
	src, dst, m, cc := comparePair(2_000)
	m.Request.Reconcile = ReconcileReport
	delete(src.at, "o001000")
	res, err := s.compareType(context.Background(), m, cc, "Observation", src, dst, nil, resourcesKind)
	require.NoError(t, err)
	require.Equal(t, int64(1), res.tally.Extra)
	require.Empty(t, dst.deleted)
	require.Equal(t, []string{"Observation/o001000: hard-deleted or purged on the source, still on the destination"}, res.lines)
}

func TestRangeSplitCoversTheRangeOnMilliseconds(t *testing.T) {
	t.Parallel()
	lo := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	r := cRange{to: lo.Add(10 * time.Second), incl: true, lo: lo}
	parts := r.split(8)
	require.Len(t, parts, 8)
	require.Nil(t, parts[0].from, "the first part keeps the open lower bound")
	require.True(t, parts[7].incl)
	require.Equal(t, r.to, parts[7].to)
	for i := 1; i < len(parts); i++ {
		require.Equal(t, parts[i-1].to, *parts[i].from, "contiguous")
		require.False(t, parts[i-1].incl)
		require.Zero(t, parts[i].from.Nanosecond()%int(time.Millisecond))
	}
	require.Len(t, cRange{to: lo.Add(3 * time.Millisecond), lo: lo}.split(8), 3, "no narrower than a millisecond")
	require.Nil(t, cRange{to: lo.Add(time.Millisecond), lo: lo}.split(8))
	q := parts[3].query()
	require.Len(t, q["_lastUpdated"], 2)
	require.True(t, strings.HasPrefix(q["_lastUpdated"][0], "ge"))
	require.True(t, strings.HasPrefix(q["_lastUpdated"][1], "lt"))
}

func TestCutoverVerifyIsValidated(t *testing.T) {
	t.Parallel()
	fast, full, bad := "fast", "full-ids", "quick"
	var r Request
	require.Nil(t, checkCutoverVerify(nil, true, &r))
	require.Equal(t, CutoverVerifyFast, r.CutoverVerify, "the default with sync")
	r = Request{}
	require.Nil(t, checkCutoverVerify(nil, false, &r))
	require.Empty(t, r.CutoverVerify)
	require.Nil(t, checkCutoverVerify(&full, true, &r))
	require.Equal(t, CutoverVerifyFullIDs, r.CutoverVerify)
	require.Equal(t, "invalid_cutover_verify", checkCutoverVerify(&fast, false, &r).Code)
	require.Equal(t, "invalid_cutover_verify", checkCutoverVerify(&bad, true, &r).Code)
	require.Equal(t, []string{"fast", "full-ids"}, CutoverVerifyModes())
}

// countingClient answers counts from the query alone, holding no lock (so that nothing orders the goroutines that
// count one range on both servers at once), the source one more than the destination in every range.
type countingClient struct {
	FHIRClient
	plus int64
}

func (c countingClient) Count(_ context.Context, _ string, q url.Values) (int64, error) {
	at, err := time.Parse(time.RFC3339Nano, q["_lastUpdated"][len(q["_lastUpdated"])-1][2:])
	if err != nil {
		return 0, err
	}
	return at.UnixMilli()%1000 + c.plus, nil
}

// TestCountRangesFillsBothCountsOfEveryRange: the two counts of each range are taken at once, PollConcurrency
// queries at a time, and each lands on its own range and side (run with -race: the goroutines of one range once
// read and wrote the same range).
func TestCountRangesFillsBothCountsOfEveryRange(t *testing.T) {
	t.Parallel()
	s := compareService(t)
	require.Greater(t, s.cfg.PollConcurrency, 1, "counted concurrently")
	lo := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	ranges := cRange{to: lo.Add(64 * 7 * time.Millisecond), incl: true, lo: lo}.split(64)
	require.Len(t, ranges, 64)
	err := s.countRanges(context.Background(), "Observation", countingClient{plus: 1}, countingClient{}, ranges, resourcesKind)
	require.NoError(t, err)
	for i, r := range ranges {
		want := r.to.UnixMilli() % 1000
		require.Equal(t, want+1, r.src, "range %d: the source's count", i)
		require.Equal(t, want, r.dst, "range %d: the destination's count", i)
	}
}
