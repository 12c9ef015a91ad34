package fhirsim_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/fhirsim"
)

type importResult struct {
	TransactionTime string `json:"transactionTime"`
	Request         string `json:"request"`
	Output          []struct {
		Type     string `json:"type"`
		Count    int    `json:"count"`
		InputURL string `json:"inputUrl"`
	} `json:"output"`
	Error []struct {
		Type     string `json:"type"`
		Count    int    `json:"count"`
		InputURL string `json:"inputUrl"`
		URL      string `json:"url"`
	} `json:"error"`
}

func postImport(t *testing.T, dest *sim, body string) string {
	t.Helper()
	resp := dest.do(t, request{method: http.MethodPost, path: "/$import", headers: importHeaders(), body: body})
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	location := resp.Header.Get("Content-Location")
	require.True(t, strings.HasPrefix(location, dest.URL+"/_operations/import/"), location)
	return location
}

func TestExportedFilesImportIntoTheDestination(t *testing.T) {
	t.Parallel()
	const patients, seed = 3, 5
	source := startSim(t, fhirsim.WithStorage(azurite.ConnectionString), fhirsim.WithSeed(patients, seed),
		fhirsim.WithRollover(100), fhirsim.WithJobDelay(time.Millisecond), fhirsim.WithPollsBeforeDone(0))
	errContainer := uniqueName("errs")
	dest := startSim(t, fhirsim.WithFlavor(fhirsim.FlavorAHDS), fhirsim.WithStorage(azurite.ConnectionString),
		fhirsim.WithJobDelay(10*time.Millisecond), fhirsim.WithErrorContainer(errContainer))

	container := uniqueName("mig")
	m, _ := exportAll(t, source, url.Values{"_container": {container}}.Encode())

	var inputs []importInput
	var inputCounts []int
	exported := map[string]int{}
	for _, o := range m.Output {
		if o.Type == "SearchParameter" {
			continue // cannot be imported; copied by batch in a migration
		}
		inputs = append(inputs, importInput{Type: o.Type, URL: o.URL})
		inputCounts = append(inputCounts, o.Count)
		exported[o.Type] += o.Count
	}
	require.Len(t, exported, 5)

	good := `{"resourceType":"Patient","id":"extra-1","meta":{"versionId":"3","lastUpdated":"2021-05-06T07:08:09.123Z"}}`
	// Lines are numbered as the service's loader counts them (ImportResourceLoader.ReadLines): an empty line is
	// skipped without a number, a line of blanks is numbered and refused, \r\n ends a line like \n.
	bad := strings.Join([]string{
		good,
		"",
		`{"resourceType":"Patient","id":` + "\r", // not JSON (line 2)
		"  ",                                     // blanks (line 3)
		`{"resourceType":"Observation","id":"wrong-type","status":"final"}`, // line 4
		"\r",
		`{"resourceType":"Patient"}`, // no id (line 5)
	}, "\n") + "\n"
	badURL := uploadBlob(t, container, "hand-made/Patient-bad.ndjson", bad)
	inputs = append(inputs, importInput{Type: "Patient", URL: badURL})

	body := importBody("IncrementalLoad", inputs...)
	location := postImport(t, dest, body)
	require.Equal(t, location, postImport(t, dest, body), "an identical body registers the same job")

	final, raw, accepted := dest.pollDone(t, location)
	require.Equal(t, http.StatusOK, final.StatusCode, "%s", raw)
	require.GreaterOrEqual(t, accepted, fhirsim.DefaultPollsBeforeDone)
	var res importResult
	require.NoError(t, json.Unmarshal(raw, &res))
	require.Equal(t, dest.URL+"/$import", res.Request)

	loaded := map[string]int{}
	for _, o := range res.Output {
		loaded[o.Type] += o.Count
	}
	wantLoaded := map[string]int{}
	for k, v := range exported {
		wantLoaded[k] = v
	}
	wantLoaded["Patient"]++ // the good line of the hand-made file
	require.Equal(t, wantLoaded, loaded)

	require.Len(t, res.Error, 1)
	require.Equal(t, badURL, res.Error[0].InputURL)
	require.Equal(t, 4, res.Error[0].Count)
	require.True(t, strings.HasPrefix(res.Error[0].URL, azurite.BlobEndpoint+"/"+errContainer+"/"), res.Error[0].URL)
	errLines := readBlobURL(t, res.Error[0].URL)
	require.Len(t, errLines, 4)
	for i, wantLine := range []string{"line: 2 ", "line: 3 ", "line: 4 ", "line: 5 "} {
		var oo struct {
			ResourceType string
			Issue        []struct{ Diagnostics string }
		}
		require.NoError(t, json.Unmarshal([]byte(errLines[i]), &oo))
		require.Equal(t, "OperationOutcome", oo.ResourceType)
		require.Contains(t, oo.Issue[0].Diagnostics, wantLine)
	}

	// The destination now counts what was exported, per type and in total.
	total := 0
	for typ, n := range wantLoaded {
		require.Equal(t, n, dest.count(t, "/"+typ+"?_summary=count"), typ)
		total += n
	}
	require.Equal(t, total, dest.count(t, "/?_summary=count"))

	// IncrementalLoad keeps the version and lastUpdated it was given.
	var extra struct {
		Meta struct{ VersionID, LastUpdated string }
	}
	dest.getJSON(t, "/Patient/extra-1", &extra)
	require.Equal(t, "3", extra.Meta.VersionID)
	require.Equal(t, "2021-05-06T07:08:09.123Z", extra.Meta.LastUpdated)

	// Even a finished job is found again by an identical body; a finished job cannot be canceled.
	require.Equal(t, location, postImport(t, dest, body))
	require.Equal(t, http.StatusConflict, dest.do(t, request{method: http.MethodDelete, path: location}).StatusCode)
	require.Equal(t, 1, dest.Stats().ImportJobs)

	// Re-importing the same files under a new etag loads them again as already present (no errors).
	inputs[0].ETag = `"0x1"`
	again := postImport(t, dest, importBody("IncrementalLoad", inputs[0]))
	require.NotEqual(t, location, again)
	final, raw, _ = dest.pollDone(t, again)
	require.Equal(t, http.StatusOK, final.StatusCode)
	res = importResult{}
	require.NoError(t, json.Unmarshal(raw, &res))
	require.Empty(t, res.Error)
	require.Equal(t, inputCounts[0], res.Output[0].Count)
}

func TestImportInitialLoadAndCancel(t *testing.T) {
	t.Parallel()
	container, err := azurite.CreateContainer(t.Context(), "initial")
	require.NoError(t, err)
	now := time.Date(2025, 2, 3, 4, 5, 6, 0, time.UTC)
	dest := startSim(t, fhirsim.WithFlavor(fhirsim.FlavorAHDS), fhirsim.WithStorage(azurite.ConnectionString),
		fhirsim.WithInitialImportMode(true), fhirsim.WithJobDelay(time.Millisecond), fhirsim.WithPollsBeforeDone(0),
		fhirsim.WithClock(func() time.Time { return now }))

	u := uploadBlob(t, container, "Patient.ndjson",
		`{"resourceType":"Patient","id":"p1","meta":{"versionId":"7","lastUpdated":"2020-01-01T00:00:00Z"}}`+"\n")
	final, raw, _ := dest.pollDone(t, postImport(t, dest, importBody("InitialLoad", importInput{Type: "Patient", URL: u})))
	require.Equal(t, http.StatusOK, final.StatusCode, "%s", raw)
	var p struct {
		Meta struct{ VersionID, LastUpdated string }
	}
	dest.getJSON(t, "/Patient/p1", &p)
	require.Equal(t, "1", p.Meta.VersionID, "InitialLoad sets versionId 1")
	require.Equal(t, "2025-02-03T04:05:06.000Z", p.Meta.LastUpdated, "InitialLoad sets lastUpdated to now")

	// The same file again (new etag): the id exists, so the line fails.
	final, raw, _ = dest.pollDone(t, postImport(t, dest, importBody("InitialLoad", importInput{Type: "Patient", URL: u, ETag: `"2"`})))
	require.Equal(t, http.StatusOK, final.StatusCode)
	var res importResult
	require.NoError(t, json.Unmarshal(raw, &res))
	require.Len(t, res.Error, 1)
	require.Equal(t, 1, res.Error[0].Count)

	// Writes through the API are locked while initial import mode is on.
	resp := dest.do(t, request{method: http.MethodPost, path: "/", headers: map[string]string{"Content-Type": "application/fhir+json"},
		body: `{"resourceType":"Bundle","type":"batch","entry":[]}`})
	require.Equal(t, http.StatusLocked, resp.StatusCode)

	slow := startSim(t, fhirsim.WithFlavor(fhirsim.FlavorAHDS), fhirsim.WithStorage(azurite.ConnectionString),
		fhirsim.WithJobDelay(time.Hour))
	location := postImport(t, slow, importBody("", importInput{URL: u}))
	require.Equal(t, http.StatusAccepted, slow.do(t, request{method: http.MethodDelete, path: location}).StatusCode)
	resp = slow.do(t, request{path: location})
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	var oo struct {
		Issue []struct{ Diagnostics string }
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&oo))
	require.Equal(t, "User requested cancellation of operation.", oo.Issue[0].Diagnostics)
	require.Equal(t, http.StatusConflict, slow.do(t, request{method: http.MethodDelete, path: location}).StatusCode)
}

func TestImportOfMissingBlobFailsTheJob(t *testing.T) {
	t.Parallel()
	dest := startSim(t, fhirsim.WithFlavor(fhirsim.FlavorAHDS), fhirsim.WithStorage(azurite.ConnectionString),
		fhirsim.WithJobDelay(time.Millisecond), fhirsim.WithPollsBeforeDone(0))
	location := postImport(t, dest, importBody("", importInput{URL: azurite.BlobEndpoint + "/" + uniqueName("none") + "/Patient.ndjson"}))
	final, raw, _ := dest.pollDone(t, location)
	require.Equal(t, http.StatusBadRequest, final.StatusCode)
	require.Contains(t, string(raw), "import operation failed for reason")
}

// TestImportStatusAnswers202WithAPartialResult: once the job's work is done but its polls are not, a status
// answer is 202 with a partial result body, as the service answers while processing jobs finish.
func TestImportStatusAnswers202WithAPartialResult(t *testing.T) {
	t.Parallel()
	container, err := azurite.CreateContainer(t.Context(), "partial")
	require.NoError(t, err)
	a := uploadBlob(t, container, "Patient-1.ndjson", `{"resourceType":"Patient","id":"p1"}`+"\n")
	b := uploadBlob(t, container, "Patient-2.ndjson", `{"resourceType":"Patient","id":"p2"}`+"\n")
	dest := startSim(t, fhirsim.WithFlavor(fhirsim.FlavorAHDS), fhirsim.WithStorage(azurite.ConnectionString),
		fhirsim.WithJobDelay(time.Millisecond), fhirsim.WithPollsBeforeDone(50))
	location := postImport(t, dest, importBody("IncrementalLoad", importInput{Type: "Patient", URL: a}, importInput{Type: "Patient", URL: b}))
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp := dest.do(t, request{path: location})
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.Equal(t, http.StatusAccepted, resp.StatusCode, "%s", body)
		if len(body) > 0 {
			var partial importResult
			require.NoError(t, json.Unmarshal(body, &partial))
			require.Len(t, partial.Output, 1, "half of the inputs")
			return
		}
		require.True(t, time.Now().Before(deadline), "no partial result answered")
		time.Sleep(5 * time.Millisecond) // pacing the poll loop, not an assertion
	}
}
