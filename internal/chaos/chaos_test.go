package chaos

import (
	"bytes"
	"context"
	"flag"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/fhirsim"
)

var handlerBinary = flag.String("chaos.handler", "", "a built handler to run (default: built from ./handler)")

// testFaults are every kind, likelier than the defaults, so that each fires on the small data of a test run.
// import-hold has the fewest chances (one roll per import status answered completed, a few per migration): at 0.2
// it once fired in none of three rounds on a loaded machine, and the run's budget started no fourth.
const testFaults = "kickoff-429=0.2,status-500=0.1,status-503=0.1,drop-conn=0.03,export-fail=0.15,export-stall=0.1," +
	"export-cancel=0.15,early-200=0.25,import-hold=0.4,import-busy=0.2,import-line-errors=0.02,import-drop=0.02"

// TestSmallChaosRun: migrations against faulty simulators, with duplicated and lost messages and handler kills,
// until every fault kind fired: the figures, taken from the stand-ins' records, show no loss, no duplicate
// kick-off, no orphan beyond the lost kick-off answers and kills, and every migration completed or failed for a
// cause the faults on its own jobs explain (a lossy destination never completing).
func TestSmallChaosRun(t *testing.T) {
	if testing.Short() {
		t.Skip("stack-level chaos run; run without -short")
	}
	var progress bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	sum, err := Run(ctx, Options{Migrations: 3, Patients: 3, Seed: 20260101, Kills: 5, KillEvery: 5 * time.Second,
		Faults: testFaults, MinResources: 200, Budget: 4 * time.Minute, Timeout: 3 * time.Minute,
		Progress: &progress, HandlerBinary: *handlerBinary})
	require.NoError(t, err, progress.String())
	t.Log(progress.String())
	t.Log(sum.String())
	require.True(t, sum.OK(), "%s\nproblems: %v\nreasons: %v", sum, sum.Problems, sum.Reasons)
	require.GreaterOrEqual(t, sum.Migrations, 3)
	require.Zero(t, sum.Unfinished)
	require.Equal(t, sum.Migrations, sum.Completed+sum.Failed)
	require.Equal(t, sum.Failed, sum.Injected, "%v", sum.Reasons)
	require.Positive(t, sum.Completed, "%v", sum.Reasons)
	require.GreaterOrEqual(t, sum.Kills, 5)
	require.Equal(t, 12, sum.FaultKindsConfigured)
	require.Equal(t, sum.FaultKindsConfigured, sum.FaultKinds, "%v", sum.FaultsByName)
	require.Zero(t, sum.Missing, "%v", sum.Reasons)
	require.Zero(t, sum.Extra, "%v", sum.Reasons)
	require.Zero(t, sum.Different, "%v", sum.Reasons)
	require.Zero(t, sum.DuplicateKickoffs)
	require.LessOrEqual(t, sum.Orphaned, sum.LostKickoffs+sum.Kills)
	require.GreaterOrEqual(t, sum.Smallest, 200)
}

func TestSummaryLine(t *testing.T) {
	t.Parallel()
	s := Summary{Seed: 7, Migrations: 3, Completed: 2, Failed: 1, Injected: 1, Kills: 7, Duplicates: 12, Dropped: 5,
		Faults: 140, FaultKinds: 12, FaultKindsConfigured: 12, Orphaned: 1, LostKickoffs: 2, Smallest: 2400}
	require.Equal(t, "chaos: seed=7 migrations=3 completed=2 failed=1 injected=1 kills=7 duplicates=12 dropped=5 faults=140 "+
		"fault_kinds=12/12 orphaned=1 lost_kickoffs=2 duplicate_kickoffs=0 missing=0 extra=0 different=0 smallest=2400", s.String())
}

// TestJudgeNamesEveryProblem: each figure that shows a loss, or a run that proved too little, fails the run.
func TestJudgeNamesEveryProblem(t *testing.T) {
	t.Parallel()
	o := Options{Kills: 5, MinResources: 2000}
	good := Summary{Migrations: 3, Completed: 2, Failed: 1, Injected: 1, Kills: 6, FaultKinds: 12, FaultKindsConfigured: 12,
		Smallest: 2400, Orphaned: 6, LostKickoffs: 2}
	good.judge(o)
	require.True(t, good.OK(), "%v", good.Problems)
	for name, spoil := range map[string]func(s *Summary){
		"unexplained failure": func(s *Summary) { s.Injected = 0 },
		"missing":             func(s *Summary) { s.Missing = 1 },
		"extra":               func(s *Summary) { s.Extra = 1 },
		"different":           func(s *Summary) { s.Different = 1 },
		"duplicate kick-off":  func(s *Summary) { s.DuplicateKickoffs = 1 },
		"unfinished":          func(s *Summary) { s.Unfinished = 1 },
		"too few kills":       func(s *Summary) { s.Kills = 4 },
		"a kind never fired":  func(s *Summary) { s.FaultKinds = 11 },
		"too few migrations":  func(s *Summary) { s.Migrations = 2 },
		"too small":           func(s *Summary) { s.Smallest = 1999 },
		// Orphans beyond the kick-offs whose answer was lost and the kills: the engine lost a job it started.
		"orphaned above the bound": func(s *Summary) { s.Orphaned = 9 },
		// Two of three failed, one excused: "one completed" is not enough.
		"two failed, one unexcused": func(s *Summary) { s.Completed, s.Failed = 1, 2 },
		"none completed":            func(s *Summary) { s.Completed, s.Failed, s.Injected, s.Smallest = 0, 3, 3, 0 },
	} {
		s := good
		s.Problems = nil
		spoil(&s)
		s.judge(o)
		require.False(t, s.OK(), name)
		require.Len(t, s.Problems, 1, name)
	}
}

// TestServerJobFigures: orphans and duplicate kick-offs come from the simulators' job records alone.
func TestServerJobFigures(t *testing.T) {
	t.Parallel()
	job := func(id string, gets, deletes int) fhirsim.JobStats {
		return fhirsim.JobStats{ID: id, Gets: gets, Deletes: deletes}
	}
	src := fhirsim.Stats{Exports: []fhirsim.ExportJobStats{
		{JobStats: job("e1", 3, 0), Query: "_container=m1&_type=Patient", Output: []string{"f1", "f2"}},
		{JobStats: job("e2", 0, 0), Query: "_container=m1&_type=Patient", Output: []string{"f3"}}, // orphaned, never imported
		{JobStats: job("e3", 0, 1), Query: "_container=m1&_type=Observation", Output: []string{"f4"}},
		{JobStats: job("e4", 2, 0), Query: "_container=m1&_type=Observation", Output: []string{"f5"}},
	}}
	dest := fhirsim.Stats{Imports: []fhirsim.ImportJobStats{
		{JobStats: job("i1", 2, 0), Inputs: []string{"f1", "f2", "f5"}},
	}}
	orphaned, dup := serverJobFigures(src, []fhirsim.Stats{dest})
	require.Equal(t, 1, orphaned, "e2 was never asked about; e3 was canceled")
	require.Zero(t, dup)

	// The Observation kick-off's two server jobs both imported, and f1 imported twice.
	dest.Imports = append(dest.Imports, fhirsim.ImportJobStats{JobStats: job("i2", 0, 0), Inputs: []string{"f4", "f1"}})
	orphaned, dup = serverJobFigures(src, []fhirsim.Stats{dest})
	require.Equal(t, 2, orphaned)
	require.Equal(t, 2, dup)
}

func TestBadFaultSpecIsRefused(t *testing.T) {
	t.Parallel()
	_, err := Run(context.Background(), Options{Faults: "meteor-strike=1", RepoRoot: t.TempDir()})
	require.ErrorContains(t, err, "meteor-strike")
}
