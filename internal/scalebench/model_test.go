package scalebench

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var testRates = Rates{ExportPerJob: 2900, ExportSlots: 4, ImportCapacity: 10_000, ImportSlots: 5, ResourcesPerFile: 10_000}

// TestLowerBoundIsTheWorkloads pins the workload's bound by hand: the larger of N / R_I + W / R_e (every import at
// the destination's capacity, after the least export there can be: one stored resource) and N / (C_e x R_e) + W / R_I
// (every export at the source's capacity, then the least import there can be).
func TestLowerBoundIsTheWorkloads(t *testing.T) {
	// The default workload, import-bound: 10^9 / 10,000 = 100,000 s, + 1,000 / 2,900 = 0.344828 s: 100,000.344828.
	// (Exports: 10^9 / 11,600 = 86,206.896552 + 1,000 / 10,000 = 0.1: 86,206.996552, less.)
	require.InDelta(t, 100_000.344828, LowerBound(1_000_000_000, 1000, testRates), 1e-6)
	// Each resource standing for itself: the first export is 1 / 2,900 s: 100,000.000345.
	require.InDelta(t, 100_000.000345, LowerBound(1_000_000_000, 1, testRates), 1e-6)

	// Export-bound when exports are slow: 50M / (4 x 100) = 125,000 s, + 1,000 / 10,000 = 0.1 s: 125,000.1.
	// (Imports: 50M / 10,000 = 5,000 + 1,000 / 100 = 10: 5,010, less.)
	slow := testRates
	slow.ExportPerJob = 100
	require.InDelta(t, 125_000.1, LowerBound(50_000_000, 1000, slow), 1e-6)
	require.Zero(t, LowerBound(0, 1000, testRates))
}

// TestPlanBoundTakesTheLargestOfThree pins the bound of a plan by hand.
func TestPlanBoundTakesTheLargestOfThree(t *testing.T) {
	// Import-bound: 10 windows of 5M: every import, 50M / 10,000 = 5,000 s, after the smallest export,
	// 5M / 2,900 = 1,724.137931 s: 6,724.137931. (Exports: 50M / 11,600 = 4,310.344828 + 5M / 10,000 = 500:
	// 4,810.344828; one window: 1,724.137931 + 500 = 2,224.137931.)
	w := make([]int64, 10)
	for i := range w {
		w[i] = 5_000_000
	}
	require.InDelta(t, 6724.137931, PlanBound(w, testRates), 1e-6)
	// A window that holds nothing needs no import and holds none up: the same (counted, the smallest window would
	// be 0 and the bound 5,000).
	require.InDelta(t, 6724.137931, PlanBound(append([]int64{0}, w...), testRates), 1e-6)

	// Export-bound when exports are slow: 50M / (4 x 100) = 125,000 s, + 5M / 10,000 = 500 s: 125,500.
	slow := testRates
	slow.ExportPerJob = 100
	require.InDelta(t, 125_500, PlanBound(w, slow), 1e-6)

	// One huge window: its export, 100M / 2,900 = 34,482.758621 s, then its import, 10,000 s: 44,482.758621.
	// (Exports: 101M / 11,600 = 8,706.896552 + 100: 8,806.896552; imports: 10,100 + 1M / 2,900 = 344.827586:
	// 10,444.827586.)
	one := []int64{1_000_000, 100_000_000}
	require.InDelta(t, 44_482.758621, PlanBound(one, testRates), 1e-6)
	require.Zero(t, PlanBound(nil, testRates))
}

func TestMSToolSchedule(t *testing.T) {
	start := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	// Two windows of 11,600,000 (1,000 s of export at 4 x 2,900/s; 1,160 files: one payload, one round of 1,160 s).
	buckets := []Bucket{
		{"Observation", start, 11_000_000}, {"Patient", start, 600_000},
		{"Observation", start.Add(BucketSpan), 11_600_000},
	}
	// Window 1: export 1,000 s, seen at the 9th 2-minute poll (1,080 s), confirmed at 1,140 s; import 1,160 s
	// seen at 1,200 s: ends at 2,340 s. Window 2 starts on the next hour (3,600 s): ends at 3,600 + 2,340.
	require.InDelta(t, 3600+2340, MSTool(buckets, testRates), 1e-6)

	// An empty 30-day window in between is skipped; a window over 100M is halved.
	big := []Bucket{{"Observation", start, 250_000_000}, {"Observation", start.Add(3 * BucketSpan), 1}}
	require.Equal(t, []int64{62_500_000, 62_500_000, 62_500_000, 62_500_000, 0, 0, 1}, msWindows(big))

	// A window of 200M: two halves of 100M, each 10,000 files = 1 payload.
	require.Equal(t, []int64{100_000_000, 100_000_000}, msWindows([]Bucket{{"Observation", start, 200_000_000}}))
	// 100M: export 8,620.69 s seen at 8,640 + 60; import 10,000 s seen at 10,080: ends at 18,780 s; the second
	// starts at 21,600 s.
	require.InDelta(t, 21_600+18_780, MSTool([]Bucket{{"Observation", start, 200_000_000}}, testRates), 1e-6)

	// Payload rounds: 60,000 files are 6 payloads, 5 in the first round and 1 in the second.
	r := testRates
	r.ResourcesPerFile = 1000
	// 60M at 1,000 per file: export 5,172.41 s seen at 5,280 + 60; round 1 50M (5,000 s, seen at 5,040), round 2
	// 10M (1,000 s, seen at 1,080): ends at 5,340 + 6,120.
	require.InDelta(t, 5340+6120, MSTool([]Bucket{{"Observation", start, 60_000_000}}, r), 1e-6)
}

func TestWorkloadIsRecentObservationHeavyAndAddsUp(t *testing.T) {
	w := DefaultWorkload()
	w.Resources, w.Weight = 2_000_000, 100 // 20,000 stored
	require.NoError(t, w.Validate())
	resources, buckets := w.Generate()
	require.Len(t, resources, 20_000)
	again, _ := w.Generate()
	require.Equal(t, resources, again, "deterministic")

	var total int64
	perType := map[string]int64{}
	recent := int64(0)
	for _, b := range buckets {
		total += b.Resources
		perType[b.Type] += b.Resources
		if !b.Start.Before(w.To.AddDate(-2, 0, 0)) {
			recent += b.Resources
		}
	}
	require.Equal(t, w.Resources, total, "the buckets hold every modelled resource")
	require.Len(t, perType, 7)
	require.InDelta(t, 0.60, float64(perType["Observation"])/float64(total), 0.02)
	require.Greater(t, float64(recent)/float64(total), 0.5, "most resources are recent")

	var first struct {
		ResourceType string
		ID           string
		Meta         struct{ VersionID, LastUpdated string }
	}
	require.NoError(t, json.Unmarshal(resources[0], &first))
	at, err := time.Parse(time.RFC3339Nano, first.Meta.LastUpdated)
	require.NoError(t, err)
	require.False(t, at.Before(w.From))
	require.True(t, at.Before(w.To))

	bad := w
	bad.Types = []TypeShare{{"Observation", 0.5}}
	require.Error(t, bad.Validate())
}

// The bench's default file size (larger than a non-parallel export's, to spare Azurite) leaves Microsoft's
// schedule unchanged on the default workload: every window of at most 100M fits one round of payloads.
func TestFileSizeLeavesMSToolUnchangedOnTheDefaultWorkload(t *testing.T) {
	w := DefaultWorkload()
	w.Weight = 1_000_000 // the buckets only: 1,000 stored resources
	_, buckets := w.Generate()
	small, large := testRates, testRates
	large.ResourcesPerFile = DefaultResourcesPerFile
	require.Equal(t, MSTool(buckets, small), MSTool(buckets, large))
	tiny := testRates
	tiny.ResourcesPerFile = 100 // 100M in 1,000,000 files: 100 payloads, 20 rounds: slower
	require.Greater(t, MSTool(buckets, tiny), MSTool(buckets, small))
}
