package scalebench

import (
	"math"
	"slices"
	"time"
)

// Rates are the services' figures a run is modelled with (the simulators' rate model) and the file size both
// tools see.
type Rates struct {
	// ExportPerJob is the modelled resources per second one export job produces (R_e); ExportSlots how many run
	// at once on the source (C_e).
	ExportPerJob float64 `json:"exportPerJob"`
	ExportSlots  int     `json:"exportSlots"`
	// ImportCapacity is the modelled resources per second the destination imports in all (R_I), shared by its
	// running imports; ImportSlots how many run at once (C_i).
	ImportCapacity float64 `json:"importCapacity"`
	ImportSlots    int     `json:"importSlots"`
	// ResourcesPerFile is the modelled resources in one exported file.
	ResourcesPerFile int64 `json:"resourcesPerFile"`
}

// LowerBound is the least time, in modelled seconds, in which the two services can move a workload of resources
// modelled resources, stored as resources of weight modelled ones each, whatever the plan and whatever the tool.
// It depends on the workload and the rates alone, never on the windows a run chose, so that no plan can raise the
// bound it is judged by. With N = resources, W = weight, the larger of:
//
//   - imports: N / R_I + W / R_e. The destination imports at most R_I per second in all, however many imports
//     run and however the plan cuts the workload, so the imports need N / R_I seconds of service. None of it can
//     be given before the first export that holds anything has completed (an import takes the files its export's
//     manifest names, and the manifest exists once the export has completed). That export holds at least one
//     stored resource, W modelled ones, and one export job produces at most R_e per second: it takes at least
//     W / R_e, during which nothing is imported.
//   - exports: N / (C_e × R_e) + W / R_I. The source produces at most R_e per second in each of its C_e slots, so
//     the last export that holds anything completes no sooner than N / (C_e × R_e). Its window, at least W, is
//     then imported at no more than R_I per second: at least W / R_I more.
//
// Both hold for every plan, hence their larger. A plan of many small windows, exported several at once, comes
// close to it; a plan of a few large ones cannot (its own bound, PlanBound, says how far it stays above).
func LowerBound(resources, weight int64, r Rates) float64 {
	if resources <= 0 {
		return 0
	}
	n, w := float64(resources), float64(max(weight, 1))
	imports := n/r.ImportCapacity + w/r.ExportPerJob
	exports := n/(r.ExportPerJob*float64(r.ExportSlots)) + w/r.ImportCapacity
	return max(imports, exports)
}

// PlanBound is the least time, in modelled seconds, in which the two services can move windows of these sizes
// (modelled resources): the bound of one plan, which the plan itself moves (one huge window raises it to that
// window's export and import). The largest of
//   - every export at the whole export capacity, then at least the smallest window's import;
//   - every import at the whole import capacity, after at least the smallest window's export;
//   - the largest window's export then its import (one window cannot be imported before it is exported).
//
// Windows that hold nothing are left out: they need no import and hold up none. For windows that cover a workload
// it is never below LowerBound, as every window that holds anything holds at least one stored resource.
func PlanBound(windows []int64, r Rates) float64 {
	windows = slices.DeleteFunc(slices.Clone(windows), func(w int64) bool { return w <= 0 })
	if len(windows) == 0 {
		return 0
	}
	var total int64
	for _, w := range windows {
		total += w
	}
	smallest, largest := float64(slices.Min(windows)), float64(slices.Max(windows))
	exports := float64(total)/(r.ExportPerJob*float64(r.ExportSlots)) + smallest/r.ImportCapacity
	imports := float64(total)/r.ImportCapacity + smallest/r.ExportPerJob
	one := largest/r.ExportPerJob + largest/r.ImportCapacity
	return max(exports, imports, one)
}

// Microsoft's tool's schedule (shared/reference/fhir-bulk-protocol.md, sections 5 and 8), as modelled here.
const (
	msWindow        = BucketSpan      // 30-day windows from the oldest resource
	msSplitOver     = 100_000_000     // a window is halved while it counts more
	msPoll          = 2 * time.Minute // status polls
	msConfirm       = time.Minute     // a completed export is confirmed a second time one minute later
	msTick          = time.Hour       // the timer that starts the next window
	msPayloadFiles  = 10_000          // files per import payload
	msPayloadsRound = 5               // payloads posted per round
)

// MSTool is the makespan, in modelled seconds, of Microsoft's tool's schedule on the workload's buckets at rates r:
// one window at a time, each exported as one system export at the whole export capacity (generous: the service
// parallelises it), its completion seen at the next 2-minute poll and confirmed a minute later; then imported in
// payloads of 10,000 files, at most 5 per round, a round taking its resources at the import capacity and seen done
// at the next 2-minute poll; the next window's export starts at the first hourly tick after the import ended.
// Windows that hold nothing are skipped (generous again: the tool counts and exports them).
func MSTool(buckets []Bucket, r Rates) float64 {
	windows := msWindows(buckets)
	exportRate := r.ExportPerJob * float64(r.ExportSlots)
	t, end := 0.0, 0.0 // the first export starts on a tick
	for _, n := range windows {
		if n <= 0 {
			continue
		}
		seen := t + polled(float64(n)/exportRate)
		ready := seen + msConfirm.Seconds()
		files := ceilDiv(n, r.ResourcesPerFile)
		payloads := ceilDiv(files, msPayloadFiles)
		at := ready
		for left := n; payloads > 0; payloads -= msPayloadsRound {
			round := min(payloads, msPayloadsRound)
			// A round carries its payloads' files: full payloads first, the remainder in the last.
			res := min(left, round*msPayloadFiles*r.ResourcesPerFile)
			left -= res
			at += polled(float64(res) / r.ImportCapacity)
		}
		end = at
		t = (math.Floor(at/msTick.Seconds()) + 1) * msTick.Seconds()
	}
	return end
}

// msWindows are the modelled resources of the tool's windows: 30-day windows from the oldest bucket, each halved
// (the resources taken as even within it) while over msSplitOver, in time order.
func msWindows(buckets []Bucket) []int64 {
	if len(buckets) == 0 {
		return nil
	}
	oldest := slices.MinFunc(buckets, func(a, b Bucket) int { return a.Start.Compare(b.Start) }).Start
	per := map[int64]int64{}
	last := int64(0)
	for _, b := range buckets {
		i := int64(b.Start.Sub(oldest) / msWindow)
		per[i] += b.Resources
		last = max(last, i)
	}
	var out []int64
	for i := int64(0); i <= last; i++ {
		out = append(out, halve(per[i])...)
	}
	return out
}

func halve(n int64) []int64 {
	if n <= msSplitOver {
		return []int64{n}
	}
	return append(halve(n/2), halve(n-n/2)...)
}

// polled is how long after it starts a job of d seconds is seen done by polls every msPoll from its start.
func polled(d float64) float64 {
	p := msPoll.Seconds()
	return max(math.Ceil(d/p), 1) * p
}

func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }
