package e2e

import (
	"encoding/json"
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/fhirsim"
)

// filteredSource returns the source's Observations with status final: what the filtered migration must move.
func filteredSource(t *testing.T, s *stack) map[string]json.RawMessage {
	t.Helper()
	want := map[string]json.RawMessage{}
	for key, raw := range resources(t, s.source.URL, "Observation") {
		var o struct {
			Status string `json:"status"`
		}
		require.NoError(t, json.Unmarshal(raw, &o))
		if o.Status == "final" {
			want[key] = raw
		}
	}
	require.NotEmpty(t, want)
	require.Equal(t, count(t, s.source.URL, "Observation", url.Values{"status": {"final"}}), int64(len(want)))
	return want
}

// TestFilteredMigrationCompletesExactly: a migration narrowed by a _typeFilter moves exactly the matching
// resources, no more and no fewer.
func TestFilteredMigrationCompletesExactly(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{patients: 10})
	id := s.start(map[string]any{"source": s.source.URL, "destination": s.dest.URL,
		"types": []string{"Observation"}, "typeFilter": []string{"Observation?status=final"}})
	final, raw := s.await(id, nil)
	require.Equal(t, "completed", final.Status, string(raw))
	want := filteredSource(t, s)
	got := resources(t, s.dest.URL, allTypes...)
	require.Equal(t, len(want), len(got), "exactly the filtered resources")
	for key, r := range want {
		require.JSONEq(t, string(r), string(got[key]), key)
	}
}

// TestFilteredMigrationNeverCompletesShort: the source cancels every export half-way and answers 200 with the
// partial manifest. The filtered count taken at kick-off exposes it: the migration fails with a code that says
// why, and never reports completed with resources missing.
func TestFilteredMigrationNeverCompletesShort(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		p    string
	}{{"every export cancelled", "export-cancel=1"}, {"some exports cancelled", "export-cancel=0.5"}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			faults, err := fhirsim.ParseFaults(tc.p)
			require.NoError(t, err)
			s := newStack(t, stackOptions{patients: 10,
				sourceOptions: []fhirsim.Option{fhirsim.WithFaults(faults), fhirsim.WithFaultSeed(11)},
				settings:      map[string]string{"ConfirmDelay": "200ms", "MaxReexports": "2"}})
			id := s.start(map[string]any{"source": s.source.URL, "destination": s.dest.URL,
				"types": []string{"Observation"}, "typeFilter": []string{"Observation?status=final"}})
			final, raw := s.await(id, nil)
			require.NotZero(t, s.srcSim.Stats().FaultsInjected["export-cancel"], "the fault must fire")
			want := filteredSource(t, s)
			got := resources(t, s.dest.URL, allTypes...)
			switch final.Status {
			case "completed":
				require.Equal(t, len(want), len(got), "a completed migration holds every filtered resource:\n%s", raw)
				for key, r := range want {
					require.JSONEq(t, string(r), string(got[key]), key)
				}
			case "failed":
				require.NotNil(t, final.Error, string(raw))
				require.Equal(t, "export_failed", final.Error.Code, string(raw))
				require.Contains(t, final.Error.Message, "manifest short of the source's counts", string(raw))
			default:
				t.Fatalf("migration ended %s:\n%s", final.Status, raw)
			}
			if tc.p == "export-cancel=1" {
				require.Equal(t, "failed", final.Status, "no export ever completes")
			}
		})
	}
}
