package scalebench

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// planMakespan is the makespan, in modelled seconds, of a plan of windows (modelled resources each, in the order
// they start) under the rate model, by a tool with no latency of its own: exports start in order as soon as one
// of the C_e export slots is free, each producing R_e per second; a window's import is posted the instant its
// export completes and starts, in the order posted, as soon as one of the C_i import slots is free; the running
// imports share R_I equally (processor sharing), each ending once served its window. The simulators model the
// services so; the bench's figures do not use it, the tests judge the bounds against plans with it.
func planMakespan(windows []int64, r Rates) float64 {
	type export struct {
		end float64
		n   float64
	}
	var (
		now, last float64
		next      int
		exports   []export  // running, in the order started
		queue     []float64 // exported windows waiting for an import slot, in the order posted
		imports   []float64 // running imports: modelled resources left
	)
	for {
		for len(exports) < r.ExportSlots && next < len(windows) {
			n := float64(windows[next])
			exports = append(exports, export{now + n/r.ExportPerJob, n})
			next++
		}
		for len(imports) < r.ImportSlots && len(queue) > 0 {
			imports, queue = append(imports, queue[0]), queue[1:]
		}
		if len(exports) == 0 && len(imports) == 0 && len(queue) == 0 && next == len(windows) {
			return last
		}
		// The next event: an export completes, or the import with least left is served in full.
		at := math.Inf(1)
		for _, e := range exports {
			at = min(at, e.end)
		}
		share := r.ImportCapacity / float64(max(len(imports), 1))
		for _, left := range imports {
			at = min(at, now+left/share)
		}
		for i := range imports {
			imports[i] -= share * (at - now)
		}
		now = at
		running := exports[:0]
		for _, e := range exports {
			if e.end <= now {
				queue = append(queue, e.n)
			} else {
				running = append(running, e)
			}
		}
		exports = running
		left := imports[:0]
		for _, l := range imports {
			if l > 1e-6 {
				left = append(left, l)
			} else {
				last = now
			}
		}
		imports = left
	}
}

// TestPlanMakespanByHand pins the schedule model by hand.
func TestPlanMakespanByHand(t *testing.T) {
	// One window of 20M: its export, 20M / 2,900 = 6,896.551724 s, then its import alone, 20M / 10,000 = 2,000 s.
	require.InDelta(t, 8896.551724, planMakespan([]int64{20_000_000}, testRates), 1e-6)

	// R_e = R_I = 100 per second, two export slots: windows of 100 and 150 are exported by 1 s and 1.5 s. The first
	// import runs alone from 1 s (50 served by 1.5 s), then both share 50 per second each: the first ends at 2.5 s,
	// the second has 100 left then, alone at 100 per second: 3.5 s. (The destination is busy from 1 s on with
	// 250 resources: 1 + 2.5.)
	r := Rates{ExportPerJob: 100, ExportSlots: 2, ImportCapacity: 100, ImportSlots: 2}
	require.InDelta(t, 3.5, planMakespan([]int64{100, 150}, r), 1e-9)
	// One import slot: the second waits for the first (1 s to 2 s), then runs 2 s to 3.5 s: the same makespan.
	one := r
	one.ImportSlots = 1
	require.InDelta(t, 3.5, planMakespan([]int64{100, 150}, one), 1e-9)
	// One export slot: the second export runs 1 s to 2.5 s, its import 2.5 s to 4 s.
	one.ExportSlots = 1
	require.InDelta(t, 4, planMakespan([]int64{100, 150}, one), 1e-9)
	// A window that holds nothing takes no time.
	require.InDelta(t, 4, planMakespan([]int64{0, 100, 150}, one), 1e-9)

	// 100 windows of 200,000 at the default rates: four exports end every 200,000 / 2,900 = 68.965517 s, 800,000
	// resources, more than the destination takes in meanwhile (689,655), so from the first export's end the
	// destination never starves: 68.965517 + 20M / 10,000 = 2,068.965517 s.
	require.InDelta(t, 2068.965517, planMakespan(even(20_000_000, 100), testRates), 1e-6)
}

// TestLBRatioFallsForABadPlan: the same workload run with one window holding everything takes far longer than with
// many small windows, and lb_ratio says so, as the lower bound is the workload's; the plan's own bound follows the
// plan and would have scored both alike.
func TestLBRatioFallsForABadPlan(t *testing.T) {
	w := DefaultWorkload()
	w.Resources = 20_000_000 // weight 1,000
	score := func(windows []int64) Figures {
		f := Figures{MakespanS: planMakespan(windows, testRates)}
		f.judge(w, windows, testRates)
		return f
	}
	// The workload's bound: 20M / 10,000 = 2,000 s + 1,000 / 2,900 = 0.344828 s: 2,000.344828 (exports:
	// 20M / 11,600 + 0.1 = 1,724.237931, less), for both plans. (assert: every figure that is wrong is reported.)
	good, bad := score(even(20_000_000, 100)), score([]int64{20_000_000})
	assert.InDelta(t, 2000.344828, good.LowerBoundS, 1e-6)
	assert.InDelta(t, 2000.344828, bad.LowerBoundS, 1e-6)

	// 100 windows of 200,000: makespan 2,068.965517 s (above); lb_ratio 2,000.344828 / 2,068.965517
	// = (5,800,000 + 1,000) / (5,800,000 + 200,000) = 0.966833. Its own bound: every import after the smallest
	// export, 2,000 + 68.965517.
	assert.InDelta(t, 2068.965517, good.MakespanS, 1e-6)
	assert.InDelta(t, 2068.965517, good.PlanBoundS, 1e-6)
	assert.InDelta(t, 0.966833, good.LBRatio, 1e-6)

	// One window: makespan 6,896.551724 + 2,000 = 8,896.551724 s, more than four times longer; lb_ratio
	// 2,000.344828 / 8,896.551724 = 5.801 / 25.8 = 0.224845. Its own bound is its makespan: judged by it, the
	// plan would score 1.
	assert.InDelta(t, 8896.551724, bad.MakespanS, 1e-6)
	assert.InDelta(t, 8896.551724, bad.PlanBoundS, 1e-6)
	assert.InDelta(t, 0.224845, bad.LBRatio, 1e-6)
	assert.Less(t, bad.LBRatio, good.LBRatio/4)
}

// TestBoundsHoldForEveryPlan: on random plans of a workload, at random rates, the schedule never beats the plan's
// bound, and the plan's bound is never below the workload's.
func TestBoundsHoldForEveryPlan(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	const weight = 1000
	for range 500 {
		r := Rates{ExportPerJob: float64(100 + rng.IntN(10_000)), ExportSlots: 1 + rng.IntN(6),
			ImportCapacity: float64(100 + rng.IntN(20_000)), ImportSlots: 1 + rng.IntN(6)}
		var windows []int64
		var total int64
		for range 1 + rng.IntN(40) {
			n := weight * int64(rng.IntN(5000)) // some hold nothing
			windows = append(windows, n)
			total += n
		}
		if total == 0 {
			continue
		}
		w := DefaultWorkload()
		w.Resources = total
		f := Figures{MakespanS: planMakespan(windows, r)}
		f.judge(w, windows, r)
		require.GreaterOrEqual(t, f.MakespanS, f.PlanBoundS*(1-1e-9), "%v %+v", windows, r)
		require.GreaterOrEqual(t, f.PlanBoundS, f.LowerBoundS*(1-1e-9), "%v %+v", windows, r)
		require.LessOrEqual(t, f.LBRatio, 1+1e-9)
	}
	// Microsoft's schedule of the default workload is no exception.
	w := DefaultWorkload()
	w.Weight = 1_000_000 // the buckets only
	_, buckets := w.Generate()
	require.GreaterOrEqual(t, MSTool(buckets, testRates), LowerBound(w.Resources, 1000, testRates))
}

// even is n modelled resources in k windows of n / k.
func even(n int64, k int) []int64 {
	w := make([]int64, k)
	for i := range w {
		w[i] = n / int64(k)
	}
	return w
}
