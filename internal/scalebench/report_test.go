package scalebench

import (
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestLineIsPlainDecimals(t *testing.T) {
	f := Figures{Resources: 1_000_000_000, Windows: 312, Files: 100_000, MakespanS: 1.0987654e5, LowerBoundS: 100_000.3448,
		PlanBoundS: 100_862.1, LBRatio: 0.91796, MSToolS: 3.5e5, Speedup: 3.1855, DocMaxBytes: 150_000, HandlerRSSMaxMB: 41.26, SweepP99Ms: 88.31,
		TimeScale: 150}
	line := f.Line()
	require.Equal(t, "scale: resources=1000000000 windows=312 files=100000 makespan_s=109877 lower_bound_s=100000 plan_bound_s=100862 lb_ratio=0.918 mstool_s=350000 speedup=3.19 doc_max_bytes=150000 handler_rss_max_mb=41.3 sweep_p99_ms=88.3 time_scale=150", line)
	require.NotRegexp(t, regexp.MustCompile(`[eE][+-]?\d`), line)
}

func TestP99AndInputTypes(t *testing.T) {
	ds := make([]time.Duration, 200)
	for i := range ds {
		ds[i] = time.Duration(200-i) * time.Millisecond
	}
	require.Equal(t, 198.0, p99ms(ds), "the 198th of 200 by nearest rank")
	require.Zero(t, p99ms(nil))
	require.Equal(t, []string{"Encounter", "Observation"}, inputTypes([]string{
		"http://127.0.0.1:1/devstoreaccount1/m-1/20261202T052635-abc/Observation-12.ndjson",
		"http://127.0.0.1:1/devstoreaccount1/m-1/20261202T052635-abc/Encounter-1.ndjson",
		"http://127.0.0.1:1/devstoreaccount1/m-1/20261202T052635-abc/Observation-13.ndjson",
	}))
}

func TestConfigValidate(t *testing.T) {
	ok := Config{Workload: DefaultWorkload(), Rates: DefaultRates(), TimeScale: 150, Budget: time.Minute}
	require.NoError(t, ok.Validate())
	bad := ok
	bad.Rates.ResourcesPerFile = 1500 // not a whole number of stored resources of weight 1000
	require.ErrorContains(t, bad.Validate(), "resources per file")
	bad = ok
	bad.TimeScale = 0
	require.ErrorContains(t, bad.Validate(), "time scale")
	bad = ok
	bad.Rates.ImportSlots = 0
	require.Error(t, bad.Validate())
}
