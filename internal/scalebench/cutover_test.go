package scalebench

import (
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCutoverConfigIsValidated(t *testing.T) {
	t.Parallel()
	require.NoError(t, DefaultCutoverConfig().Validate())
	require.Equal(t, int64(1_000_000_000), DefaultCutoverConfig().Workload.Resources, "the issue's billion")
	for name, tweak := range map[string]func(c *CutoverConfig){
		"sync scale above the poll tick": func(c *CutoverConfig) { c.SyncScale = 31 },
		"no copy write scale":            func(c *CutoverConfig) { c.CopyWriteScale = 0 },
		"a mix over 1":                   func(c *CutoverConfig) { c.Mix.Create = 0.6 },
		"no measured round":              func(c *CutoverConfig) { c.Rounds = 0 },
		"no count rate":                  func(c *CutoverConfig) { c.Search.CountRate = 0 },
		"no interval":                    func(c *CutoverConfig) { c.SyncInterval = 0 },
	} {
		c := DefaultCutoverConfig()
		tweak(&c)
		require.Error(t, c.Validate(), name)
	}
}

// TestCutoverLineAndTargets: the line carries the figures in its order, and the targets are the issue's.
func TestCutoverLineAndTargets(t *testing.T) {
	t.Parallel()
	f := CutoverFigures{Resources: 1_000_000_000, WritesPerS: 100, DowntimeS: 480.4, FinalRoundS: 90, VerifyS: 200,
		ReconcileS: 190.4, LagP50S: 800, LagP99S: 1100, LagTargetS: 1400}
	require.Regexp(t, regexp.MustCompile(`^cutover: resources=1000000000 writes_per_s=100 downtime_s=480 final_round_s=90 `+
		`verify_s=200 reconcile_s=190 lag_p50_s=800 lag_p99_s=1100$`), f.Line())
	require.True(t, f.Met())
	f.DowntimeS = 601
	require.False(t, f.Met(), "downtime over 600 s")
	f.DowntimeS, f.LagP99S = 600, 1401
	require.False(t, f.Met(), "lag over its target")
}

func TestPercentileIsNearestRank(t *testing.T) {
	t.Parallel()
	v := []float64{5, 1, 4, 2, 3}
	require.Equal(t, 3.0, percentile(v, 0.5))
	require.Equal(t, 5.0, percentile(v, 0.99))
	require.Equal(t, []float64{5, 1, 4, 2, 3}, v, "not sorted in place")
	require.Zero(t, percentile(nil, 0.5))
}
