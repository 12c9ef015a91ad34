package migration

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/fhir"
)

func TestStartRejects(t *testing.T) {
	t.Parallel()
	const ok = `"source":"` + srcBase + `","destination":"` + dstBase + `"`
	tests := []struct {
		name  string
		body  string
		setup func(h *harness)
		kind  ErrorKind
		code  string
		field string
	}{
		{"missing source", `{"destination":"` + dstBase + `"}`, nil, Invalid, "missing_field", "source"},
		{"missing destination", `{"source":"` + srcBase + `"}`, nil, Invalid, "missing_field", "destination"},
		{"not a url", `{"source":"src","destination":"` + dstBase + `"}`, nil, Invalid, "invalid_url", "source"},
		{"host not allowed", `{"source":"https://evil.example.com","destination":"` + dstBase + `"}`, nil, Invalid, "host_not_allowed", "source"},
		{"http not allowed", `{"source":"http://src.azurehealthcareapis.com","destination":"` + dstBase + `"}`, nil, Invalid, "host_not_allowed", "source"},
		{"same server", `{"source":"` + srcBase + `","destination":"` + srcBase + `/"}`, nil, Invalid, "same_server", "destination"},
		{"bad type", `{` + ok + `,"types":["Patient","observation"]}`, nil, Invalid, "invalid_type", "types[1]"},
		{"duplicate type", `{` + ok + `,"types":["Patient","Observation","Patient"]}`, nil, Invalid, "invalid_type", "types[2]"},
		{"bad since", `{` + ok + `,"since":"2020-01-01"}`, nil, Invalid, "invalid_time", "since"},
		{"bad till", `{` + ok + `,"till":"yesterday"}`, nil, Invalid, "invalid_time", "till"},
		{"empty window", `{` + ok + `,"since":"2021-01-01T00:00:00Z","till":"2021-01-01T00:00:00Z"}`, nil, Invalid, "invalid_window", "since"},
		{"type filter without query", `{` + ok + `,"typeFilter":["Patient"]}`, nil, Invalid, "invalid_type_filter", "typeFilter[0]"},
		{"type filter bad type", `{` + ok + `,"typeFilter":["Patient?active=true","obs?x=1"]}`, nil, Invalid, "invalid_type_filter", "typeFilter[1]"},
		{"type filter not in types", `{` + ok + `,"types":["Patient"],"typeFilter":["Observation?status=final"]}`, nil, Invalid, "invalid_type_filter", "typeFilter[0]"},
		{"type filter with a comma", `{` + ok + `,"typeFilter":["Observation?status=final,amended"]}`, nil, Invalid, "invalid_type_filter", "typeFilter[0]"},
		{"type filter parameter without =", `{` + ok + `,"typeFilter":["Observation?status=final","Observation?status"]}`, nil, Invalid, "invalid_type_filter", "typeFilter[1]"},
		{"type filter parameter with two =", `{` + ok + `,"typeFilter":["Observation?code=a=b"]}`, nil, Invalid, "invalid_type_filter", "typeFilter[0]"},
		{"type filter empty parameter", `{` + ok + `,"typeFilter":["Observation?status=final&&code=x"]}`, nil, Invalid, "invalid_type_filter", "typeFilter[0]"},
		{"type filter the source refuses", `{` + ok + `,"typeFilter":["Observation?subject:missing=true"]}`, func(h *harness) {
			h.src.countErr = &fhir.Error{Op: "count Observation", StatusCode: 400, Message: "the search parameter subject:missing is not supported"}
		}, Invalid, "invalid_type_filter", "typeFilter[0]"},
		{"type filter count unavailable", `{` + ok + `,"typeFilter":["Observation?status=final"]}`, func(h *harness) {
			h.src.countErr = &fhir.Error{Op: "count Observation", StatusCode: 503}
		}, Unavailable, "source_unreachable", "typeFilter[0]"},
		{"since in the future", `{` + ok + `,"since":"2099-01-01T00:00:00Z"}`, nil, Invalid, "invalid_window", "since"},
		{"export strategy", `{` + ok + `,"exportStrategy":"parallel"}`, nil, Invalid, "invalid_export_strategy", "exportStrategy"},
		{"import mode", `{` + ok + `,"importMode":"Fast"}`, nil, Invalid, "invalid_import_mode", "importMode"},
		{"container short", `{` + ok + `,"container":"ab"}`, nil, Invalid, "invalid_container", "container"},
		{"container upper", `{` + ok + `,"container":"Migration"}`, nil, Invalid, "invalid_container", "container"},
		{"container double hyphen", `{` + ok + `,"container":"a--b"}`, nil, Invalid, "invalid_container", "container"},
		{"container trailing hyphen", `{` + ok + `,"container":"abc-"}`, nil, Invalid, "invalid_container", "container"},
		{"cleanup other", `{` + ok + `,"cleanup":"now"}`, nil, Invalid, "invalid_cleanup", "cleanup"},
		{"verify other", `{` + ok + `,"verify":"all"}`, nil, Invalid, "invalid_verify", "verify"},
		{"verify sample", `{` + ok + `,"verifySample":-1}`, nil, Invalid, "invalid_verify_sample", "verifySample"},
		{"source down", `{` + ok + `}`, func(h *harness) { h.src.typesErr = errors.New("dial tcp: refused") }, Unavailable, "source_unreachable", "source"},
		{"unknown type", `{` + ok + `,"types":["Patient","Device"]}`, nil, Invalid, "unknown_type", "types[1]"},
		{"unknown filter type", `{` + ok + `,"typeFilter":["Device?x=1"]}`, nil, Invalid, "unknown_type", "typeFilter[0]"},
		{"destination down", `{` + ok + `}`, func(h *harness) { h.dst.typesErr = &fhir.Error{Op: "metadata", StatusCode: 503} }, Unavailable, "destination_unreachable", "destination"},
		{"container taken", `{` + ok + `,"container":"shared"}`, func(h *harness) { h.staging.owners["shared"] = "m-other" }, Conflict, "container_in_use", "container"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, nil)
			if tc.setup != nil {
				tc.setup(h)
			}
			res, err := h.svc.Start(context.Background(), decode[StartRequest](t, tc.body))
			require.Nil(t, res)
			var refusal *Error
			require.ErrorAs(t, err, &refusal)
			require.Equal(t, tc.kind, refusal.Kind, refusal.Message)
			require.Equal(t, tc.code, refusal.Code, refusal.Message)
			require.Equal(t, tc.field, refusal.Field)
			require.NotEmpty(t, refusal.Message)
			items, err := h.store.List(context.Background(), "")
			require.NoError(t, err)
			require.Empty(t, items, "no document on a rejected start")
			if tc.code != "container_in_use" {
				require.Empty(t, h.staging.claimed(), "no container claimed on a rejected start")
			}
		})
	}
}

func TestStartDryRunStoresNothing(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	res, err := h.svc.Start(context.Background(), decode[StartRequest](t, `{"source":"`+srcBase+`","destination":"`+dstBase+`",
		"types":["Patient","Observation"],"typeFilter":["Observation?status=final"],"dryRun":true}`))
	require.NoError(t, err)
	require.Nil(t, res.Migration)
	require.NotNil(t, res.Plan)
	require.Len(t, res.Plan.Jobs, 2)
	require.Equal(t, "export-Patient", res.Plan.Jobs[0].ID)
	require.Empty(t, res.Plan.Jobs[0].TypeFilter)
	require.Equal(t, []string{"Observation?status=final"}, res.Plan.Jobs[1].TypeFilter)
	require.Equal(t, StrategyPerType, res.Plan.Request.ExportStrategy)
	items, err := h.store.List(context.Background(), "")
	require.NoError(t, err)
	require.Empty(t, items)
	require.Empty(t, h.staging.claimed())
	ex, _, _ := h.src.snapshot()
	require.Zero(t, ex)
}

func TestStartDefaultsAndPlans(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		extra    string
		strategy string
		jobs     []string
		types    [][]string
	}{
		{"system by default", ``, StrategySystem, []string{"export-system"}, [][]string{nil}},
		{"per-type when types given", `,"types":["Patient"]`, StrategyPerType, []string{"export-Patient"}, [][]string{{"Patient"}}},
		{"system with types", `,"types":["Patient","Observation"],"exportStrategy":"system"`, StrategySystem,
			[]string{"export-system"}, [][]string{{"Patient", "Observation"}}},
		{"per-type from the capability statement, smallest first", `,"exportStrategy":"per-type"`, StrategyPerType,
			[]string{"export-SearchParameter", "export-Patient", "export-Observation"}, [][]string{{"SearchParameter"}, {"Patient"}, {"Observation"}}},
		{"system with a filter names the types", `,"typeFilter":["Patient?active=true"]`, StrategySystem,
			[]string{"export-system"}, [][]string{{"Observation", "Patient", "SearchParameter"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, nil)
			m := h.start(`{"source":"` + srcBase + `/","destination":"` + dstBase + `"` + tc.extra + `}`)
			require.Equal(t, StatusPlanning, m.Status, "the source is counted from the poller, not in the HTTP call")
			require.Empty(t, m.Jobs)
			h.poll()
			m = h.get(m.ID)
			require.Equal(t, StatusExporting, m.Status)
			require.Equal(t, srcBase, m.Request.Source)
			require.Equal(t, tc.strategy, m.Request.ExportStrategy)
			require.Equal(t, ModeIncremental, m.Request.ImportMode)
			require.Equal(t, VerifyModeCounts, m.Request.Verify)
			require.Equal(t, m.ID, m.Request.Container)
			require.Equal(t, map[string]string{m.ID: m.ID}, h.staging.claimed())
			var ids []string
			var types [][]string
			for _, j := range m.Jobs {
				ids = append(ids, j.ID)
				types = append(types, j.Types)
				require.NotNil(t, j.Till, "every window has its end")
			}
			require.Equal(t, tc.jobs, ids)
			require.Equal(t, tc.types, types)
			require.Equal(t, len(tc.jobs), m.Progress.Exports.Total)
			stored := h.get(m.ID)
			require.Equal(t, m.Jobs[0].ID, stored.Jobs[0].ID)
		})
	}
}

func TestDefaultIDIsAValidContainer(t *testing.T) {
	t.Parallel()
	id := defaultID(h0())
	require.Regexp(t, `^m-20260102-030405-[0-9a-f]{6}$`, id)
	require.True(t, validContainer(id))
}

func TestGetUnknownIsNotFound(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	for _, id := range []string{"m-nope", "../hosts/x", ""} {
		_, err := h.svc.Get(context.Background(), id)
		var refusal *Error
		require.ErrorAs(t, err, &refusal)
		require.Equal(t, NotFound, refusal.Kind)
		require.Equal(t, "not_found", refusal.Code)
	}
}

// TestFailedCreateReleasesTheContainer: a start whose document could not be stored leaves no claim behind, so the
// same container name can be used by the next start.
func TestFailedCreateReleasesTheContainer(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	body := decode[StartRequest](t, `{`+endpoints+`,"container":"shared-name"}`)
	h.store.mu.Lock()
	h.store.failPuts = true
	h.store.mu.Unlock()
	_, err := h.svc.Start(context.Background(), body)
	require.Error(t, err)
	h.staging.mu.Lock()
	_, claimed := h.staging.owners["shared-name"]
	h.staging.mu.Unlock()
	require.False(t, claimed, "the claim of a start that stored nothing is released")

	h.store.mu.Lock()
	h.store.failPuts = false
	h.store.mu.Unlock()
	res, err := h.svc.Start(context.Background(), body)
	require.NoError(t, err)
	require.Equal(t, "shared-name", res.Migration.Request.Container)
}
