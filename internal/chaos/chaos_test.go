package chaos

import (
	"bytes"
	"context"
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var handlerBinary = flag.String("chaos.handler", "", "a built handler to run (default: built from ./handler)")

// TestSmallChaosRun: three migrations against faulty simulators, with duplicated and lost messages and at least
// five handler kills, end without a lost or altered resource and without a second kick-off.
func TestSmallChaosRun(t *testing.T) {
	if testing.Short() {
		t.Skip("stack-level chaos run; run without -short")
	}
	var progress bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	sum, err := Run(ctx, Options{Migrations: 3, Patients: 3, Seed: 20260101, Kills: 5, KillEvery: 3 * time.Second,
		Timeout: 180 * time.Second, Progress: &progress, HandlerBinary: *handlerBinary})
	require.NoError(t, err, progress.String())
	t.Log(progress.String())
	t.Log(sum.String())
	require.Equal(t, 3, sum.Migrations)
	require.Zero(t, sum.Unfinished, "every migration ended: %v", sum.Reasons)
	require.Equal(t, 3, sum.Completed+sum.Failed)
	require.GreaterOrEqual(t, sum.Kills, 5)
	require.Positive(t, sum.Faults)
	require.Zero(t, sum.Missing, "%v", sum.Reasons)
	require.Zero(t, sum.Different, "%v", sum.Reasons)
	require.Zero(t, sum.DuplicateKickoffs)
	require.Positive(t, sum.Completed, "the default faults are all survivable: %v", sum.Reasons)
	for id, why := range sum.Reasons {
		if strings.HasPrefix(why, "failed: ") {
			// A failure must carry a reason the injected faults explain (a server's answer, bounded retries).
			require.Regexp(t, `(kick-off attempts failed|status polls in a row failed|exported \d+ times|operation failed)`, why, id)
		}
	}
}

func TestSummaryLine(t *testing.T) {
	t.Parallel()
	s := Summary{Migrations: 3, Completed: 3, Kills: 7, Duplicates: 12, Dropped: 5, Faults: 140, Orphaned: 1}
	require.Equal(t, "chaos: migrations=3 completed=3 failed=0 kills=7 duplicates=12 dropped=5 faults=140 orphaned=1 duplicate_kickoffs=0 missing=0", s.String())
	require.True(t, s.OK())
	s.DuplicateKickoffs = 1
	require.False(t, s.OK())
	require.False(t, Summary{Missing: 1}.OK())
	require.False(t, Summary{Unfinished: 1}.OK())
}

func TestBadFaultSpecIsRefused(t *testing.T) {
	t.Parallel()
	_, err := Run(context.Background(), Options{Faults: "meteor-strike=1", RepoRoot: t.TempDir()})
	require.ErrorContains(t, err, "fault spec")
}
