package fhirsim_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/fhirsim"
)

// TestWeightScalesEveryCount: under a weight, counts, manifests and import results speak of modelled resources,
// consistently, while the files hold the stored ones.
func TestWeightScalesEveryCount(t *testing.T) {
	t.Parallel()
	const weight = 1000
	model := fhirsim.RateModel{Weight: weight, ExportRate: 1e9, ImportRate: 1e9}
	source := startSim(t, fhirsim.WithStorage(azurite.ConnectionString), fhirsim.WithSeed(2, 9),
		fhirsim.WithJobDelay(time.Millisecond), fhirsim.WithPollsBeforeDone(0), fhirsim.WithRateModel(model))
	dest := startSim(t, fhirsim.WithFlavor(fhirsim.FlavorAHDS), fhirsim.WithStorage(azurite.ConnectionString),
		fhirsim.WithJobDelay(time.Millisecond), fhirsim.WithPollsBeforeDone(0), fhirsim.WithRateModel(model))

	stored := len(generatedSet(t, 2, 9))
	require.Equal(t, stored*weight, source.count(t, "/?_summary=count"))
	m, _ := exportAll(t, source, url.Values{"_container": {uniqueName("w")}, "_type": {"Patient,Observation"}}.Encode())
	var inputs []importInput
	exported := 0
	for _, o := range m.Output {
		lines := readBlobURL(t, o.URL)
		require.Equal(t, len(lines)*weight, o.Count, "the manifest counts modelled resources")
		exported += o.Count
		inputs = append(inputs, importInput{Type: o.Type, URL: o.URL})
	}
	require.Equal(t, source.count(t, "/Patient?_summary=count")+source.count(t, "/Observation?_summary=count"), exported)

	final, raw, _ := dest.pollDone(t, postImport(t, dest, importBody("IncrementalLoad", inputs...)))
	require.Equal(t, http.StatusOK, final.StatusCode, "%s", raw)
	var res importResult
	require.NoError(t, json.Unmarshal(raw, &res))
	imported := 0
	for _, o := range res.Output {
		imported += o.Count
	}
	require.Equal(t, exported, imported)
	require.Equal(t, exported, dest.count(t, "/?_summary=count"))

	// The job records say the same, with when each job ended.
	exp, imp := source.Stats().Exports, dest.Stats().Imports
	require.Len(t, exp, 1)
	require.Len(t, imp, 1)
	require.Equal(t, int64(exported), exp[0].Resources)
	require.Equal(t, int64(imported), imp[0].Resources)
	require.NotNil(t, exp[0].Finished)
	require.False(t, exp[0].Finished.Before(exp[0].Created))
	require.NotNil(t, imp[0].Finished)
}

// TestExportSlotsQueueExports: past the export slots, a kick-off is accepted and its job waits, answering 202,
// until a running export leaves its slot.
func TestExportSlotsQueueExports(t *testing.T) {
	t.Parallel()
	// One export slot, and a modelled rate that makes a Patient export last for hours.
	source := startSim(t, fhirsim.WithStorage(azurite.ConnectionString), fhirsim.WithSeed(2, 3),
		fhirsim.WithJobDelay(time.Millisecond), fhirsim.WithPollsBeforeDone(0),
		fhirsim.WithRateModel(fhirsim.RateModel{ExportRate: 0.0001, ExportSlots: 1}))
	kickoff := func(query string) string {
		resp := source.do(t, request{path: "/$export?" + query, headers: exportHeaders()})
		require.Equal(t, http.StatusAccepted, resp.StatusCode)
		return resp.Header.Get("Content-Location")
	}
	long := kickoff("_type=Patient")
	// An export of nothing takes no modelled time: only the slot holds it back.
	empty := kickoff("_type=Practitioner")
	for range 20 {
		require.Equal(t, http.StatusAccepted, source.do(t, request{path: empty}).StatusCode, "waits for the slot")
		time.Sleep(10 * time.Millisecond) // pacing the polls, not an assertion
	}
	require.Equal(t, http.StatusAccepted, source.do(t, request{method: http.MethodDelete, path: long}).StatusCode)
	final, body, _ := source.pollDone(t, empty)
	require.Equal(t, http.StatusOK, final.StatusCode, "%s", body)
}
