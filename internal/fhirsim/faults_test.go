package fhirsim_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/fhirsim"
)

func TestParseFaults(t *testing.T) {
	t.Parallel()
	cases := []struct {
		spec    string
		want    fhirsim.Faults
		wantErr string
	}{
		{spec: "", want: fhirsim.Faults{}},
		{spec: "  ", want: fhirsim.Faults{}},
		{spec: "kickoff-429=0.2", want: fhirsim.Faults{"kickoff-429": 0.2}},
		{spec: " status-500 = 1 , import-drop=0,early-200=0.05", want: fhirsim.Faults{"status-500": 1, "import-drop": 0, "early-200": 0.05}},
		{spec: "drop-conn=1e-1", want: fhirsim.Faults{"drop-conn": 0.1}},
		{spec: "kickoff-492=0.1", wantErr: `unknown fault "kickoff-492"`},
		{spec: "status-500=often", wantErr: `fault "status-500": probability "often"`},
		{spec: "status-500=1.5", wantErr: `probability "1.5"`},
		{spec: "status-500=-0.1", wantErr: `probability "-0.1"`},
		{spec: "status-500=NaN", wantErr: `probability "NaN"`},
		{spec: "status-500=", wantErr: `probability ""`},
		{spec: "status-500", wantErr: `fault "status-500": want name=probability`},
		{spec: "status-500=0.1,", wantErr: `fault "": want name=probability`},
		{spec: "=0.1", wantErr: "want name=probability"},
		{spec: "export-fail=0.1,export-fail=0.2", wantErr: `fault "export-fail" is given twice`},
	}
	for _, tc := range cases {
		t.Run(tc.spec, func(t *testing.T) {
			t.Parallel()
			got, err := fhirsim.ParseFaults(tc.spec)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
			again, err := fhirsim.ParseFaults(got.String())
			require.NoError(t, err, "String() must parse back")
			require.Equal(t, got, again)
		})
	}
}

func TestFaultNamesAreTheContract(t *testing.T) {
	t.Parallel()
	require.Equal(t, []string{"drop-conn", "early-200", "export-cancel", "export-fail", "export-stall", "import-busy",
		"import-drop", "import-hold", "import-line-errors", "kickoff-429", "status-500", "status-503", "write-race"}, fhirsim.FaultNames())
	for _, name := range fhirsim.FaultNames() {
		f, err := fhirsim.ParseFaults(name + "=1")
		require.NoError(t, err)
		require.NoError(t, f.Validate())
	}
	require.ErrorContains(t, fhirsim.Faults{"nope": 1}.Validate(), "nope")
	require.ErrorContains(t, fhirsim.Faults{"drop-conn": 2}.Validate(), "drop-conn")
}

// faulty starts a simulator of the flavor with one fault at probability p and a fixed seed.
func faulty(t *testing.T, flavor fhirsim.Flavor, faults string, opts ...fhirsim.Option) *sim {
	t.Helper()
	f, err := fhirsim.ParseFaults(faults)
	require.NoError(t, err)
	base := []fhirsim.Option{fhirsim.WithFlavor(flavor), fhirsim.WithStorage(azurite.ConnectionString),
		fhirsim.WithFaults(f), fhirsim.WithFaultSeed(42), fhirsim.WithJobDelay(time.Millisecond), fhirsim.WithPollsBeforeDone(0)}
	return startSim(t, append(base, opts...)...)
}

func kickOffExport(t *testing.T, s *sim, query string) string {
	t.Helper()
	resp := s.do(t, request{path: "/$export?" + query, headers: exportHeaders()})
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	return resp.Header.Get("Content-Location")
}

// outcomeText decodes an OperationOutcome answer and returns its first diagnostics.
func outcomeText(t *testing.T, resp *http.Response) string {
	t.Helper()
	require.Contains(t, resp.Header.Get("Content-Type"), "application/fhir+json")
	var oo struct {
		ResourceType string
		Issue        []struct{ Diagnostics string }
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&oo))
	require.Equal(t, "OperationOutcome", oo.ResourceType)
	require.NotEmpty(t, oo.Issue)
	return oo.Issue[0].Diagnostics
}

// importFile uploads NDJSON lines of Patients p-0..p-{n-1} and returns the blob URL.
func importFile(t *testing.T, n int) string {
	t.Helper()
	container, err := azurite.CreateContainer(t.Context(), "faults")
	require.NoError(t, err)
	var b strings.Builder
	for i := range n {
		b.WriteString(`{"resourceType":"Patient","id":"p-` + strconv.Itoa(i) + `","meta":{"versionId":"1","lastUpdated":"2021-01-01T00:00:00Z"}}` + "\n")
	}
	return uploadBlob(t, container, "Patient-1.ndjson", b.String())
}

func TestFaultKickoff429(t *testing.T) {
	t.Parallel()
	source := faulty(t, fhirsim.FlavorAPIForFHIR, "kickoff-429=1", fhirsim.WithSeed(1, 1))
	dest := faulty(t, fhirsim.FlavorAHDS, "kickoff-429=1")

	// A bad request is still a 400.
	bad := source.do(t, request{path: "/$export?_until=2024-01-01", headers: exportHeaders()})
	require.Equal(t, http.StatusBadRequest, bad.StatusCode)

	first := source.do(t, request{path: "/$export", headers: exportHeaders()})
	require.Equal(t, http.StatusTooManyRequests, first.StatusCode)
	require.Equal(t, "1", first.Header.Get("Retry-After"))
	require.Equal(t, "1000", first.Header.Get("x-ms-retry-after-ms"))
	require.Empty(t, first.Header.Get("Content-Location"))
	outcomeText(t, first)

	second := source.do(t, request{path: "/$export", headers: exportHeaders()})
	require.Equal(t, http.StatusTooManyRequests, second.StatusCode)
	at, err := http.ParseTime(second.Header.Get("Retry-After"))
	require.NoError(t, err, "the second Retry-After is an HTTP-date: %q", second.Header.Get("Retry-After"))
	require.True(t, at.After(time.Now().Add(-time.Minute)))

	st := source.Stats()
	require.Zero(t, st.ExportJobs, "no job is created")
	require.Equal(t, map[string]int{"kickoff-429": 2}, st.FaultsInjected)

	u := importFile(t, 1)
	resp := dest.do(t, request{method: http.MethodPost, path: "/$import", headers: importHeaders(), body: importBody("FastLoad", importInput{URL: u})})
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	resp = dest.do(t, request{method: http.MethodPost, path: "/$import", headers: importHeaders(), body: importBody("", importInput{URL: u})})
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	require.NotEmpty(t, resp.Header.Get("Retry-After"))
	require.Zero(t, dest.Stats().ImportJobs)
}

func TestFaultStatus500(t *testing.T) {
	t.Parallel()
	source := faulty(t, fhirsim.FlavorAPIForFHIR, "status-500=1", fhirsim.WithSeed(1, 1))
	location := kickOffExport(t, source, "_type=Patient")
	resp := source.do(t, request{path: location})
	require.Equal(t, http.StatusInternalServerError, resp.StatusCode)
	require.NotContains(t, outcomeText(t, resp), "export operation failed")
	// An unknown job is still a 404.
	require.Equal(t, http.StatusNotFound, source.do(t, request{path: "/_operations/export/nope"}).StatusCode)
	require.Equal(t, 1, source.Stats().FaultsInjected["status-500"])

	dest := faulty(t, fhirsim.FlavorAHDS, "status-500=1")
	location = postImport(t, dest, importBody("", importInput{URL: importFile(t, 1)}))
	require.Equal(t, http.StatusInternalServerError, dest.do(t, request{path: location}).StatusCode)
}

func TestFaultStatus503(t *testing.T) {
	t.Parallel()
	source := faulty(t, fhirsim.FlavorAPIForFHIR, "status-503=1", fhirsim.WithSeed(1, 1))
	location := kickOffExport(t, source, "_type=Patient")
	var retryAfter []bool
	for range 4 {
		resp := source.do(t, request{path: location})
		require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
		outcomeText(t, resp)
		retryAfter = append(retryAfter, resp.Header.Get("Retry-After") != "")
	}
	require.Equal(t, []bool{true, false, true, false}, retryAfter, "Retry-After on every other 503")
	require.Equal(t, 4, source.Stats().FaultsInjected["status-503"])
}

// fetchFully makes a request on a connection of its own and reports whether a complete answer arrived.
func fetchFully(t *testing.T, s *sim, req request) (int, error) {
	t.Helper()
	r, err := http.NewRequestWithContext(t.Context(), http.MethodGet, s.URL+req.path, nil)
	require.NoError(t, err)
	r.Header.Set("Authorization", "Bearer "+fhirsim.DevToken(s.URL))
	for k, v := range req.headers {
		r.Header.Set(k, v)
	}
	tr := &http.Transport{DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	resp, err := (&http.Client{Transport: tr}).Do(r)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, err = io.ReadAll(resp.Body)
	return resp.StatusCode, err
}

func TestFaultDropConn(t *testing.T) {
	t.Parallel()
	source := faulty(t, fhirsim.FlavorAPIForFHIR, "drop-conn=1", fhirsim.WithSeed(1, 1))

	// The kick-off took effect, but its answer (with the Content-Location) never arrived: an orphan job.
	_, err := fetchFully(t, source, request{path: "/$export", headers: exportHeaders()})
	require.Error(t, err)
	require.Equal(t, 1, source.Stats().ExportJobs)

	// The next drop cuts the body instead of the headers; either way no complete answer arrives.
	_, err = fetchFully(t, source, request{path: "/metadata"})
	require.Error(t, err)

	// A 4xx is never dropped.
	status, err := fetchFully(t, source, request{path: "/$export?_foo=1", headers: exportHeaders()})
	require.NoError(t, err)
	require.Equal(t, http.StatusBadRequest, status)

	st := source.Stats()
	require.Equal(t, 2, st.FaultsInjected["drop-conn"])
	require.Equal(t, map[int]int{http.StatusBadRequest: 1}, st.Requests, "dropped answers are not counted as answered")
}

func TestFaultExportFail(t *testing.T) {
	t.Parallel()
	source := faulty(t, fhirsim.FlavorAPIForFHIR, "export-fail=1", fhirsim.WithSeed(1, 1))
	final, body, _ := source.pollDone(t, kickOffExport(t, source, "_type=Patient"))
	require.Equal(t, http.StatusInternalServerError, final.StatusCode)
	require.Contains(t, string(body), "export operation failed for reason: ")
	require.Contains(t, string(body), `"resourceType":"OperationOutcome"`)
	require.Equal(t, 1, source.Stats().FaultsInjected["export-fail"])
}

func TestFaultExportStall(t *testing.T) {
	t.Parallel()
	stalled := faulty(t, fhirsim.FlavorAPIForFHIR, "export-stall=1", fhirsim.WithSeed(1, 1))
	healthy := faulty(t, fhirsim.FlavorAPIForFHIR, "", fhirsim.WithSeed(1, 1))
	location := kickOffExport(t, stalled, "_type=Patient")

	// The same job on a healthy simulator finishes...
	final, _, _ := healthy.pollDone(t, kickOffExport(t, healthy, "_type=Patient"))
	require.Equal(t, http.StatusOK, final.StatusCode)
	// ...while the stalled one keeps answering 202.
	for range 5 {
		require.Equal(t, http.StatusAccepted, stalled.do(t, request{path: location}).StatusCode)
	}
	// The way out is cancel and re-queue.
	require.Equal(t, http.StatusAccepted, stalled.do(t, request{method: http.MethodDelete, path: location}).StatusCode)
	require.Equal(t, http.StatusNotFound, stalled.do(t, request{path: location}).StatusCode)
	require.Equal(t, 1, stalled.Stats().FaultsInjected["export-stall"])
}

func sumCounts(m manifest) (files, resources int) {
	for _, o := range m.Output {
		files++
		resources += o.Count
	}
	return files, resources
}

func observationsOf(t *testing.T, patients int, seed int64) []string {
	t.Helper()
	var ids []string
	for _, g := range generatedSet(t, patients, seed) {
		if g.Type == "Observation" {
			ids = append(ids, g.Type+"/"+g.ID)
		}
	}
	slices.Sort(ids)
	return ids
}

func TestFaultExportCancel(t *testing.T) {
	t.Parallel()
	source := faulty(t, fhirsim.FlavorAPIForFHIR, "export-cancel=1", fhirsim.WithSeed(2, 3), fhirsim.WithRollover(25))
	all := observationsOf(t, 2, 3)
	require.Greater(t, len(all), 50)

	query := url.Values{"_type": {"Observation"}}.Encode()
	m, _ := exportAll(t, source, query) // 200 with a well-formed manifest, like a success
	_, n := sumCounts(m)
	require.Equal(t, len(all)/2, n, "half the resources were written before the cancel")
	got := exportedIDs(t, m)
	for _, id := range got {
		require.Contains(t, all, id)
	}
	require.Equal(t, 1, source.Stats().FaultsInjected["export-cancel"])
}

func TestFaultEarly200(t *testing.T) {
	t.Parallel()
	source := faulty(t, fhirsim.FlavorAPIForFHIR, "early-200=1", fhirsim.WithSeed(2, 3), fhirsim.WithRollover(10))
	all := observationsOf(t, 2, 3)
	location := kickOffExport(t, source, "_type=Observation")

	decode := func(body []byte) manifest {
		var m manifest
		require.NoError(t, json.Unmarshal(body, &m))
		return m
	}
	final, body, _ := source.pollDone(t, location)
	require.Equal(t, http.StatusOK, final.StatusCode)
	early := decode(body)
	final, body, accepted := source.pollDone(t, location)
	require.Equal(t, http.StatusOK, final.StatusCode)
	require.Zero(t, accepted, "after the early 200 the job answers 200")
	full := decode(body)

	earlyFiles, earlyCount := sumCounts(early)
	fullFiles, fullCount := sumCounts(full)
	require.Less(t, earlyFiles, fullFiles)
	require.Less(t, earlyCount, fullCount)
	require.Equal(t, len(all), fullCount)
	require.Equal(t, all, exportedIDs(t, full))
	require.Equal(t, early.TransactionTime, full.TransactionTime, "the bodies look alike")
}

func TestFaultImportHold(t *testing.T) {
	t.Parallel()
	u := importFile(t, 2)

	// A short hold: the completed status answers 200 after it.
	short := faulty(t, fhirsim.FlavorAHDS, "import-hold=1", fhirsim.WithImportHold(20*time.Millisecond))
	final, raw, _ := short.pollDone(t, postImport(t, short, importBody("", importInput{URL: u})))
	require.Equal(t, http.StatusOK, final.StatusCode, "%s", raw)
	require.Equal(t, 1, short.Stats().FaultsInjected["import-hold"])

	// A long hold keeps the call open until the simulator stops.
	long := faulty(t, fhirsim.FlavorAHDS, "import-hold=1", fhirsim.WithImportHold(time.Hour))
	t.Cleanup(long.Close) // runs first: never leave a held call for the server's own cleanup to wait on
	location := postImport(t, long, importBody("", importInput{URL: u}))
	type answer struct {
		status int
		err    error
	}
	answered := make(chan answer, 1)
	go func() {
		r, err := http.NewRequest(http.MethodGet, location, nil)
		if err != nil {
			answered <- answer{err: err}
			return
		}
		r.Header.Set("Authorization", "Bearer "+fhirsim.DevToken(long.URL))
		// Poll until the job completes; the completed answer is the held one.
		for range 2000 {
			resp, err := http.DefaultClient.Do(r)
			if err != nil {
				answered <- answer{err: err}
				return
			}
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusAccepted {
				answered <- answer{status: resp.StatusCode}
				return
			}
			time.Sleep(5 * time.Millisecond) // pacing the poll loop, not an assertion
		}
		answered <- answer{err: io.ErrUnexpectedEOF}
	}()
	require.Eventually(t, func() bool { return long.Stats().FaultsInjected["import-hold"] == 1 }, 20*time.Second, 5*time.Millisecond)
	// The simulator still serves other calls meanwhile, and the held call has not been answered.
	require.Equal(t, http.StatusOK, long.do(t, request{path: "/metadata"}).StatusCode)
	select {
	case a := <-answered:
		t.Fatalf("the held status call was answered: %+v", a)
	default:
	}
	long.Close() // releases the hold
	a := <-answered
	require.NoError(t, a.err)
	require.Equal(t, http.StatusOK, a.status)
}

func TestFaultImportLineErrors(t *testing.T) {
	t.Parallel()
	errContainer := uniqueName("errs")
	dest := faulty(t, fhirsim.FlavorAHDS, "import-line-errors=1", fhirsim.WithErrorContainer(errContainer))
	u := importFile(t, 3)
	final, raw, _ := dest.pollDone(t, postImport(t, dest, importBody("", importInput{Type: "Patient", URL: u})))
	require.Equal(t, http.StatusOK, final.StatusCode)
	var res importResult
	require.NoError(t, json.Unmarshal(raw, &res))
	require.Len(t, res.Output, 1)
	require.Zero(t, res.Output[0].Count)
	require.Len(t, res.Error, 1)
	require.Equal(t, 3, res.Error[0].Count)
	require.Equal(t, u, res.Error[0].InputURL)
	lines := readBlobURL(t, res.Error[0].URL)
	require.Len(t, lines, 3)
	for i, l := range lines {
		var oo struct {
			ResourceType string
			Issue        []struct{ Diagnostics string }
		}
		require.NoError(t, json.Unmarshal([]byte(l), &oo))
		require.Equal(t, "OperationOutcome", oo.ResourceType)
		require.Contains(t, oo.Issue[0].Diagnostics, "Failed to process resource at line: "+strconv.Itoa(i+1))
	}
	require.Zero(t, dest.count(t, "/Patient?_summary=count"), "failed lines are not stored")
	require.Equal(t, 3, dest.Stats().FaultsInjected["import-line-errors"])
}

func TestFaultImportBusy(t *testing.T) {
	t.Parallel()
	dest := faulty(t, fhirsim.FlavorAHDS, "import-busy=1")
	u := importFile(t, 1)
	resp := dest.do(t, request{method: http.MethodPost, path: "/$import", headers: importHeaders(), body: importBody("", importInput{URL: u + "?sig=x"})})
	require.Equal(t, http.StatusBadRequest, resp.StatusCode, "a bad request is still a 400")
	resp = dest.do(t, request{method: http.MethodPost, path: "/$import", headers: importHeaders(), body: importBody("", importInput{URL: u})})
	require.Equal(t, http.StatusLocked, resp.StatusCode)
	require.Empty(t, resp.Header.Get("Content-Location"))
	require.NotEmpty(t, outcomeText(t, resp))
	st := dest.Stats()
	require.Zero(t, st.ImportJobs)
	require.Equal(t, map[string]int{"import-busy": 1}, st.FaultsInjected)
}

func TestFaultImportDrop(t *testing.T) {
	t.Parallel()
	const n = 40
	dest := faulty(t, fhirsim.FlavorAHDS, "import-drop=0.5")
	final, raw, _ := dest.pollDone(t, postImport(t, dest, importBody("", importInput{Type: "Patient", URL: importFile(t, n)})))
	require.Equal(t, http.StatusOK, final.StatusCode)
	var res importResult
	require.NoError(t, json.Unmarshal(raw, &res))
	require.Equal(t, n, res.Output[0].Count, "dropped resources are reported as imported")
	require.Empty(t, res.Error)

	st := dest.Stats()
	require.NotEmpty(t, st.DroppedResources)
	require.Less(t, len(st.DroppedResources), n)
	require.Equal(t, len(st.DroppedResources), st.FaultsInjected["import-drop"])
	require.Equal(t, n-len(st.DroppedResources), dest.count(t, "/Patient?_summary=count"))
	for i := range n {
		key := "Patient/p-" + strconv.Itoa(i)
		want := http.StatusOK
		if slices.Contains(st.DroppedResources, key) {
			want = http.StatusNotFound
		}
		require.Equal(t, want, dest.do(t, request{path: "/" + key}).StatusCode, key)
	}
}

func TestMaxImports(t *testing.T) {
	t.Parallel()
	dest := startSim(t, fhirsim.WithFlavor(fhirsim.FlavorAHDS), fhirsim.WithStorage(azurite.ConnectionString),
		fhirsim.WithJobDelay(time.Hour), fhirsim.WithMaxImports(1))
	u := importFile(t, 1)
	first := importBody("", importInput{URL: u})
	second := importBody("", importInput{URL: u, ETag: `"2"`})
	location := postImport(t, dest, first)

	resp := dest.do(t, request{method: http.MethodPost, path: "/$import", headers: importHeaders(), body: second})
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	require.NotEmpty(t, resp.Header.Get("Retry-After"))
	require.Equal(t, location, postImport(t, dest, first), "the running job's own body is not throttled")

	require.Equal(t, http.StatusAccepted, dest.do(t, request{method: http.MethodDelete, path: location}).StatusCode)
	require.NotEqual(t, location, postImport(t, dest, second), "a slot is free again")
	st := dest.Stats()
	require.Equal(t, 1, st.ImportsThrottled)
	require.Equal(t, 2, st.ImportJobs)
}

func TestFaultSeedMakesRollsRepeatable(t *testing.T) {
	t.Parallel()
	sequence := func(seed int64) []int {
		s := startSim(t, fhirsim.WithStorage(azurite.ConnectionString), fhirsim.WithSeed(1, 1),
			fhirsim.WithFaults(fhirsim.Faults{fhirsim.FaultStatus500: 0.5}), fhirsim.WithFaultSeed(seed),
			fhirsim.WithJobDelay(time.Hour))
		location := kickOffExport(t, s, "_type=Patient")
		var codes []int
		for range 24 {
			codes = append(codes, s.do(t, request{path: location}).StatusCode)
		}
		require.Equal(t, seed, s.Stats().FaultSeed)
		return codes
	}
	a := sequence(7)
	require.Equal(t, a, sequence(7))
	require.Contains(t, a, http.StatusInternalServerError)
	require.Contains(t, a, http.StatusAccepted)
	require.NotEqual(t, a, sequence(8))
}

func TestFaultsNeverHideABadRequest(t *testing.T) {
	t.Parallel()
	every := make([]string, 0, len(fhirsim.FaultNames()))
	for _, name := range fhirsim.FaultNames() {
		every = append(every, name+"=1")
	}
	all := strings.Join(every, ",")
	source := faulty(t, fhirsim.FlavorAPIForFHIR, all)
	dest := faulty(t, fhirsim.FlavorAHDS, all)
	u := importFile(t, 1)
	cases := []struct {
		target *sim
		req    request
		status int
	}{
		{source, request{path: "/$export", headers: map[string]string{"Accept": "application/json", "Prefer": "respond-async"}}, 400},
		{source, request{path: "/$export?_elements=id", headers: exportHeaders()}, 400},
		{source, request{path: "/_operations/export/nope"}, 404},
		{source, request{path: "/$export", headers: exportHeaders(), noAuth: true}, 401},
		{dest, request{method: http.MethodPost, path: "/$import", headers: importHeaders(), body: importBody("", importInput{URL: u}, importInput{URL: u})}, 400},
		{dest, request{method: http.MethodPost, path: "/$import", headers: importHeaders(), body: `{"resourceType":"Bundle"}`}, 400},
		{dest, request{path: "/_operations/import/nope"}, 404},
	}
	for _, tc := range cases {
		resp := tc.target.do(t, tc.req)
		require.Equal(t, tc.status, resp.StatusCode, "%s %s", tc.req.method, tc.req.path)
		outcomeText(t, resp)
	}
	require.Empty(t, source.Stats().FaultsInjected)
	require.Empty(t, dest.Stats().FaultsInjected)
}

func TestSimStatsEndpoint(t *testing.T) {
	t.Parallel()
	dest := faulty(t, fhirsim.FlavorAHDS, "import-busy=1")
	resp := dest.do(t, request{method: http.MethodPost, path: "/$import", headers: importHeaders(), body: importBody("", importInput{URL: importFile(t, 1)})})
	require.Equal(t, http.StatusLocked, resp.StatusCode)

	resp = dest.do(t, request{path: "/_sim/stats", noAuth: true})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var st struct {
		ExportJobs       *int           `json:"exportJobs"`
		ImportJobs       *int           `json:"importJobs"`
		Requests         map[string]int `json:"requests"`
		FaultSeed        int64          `json:"faultSeed"`
		FaultsInjected   map[string]int `json:"faultsInjected"`
		ImportsThrottled *int           `json:"importsThrottled"`
		DroppedResources []string       `json:"droppedResources"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&st))
	require.NotNil(t, st.ExportJobs)
	require.NotNil(t, st.ImportJobs)
	require.NotNil(t, st.ImportsThrottled)
	require.Equal(t, map[string]int{"423": 1}, st.Requests)
	require.EqualValues(t, 42, st.FaultSeed)
	require.Equal(t, map[string]int{"import-busy": 1}, st.FaultsInjected)
	require.NotNil(t, st.DroppedResources)

	require.Equal(t, http.StatusMethodNotAllowed, dest.do(t, request{method: http.MethodPost, path: "/_sim/stats", noAuth: true}).StatusCode)
}

// TestSimStatsDescribeEveryJob: every export and import job is listed with its query or inputs, its files, and
// how often its Content-Location was asked about: what a chaos run checks the engine against.
func TestSimStatsDescribeEveryJob(t *testing.T) {
	t.Parallel()
	source := startSim(t, fhirsim.WithStorage(azurite.ConnectionString), fhirsim.WithSeed(2, 3),
		fhirsim.WithJobDelay(time.Millisecond), fhirsim.WithPollsBeforeDone(0))
	polled, _ := exportAll(t, source, "_type=Patient&_container="+uniqueName("stats"))
	resp := source.do(t, request{path: "/$export?_type=Observation&_container=" + uniqueName("stats"), headers: exportHeaders()})
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	never := resp.Header.Get("Content-Location")

	st := source.Stats()
	require.Len(t, st.Exports, 2)
	first, second := st.Exports[0], st.Exports[1]
	require.Contains(t, first.Query, "_type=Patient")
	require.Positive(t, first.Gets)
	require.Equal(t, "completed", first.State)
	require.Len(t, first.Output, len(polled.Output))
	require.Equal(t, polled.Output[0].URL, first.Output[0])
	require.Zero(t, second.Gets, "never asked about")
	require.True(t, strings.HasSuffix(never, "/"+second.ID))

	require.Equal(t, http.StatusAccepted, source.do(t, request{method: http.MethodDelete, path: never}).StatusCode)
	require.Equal(t, 1, source.Stats().Exports[1].Deletes)

	dest := startSim(t, fhirsim.WithFlavor(fhirsim.FlavorAHDS), fhirsim.WithStorage(azurite.ConnectionString),
		fhirsim.WithJobDelay(time.Millisecond))
	location := postImport(t, dest, importBody("IncrementalLoad", importInput{Type: "Patient", URL: first.Output[0]}))
	dest.pollDone(t, location)
	imp := dest.Stats().Imports
	require.Len(t, imp, 1)
	require.Equal(t, []string{first.Output[0]}, imp[0].Inputs)
	require.Positive(t, imp[0].Gets)
}
