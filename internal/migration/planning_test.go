package migration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/fhir"
)

// timedSource is a source whose counts and oldest-first search read real lastUpdated times, per type.
type timedSource struct {
	*fakeServer
	mu     sync.Mutex
	times  map[string][]time.Time
	counts int
	// versions are every version and deletion per type, by time (nil: one version per live resource);
	// historyRefused makes HistoryCount a 400.
	versions       map[string][]time.Time
	historyRefused bool
}

func (s *timedSource) Count(_ context.Context, typ string, q url.Values) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counts++
	var n int64
	for t, times := range s.times {
		if typ != "" && t != typ {
			continue
		}
		for _, at := range times {
			if inWindow(at, q["_lastUpdated"]) {
				n++
			}
		}
	}
	return n, nil
}

// HistoryCount counts the versions in the range (versions, else the live times); historyRefused answers 400, as a
// source that does not count history.
func (s *timedSource) HistoryCount(_ context.Context, typ string, r fhir.HistoryRange) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counts++
	if s.historyRefused {
		return 0, &fhir.Error{Op: "history count", StatusCode: 400, Message: "_history is not supported"}
	}
	var n int64
	for t, times := range s.allVersions() {
		if typ != "" && t != typ {
			continue
		}
		for _, at := range times {
			if (r.Since == nil || !at.Before(*r.Since)) && (r.Before == nil || at.Before(*r.Before)) {
				n++
			}
		}
	}
	return n, nil
}

func (s *timedSource) History(_ context.Context, typ string, r fhir.HistoryRange, oldestFirst bool, _ int, each func(fhir.HistoryEntry) error) error {
	s.mu.Lock()
	times := slices.Clone(s.allVersions()[typ])
	s.mu.Unlock()
	if !oldestFirst {
		return fmt.Errorf("timedSource lists only oldest first")
	}
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	for _, at := range times {
		if err := each(fhir.HistoryEntry{Type: typ, ID: "x", VersionID: "1", LastUpdated: at}); err != nil {
			return err
		}
	}
	return nil
}

func (s *timedSource) allVersions() map[string][]time.Time {
	if s.versions != nil {
		return s.versions
	}
	return s.times
}

func (s *timedSource) Search(_ context.Context, typ string, q url.Values, each func(json.RawMessage) error) error {
	s.mu.Lock()
	times := slices.Clone(s.times[typ])
	s.mu.Unlock()
	if q.Get("_sort") != "_lastUpdated" {
		return fmt.Errorf("timedSource answers only the oldest-first search")
	}
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	for _, at := range times {
		if inWindow(at, q["_lastUpdated"]) {
			return each(json.RawMessage(fmt.Sprintf(`{"resourceType":%q,"id":"x","meta":{"lastUpdated":%q}}`, typ, fhir.FormatInstant(at))))
		}
	}
	return nil
}

// inWindow applies ge/gt/le bounds written by FormatInstant (exact instants: le includes its instant).
func inWindow(at time.Time, bounds []string) bool {
	for _, b := range bounds {
		v, err := time.Parse(time.RFC3339Nano, b[2:])
		if err != nil {
			panic(err)
		}
		switch b[:2] {
		case "ge":
			if at.Before(v) {
				return false
			}
		case "gt":
			if !at.After(v) {
				return false
			}
		case "le":
			if at.After(v) {
				return false
			}
		case "lt":
			if !at.Before(v) {
				return false
			}
		}
	}
	return true
}

func newPlanningHarness(t testing.TB, tune func(*Config), times map[string][]time.Time) (*harness, *timedSource) {
	var src *timedSource
	h := newHarness(t, func(c *Config) {
		orig := c.FHIR
		c.FHIR = func(base string) (FHIRClient, error) {
			if base == srcBase {
				return src, nil
			}
			return orig(base)
		}
		if tune != nil {
			tune(c)
		}
	})
	src = &timedSource{fakeServer: h.src, times: times}
	return h, src
}

// spread is n instants from a year on, a day apart.
func spread(n int, from time.Time) []time.Time {
	out := make([]time.Time, n)
	for i := range out {
		out[i] = from.AddDate(0, 0, i).Add(time.Duration(i) * 1234567 * time.Nanosecond).Truncate(instant)
	}
	return out
}

// sinceOf is a window's start: the zero time for one from the beginning (no _since).
func sinceOf(since *time.Time) time.Time {
	if since == nil {
		return time.Time{}
	}
	return *since
}

func exportWindows(m *Migration) []*Job {
	var out []*Job
	for _, j := range m.Jobs {
		if j.Kind == KindExport {
			out = append(out, j)
		}
	}
	slices.SortFunc(out, func(a, b *Job) int {
		switch {
		case a.Since == nil:
			return -1
		case b.Since == nil:
			return 1
		}
		return a.Since.Compare(*b.Since)
	})
	return out
}

// TestPlanningSplitsIntoContiguousWindows: a type over the target is halved into windows of at most the target,
// contiguous and disjoint (each ends 100 ns before the next begins), from the oldest resource to the plan's end,
// holding every resource exactly once.
func TestPlanningSplitsIntoContiguousWindows(t *testing.T) {
	t.Parallel()
	from := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	obs := spread(100, from)
	h, _ := newPlanningHarness(t, nil, map[string][]time.Time{"Observation": obs, "Patient": spread(3, from)})
	till := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	m := h.start(`{` + endpoints + `,"types":["Observation","Patient"],"windowTarget":30,"till":"2026-01-01T00:00:00Z"}`)
	require.Equal(t, StatusPlanning, m.Status)
	h.poll()
	m = h.get(m.ID)
	require.Equal(t, StatusExporting, m.Status)
	require.NotNil(t, m.job("export-Patient"), "a type under the target is one window, named by its type")
	require.Nil(t, m.job("export-Patient").Since, "it keeps the request's (absent) since")

	var windows []*Job
	for _, j := range exportWindows(m) {
		if j.Types[0] == "Observation" {
			windows = append(windows, j)
		}
	}
	require.Greater(t, len(windows), 3)
	require.Nil(t, windows[0].Since, "the first window starts at the beginning, not at the oldest resource: nothing older is left out")
	// Windows and the empty ranges between and after them tile the range from the oldest resource to the till.
	type span struct{ since, till time.Time }
	var tiles []span
	for _, w := range windows {
		tiles = append(tiles, span{sinceOf(w.Since), *w.Till})
	}
	for _, r := range m.Planning.Empty {
		if r.Type == "Observation" {
			tiles = append(tiles, span{sinceOf(r.Since), r.Till})
		}
	}
	slices.SortFunc(tiles, func(a, b span) int { return a.since.Compare(b.since) })
	require.Equal(t, till, tiles[len(tiles)-1].till, "the last range ends at the request's till")
	for i := 1; i < len(tiles); i++ {
		require.Equal(t, tiles[i-1].till.Add(instant), tiles[i].since, "contiguous and disjoint at %d", i)
	}
	held := 0
	for _, w := range windows {
		require.True(t, strings.HasPrefix(w.ID, "export-Observation-"), w.ID)
		require.LessOrEqual(t, w.Planned, int64(30), w.ID)
		require.Equal(t, []string{"Observation"}, w.Types)
		n := 0
		for _, at := range obs {
			if !at.Before(sinceOf(w.Since)) && !at.After(*w.Till) {
				n++
			}
		}
		require.Equal(t, int64(n), w.Planned, w.ID)
		held += n
	}
	require.Equal(t, len(obs), held, "every resource in exactly one window")
	require.Equal(t, m.Planning.Counts, h.get(m.ID).Planning.Counts)
}

// TestPlanningKeepsASingleInstantOverTheTarget: a bulk load puts more resources than the target on one instant:
// halving stops there and the instant stays one window, over the target.
func TestPlanningKeepsASingleInstantOverTheTarget(t *testing.T) {
	t.Parallel()
	at := time.Date(2024, 5, 5, 5, 5, 5, 123400000, time.UTC)
	bulk := make([]time.Time, 50)
	for i := range bulk {
		bulk[i] = at
	}
	times := append(bulk, spread(20, time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC))...)
	h, _ := newPlanningHarness(t, nil, map[string][]time.Time{"Observation": times})
	m := h.start(`{` + endpoints + `,"types":["Observation"],"windowTarget":30,"till":"2026-01-01T00:00:00Z"}`)
	for step := 0; h.get(m.ID).Status == StatusPlanning; step++ {
		require.Less(t, step, 10, "halving down to one instant takes about 50 counts, a few steps")
		h.poll()
	}
	m = h.get(m.ID)
	var single *Job
	total := int64(0)
	for _, w := range exportWindows(m) {
		total += w.Planned
		if w.Planned > 30 {
			require.Nil(t, single, "one window over the target")
			single = w
		}
	}
	require.NotNil(t, single, "%s", mustJSON(t, exportWindows(m)))
	require.Equal(t, int64(50), single.Planned)
	require.Equal(t, at, *single.Since)
	require.Equal(t, at, *single.Till, "a window of one instant")
	require.Equal(t, int64(70), total)
}

// TestPlanningIsBoundedAndResumable: past MaxPlanningCounts the ranges not yet split are exported as they are; a
// plan that takes several steps, one of whose saves is lost, plans the same windows as one that is not.
func TestPlanningIsBoundedAndResumable(t *testing.T) {
	t.Parallel()
	times := map[string][]time.Time{"Observation": spread(120, time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC))}
	body := `{` + endpoints + `,"types":["Observation"],"windowTarget":1,"till":"2026-01-01T00:00:00Z"}`

	plan := func(loseAStep bool) []string {
		h, src := newPlanningHarness(t, nil, times)
		m := h.start(body)
		for step := 0; h.get(m.ID).Status == StatusPlanning; step++ {
			require.Less(t, step, 50)
			if loseAStep && step == 2 {
				before := h.get(m.ID).Planning.Step
				h.store.set(func(s *hookStore) { s.failPuts = true })
				require.NoError(t, h.svc.Poll(context.Background()), "a failed save is logged")
				h.store.set(func(s *hookStore) { s.failPuts = false })
				require.Equal(t, before, h.get(m.ID).Planning.Step, "the step was lost")
				continue
			}
			h.poll()
		}
		got := h.get(m.ID)
		require.Greater(t, got.Planning.Step, 2, "planned over several steps")
		require.Greater(t, src.counts, planningCountsPerStep)
		var out []string
		for _, w := range exportWindows(got) {
			out = append(out, fmt.Sprintf("%s %s..%s %d", w.ID, fhir.FormatInstant(sinceOf(w.Since)), fhir.FormatInstant(*w.Till), w.Planned))
		}
		return out
	}
	clean := plan(false)
	require.Equal(t, clean, plan(true), "a lost step is counted again, to the same windows")
	require.Len(t, clean, 120)

	h, src := newPlanningHarness(t, func(c *Config) { c.MaxPlanningCounts = 5 }, times)
	m := h.start(body)
	h.poll()
	got := h.get(m.ID)
	require.Equal(t, StatusExporting, got.Status, "the bound never fails a plan")
	require.Equal(t, 5, got.Planning.Counts)
	require.GreaterOrEqual(t, src.counts, 5)
	var planned int
	for _, w := range exportWindows(got) {
		for _, at := range times["Observation"] {
			if !at.Before(sinceOf(w.Since)) && !at.After(*w.Till) {
				planned++
			}
		}
	}
	require.Equal(t, 120, planned, "the unsplit ranges still cover everything")
}

// TestEmptyTypesAreNotExportedButAreVerified: a type the source holds nothing of gets no job, and verification
// counts its range again: a resource there fails the migration instead of passing unseen.
func TestEmptyTypesAreNotExportedButAreVerified(t *testing.T) {
	t.Parallel()
	h, src := newPlanningHarness(t, nil, map[string][]time.Time{"Patient": spread(5, time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC))})
	h.src.setFiles("Patient", 5)
	h.src.setFiles("Observation")
	m := h.start(`{` + endpoints + `,"types":["Patient","Observation"],"till":"2026-01-01T00:00:00Z"}`)
	h.poll()
	got := h.get(m.ID)
	require.Nil(t, got.job("export-Observation"))
	require.Len(t, got.Planning.Empty, 1)
	require.Equal(t, "Observation", got.Planning.Empty[0].Type)
	src.mu.Lock()
	src.times["Observation"] = []time.Time{time.Date(2022, 1, 1, 0, 0, 0, 0, time.UTC)} // appeared in the range since
	src.mu.Unlock()
	done := h.drive(m.ID, time.Minute, 30)
	require.Equal(t, StatusFailed, done.Status)
	require.Equal(t, codeVerificationMismatch, done.Error.Code)
	require.Equal(t, reasonExportShort, rowsByType(done)["Observation"].Reason)
}

// TestDryRunAnswersWindowsAndStoresNothing: a dry run plans in memory and answers the windows.
func TestDryRunAnswersWindowsAndStoresNothing(t *testing.T) {
	t.Parallel()
	h, _ := newPlanningHarness(t, nil, map[string][]time.Time{"Observation": spread(100, time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC))})
	res, err := h.svc.Start(context.Background(), decode[StartRequest](t, `{`+endpoints+`,"types":["Observation"],"windowTarget":30,"dryRun":true}`))
	require.NoError(t, err)
	require.Greater(t, len(res.Plan.Jobs), 3)
	var total int64
	for _, j := range res.Plan.Jobs {
		require.False(t, j.Estimated)
		total += j.Planned
	}
	require.Equal(t, int64(100), total)
	items, err := h.store.List(context.Background(), "")
	require.NoError(t, err)
	require.Empty(t, items)
}

// TestAGapBetweenWindowsFailsVerification: verification counts each type over the whole migrated range, not
// window by window, so a window missing from the plan (here removed from the document after planning) shows as
// resources never exported instead of passing unseen.
func TestAGapBetweenWindowsFailsVerification(t *testing.T) {
	t.Parallel()
	obs := spread(40, time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC))
	h, src := newPlanningHarness(t, nil, map[string][]time.Time{"Observation": obs})
	m := h.start(`{` + endpoints + `,"types":["Observation"],"windowTarget":10,"till":"2026-01-01T00:00:00Z"}`)
	h.poll()
	windows := exportWindows(h.get(m.ID))
	require.Greater(t, len(windows), 2)
	lost := windows[1]
	_, _, err := h.svc.update(context.Background(), m.ID, func(doc *Migration) (*effects, error) {
		doc.Jobs = slices.DeleteFunc(doc.Jobs, func(j *Job) bool { return j.ID == lost.ID })
		return nil, nil
	})
	require.NoError(t, err)
	h.src.filesFor = func(r fhir.ExportRequest, typ string) []int64 { // each window exports what it holds
		q := url.Values{"_lastUpdated": {"ge" + fhir.FormatInstant(sinceOf(r.Since)), "le" + fhir.FormatInstant(*r.Till)}}
		if r.Since == nil {
			q["_lastUpdated"] = q["_lastUpdated"][1:]
		}
		n, err := src.Count(context.Background(), typ, q)
		require.NoError(t, err)
		return []int64{n}
	}
	done := h.drive(m.ID, time.Minute, 60)
	require.Equal(t, StatusFailed, done.Status)
	require.Equal(t, codeVerificationMismatch, done.Error.Code)
	row := rowsByType(done)["Observation"]
	require.Equal(t, reasonExportShort, row.Reason)
	require.Equal(t, int64(len(obs)), row.Source, "the source counted over the whole range")
	require.Equal(t, int64(len(obs))-lost.Planned, row.Exported)
}

// TestPlanningCountsVersionsWithHistory: with history or deletes, ranges are counted by version (what the export
// selects), so versions dated before the oldest live resource and a type whose every resource is deleted get
// windows; a source that refuses history counts is planned from live counts with no range taken as empty.
func TestPlanningCountsVersionsWithHistory(t *testing.T) {
	t.Parallel()
	live := spread(30, time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC))
	old := spread(12, time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC))
	deleted := spread(4, time.Date(2010, 1, 1, 0, 0, 0, 0, time.UTC))
	body := `{` + endpoints + `,"types":["Observation","Patient"],"windowTarget":10,"till":"2026-01-01T00:00:00Z","history":true,"deletes":true}`
	plan := func(refuse bool) *Migration {
		h, src := newPlanningHarness(t, nil, map[string][]time.Time{"Observation": live, "Patient": nil})
		src.versions = map[string][]time.Time{"Observation": append(slices.Clone(old), live...), "Patient": deleted}
		src.historyRefused = refuse
		m := h.start(body)
		for step := 0; h.get(m.ID).Status == StatusPlanning; step++ {
			require.Less(t, step, 20)
			h.poll()
		}
		return h.get(m.ID)
	}
	m := plan(false)
	require.Equal(t, countVersions, m.Planning.Versions)
	held := map[string]int64{}
	for _, w := range exportWindows(m) {
		require.LessOrEqual(t, w.Planned, int64(10), w.ID)
		held[w.Types[0]] += w.Planned
	}
	require.Equal(t, int64(len(old)+len(live)), held["Observation"], "every version in a window")
	require.Equal(t, int64(len(deleted)), held["Patient"], "a type with deletions only is exported")
	for _, w := range exportWindows(m) {
		if w.Types[0] == "Observation" && w.Since == nil {
			require.True(t, w.Till.After(old[0]), "the first window holds the oldest versions")
		}
	}

	m = plan(true)
	require.Equal(t, countLive, m.Planning.Versions)
	require.Contains(t, m.Planning.VersionsNote, "_history is not supported")
	require.Empty(t, m.Planning.Empty, "no range is taken as empty when only live resources are counted")
	require.NotNil(t, m.job("export-Patient"), "Patient is exported though nothing of it is live")
	var first *Job
	for _, w := range exportWindows(m) {
		if w.Types[0] == "Observation" && w.Since == nil {
			first = w
		}
	}
	require.NotNil(t, first, "the first window starts at the beginning, not at the oldest live resource")
}
