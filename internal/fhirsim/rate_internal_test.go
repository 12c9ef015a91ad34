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

// TestRateModelTimes pins the model's durations by hand: an export of n stored resources of weight W at R_e per
// second under time scale S takes n x W / R_e / S seconds of wall time, and an import alone on the destination
// takes its modelled resources / R_I / S; a scale below 1 slows exports and imports alike, and 0 means 1.
func TestRateModelTimes(t *testing.T) {
	// 5,800 stored x 1,000 = 5,800,000 modelled; / 2,900 per s = 2,000 s modelled; / 100 = 20 s.
	r := RateModel{Weight: 1000, ExportRate: 2900, TimeScale: 100}
	require.Equal(t, 20*time.Second, r.exportTime(5800))
	// 29 stored x 1,000 = 29,000; / 2,900 = 10 s modelled; / 0.5 = 20 s (slower than real time).
	require.Equal(t, 20*time.Second, RateModel{Weight: 1000, ExportRate: 2900, TimeScale: 0.5}.exportTime(29))
	// Scale 0 is 1: 10 s.
	require.Equal(t, 10*time.Second, RateModel{Weight: 1000, ExportRate: 2900}.exportTime(29))
	require.Zero(t, r.exportTime(0))
	require.Zero(t, RateModel{}.exportTime(10), "no export rate: no modelled time")
	require.Equal(t, int64(1), RateModel{}.weight())
	require.Error(t, RateModel{ImportRate: math.NaN()}.Validate())
	require.Error(t, RateModel{Weight: -1}.Validate())
	require.NoError(t, r.Validate())
	require.Nil(t, newImportMeter(RateModel{Weight: 3}, time.Now), "no import rate: imports are not metered")
}

// TestImportAndExportTakeTheSameScaledTime: the same 100 modelled resources at the same rate of 50 per second take
// 2 s modelled, so 4 s of wall time at scale 0.5 and 1 s at scale 2, whether exported or imported.
func TestImportAndExportTakeTheSameScaledTime(t *testing.T) {
	for _, c := range []struct {
		scale float64
		wall  time.Duration
	}{{0.5, 4 * time.Second}, {2, time.Second}, {0, 2 * time.Second}} {
		m := RateModel{Weight: 1, ExportRate: 50, ImportRate: 50, TimeScale: c.scale}
		require.Equal(t, c.wall, m.exportTime(100), "export at scale %v", c.scale)

		t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		meter := newImportMeter(m, func() time.Time { return t0 })
		meter.last = t0
		j := meter.join()
		j.work, j.known = 100, true
		meter.advanceLocked(t0.Add(c.wall - time.Millisecond))
		require.True(t, meter.active[j], "import at scale %v: still running 1 ms before %v", c.scale, c.wall)
		meter.advanceLocked(t0.Add(c.wall))
		require.False(t, meter.active[j], "import at scale %v: done at %v", c.scale, c.wall)
	}
}

// TestShareMeterChangesScale: a meter serves at its base rate times the scale; a new scale applies from the
// instant it is set, what ran before having been served at the old one.
func TestShareMeterChangesScale(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := t0
	m := newShareMeter(10, 100, func() time.Time { return at }) // 1,000/s
	m.last = t0
	j := m.join()
	j.work, j.known = 5_000, true
	at = t0.Add(2 * time.Second) // 2,000 served
	m.setScale(10)               // from now on 100/s
	require.InDelta(t, 3_000, j.left(), 1e-9)
	m.advanceLocked(t0.Add(12 * time.Second)) // 1,000 more
	require.InDelta(t, 2_000, j.left(), 1e-9)
	require.Nil(t, newShareMeter(0, 5, time.Now), "no rate: nothing metered")
	var none *importMeter
	none.setScale(3)
	require.NoError(t, none.serve(context.Background(), 10))
}

// TestSetTimeScale: the rate model's durations follow the scale set while running; without a rate model nothing
// changes, and a scale that is not positive is ignored.
func TestSetTimeScale(t *testing.T) {
	s := New(WithRateModel(RateModel{Weight: 1000, ExportRate: 2900, SearchRate: 16_000, CountRate: 1e7, TimeScale: 100}))
	defer s.Close()
	require.Equal(t, 20*time.Second, s.rateModel().exportTime(5800))
	s.SetTimeScale(1000)
	require.Equal(t, 2*time.Second, s.rateModel().exportTime(5800))
	require.InDelta(t, 16_000*1000, s.searchMeter.rate, 1e-6)
	require.InDelta(t, 1e7*1000, s.countMeter.rate, 1e-6)
	s.SetTimeScale(-1)
	require.Equal(t, 1000.0, s.rateModel().TimeScale)
	plain := New()
	defer plain.Close()
	plain.SetTimeScale(10)
	require.Equal(t, RateModel{}, plain.rateModel())
	require.Nil(t, plain.searchMeter)
	plain.chargeCount(context.Background(), 10) // no model: no wait
	plain.chargeSearch(context.Background(), 10)
}
