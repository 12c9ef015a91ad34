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

// TestJobRecordsTakeTheModelledTime: the simulators' own records of each job (created at its kick-off, finished at
// its end) span at least the time the rate model gives it, at a time scale below 1 and above it alike. Two
// Patients of weight 1,000 are 2,000 modelled resources; at 50,000 per second that is 0.04 s modelled, so 80 ms of
// wall time at scale 0.5 and 20 ms at scale 2, for the export (R_e) and for the import alone on the destination
// (R_I) alike. A job can never end sooner than that; on a loaded machine it may end later, so the upper bound is
// loose.
func TestJobRecordsTakeTheModelledTime(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		scale float64
		want  time.Duration
	}{{0.5, 80 * time.Millisecond}, {2, 20 * time.Millisecond}} {
		model := fhirsim.RateModel{Weight: 1000, ExportRate: 50_000, ExportSlots: 1, ImportRate: 50_000, TimeScale: c.scale}
		source := startSim(t, fhirsim.WithStorage(azurite.ConnectionString), fhirsim.WithSeed(2, 9),
			fhirsim.WithJobDelay(0), fhirsim.WithPollsBeforeDone(0), fhirsim.WithRateModel(model))
		dest := startSim(t, fhirsim.WithFlavor(fhirsim.FlavorAHDS), fhirsim.WithStorage(azurite.ConnectionString),
			fhirsim.WithJobDelay(0), fhirsim.WithPollsBeforeDone(0), fhirsim.WithRateModel(model))

		m, _ := exportAll(t, source, url.Values{"_container": {uniqueName("rt")}, "_type": {"Patient"}}.Encode())
		var inputs []importInput
		for _, o := range m.Output {
			inputs = append(inputs, importInput{Type: o.Type, URL: o.URL})
		}
		final, raw, _ := dest.pollDone(t, postImport(t, dest, importBody("IncrementalLoad", inputs...)))
		require.Equal(t, http.StatusOK, final.StatusCode, "%s", raw)

		exp, imp := source.Stats().Exports, dest.Stats().Imports
		require.Len(t, exp, 1)
		require.Len(t, imp, 1)
		for _, j := range []struct {
			kind      string
			stats     fhirsim.JobStats
			resources int64
		}{{"export", exp[0].JobStats, exp[0].Resources}, {"import", imp[0].JobStats, imp[0].Resources}} {
			require.Equal(t, int64(2000), j.resources, "%s at scale %v: 2 stored Patients of weight 1,000", j.kind, c.scale)
			require.NotNil(t, j.stats.Finished, "%s at scale %v", j.kind, c.scale)
			took := j.stats.Finished.Sub(j.stats.Created)
			require.GreaterOrEqual(t, took, c.want, "%s at scale %v: never sooner than the model", j.kind, c.scale)
			require.Less(t, took, 5*c.want+time.Second, "%s at scale %v: loosely bounded above", j.kind, c.scale)
		}
	}
}
