package migration

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/fhir"
)

// statusFault replaces one status answer: an error, or a 202 carrying Retry-After.
type statusFault struct {
	retryAfter time.Duration
	err        error
}

// faultyServer wraps a scripted server with injected status answers, import error files and count failures.
type faultyServer struct {
	*fakeServer
	mu           sync.Mutex
	exportFaults []statusFault
	importFaults []statusFault
	importErrors []fhir.ImportErrorFile
	countErrs    []error
	// countErrsFor limits countErrs to the counts of one type ("" for any); countErrsSkip lets that many of
	// those counts through first (planning's, before the kick-offs').
	countErrsFor  string
	countErrsSkip int
	countQueries  []url.Values
}

func (f *faultyServer) pop(list *[]statusFault) (statusFault, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(*list) == 0 {
		return statusFault{}, false
	}
	s := (*list)[0]
	*list = (*list)[1:]
	return s, true
}

func (f *faultyServer) ExportStatus(ctx context.Context, cl string) (*fhir.ExportStatus, error) {
	if s, ok := f.pop(&f.exportFaults); ok {
		if s.err != nil {
			return nil, s.err
		}
		return &fhir.ExportStatus{RetryAfter: s.retryAfter}, nil
	}
	return f.fakeServer.ExportStatus(ctx, cl)
}

func (f *faultyServer) ImportStatus(ctx context.Context, cl string) (*fhir.ImportStatus, error) {
	if s, ok := f.pop(&f.importFaults); ok {
		if s.err != nil {
			return nil, s.err
		}
		return &fhir.ImportStatus{RetryAfter: s.retryAfter}, nil
	}
	st, err := f.fakeServer.ImportStatus(ctx, cl)
	if err == nil && st.Done {
		f.mu.Lock()
		st.Result.Error = append(st.Result.Error, f.importErrors...)
		f.mu.Unlock()
	}
	return st, err
}

func (f *faultyServer) Count(ctx context.Context, t string, q url.Values) (int64, error) {
	f.mu.Lock()
	f.countQueries = append(f.countQueries, q)
	var err error
	if len(f.countErrs) > 0 && (f.countErrsFor == "" || f.countErrsFor == t) {
		if f.countErrsSkip > 0 {
			f.countErrsSkip--
		} else {
			err, f.countErrs = f.countErrs[0], f.countErrs[1:]
		}
	}
	f.mu.Unlock()
	if err != nil {
		return 0, err
	}
	return f.fakeServer.Count(ctx, t, q)
}

// newFaultHarness is a harness whose servers are wrapped in faultyServers.
func newFaultHarness(t *testing.T, tune func(*Config)) (*harness, *faultyServer, *faultyServer) {
	var src, dst *faultyServer
	h := newHarness(t, func(c *Config) {
		c.FHIR = func(base string) (FHIRClient, error) {
			switch base {
			case srcBase:
				return src, nil
			case dstBase:
				return dst, nil
			}
			return nil, errors.New("no server " + base)
		}
		if tune != nil {
			tune(c)
		}
	})
	src, dst = &faultyServer{fakeServer: h.src}, &faultyServer{fakeServer: h.dst}
	return h, src, dst
}

func (f *fakeServer) setCount(t string, n int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.counts[t] = n
}

func (f *fakeServer) setFiles(t string, counts ...int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.files[t] = counts
}

func TestFaultPollBackoffWithJitter(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *Config) { c.Random = func() float64 { return 0.5 } })
	h.src.exportPending = 100
	m := h.start(`{` + endpoints + `,"types":["Patient"]}`)
	h.poll()
	j := h.get(m.ID).job("export-Patient")
	require.Equal(t, h.clock.Now().Add(5*time.Second), *j.NextPollAt, "the first poll after PollInitial")
	var got []time.Duration
	for range 7 {
		h.clock.Advance(j.NextPollAt.Sub(h.clock.Now()))
		h.poll()
		j = h.get(m.ID).job("export-Patient")
		got = append(got, j.NextPollAt.Sub(h.clock.Now()))
	}
	// 202s without Retry-After: PollInitial doubled per poll, capped at PollMax, jittered into [d/2, d].
	ms := time.Millisecond
	require.Equal(t, []time.Duration{7500 * ms, 15 * time.Second, 30 * time.Second, time.Minute,
		90 * time.Second, 90 * time.Second, 90 * time.Second}, got)
}

func TestFaultStatusRetryAfterHonoured(t *testing.T) {
	t.Parallel()
	h, src, dst := newFaultHarness(t, nil)
	src.exportFaults = []statusFault{{retryAfter: 42 * time.Second}}
	dst.importFaults = []statusFault{{err: &fhir.Error{Op: "import status", StatusCode: 429, RetryAfter: 17 * time.Second}}}
	m := h.start(`{` + endpoints + `,"types":["Patient"]}`)
	h.poll()
	h.clock.Advance(5 * time.Second)
	h.poll()
	j := h.get(m.ID).job("export-Patient")
	require.Equal(t, JobRunning, j.State)
	require.Equal(t, h.clock.Now().Add(42*time.Second), *j.NextPollAt, "a 202 with Retry-After waits that long")
	h.clock.Advance(42 * time.Second)
	h.poll()
	h.deliver()
	imp := h.get(m.ID).job("import-export-Patient-1")
	require.Equal(t, JobRunning, imp.State)
	h.clock.Advance(5 * time.Second)
	h.poll()
	imp = h.get(m.ID).job("import-export-Patient-1")
	require.Equal(t, h.clock.Now().Add(17*time.Second), *imp.NextPollAt, "a throttled status poll waits Retry-After")
	require.Equal(t, 1, imp.PollFailures)
	done := h.drive(m.ID, 20*time.Second, 20)
	require.Equal(t, StatusCompleted, done.Status)
}

func TestFaultStatusPollFailuresAreBounded(t *testing.T) {
	t.Parallel()
	h, src, _ := newFaultHarness(t, func(c *Config) { c.MaxPollFailures = 2 })
	unavailable := &fhir.Error{Op: "export status", StatusCode: 503, Message: "service unavailable"}
	src.exportFaults = []statusFault{{err: unavailable}, {err: unavailable}, {err: unavailable}}
	m := h.start(`{` + endpoints + `,"types":["Patient"]}`)
	h.poll()
	for range 3 {
		h.clock.Advance(5 * time.Minute)
		h.poll()
	}
	got := h.get(m.ID)
	require.Equal(t, StatusFailed, got.Status)
	require.Equal(t, "export_failed", got.Error.Code)
	require.Contains(t, got.Error.Message, "3 status polls in a row failed, the last: export status: HTTP 503: service unavailable")
}

func TestFaultKickoffThrottledThenBoundedFailureCarriesReason(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *Config) { c.MaxAttempts = 2 })
	busy := &fhir.Error{Op: "export kick-off", StatusCode: 429, RetryAfter: 20 * time.Second, Message: "too many requests"}
	h.src.kickoffErrs = []error{busy, busy}
	m := h.start(`{` + endpoints + `,"types":["Patient"]}`)
	h.poll()
	j := h.get(m.ID).job("export-Patient")
	require.Equal(t, JobQueued, j.State)
	require.Equal(t, h.clock.Now().Add(20*time.Second), *j.NextPollAt, "Retry-After of the 429")
	h.clock.Advance(19 * time.Second)
	h.poll()
	ex, _, _ := h.src.snapshot()
	require.Equal(t, 1, ex, "no kick-off before Retry-After")
	h.clock.Advance(time.Second)
	h.poll()
	got := h.get(m.ID)
	require.Equal(t, StatusFailed, got.Status)
	require.Equal(t, "export job export-Patient failed: 2 kick-off attempts failed, the last: export kick-off: HTTP 429: too many requests", got.Error.Message)
	require.Empty(t, h.hostSlots(srcBase)[slotExport])
}

func TestFaultStalledExportIsCanceledAndRequeued(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *Config) { c.ExportDeadline = time.Hour; c.MaxReexports = 1 })
	h.src.exportPending = 1000
	m := h.start(`{` + endpoints + `,"types":["Patient"]}`)
	h.poll()
	first := h.get(m.ID).job("export-Patient").ContentLocation
	for range 59 {
		h.clock.Advance(time.Minute)
		h.poll()
	}
	require.Len(t, h.get(m.ID).job("export-Patient").Attempts, 1, "not stalled before the deadline")

	h.clock.Advance(time.Minute)
	h.poll()
	j := h.get(m.ID).job("export-Patient")
	require.Len(t, j.Attempts, 1, "past the deadline, asked once more first")
	require.Equal(t, h.clock.Now(), *j.Attempts[0].RunningAt, "and found running after the deadline")
	h.clock.Advance(time.Second)
	h.poll()
	j = h.get(m.ID).job("export-Patient")
	_, _, canceled := h.src.snapshot()
	require.Equal(t, []string{first}, canceled, "the stalled export is canceled on the source")
	require.Len(t, j.Attempts, 2, "and kicked off again in the same sweep")
	require.Equal(t, "stalled: not finished 1h0m0s after the source accepted it; canceled", j.Attempts[0].Abandoned)
	require.Equal(t, JobRunning, j.State)
	require.Equal(t, 1, j.Reexports)
	require.NotEqual(t, first, j.ContentLocation)

	h.clock.Advance(time.Hour)
	h.poll()
	h.clock.Advance(time.Second)
	h.poll()
	got := h.get(m.ID)
	require.Equal(t, StatusFailed, got.Status, "re-exports are bounded")
	require.Contains(t, got.Error.Message, "exported 2 times without a complete result, the last: stalled")
	_, _, canceled = h.src.snapshot()
	require.Len(t, canceled, 2)
	require.Empty(t, h.hostSlots(srcBase)[slotExport])
}

func TestFaultUserCanceledExportIsAFailure(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.src.exportPending = 100
	m := h.start(`{` + endpoints + `,"types":["Patient"]}`)
	h.poll()
	// Someone DELETEs the export on the source: its status answers 404 from then on.
	require.NoError(t, h.src.CancelJob(context.Background(), h.get(m.ID).job("export-Patient").ContentLocation))
	h.clock.Advance(5 * time.Second)
	h.poll()
	got := h.get(m.ID)
	require.Equal(t, StatusFailed, got.Status)
	require.Equal(t, JobFailed, got.job("export-Patient").State)
	require.Contains(t, got.Error.Message, "export status: HTTP 404")
	require.Len(t, got.Jobs, 1, "nothing is imported from a canceled export")
}

func TestFaultEarlyManifestIsConfirmedBeforeTrusted(t *testing.T) {
	t.Parallel()
	h, src, _ := newFaultHarness(t, func(c *Config) { c.ConfirmDelay = 90 * time.Second })
	h.src.setCount("Patient", 5)
	h.src.setFiles("Patient", 3)
	since := `"since":"2020-01-01T00:00:00Z","till":"2025-01-01T00:00:00Z"`
	m := h.start(`{` + endpoints + `,"types":["Patient"],` + since + `}`)
	h.poll()
	j := h.get(m.ID).job("export-Patient")
	require.Equal(t, map[string]int64{"Patient": 5}, j.Expected)
	window := url.Values{"_lastUpdated": {"ge2020-01-01T00:00:00.0000000Z", "le2025-01-01T00:00:00.0000000Z"}}
	require.Equal(t, []url.Values{window, window}, src.countQueries, "counted for the export's window, by planning and before the kick-off")

	h.clock.Advance(5 * time.Second)
	h.poll()
	j = h.get(m.ID).job("export-Patient")
	require.Equal(t, JobRunning, j.State, "a 200 short of the counts is not trusted")
	require.Equal(t, h.clock.Now().Add(90*time.Second), *j.NextPollAt)
	require.Contains(t, j.LastError, "manifest short of the source's counts: Patient 3 of 5")
	require.Len(t, h.get(m.ID).Jobs, 1, "no import planned from it")

	h.src.setFiles("Patient", 3, 2) // the export had answered too early
	h.clock.Advance(90 * time.Second)
	h.poll()
	j = h.get(m.ID).job("export-Patient")
	require.Equal(t, JobDone, j.State)
	require.Equal(t, map[string]int64{"Patient": 5}, j.Counts)
	ex, _, _ := h.src.snapshot()
	require.Equal(t, 1, ex, "confirmed without a second export")
	require.Equal(t, StatusCompleted, h.drive(m.ID, time.Minute, 20).Status)
}

func TestFaultShortManifestIsExportedAgain(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *Config) { c.MaxReexports = 1 })
	h.src.setCount("Patient", 5)
	h.src.setFiles("Patient", 3) // a system-canceled export answers 200 with what it wrote so far
	m := h.start(`{` + endpoints + `,"types":["Patient"]}`)
	h.poll()
	h.clock.Advance(5 * time.Second)
	h.poll()
	h.clock.Advance(time.Minute)
	h.poll()
	j := h.get(m.ID).job("export-Patient")
	require.Equal(t, JobQueued, j.State, "still short after the re-poll: queued to be exported again")
	require.Equal(t, "manifest short of the source's counts: Patient 3 of 5, still after a re-poll", j.Attempts[0].Abandoned)
	require.Empty(t, h.hostSlots(srcBase)[slotExport], "its slot is free for the next kick-off")
	h.poll()
	j = h.get(m.ID).job("export-Patient")
	require.Len(t, j.Attempts, 2)
	require.Equal(t, JobRunning, j.State)
	ex, _, _ := h.src.snapshot()
	require.Equal(t, 2, ex)

	h.clock.Advance(5 * time.Second)
	h.poll()
	h.clock.Advance(time.Minute)
	h.poll()
	got := h.get(m.ID)
	require.Equal(t, StatusFailed, got.Status, "bounded")
	require.Equal(t, "export_failed", got.Error.Code)
	require.Contains(t, got.Error.Message, "exported 2 times without a complete result, the last: manifest short of the source's counts: Patient 3 of 5")

	// A manifest longer than the count is trusted at once: no re-poll, no second export.
	h2 := newHarness(t, nil)
	h2.src.setCount("Patient", 4)
	m2 := h2.start(`{` + endpoints + `,"types":["Patient"]}`)
	h2.poll()
	h2.clock.Advance(5 * time.Second)
	h2.poll()
	require.Equal(t, JobDone, h2.get(m2.ID).job("export-Patient").State)
	h2.src.clearCount("Patient") // the source's count of the window now agrees with what was exported
	require.Equal(t, StatusCompleted, h2.drive(m2.ID, 5*time.Second, 20).Status)
	ex, _, _ = h2.src.snapshot()
	require.Equal(t, 1, ex)
}

// TestFaultShortManifestExplainedByChanges: a manifest confirmed short is accepted only when the source shows at
// least as many resources changed since the kick-off count as are lacking, and then with a note; verification
// still compares with the source's count of the window, taken again at its end.
func TestFaultShortManifestExplainedByChanges(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		changed  int64
		accepted bool
	}{{"enough changes", 2, true}, {"too few changes", 1, false}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h, src, _ := newFaultHarness(t, func(c *Config) { c.MaxReexports = 1 })
			h.src.setCount("Patient", 5)
			h.src.setFiles("Patient", 3)
			h.src.changed = map[string]int64{"Patient": tc.changed}
			m := h.start(`{` + endpoints + `,"types":["Patient"]}`)
			h.poll()
			counted := *h.get(m.ID).job("export-Patient").CountedAt
			h.clock.Advance(5 * time.Second)
			h.poll()
			h.clock.Advance(time.Minute)
			h.poll()
			j := h.get(m.ID).job("export-Patient")
			last := src.countQueries[len(src.countQueries)-1]
			require.Equal(t, []string{"gt" + fhir.FormatInstant(counted)}, last["_lastUpdated"], "changed since the count, wherever it was")
			if !tc.accepted {
				require.Equal(t, JobQueued, j.State, "2 lacking, 1 changed: exported again")
				require.Empty(t, h.get(m.ID).Notes)
				return
			}
			require.Equal(t, JobDone, j.State)
			got := h.get(m.ID)
			require.Len(t, got.Notes, 1)
			require.Contains(t, got.Notes[0], "Patient lacks 2 of the 5 counted, and 2 changed on the source since the count")
			h.src.setCount("Patient", 3) // the two left the window
			done := h.drive(m.ID, time.Minute, 30)
			require.Equal(t, StatusCompleted, done.Status, "%+v", done.Error)
			require.Equal(t, int64(3), rowsByType(done)["Patient"].Source)
		})
	}
}

func TestFaultCountBeforeKickoff(t *testing.T) {
	t.Parallel()
	h, src, _ := newFaultHarness(t, nil)
	m := h.start(`{` + endpoints + `,"types":["Patient","Observation"],"typeFilter":["Observation?status=final"]}`)
	src.countErrs, src.countErrsFor = []error{&fhir.Error{Op: "count Patient", StatusCode: 503}}, "Patient"
	src.countErrsSkip = 1 // planning's count of Patient
	h.poll()
	got := h.get(m.ID)
	p := got.job("export-Patient")
	require.Equal(t, JobQueued, p.State, "a transient count failure delays the kick-off")
	require.Contains(t, p.Attempts[0].Error, "before kick-off: count Patient on the source")
	o := got.job("export-Observation")
	require.Equal(t, JobRunning, o.State)
	require.Equal(t, map[string]int64{"Observation": 7}, o.Expected, "a filtered type is counted as the search its filter is")
	ex, _, _ := h.src.snapshot()
	require.Equal(t, 1, ex)
	var filtered url.Values
	for _, q := range src.countQueries {
		if q.Get("status") != "" {
			filtered = q
		}
	}
	require.Equal(t, "final", filtered.Get("status"))
	require.Equal(t, []string{"le" + fhir.FormatInstant(*o.Till)}, filtered["_lastUpdated"], "within the job's window, pinned at its kick-off")

	h.clock.Advance(10 * time.Second)
	h.poll()
	require.Equal(t, JobRunning, h.get(m.ID).job("export-Patient").State)

	// A count the server refuses is asked again, then fails the migration openly: never "nothing expected".
	h2, src2, _ := newFaultHarness(t, nil)
	for range 10 {
		src2.countErrs = append(src2.countErrs, &fhir.Error{Op: "count", StatusCode: 403, Message: "forbidden"})
	}
	src2.countErrsSkip = 1 // planning's count goes through; the kick-off's do not
	m2 := h2.start(`{` + endpoints + `}`)
	h2.poll()
	j := h2.get(m2.ID).job("export-system")
	require.Equal(t, JobQueued, j.State, "not kicked off without its count")
	ex, _, _ = h2.src.snapshot()
	require.Zero(t, ex)
	done := h2.drive(m2.ID, 5*time.Minute, 20)
	require.Equal(t, StatusFailed, done.Status)
	require.Equal(t, codeSourceCountUnavailable, done.Error.Code)
	require.Contains(t, done.Error.Message, "5 kick-off attempts failed")
	require.Contains(t, done.Error.Message, "forbidden")
	ex, _, _ = h2.src.snapshot()
	require.Zero(t, ex, "no export was started without its count")
}

// TestPlanningThatCannotCountFailsOpenly: a source that will not count a migration's range while it is planned is
// asked again at each sweep, then the migration fails openly with source_count_unavailable.
func TestPlanningThatCannotCountFailsOpenly(t *testing.T) {
	t.Parallel()
	h, src, _ := newFaultHarness(t, nil)
	for range 10 {
		src.countErrs = append(src.countErrs, &fhir.Error{Op: "count", StatusCode: 403, Message: "forbidden"})
	}
	m := h.start(`{` + endpoints + `,"types":["Patient"]}`)
	h.poll()
	got := h.get(m.ID)
	require.Equal(t, StatusPlanning, got.Status)
	require.Equal(t, 1, got.Planning.Failures)
	require.Contains(t, got.Planning.LastError, "forbidden")
	done := h.drive(m.ID, time.Minute, 20)
	require.Equal(t, StatusFailed, done.Status)
	require.Equal(t, codeSourceCountUnavailable, done.Error.Code)
	require.Contains(t, done.Error.Message, "planning could not count the source after 5 attempts")
	ex, _, _ := h.src.snapshot()
	require.Zero(t, ex)
}

func TestFaultSystemExportConfirmedByTotal(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.src.setCount("", 15)
	m := h.start(`{` + endpoints + `}`)
	h.poll()
	require.Equal(t, map[string]int64{"*": 15}, h.get(m.ID).job("export-system").Expected)
	h.clock.Advance(5 * time.Second)
	h.poll()
	j := h.get(m.ID).job("export-system")
	require.Equal(t, JobRunning, j.State, "14 exported of 15: not trusted")
	require.Contains(t, j.LastError, "* 14 of 15")
}

func TestFaultBusyDestinationGetsAScheduledRetry(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		err   error
		after time.Duration
	}{
		{"throttled with Retry-After", &fhir.Error{Op: "import kick-off", StatusCode: 429, RetryAfter: 12 * time.Second}, 12 * time.Second},
		{"locked without Retry-After", &fhir.Error{Op: "import kick-off", StatusCode: 423}, 30 * time.Second},
		{"unavailable", &fhir.Error{Op: "import kick-off", StatusCode: 503}, 30 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, nil)
			h.dst.kickoffErrs = []error{tc.err}
			m := h.start(`{` + endpoints + `,"types":["Patient"]}`)
			h.poll()
			h.clock.Advance(5 * time.Second)
			h.poll()
			msgs := h.bus.Take()
			require.Len(t, msgs, 1)
			require.NoError(t, h.svc.RunImport(context.Background(), msgs[0].Body), "acknowledged: no redelivery storm")
			retry := h.bus.Take()
			require.Len(t, retry, 1)
			require.Equal(t, h.clock.Now().Add(tc.after), retry[0].NotBefore)
			require.Equal(t, m.ID+"/run-import/import-export-Patient-1/2", retry[0].ID)
			require.Equal(t, JobQueued, h.get(m.ID).job("import-export-Patient-1").State)
		})
	}
}

func TestFaultImportErrorFilesAreSummarised(t *testing.T) {
	t.Parallel()
	h, _, dst := newFaultHarness(t, nil)
	m := h.start(`{` + endpoints + `,"types":["Patient","Observation"]}`)
	h.poll()
	h.clock.Advance(5 * time.Second)
	h.poll()
	got := h.get(m.ID)
	patientIn := h.inputs(got, "import-export-Patient-1")[0].URL
	errURL := blobBase + "/fhirlogs/Patient-errors.ndjson"
	var lines strings.Builder
	for i := range 12 {
		oo, _ := json.Marshal(map[string]any{"resourceType": "OperationOutcome", "issue": []map[string]any{{
			"severity": "error", "code": "processing",
			"diagnostics": "Failed to process resource at line: " + string(rune('1'+i%9)) + " with stream start offset: 0"}}})
		lines.Write(oo)
		lines.WriteString("\n")
	}
	h.staging.reg.mu.Lock()
	h.staging.reg.content[errURL] = lines.String()
	h.staging.reg.mu.Unlock()
	dst.importErrors = []fhir.ImportErrorFile{
		{Type: "OperationOutcome", Count: 1, InputURL: blobBase + "/elsewhere/x.ndjson", URL: blobBase + "/fhirlogs/missing.ndjson"},
		{Type: "OperationOutcome", Count: 12, InputURL: patientIn, URL: errURL + "?sv=sas"},
	}
	h.deliver()
	h.clock.Advance(5 * time.Second)
	h.poll()
	got = h.get(m.ID)
	pj := got.job("import-export-Patient-1")
	require.Equal(t, JobDone, pj.State)
	files, err := h.svc.importErrorFilesOf(context.Background(), pj)
	require.NoError(t, err)
	require.Equal(t, "Patient", files[1].Type, "error files are typed by their input, not OperationOutcome")
	sum := pj.ErrorSummary
	require.NotNil(t, sum)
	require.Equal(t, map[string]int64{"Patient": 12, "OperationOutcome": 1}, sum.ByType, "an unknown input keeps the server's type")
	require.Len(t, sum.First, maxErrorLines)
	require.Equal(t, ErrorLine{Type: "Patient", InputURL: patientIn, Message: "Failed to process resource at line: 1 with stream start offset: 0"}, sum.First[0])
	require.Contains(t, sum.Unread, "error file of OperationOutcome")
	final := h.drive(m.ID, time.Minute, 20)
	require.Equal(t, int64(12), rowsByType(final)["Patient"].ImportErrors)
}

func TestFaultCancelWhileKickoffInFlight(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	m := h.start(`{` + endpoints + `,"types":["Patient"]}`)
	h.src.onKickoff = func() error {
		// DELETE /api/migrations/{id} arrives between the server's 202 and the save of its answer.
		_, err := h.svc.Cancel(context.Background(), m.ID)
		return err
	}
	h.poll()
	got := h.get(m.ID)
	require.Equal(t, StatusCanceled, got.Status)
	ex, _, canceled := h.src.snapshot()
	require.Equal(t, 1, ex)
	require.Len(t, canceled, 1, "the export the late answer names is canceled on the source")
	require.Empty(t, h.hostSlots(srcBase)[slotExport])
}

func TestFaultLostAndDuplicatedMessagesStillFinishOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	m := h.start(`{` + endpoints + `,"types":["Patient","Observation","SearchParameter"]}`)
	var dropped, duplicated int
	for step := range 60 {
		h.clock.Advance(30 * time.Second)
		h.poll()
		for i, msg := range h.bus.Take() {
			if (step+i)%3 == 0 {
				dropped++
				continue // lost: the sweep re-drives it
			}
			h.handle(msg)
			h.handle(msg) // delivered twice
			duplicated++
		}
		if h.get(m.ID).Status.Terminal() {
			break
		}
	}
	done := h.get(m.ID)
	require.Equal(t, StatusCompleted, done.Status, "%+v", done.Error)
	require.Positive(t, dropped)
	require.Positive(t, duplicated)
	ex, _, _ := h.src.snapshot()
	require.Equal(t, 3, ex)
	require.Len(t, h.dst.imports, 2, "one server import per import job")
}

func FuzzResourceLine(f *testing.F) {
	for _, seed := range []string{
		`{"resourceType":"SearchParameter","id":"sp-1","url":"http://x"}`,
		`{"resourceType":"Patient","id":"../../x"}`,
		`{"resourceType":"patient","id":"1"}`,
		`{"resourceType":"Patient","id":""}`,
		`{"resourceType":"Patient","id":"a"} trailing`,
		`[1,2]`, `null`, ``, `{"id":1}`, "{\"resourceType\":\"P\u0000\",\"id\":\"1\"}",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, line string) {
		e, ok := parseResourceLine(line)
		if !ok {
			return
		}
		if !typePattern.MatchString(e.Type) || !idPattern.MatchString(e.ID) {
			t.Fatalf("accepted %q/%q from %q", e.Type, e.ID, line)
		}
		if !json.Valid(e.Resource) {
			t.Fatalf("accepted a line that is not JSON: %q", line)
		}
	})
}

func FuzzErrorLine(f *testing.F) {
	for _, seed := range []string{
		`{"resourceType":"OperationOutcome","issue":[{"diagnostics":"Failed to process resource at line: 3"}]}`,
		`{"issue":[{"details":{"text":"x"}}]}`, `{"issue":7}`, "\xff\xfe", ``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		if got := outcomeText(line); len(got) > maxErrorMessage+3 {
			t.Fatalf("error message of %d bytes", len(got))
		}
	})
}

func TestFaultFailedExportJobIsExportedAgain(t *testing.T) {
	t.Parallel()
	h, src, _ := newFaultHarness(t, nil)
	failed := &fhir.Error{Op: "export status", StatusCode: 500,
		Message: "export operation failed for reason: the export storage account denied the write"}
	src.exportFaults = []statusFault{{err: failed}}
	m := h.start(`{` + endpoints + `,"types":["Patient"]}`)
	h.poll()
	h.clock.Advance(5 * time.Second)
	h.poll()
	j := h.get(m.ID).job("export-Patient")
	require.Equal(t, JobQueued, j.State, "a failed server job is not polled ten more times")
	require.Contains(t, j.Attempts[0].Abandoned, "export operation failed for reason: the export storage account denied the write")
	require.Equal(t, StatusCompleted, h.drive(m.ID, 10*time.Second, 20).Status)
	ex, _, _ := h.src.snapshot()
	require.Equal(t, 2, ex)

	// A failed import job answers the same for the same body: the migration fails with the server's reason.
	h2, _, dst := newFaultHarness(t, nil)
	dst.importFaults = []statusFault{{err: &fhir.Error{Op: "import status", StatusCode: 400,
		Message: "import operation failed for reason: input blob not found"}}}
	m2 := h2.start(`{` + endpoints + `,"types":["Patient"]}`)
	got := h2.drive(m2.ID, 10*time.Second, 20)
	require.Equal(t, StatusFailed, got.Status)
	require.Equal(t, "import_failed", got.Error.Code)
	require.Contains(t, got.Error.Message, "input blob not found")
}

func TestFaultRepeatedCrashesAtKickoffAreBounded(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *Config) { c.MaxAttempts = 2 })
	m := h.start(`{` + endpoints + `,"types":["Patient"]}`)
	h.src.onKickoff = func() error {
		h.store.set(func(s *hookStore) { s.failPuts = true })
		return errors.New("connection reset")
	}
	for range 2 {
		h.poll() // the handler dies after each kick-off, before saving the answer
		h.store.set(func(s *hookStore) { s.failPuts = false })
		h.clock.Advance(3 * time.Minute)
	}
	h.poll()
	got := h.get(m.ID)
	require.Equal(t, StatusFailed, got.Status)
	require.Contains(t, got.Error.Message, "2 kick-off attempts failed or were never answered")
	require.Equal(t, 2, got.job("export-Patient").Orphans, "the second orphan ends the job instead of a third kick-off")
	ex, _, _ := h.src.snapshot()
	require.Equal(t, 2, ex)
}

// An export the server finished before the deadline, whose next poll the backoff put after it, is asked before it
// is given up, and completes: the deadline is judged on the server's answer, not on the engine's last poll.
func TestExportPastTheDeadlineIsAskedBeforeItIsGivenUp(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *Config) {
		c.ExportDeadline = time.Hour
		c.PollInitial, c.PollMax = 45*time.Minute, 45*time.Minute
	})
	h.src.exportPending = 1
	m := h.start(`{` + endpoints + `,"types":["Patient"]}`)
	h.poll()
	h.clock.Advance(45 * time.Minute)
	h.poll() // 202: still running; the next poll is due at 90 minutes
	j := h.get(m.ID).job("export-Patient")
	require.Equal(t, JobRunning, j.State)
	require.True(t, j.NextPollAt.After(h.clock.Now().Add(30*time.Minute)), "the backoff leaves the deadline unpolled")

	h.clock.Advance(16 * time.Minute) // past the deadline; the server finished meanwhile
	h.poll()
	j = h.get(m.ID).job("export-Patient")
	require.Len(t, j.Attempts, 1, "not exported again")
	require.Empty(t, j.Attempts[0].Abandoned)
	require.Zero(t, j.Reexports)
	require.Equal(t, JobDone, j.State, "its answer, asked at once, was the finished export")
	_, _, canceled := h.src.snapshot()
	require.Empty(t, canceled)
}
