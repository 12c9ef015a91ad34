package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/fhirsim"
	"github.com/fhir-migrator/fhir-migrator/internal/localstack"
)

// TestFHIRServiceSourceExportsEachResourceOnce: an AHDS FHIR service as the source (the simulator's AHDS flavor:
// millisecond times, a parallel export that takes _till exclusively), with many resources sharing milliseconds
// and windows small enough that every boundary falls on a shared millisecond, migrates exactly: by the
// simulator's own records no resource version was written by two exports and every one in range was written, and
// the destination holds each, content for content. The kind is in the document and both reports.
func TestFHIRServiceSourceExportsEachResourceOnce(t *testing.T) {
	t.Parallel()
	from := time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC)
	const instants, each = 32, 4
	var extra [][]byte
	for i := range instants {
		for k := range each {
			extra = append(extra, observationAt(fmt.Sprintf("shared-%02d-%d", i, k), from.Add(time.Duration(i)*time.Millisecond)))
		}
	}
	till := from.Add((instants - 1) * time.Millisecond)
	s := newStack(t, stackOptions{patients: 2, sourceOptions: []fhirsim.Option{fhirsim.WithFlavor(fhirsim.FlavorAHDS),
		fhirsim.WithResources(extra...)}})
	id := s.start(map[string]any{"source": s.source.URL, "destination": s.dest.URL, "sourceKind": "fhir-service",
		"types": []string{"Observation"}, "since": from.Format(time.RFC3339Nano), "till": till.Format(time.RFC3339Nano),
		"windowTarget": 10, "verify": "ids"})
	final, raw := s.await(id, nil)
	require.Equal(t, "completed", final.Status, string(raw))
	var d struct {
		Request struct {
			SourceKind string `json:"sourceKind"`
		} `json:"request"`
		Jobs []struct {
			Kind string `json:"kind"`
		} `json:"jobs"`
	}
	require.NoError(t, json.Unmarshal(raw, &d))
	require.Equal(t, "fhir-service", d.Request.SourceKind)
	windows := 0
	for _, j := range d.Jobs {
		if j.Kind == "export" {
			windows++
		}
	}
	require.GreaterOrEqual(t, windows, instants*each/10, "small windows: %s", raw)

	want := map[string]json.RawMessage{}
	for key, r := range resources(t, s.source.URL, "Observation") {
		var o struct {
			Meta struct {
				LastUpdated time.Time `json:"lastUpdated"`
			} `json:"meta"`
		}
		require.NoError(t, json.Unmarshal(r, &o))
		if !o.Meta.LastUpdated.Before(from) && !o.Meta.LastUpdated.After(till) {
			want[key] = r
		}
	}
	require.Len(t, want, instants*each)
	st := s.srcSim.Stats()
	require.Empty(t, st.ExportedTwice, "no resource version exported twice")
	require.Equal(t, len(want), st.ExportedVersions, "every resource in range exported")
	got := resources(t, s.dest.URL, "Observation")
	require.Len(t, got, len(want))
	for key, r := range want {
		require.JSONEq(t, string(r), string(got[key]), key)
	}

	status, md := s.api(http.MethodGet, "/api/migrations/"+id+"/report", nil)
	require.Equal(t, http.StatusOK, status, string(md))
	require.Contains(t, string(md), "- Source kind: fhir-service (export windows cut at 1ms, each _till the next window's _since)")
	require.Contains(t, s.htmlReport(id), `<td data-figure="scope.Source kind">fhir-service (`)
}

// TestSTU3SourceIsRefused: a source whose CapabilityStatement declares STU3 (3.0.2) into an R4 destination is
// refused at start, naming both versions, and nothing is started.
func TestSTU3SourceIsRefused(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{patients: 1, sourceOptions: []fhirsim.Option{fhirsim.WithFHIRVersion("3.0.2")}})
	status, raw := s.api(http.MethodPost, "/api/migrations", map[string]any{"source": s.source.URL, "destination": s.dest.URL})
	require.Equal(t, http.StatusBadRequest, status, string(raw))
	var answer struct {
		Error struct {
			Code    string `json:"code"`
			Field   string `json:"field"`
			Message string `json:"message"`
		} `json:"error"`
	}
	require.NoError(t, json.Unmarshal(raw, &answer))
	require.Equal(t, "fhir_version_mismatch", answer.Error.Code)
	require.Equal(t, "source", answer.Error.Field)
	require.Contains(t, answer.Error.Message, `"3.0.2"`)
	require.Contains(t, answer.Error.Message, `"`+fhirsim.DefaultFHIRVersion+`"`)
	require.Zero(t, s.srcSim.Stats().ExportJobs)
}

// TestFHIRServiceSyncCarriesTheMillisecondItsRoundLeftOut: an AHDS-flavoured source synced with history and no
// margin. A round kicked off at a frozen instant holds only what came before that millisecond (its parallel export
// ends before the millisecond of its transactionTime), so its high-water mark is the millisecond before; an update,
// a create and a delete written on the kick-off's millisecond after the export read the source are carried by the
// next round, which starts at the mark. After the cutover every version is on both servers.
func TestFHIRServiceSyncCarriesTheMillisecondItsRoundLeftOut(t *testing.T) {
	t.Parallel()
	clock := &freezableClock{}
	s := newStack(t, stackOptions{patients: 2, sourceOptions: []fhirsim.Option{fhirsim.WithFlavor(fhirsim.FlavorAHDS),
		fhirsim.WithClock(clock.Now)}})
	src, dst := s.source.URL, s.dest.URL
	id := s.start(map[string]any{"source": src, "destination": dst, "sourceKind": "fhir-service", "types": []string{"Patient"},
		"sync": true, "history": true, "syncInterval": "1s", "syncMargin": "0s"})
	s.until(id, "syncing", func(d syncDoc) bool { return d.Status == "syncing" })
	var copied []string
	for k := range resources(t, src, "Patient") {
		copied = append(copied, k[len("Patient/"):]) // patients the full copy moved
	}
	require.GreaterOrEqual(t, len(copied), 2)

	at := time.Now().UTC().Truncate(time.Millisecond)
	clock.freeze(&at)
	mark := at.Add(-time.Millisecond)
	d := s.until(id, "a round kicked off at the frozen instant", func(d syncDoc) bool { return d.Sync.HighWater.Equal(mark) })
	fhirWrite(t, src, http.MethodPut, "/Patient/"+copied[0], fmt.Sprintf(`{"resourceType":"Patient","id":%q,"gender":"other"}`, copied[0]))
	fhirWrite(t, src, http.MethodPut, "/Patient/edge", `{"resourceType":"Patient","id":"edge"}`)
	fhirWrite(t, src, http.MethodDelete, "/Patient/"+copied[1], "")
	clock.freeze(nil)
	carried := d.Sync.Rounds + 1
	s.until(id, "the next round", func(d syncDoc) bool { return d.Sync.Rounds >= carried })
	// In the source's own records: a round exported from exactly the mark, in parallel, to a millisecond.
	fromMark := 0
	for _, e := range s.srcSim.Stats().Exports {
		q, err := url.ParseQuery(e.Query)
		require.NoError(t, err)
		if q.Get("_since") == mark.Format("2006-01-02T15:04:05.0000000Z") {
			fromMark++
			require.Equal(t, "completed", e.State)
			require.Equal(t, "true", q.Get("_isParallel"))
			till, err := time.Parse(time.RFC3339Nano, q.Get("_till"))
			require.NoError(t, err)
			require.Equal(t, till.Truncate(time.Millisecond), till)
		}
	}
	require.Equal(t, 1, fromMark, "one export from the mark %s", mark)
	require.Equal(t, int64(1), count(t, dst, "Patient", url.Values{"_id": {"edge"}}), "the create on the left-out millisecond arrived")
	require.Contains(t, string(resources(t, dst, "Patient")["Patient/"+copied[0]]), `"gender":"other"`, "the update arrived")

	status, raw := s.api(http.MethodPost, "/api/migrations/"+id+"/cutover", nil)
	require.Equal(t, http.StatusAccepted, status, string(raw))
	final := s.until(id, "completed", func(d syncDoc) bool { return d.Status == "completed" || d.Status == "failed" })
	require.Equal(t, "completed", final.Status, "%+v", final.Error)
	require.True(t, final.Verification.Passed)
	requireSameHistories(t, src, dst, []string{"Patient"}, nil)
	status, _, err := localstack.Write(t.Context(), dst, http.MethodGet, "/Patient/"+copied[1], nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusGone, status, "the delete arrived")
}
