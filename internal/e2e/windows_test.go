package e2e

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/fhirsim"
)

// observationAt is an Observation last updated at the instant given, to the millisecond, as the services keep it.
func observationAt(id string, at time.Time) []byte {
	return fmt.Appendf(nil, `{"resourceType":"Observation","id":%q,"meta":{"versionId":"1","lastUpdated":%q},"status":"final",`+
		`"code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]}}`, id, at.UTC().Format("2006-01-02T15:04:05.000Z"))
}

// TestWindowsMoveEveryResourceOnce: Observations over the window target are planned into windows and moved
// exactly once, ids and contents alike, while the handler is restarted: the resource on the first window
// boundary and the one a millisecond after it (the services keep times to the millisecond; the next window starts
// 100 ns after the boundary), and one instant holding more resources than the target (a window of its own, over
// the target).
func TestWindowsMoveEveryResourceOnce(t *testing.T) {
	t.Parallel()
	since := time.Date(2019, 1, 1, 0, 0, 0, 0, time.UTC)
	till := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	// The first split halves [since, till]: the left window ends at mid, the right begins 100 ns later.
	mid := since.Add(till.Sub(since) / 2).Truncate(100 * time.Nanosecond)
	require.Equal(t, mid, mid.Truncate(time.Millisecond), "the boundary is a millisecond a resource can hold")
	bulk := time.Date(2024, 5, 5, 5, 5, 5, 123000000, time.UTC)
	extra := [][]byte{observationAt("on-the-boundary", mid), observationAt("just-after", mid.Add(time.Millisecond))}
	for i := range 70 {
		extra = append(extra, observationAt(fmt.Sprintf("bulk-%02d", i), bulk))
	}
	s := newStack(t, stackOptions{patients: 4, sourceOptions: []fhirsim.Option{fhirsim.WithResources(extra...)}})
	id := s.start(map[string]any{"source": s.source.URL, "destination": s.dest.URL, "types": []string{"Observation"},
		"since": since.Format(time.RFC3339), "till": till.Format(time.RFC3339), "windowTarget": 60, "verify": "ids"})
	restarts := 0
	final, raw := s.await(id, func(d doc) {
		if d.Status == "exporting" && restarts < 3 {
			require.NoError(t, s.host.RestartHandler(t.Context()))
			restarts++
		}
	})
	require.Equal(t, "completed", final.Status, string(raw))

	var plan struct {
		Jobs []struct {
			ID      string           `json:"id"`
			Kind    string           `json:"kind"`
			Since   time.Time        `json:"since"`
			Till    time.Time        `json:"till"`
			Planned int64            `json:"planned"`
			Counts  map[string]int64 `json:"counts"`
		} `json:"jobs"`
	}
	require.NoError(t, json.Unmarshal(raw, &plan))
	windows, overTarget := 0, 0
	for _, j := range plan.Jobs {
		if j.Kind != "export" {
			continue
		}
		windows++
		if j.Planned > 60 {
			overTarget++
			require.Equal(t, bulk, j.Since, "only the bulk instant is over the target")
			require.Equal(t, bulk, j.Till)
		}
		if j.Till.Equal(mid) {
			require.Equal(t, since, j.Since)
		}
	}
	require.Greater(t, windows, 3)
	require.Equal(t, 1, overTarget)

	want := map[string]json.RawMessage{}
	for key, r := range resources(t, s.source.URL, "Observation") {
		var o struct {
			Meta struct {
				LastUpdated time.Time `json:"lastUpdated"`
			} `json:"meta"`
		}
		require.NoError(t, json.Unmarshal(r, &o))
		if !o.Meta.LastUpdated.Before(since) && !o.Meta.LastUpdated.After(till) {
			want[key] = r
		}
	}
	require.Contains(t, want, "Observation/on-the-boundary")
	require.Contains(t, want, "Observation/just-after")
	// From the simulators' records: each window's export imported once (a restart may orphan a kick-off, whose
	// files are left alone), and the resources the imported exports wrote are every resource, once.
	requireEachExportImportedOnce(t, s.srcSim, s.destSim, time.Now())
	imported := map[string]bool{}
	for _, imp := range s.destSim.Stats().Imports {
		if imp.State == "completed" {
			for _, in := range imp.Inputs {
				imported[in] = true
			}
		}
	}
	var exported int64
	for _, e := range s.srcSim.Stats().Exports {
		if len(e.Output) > 0 && imported[e.Output[0]] {
			exported += e.Resources
		}
	}
	require.Equal(t, int64(len(want)), exported, "every resource exported exactly once")
	got := resources(t, s.dest.URL, allTypes...)
	require.Equal(t, len(want), len(got))
	for key, r := range want {
		require.JSONEq(t, string(r), string(got[key]), key)
	}
}
