package main

import (
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/scalebench"
)

func TestParseDefaultsAndRefusals(t *testing.T) {
	cfg, out, err := parse(nil, io.Discard)
	require.NoError(t, err)
	require.Equal(t, "bench/out/scale.json", out)
	require.Equal(t, int64(1_000_000_000), cfg.Workload.Resources)
	require.Equal(t, scalebench.DefaultRates(), cfg.Rates)
	require.Equal(t, 150.0, cfg.TimeScale)
	require.Equal(t, 17*time.Minute, cfg.Budget)

	cfg, _, err = parse([]string{"-resources", "50000000", "-time-scale", "60", "-import-slots", "3"}, io.Discard)
	require.NoError(t, err)
	require.Equal(t, int64(50_000_000), cfg.Workload.Resources)
	require.Equal(t, 3, cfg.Rates.ImportSlots)
	cfg, _, err = parse([]string{"-resources-per-file", "10000"}, io.Discard)
	require.NoError(t, err)
	require.Equal(t, int64(10_000), cfg.Rates.ResourcesPerFile)

	for _, args := range [][]string{{"-weight", "0"}, {"-time-scale", "-1"}, {"-resources", "10"}, {"extra"}, {"-export-rate", "0"}, {"-resources-per-file", "1500"}, {"-resources-per-file", "0"}} {
		_, _, err := parse(args, io.Discard)
		require.Error(t, err, "%v", args)
	}
}
