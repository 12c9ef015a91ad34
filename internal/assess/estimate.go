package assess

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/fhir-migrator/fhir-migrator/internal/migration"
)

// Rates are the services' figures the estimate rests on. None is published by Microsoft; each default is stated
// where it comes from (the same figures as the simulators' rate model, docs/design-and-testing.md "Rate model of
// the simulators").
type Rates struct {
	// ExportRate is the resources one export job produces per second: 2,900 (a non-parallel Cosmos DB export in
	// the fhir-server project's own measurements: 89M resources in 8.5 h).
	ExportRate float64
	// ImportRate is the resources per second the destination imports in all, however many imports run (one import
	// uses the whole service): 10,000, a stated guess.
	ImportRate float64
	// LookupRate is the ids per second verification looks up on the destination (ids, full, and counts for a
	// type the destination held before): 16,000 (100 ids a query with _elements=id, 8 queries at once, 50 ms
	// each: assumed).
	LookupRate float64
	// CountRate and CountLatency model one _summary=count over a range: a scan of its rows at 10,000,000 rows/s,
	// plus 20 ms (assumed).
	CountRate    float64
	CountLatency float64
	// DefaultBytes is a resource's NDJSON line when no sample could be read: 1,500 bytes (assumed).
	DefaultBytes int64
}

// DefaultRates are the figures above.
func DefaultRates() Rates {
	return Rates{ExportRate: 2900, ImportRate: 10_000, LookupRate: 16_000, CountRate: 10_000_000, CountLatency: 0.02,
		DefaultBytes: 1500}
}

// estimateOf models the migration of the plan: its windows export in their order, at most slots at a time, each
// taking the job latency plus its resources at the export rate; each window's import starts when its export ends,
// and the imports share the destination's import rate, which works whenever an import is waiting (so the last
// import ends when the destination has worked through every window, never before a window's export ended); then
// verification. Resources and storage come from the plan and the survey.
func estimateOf(a *Assessment, r Rates, slots int, latency float64) *DurationEstimate {
	slots = max(slots, 1)
	e := &DurationEstimate{ExportRate: r.ExportRate, ExportSlots: slots, ImportRate: r.ImportRate, LookupRate: r.LookupRate,
		JobLatencySeconds: latency}
	windows := slices.Clone(a.Plan.Windows)
	e.Windows = len(windows)
	free := make([]float64, slots)
	type done struct {
		end float64
		n   int64
	}
	ends := make([]done, 0, len(windows))
	for _, w := range windows {
		i := slices.Index(free, slices.Min(free))
		free[i] += latency + float64(w.Planned)/r.ExportRate
		ends = append(ends, done{free[i], w.Planned})
		e.Resources += w.Planned
		e.ExportSeconds = max(e.ExportSeconds, free[i])
	}
	slices.SortStableFunc(ends, func(x, y done) int { return cmp.Compare(x.end, y.end) })
	t := 0.0
	for _, d := range ends {
		t = max(t, d.end) + float64(d.n)/r.ImportRate
	}
	e.CopySeconds = max(t, e.ExportSeconds)

	// Verification: each type counted on both servers over its range; the ids looked up (every staged line in ids
	// and full modes; in counts mode the lines of the types the destination held before).
	var lookups int64
	for _, tf := range a.Types {
		n := typeVolume(a, tf)
		switch a.Request.Verify {
		case migration.VerifyModeNone:
			continue
		case migration.VerifyModeIDs, migration.VerifyModeFull:
			lookups += n
		default:
			if tf.Destination > 0 {
				lookups += n
			}
		}
		e.VerifySeconds += 2 * (float64(n)/r.CountRate + r.CountLatency)
	}
	e.VerifySeconds += float64(lookups) / r.LookupRate
	e.TotalSeconds = e.CopySeconds + e.VerifySeconds

	sampled := false
	for _, tf := range a.Types {
		size := tf.AvgBytes
		if size <= 0 {
			size = r.DefaultBytes
		} else {
			sampled = true
		}
		e.StagingBytes += typeVolume(a, tf) * size
	}
	e.Assumptions = []string{
		fmt.Sprintf("an export job produces %.0f resources/s (a non-parallel Cosmos DB export in the fhir-server project's measurements: 89M resources in 8.5 h), and the source runs %d at once (MaxExportsPerSource)", r.ExportRate, slots),
		fmt.Sprintf("the destination imports %.0f resources/s in all, however many imports run (one import uses the whole service; no figure is published: a stated guess)", r.ImportRate),
		fmt.Sprintf("each window's export also takes the probe export's latency, %.1f s from kick-off to manifest (the probe is empty: it measures latency, not throughput)", latency),
		"the windows export smallest first, and a window's import starts as soon as its export ends",
		fmt.Sprintf("verification (%s) counts each type on both servers (a range scan at %.0f rows/s plus %.0f ms) and looks ids up at %.0f ids/s", a.Request.Verify, r.CountRate, r.CountLatency*1000, r.LookupRate),
		"planning, the timer's polling and the function's own work are not counted",
	}
	if a.Request.Sync {
		e.Assumptions = append(e.Assumptions, "the sync's rounds after the copy, until the cutover, are not counted")
	}
	staging := "staging: each type's resources times the average NDJSON line of a sample of its newest resources"
	if !sampled {
		staging = fmt.Sprintf("staging: %d bytes a resource (no sample could be read)", r.DefaultBytes)
	}
	e.Assumptions = append(e.Assumptions, staging)
	return e
}

// typeVolume is what the migration moves of a type: its versions with history or deletes, else its resources in
// the range (narrowed by its typeFilter entries when there are some).
func typeVolume(a *Assessment, tf TypeFacts) int64 {
	switch {
	case tf.Versions != nil:
		return *tf.Versions
	case tf.Filtered != nil:
		return min(*tf.Filtered, tf.Live)
	}
	return tf.Live
}
