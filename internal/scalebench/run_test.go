package scalebench

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/localstack"
)

// TestASmallScaleRun runs the whole bench on a small workload through the real local stack: the migration
// completes, and every figure is read from the stand-ins and agrees with the others. Speed is not asserted.
func TestASmallScaleRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Azurite, the simulators and the local host")
	}
	root, err := localstack.RepoRoot()
	require.NoError(t, err)
	w := DefaultWorkload()
	w.Resources = 20_000_000 // 20,000 stored resources, 2,000 files
	rates := DefaultRates()
	rates.ResourcesPerFile = 10_000
	cfg := Config{Workload: w, Rates: rates, TimeScale: 400, Budget: 3 * time.Minute, RepoRoot: root}
	rep, err := Run(context.Background(), cfg)
	require.NoError(t, err)
	f := rep.Figures
	require.Equal(t, w.Resources, f.Resources, "the destination counts the whole workload")
	require.Positive(t, f.Windows)
	// Files roll over at 10,000 modelled resources per type and window: at least 2,000, and at most one partial
	// file more per type and window.
	require.GreaterOrEqual(t, f.Files, 2000)
	require.LessOrEqual(t, f.Files, 2000+f.Windows*len(w.Types))
	var exported, imported int64
	windows := 0
	for _, j := range rep.Jobs {
		require.Less(t, j.StartS, j.EndS, "%+v", j)
		require.NotEmpty(t, j.Types)
		switch j.Kind {
		case "export":
			exported += j.Resources
			windows++
		case "import":
			imported += j.Resources
		}
	}
	require.Equal(t, w.Resources, exported)
	require.Equal(t, w.Resources, imported)
	require.Equal(t, f.Windows, windows)
	// The workload's bound, by hand: 20M / 10,000 = 2,000 s + 1,000 / 2,900 = 0.344828 s (exports: 20M / 11,600
	// + 0.1 = 1,724.237931, less), whatever windows the run chose.
	require.InDelta(t, 2000.344828, f.LowerBoundS, 1e-6, "the workload's bound")
	// The plan's bound is never below the workload's; the run is no faster than its plan's bound (0.99: the
	// makespan is read from wall clocks), nor Microsoft's schedule than the workload's.
	require.GreaterOrEqual(t, f.PlanBoundS, f.LowerBoundS)
	require.GreaterOrEqual(t, f.MakespanS, f.PlanBoundS*0.99)
	require.GreaterOrEqual(t, f.MSToolS, f.LowerBoundS)
	require.LessOrEqual(t, f.MakespanS, f.CompletedS)
	require.Positive(t, f.LBRatio)
	require.LessOrEqual(t, f.LBRatio, 1/0.99)
	require.Positive(t, f.DocMaxBytes)
	require.Positive(t, f.HandlerRSSMaxMB)
	require.Positive(t, f.SweepP99Ms)
	data, err := json.Marshal(rep)
	require.NoError(t, err)
	require.Contains(t, string(data), `"rates":{"exportPerJob":2900,"exportSlots":4,"importCapacity":10000,"importSlots":5,"resourcesPerFile":10000}`)
}
