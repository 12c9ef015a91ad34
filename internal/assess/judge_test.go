package assess

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/fhir"
	"github.com/fhir-migrator/fhir-migrator/internal/migration"
	"github.com/fhir-migrator/fhir-migrator/internal/store"
)

func itemOf(t *testing.T, items []Item, code string) *Item {
	t.Helper()
	for i := range items {
		if items[i].Code == code {
			return &items[i]
		}
	}
	return nil
}

func reachable(version string, types ...string) *ServerFacts {
	return &ServerFacts{URL: "https://x", Reachable: true, FHIRVersion: version, Types: types}
}

// The destination's two probe answers, judged: import disabled or the identity refused is blocking; the
// SearchParameter refusal proves import enabled from the staging account; a storage refusal blocks; the mode
// against importMode.
func TestJudgeImport(t *testing.T) {
	t.Parallel()
	spRefusal := &fhir.ProbeAnswer{Status: 400, Message: "Requested operation does not support resource type: SearchParameter."}
	for _, c := range []struct {
		name                  string
		mode                  string
		imp, lock             *fhir.ProbeAnswer
		enabled, storage, lck Level
	}{
		{"disabled", migration.ModeIncremental, &fhir.ProbeAnswer{Status: 400, Message: `The requested "import" operation is not enabled`}, &fhir.ProbeAnswer{Status: 405}, Blocking, "", ""},
		{"forbidden", migration.ModeIncremental, &fhir.ProbeAnswer{Status: 403, Message: "Authorization failed."}, &fhir.ProbeAnswer{Status: 405}, Blocking, "", ""},
		{"ready", migration.ModeIncremental, spRefusal, &fhir.ProbeAnswer{Status: 405}, OK, OK, OK},
		{"another account", migration.ModeIncremental, &fhir.ProbeAnswer{Status: 400, Message: "input.url must match the configured integration storage account endpoint"}, &fhir.ProbeAnswer{Status: 405}, OK, Blocking, OK},
		{"no account", migration.ModeIncremental, &fhir.ProbeAnswer{Status: 400, Message: "The import storage account is not configured correctly on the server."}, &fhir.ProbeAnswer{Status: 405}, OK, Blocking, OK},
		{"odd answer", migration.ModeIncremental, &fhir.ProbeAnswer{Status: 500, Message: "oops"}, &fhir.ProbeAnswer{Status: 405}, OK, Warning, OK},
		{"InitialLoad, not in initial import mode", migration.ModeInitial, spRefusal, &fhir.ProbeAnswer{Status: 405}, OK, OK, Blocking},
		{"InitialLoad in initial import mode", migration.ModeInitial, spRefusal, &fhir.ProbeAnswer{Status: 423}, OK, OK, OK},
		{"IncrementalLoad in initial import mode", migration.ModeIncremental, spRefusal, &fhir.ProbeAnswer{Status: 423}, OK, OK, Warning},
	} {
		a := &Assessment{Request: migration.Request{ImportMode: c.mode}, Import: &ImportProbe{InputURL: "https://acct/x", Import: c.imp, Lock: c.lock}}
		enabled, storage, mode := judgeImport(a)
		require.Equal(t, c.enabled, enabled.Status, c.name)
		if c.storage == "" {
			require.Nil(t, storage, c.name)
			require.Nil(t, mode, c.name)
			require.NotEmpty(t, enabled.Action, c.name)
			continue
		}
		require.Equal(t, c.storage, storage.Status, c.name)
		require.Equal(t, c.lck, mode.Status, c.name)
	}
}

// What the destination holds already: nothing is ok, some is a warning with the counts, and blocking with
// InitialLoad; a type not served is no overlap.
func TestJudgeOverlap(t *testing.T) {
	t.Parallel()
	a := &Assessment{Request: migration.Request{ImportMode: migration.ModeIncremental}, Destination: reachable("4.0.1"),
		Survey: &SurveyProgress{Done: true}, Types: []TypeFacts{
			{Type: "Patient", Live: 10, Destination: 0, DestinationSupported: true, DestinationCounted: true},
			{Type: "Observation", Live: 50, Destination: 7, DestinationSupported: true, DestinationCounted: true},
			{Type: "Basic", Live: 3, Destination: 0},
		}}
	it := judgeOverlap(a)
	require.Equal(t, Warning, it.Status)
	require.Contains(t, it.Detail, "Observation: 7 (the source holds 50 in range)")
	require.NotContains(t, it.Detail, "Patient:")
	a.Request.ImportMode = migration.ModeInitial
	require.Equal(t, Blocking, judgeOverlap(a).Status)
	a.Types[1].Destination = 0
	require.Equal(t, OK, judgeOverlap(a).Status)
	a.Survey.Done = false
	require.Nil(t, judgeOverlap(a), "no item before the survey is done")
}

// The servers: an STU3 server is blocking, an unreachable one blocking with what to do, R4 ok.
func TestJudgeServers(t *testing.T) {
	t.Parallel()
	a := &Assessment{Source: reachable("3.0.2", "Patient"), Destination: reachable("4.0.1", "Patient")}
	items := judge(a)
	require.Equal(t, Blocking, itemOf(t, items, CodeFHIRVersion).Status)
	require.Contains(t, itemOf(t, items, CodeFHIRVersion).Detail, "the source speaks FHIR 3.0.2")
	require.Equal(t, OK, itemOf(t, items, CodeSourceReachable).Status)

	a.Source.FHIRVersion = "4.0.1"
	a.Destination = &ServerFacts{URL: "https://d", Error: "dial tcp: connection refused"}
	items = judge(a)
	require.Equal(t, OK, itemOf(t, items, CodeFHIRVersion).Status)
	dst := itemOf(t, items, CodeDestinationReachable)
	require.Equal(t, Blocking, dst.Status)
	require.Contains(t, dst.Detail, "connection refused")
	require.NotEmpty(t, dst.Action)
	require.Equal(t, Blocking, verdict(items))

	a.Request.Types = []string{"Patient", "Basic"}
	a.Destination = reachable("4.0.1", "Patient")
	types := itemOf(t, judge(a), CodeTypes)
	require.Equal(t, Blocking, types.Status)
	require.Contains(t, types.Detail, "the source does not serve Basic")
}

// The probe export's states, judged.
func TestJudgeExport(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	end := start.Add(3 * time.Second)
	for state, want := range map[string]Level{exportCompleted: OK, exportRefused: Blocking, exportFailed: Blocking, exportTimedOut: Warning} {
		a := &Assessment{Export: &ExportProbe{State: state, KickedOffAt: &start, FinishedAt: &end, Status: 400, Answer: "not enabled"}}
		require.Equal(t, want, judgeExport(a).Status, state)
	}
	require.Nil(t, judgeExport(&Assessment{Export: &ExportProbe{State: exportRunning}}), "no item while it runs")
	a := &Assessment{Export: &ExportProbe{State: exportCompleted, KickedOffAt: &start, FinishedAt: &end, Files: 2}}
	require.Equal(t, Warning, judgeExport(a).Status, "files from an empty range")
}

// The estimate of a plan worked by hand: windows exported smallest first on the slots, each import starting when
// its export ends and the destination working through them at its rate, then verification.
func TestEstimate(t *testing.T) {
	t.Parallel()
	rates := Rates{ExportRate: 100, ImportRate: 400, LookupRate: 50, CountRate: 1000, CountLatency: 0.5, DefaultBytes: 10}
	a := &Assessment{Request: migration.Request{Verify: migration.VerifyModeIDs},
		Plan:  &WindowPlan{Windows: []Window{{ID: "a", Planned: 100}, {ID: "b", Planned: 200}}},
		Types: []TypeFacts{{Type: "Patient", Live: 300, AvgBytes: 250}}}
	// One slot, latency 1 s: a exports 0..2, b 2..5; imports: a 2..2.25, b 5..5.5.
	e := estimateOf(a, rates, 1, 1)
	near := func(want, got float64, what string) {
		require.True(t, math.Abs(want-got) < 1e-9, "%s: want %v, got %v", what, want, got)
	}
	near(5, e.ExportSeconds, "exports")
	near(5.5, e.CopySeconds, "copy")
	// Verification: Patient counted on both servers (2 x (300/1000 + 0.5)), 300 ids at 50/s.
	near(2*(0.3+0.5)+6, e.VerifySeconds, "verification")
	near(5.5+7.6, e.TotalSeconds, "total")
	require.Equal(t, int64(300), e.Resources)
	require.Equal(t, int64(300*250), e.StagingBytes)
	require.Equal(t, 2, e.Windows)

	// Two slots: a 0..2, b 0..3; the imports queue on the destination: a 2..2.25, b 3..3.5.
	e = estimateOf(a, rates, 2, 1)
	near(3, e.ExportSeconds, "exports on two slots")
	near(3.5, e.CopySeconds, "copy on two slots")

	// An import rate the exports outrun: the destination is the bottleneck (a 2..2.25 then b waits for nothing
	// but its own export; with a slow destination b's import starts after a's).
	slow := rates
	slow.ImportRate = 10
	e = estimateOf(a, slow, 2, 1)
	near(2+10+20, e.CopySeconds, "a slow destination imports one window after the other")

	// With history the versions are what moves; counts mode looks up nothing on an empty destination; no sample:
	// the default size.
	versions := int64(900)
	a.Request.History, a.Request.Verify = true, migration.VerifyModeCounts
	a.Types[0].Versions, a.Types[0].AvgBytes = &versions, 0
	e = estimateOf(a, rates, 1, 1)
	require.Equal(t, int64(900*10), e.StagingBytes)
	near(2*(0.9+0.5), e.VerifySeconds, "counts of the versions, no lookup")
	require.True(t, slicesContainsPrefix(e.Assumptions, "staging: 10 bytes a resource"), "%v", e.Assumptions)
}

func slicesContainsPrefix(list []string, prefix string) bool {
	for _, s := range list {
		if strings.HasPrefix(s, prefix) {
			return true
		}
	}
	return false
}

// fakeValidator refuses as the migration's validation does: history with InitialLoad or a typeFilter.
type fakeValidator struct{}

func (fakeValidator) ValidateStart(raw migration.StartRequest) (*migration.Request, *migration.Error) {
	if raw.Source == nil {
		return nil, &migration.Error{Kind: migration.Invalid, Code: "missing_field", Field: "source", Message: "source is required"}
	}
	req := &migration.Request{Source: *raw.Source, Destination: *raw.Destination, History: raw.History, TypeFilter: raw.TypeFilter,
		ImportMode: migration.ModeIncremental}
	if raw.ImportMode != nil {
		req.ImportMode = *raw.ImportMode
	}
	if req.History && len(req.TypeFilter) > 0 {
		return nil, &migration.Error{Kind: migration.Invalid, Code: "history_not_combinable", Field: "typeFilter", Message: "history and typeFilter"}
	}
	if req.History && req.ImportMode == migration.ModeInitial {
		return nil, &migration.Error{Kind: migration.Invalid, Code: "history_not_combinable", Field: "importMode", Message: "history and InitialLoad"}
	}
	return req, nil
}

// Start refuses what a start refuses for a field, and assesses a request refused only for its combination (both
// fields to blame, each put back), the combination a blocking item.
func TestStartAssessesACombinationAndRefusesTheRest(t *testing.T) {
	t.Parallel()
	svc, err := NewService(Config{Store: store.NewMemory(), Staging: nil, Validator: fakeValidator{},
		FHIR: func(string) (Client, error) { return nil, nil }})
	require.Error(t, err, "a staging account is required")
	svc, err = NewService(Config{Store: store.NewMemory(), Staging: noStaging{}, Validator: fakeValidator{},
		FHIR: func(string) (Client, error) { return nil, nil }})
	require.NoError(t, err)

	_, err = svc.Start(context.Background(), migration.StartRequest{Destination: ptr("https://d")})
	var me *migration.Error
	require.ErrorAs(t, err, &me)
	require.Equal(t, "missing_field", me.Code)

	initial := migration.ModeInitial
	a, err := svc.Start(context.Background(), migration.StartRequest{Source: ptr("https://s"), Destination: ptr("https://d"), History: true,
		ImportMode: &initial, TypeFilter: []string{"Observation?status=final"}})
	require.NoError(t, err)
	require.Equal(t, StatusRunning, a.Status)
	require.Equal(t, migration.ModeInitial, a.Request.ImportMode, "put back")
	require.Equal(t, []string{"Observation?status=final"}, a.Request.TypeFilter, "put back")
	it := itemOf(t, a.Items, CodeRequest)
	require.Equal(t, Blocking, it.Status)
	require.Contains(t, it.Detail, "history_not_combinable")
	got, err := svc.Get(context.Background(), a.ID)
	require.NoError(t, err)
	require.Equal(t, a.ID, got.ID)
	_, err = svc.Get(context.Background(), "a-none")
	require.ErrorAs(t, err, &me)
	require.Equal(t, "not_found", me.Code)
}

func ptr(s string) *string { return &s }
