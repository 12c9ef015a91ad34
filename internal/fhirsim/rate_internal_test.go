package fhirsim

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestImportMeterSharesTheRate: running imports share the destination's rate equally, and one that is served in
// full leaves the set at that instant, so the others speed up (processor sharing, exactly).
func TestImportMeterSharesTheRate(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := t0
	m := newImportMeter(RateModel{ImportRate: 50, TimeScale: 2}, func() time.Time { return at }) // 100/s
	m.last = t0
	a, b := m.join(), m.join()
	a.work, a.known = 100, true
	b.work, b.known = 300, true

	m.advanceLocked(t0.Add(time.Second)) // 50 each
	require.InDelta(t, 50, a.left(), 1e-9)
	require.InDelta(t, 250, b.left(), 1e-9)

	m.advanceLocked(t0.Add(3 * time.Second)) // a done at 2 s (50 more each), then b alone at 100/s for 1 s
	require.False(t, m.active[a], "served in full")
	require.True(t, m.active[b])
	require.InDelta(t, 100, b.left(), 1e-9)

	// A job whose work is not known yet takes its share and cannot finish.
	at = t0.Add(3 * time.Second)
	c := m.join()
	m.advanceLocked(t0.Add(3*time.Second + 200*time.Millisecond)) // 10 each
	require.True(t, m.active[c])
	require.InDelta(t, 10, c.served, 1e-9)
	require.InDelta(t, 90, b.left(), 1e-9)

	// Told its work once read, it has been served part of it already: here all of it.
	at = t0.Add(3*time.Second + 200*time.Millisecond)
	require.NoError(t, m.finish(context.Background(), c, 5))
	require.False(t, m.active[c])
	m.advanceLocked(t0.Add(time.Hour))
	require.Empty(t, m.active)
}

func TestRateModelTimes(t *testing.T) {
	r := RateModel{Weight: 1000, ExportRate: 2900, TimeScale: 100}
	require.Equal(t, time.Duration(float64(5800*1000)/2900/100*float64(time.Second)), r.exportTime(5800))
	require.Zero(t, r.exportTime(0))
	require.Zero(t, RateModel{}.exportTime(10), "no export rate: no modelled time")
	require.Equal(t, int64(1), RateModel{}.weight())
	require.Error(t, RateModel{ImportRate: math.NaN()}.Validate())
	require.Error(t, RateModel{Weight: -1}.Validate())
	require.NoError(t, r.Validate())
	require.Nil(t, newImportMeter(RateModel{Weight: 3}, time.Now), "no import rate: imports are not metered")
}
