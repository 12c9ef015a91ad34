package fhirsim_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/fhirsim"
)

type manifest struct {
	TransactionTime     string `json:"transactionTime"`
	Request             string `json:"request"`
	RequiresAccessToken bool   `json:"requiresAccessToken"`
	Output              []struct {
		Type  string `json:"type"`
		URL   string `json:"url"`
		Count int    `json:"count"`
	} `json:"output"`
	Error  []any `json:"error"`
	Issues []any `json:"issues"`
}

// exportAll kicks off an export, polls it to the end and returns the manifest and the number of 202 answers.
func exportAll(t *testing.T, source *sim, query string) (manifest, int) {
	t.Helper()
	resp := source.do(t, request{path: "/$export?" + query, headers: exportHeaders()})
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	location := resp.Header.Get("Content-Location")
	require.True(t, strings.HasPrefix(location, source.URL+"/_operations/export/"), location)

	final, body, accepted := source.pollDone(t, location)
	require.Equal(t, http.StatusOK, final.StatusCode, "%s", body)
	require.Contains(t, final.Header.Get("Content-Type"), "application/json")
	var m manifest
	require.NoError(t, json.Unmarshal(body, &m))
	require.Equal(t, source.URL+"/$export?"+query, m.Request)
	require.NotNil(t, m.Error)
	require.NotNil(t, m.Issues)
	require.False(t, m.RequiresAccessToken)
	return m, accepted
}

// exportedIDs downloads every output file and returns Type/id of each line, checking each file's count.
func exportedIDs(t *testing.T, m manifest) []string {
	t.Helper()
	var ids []string
	for _, o := range m.Output {
		lines := readBlobURL(t, o.URL)
		require.Len(t, lines, o.Count, o.URL)
		for _, l := range lines {
			var r struct{ ResourceType, ID string }
			require.NoError(t, json.Unmarshal([]byte(l), &r))
			require.Equal(t, o.Type, r.ResourceType)
			ids = append(ids, r.ResourceType+"/"+r.ID)
		}
	}
	slices.Sort(ids)
	return ids
}

func TestExportWritesExactlyTheSelectedResources(t *testing.T) {
	t.Parallel()
	const patients, seed = 4, 7
	source := startSim(t, fhirsim.WithStorage(azurite.ConnectionString), fhirsim.WithSeed(patients, seed),
		fhirsim.WithRollover(40), fhirsim.WithJobDelay(20*time.Millisecond))
	since := time.Date(2022, 3, 1, 0, 0, 0, 0, time.UTC)
	container := uniqueName("exp")

	query := url.Values{"_type": {"Observation,Patient"}, "_since": {since.Format(time.RFC3339)}, "_container": {container}}.Encode()
	m, accepted := exportAll(t, source, query)
	require.GreaterOrEqual(t, accepted, fhirsim.DefaultPollsBeforeDone)

	var want []string
	for _, g := range generatedSet(t, patients, seed) {
		if (g.Type == "Observation" || g.Type == "Patient") && !g.LastUpdated.Before(since) {
			want = append(want, g.Type+"/"+g.ID)
		}
	}
	slices.Sort(want)
	require.Equal(t, want, exportedIDs(t, m))

	files := map[string]int{}
	for _, o := range m.Output {
		files[o.Type]++
		require.LessOrEqual(t, o.Count, 40)
		require.Regexp(t, `^`+azurite.BlobEndpoint+`/`+container+`/\d{8}T\d{6}-[0-9a-f]+/`+o.Type+`-\d+\.ndjson$`, o.URL)
	}
	require.Greater(t, files["Observation"], 1, "rollover must split Observation into several files")
}

func TestExportTypeFilterTillAndDefaultContainer(t *testing.T) {
	t.Parallel()
	const patients, seed = 2, 11
	source := startSim(t, fhirsim.WithStorage(azurite.ConnectionString), fhirsim.WithSeed(patients, seed),
		fhirsim.WithJobDelay(time.Millisecond), fhirsim.WithPollsBeforeDone(0))
	till := time.Date(2024, 6, 30, 0, 0, 0, 0, time.UTC)
	query := url.Values{
		"_type":       {"Observation,Encounter"},
		"_typeFilter": {"Observation?status=amended,Observation?status=preliminary"},
		"_till":       {till.Format(time.RFC3339)},
	}.Encode()
	m, _ := exportAll(t, source, query)

	var want []string
	for _, g := range generatedSet(t, patients, seed) {
		if g.LastUpdated.After(till) {
			continue
		}
		if g.Type == "Encounter" || g.Type == "Observation" && (g.Status == "amended" || g.Status == "preliminary") {
			want = append(want, g.Type+"/"+g.ID)
		}
	}
	slices.Sort(want)
	require.NotEmpty(t, want)
	require.Equal(t, want, exportedIDs(t, m))
	for _, o := range m.Output {
		require.Regexp(t, `^`+azurite.BlobEndpoint+`/export-[0-9a-f]+/`+o.Type+`-1\.ndjson$`, o.URL)
	}
}

func TestExportCancel(t *testing.T) {
	t.Parallel()
	source := startSim(t, fhirsim.WithStorage(azurite.ConnectionString), fhirsim.WithSeed(1, 1),
		fhirsim.WithJobDelay(time.Hour))
	resp := source.do(t, request{path: "/$export", headers: exportHeaders()})
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	location := resp.Header.Get("Content-Location")

	require.Equal(t, http.StatusAccepted, source.do(t, request{path: location}).StatusCode)
	require.Equal(t, http.StatusAccepted, source.do(t, request{method: http.MethodDelete, path: location}).StatusCode)
	require.Equal(t, http.StatusNotFound, source.do(t, request{path: location}).StatusCode)
	require.Equal(t, 1, source.Stats().ExportJobs)
}

func TestExportFinishedJobCannotBeCanceled(t *testing.T) {
	t.Parallel()
	source := startSim(t, fhirsim.WithStorage(azurite.ConnectionString), fhirsim.WithSeed(1, 1),
		fhirsim.WithJobDelay(time.Millisecond), fhirsim.WithPollsBeforeDone(1))
	resp := source.do(t, request{path: "/$export?_type=Patient", headers: exportHeaders()})
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	location := resp.Header.Get("Content-Location")
	final, _, accepted := source.pollDone(t, location)
	require.Equal(t, http.StatusOK, final.StatusCode)
	require.GreaterOrEqual(t, accepted, 1)
	require.Equal(t, http.StatusConflict, source.do(t, request{method: http.MethodDelete, path: location}).StatusCode)
}

// TestExportAfterCloseFails: a kick-off that reaches a closed simulator starts no worker; its job fails.
func TestExportAfterCloseFails(t *testing.T) {
	t.Parallel()
	source := startSim(t, fhirsim.WithStorage(azurite.ConnectionString), fhirsim.WithSeed(1, 1),
		fhirsim.WithPollsBeforeDone(0))
	source.Close()
	final, body, _ := source.pollDone(t, kickOffExport(t, source, "_type=Patient"))
	require.Equal(t, http.StatusInternalServerError, final.StatusCode)
	require.Contains(t, string(body), "shutting down")
}

// TestAHDSParallelExportTakesTillExclusively: the AHDS flavor's export is parallel unless told otherwise, and a
// parallel export without _typeFilter ends before the millisecond of its _till (SqlExportOrchestratorJob.cs), so
// that _till can be the next export's _since; a non-parallel one, one with _typeFilter, and Azure API for FHIR's
// take _till inclusively. Every version exported is recorded, and one written by two exports is listed.
func TestAHDSParallelExportTakesTillExclusively(t *testing.T) {
	t.Parallel()
	at := time.Date(2024, 2, 3, 4, 5, 6, 7_000_000, time.UTC)
	obs := func(id string, t time.Time) []byte {
		return []byte(`{"resourceType":"Observation","id":"` + id + `","meta":{"versionId":"1","lastUpdated":"` +
			t.Format("2006-01-02T15:04:05.000Z") + `"},"status":"final"}`)
	}
	data := fhirsim.WithResources(obs("before", at.Add(-time.Millisecond)), obs("on-a", at), obs("on-b", at), obs("after", at.Add(time.Millisecond)))
	till := at.Format("2006-01-02T15:04:05.0000000Z")
	ahds := startSim(t, fhirsim.WithFlavor(fhirsim.FlavorAHDS), fhirsim.WithStorage(azurite.ConnectionString), data,
		fhirsim.WithJobDelay(5*time.Millisecond))
	api := startSim(t, fhirsim.WithStorage(azurite.ConnectionString), data, fhirsim.WithJobDelay(5*time.Millisecond))
	for _, tc := range []struct {
		name   string
		source *sim
		query  url.Values
		want   []string
	}{
		{"ahds default (parallel)", ahds, url.Values{"_till": {till}}, []string{"Observation/before"}},
		{"ahds parallel", ahds, url.Values{"_till": {till}, "_isParallel": {"true"}}, []string{"Observation/before"}},
		{"ahds next window", ahds, url.Values{"_since": {till}, "_isParallel": {"true"}},
			[]string{"Observation/after", "Observation/on-a", "Observation/on-b"}},
		{"ahds not parallel", ahds, url.Values{"_till": {till}, "_isParallel": {"false"}},
			[]string{"Observation/before", "Observation/on-a", "Observation/on-b"}},
		{"ahds with a typeFilter", ahds, url.Values{"_till": {till}, "_type": {"Observation"}, "_typeFilter": {"Observation?status=final"}},
			[]string{"Observation/before", "Observation/on-a", "Observation/on-b"}},
		{"api for fhir", api, url.Values{"_till": {till}, "_isParallel": {"true"}},
			[]string{"Observation/before", "Observation/on-a", "Observation/on-b"}},
	} {
		tc.query.Set("_container", uniqueName("till"))
		m, _ := exportAll(t, tc.source, tc.query.Encode())
		require.Equal(t, tc.want, exportedIDs(t, m), tc.name)
	}
	st := ahds.Stats()
	// "before" was written by all four exports with a _till, the ones on the instant by three, "after" by one.
	require.Equal(t, 4, st.ExportedVersions)
	require.Equal(t, []string{"Observation/before/_history/1", "Observation/on-a/_history/1", "Observation/on-b/_history/1"}, st.ExportedTwice)
}
