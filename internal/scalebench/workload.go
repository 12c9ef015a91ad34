// Package scalebench measures a migration at scale: a workload of modelled resources run through the real local
// stack under the simulators' rate model, the least time the two services allow for it, and Microsoft's tool's
// schedule on the same workload, by a discrete-event model.
package scalebench

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"
)

// TypeShare is the part of a workload's resources of one type.
type TypeShare struct {
	Type  string
	Share float64
}

// Workload is what the source holds, in modelled resources: Resources of them over [From, To), Weight modelled
// ones per stored resource, most of them recent (the density of lastUpdated grows by e every Growth).
type Workload struct {
	Resources int64
	Weight    int64
	From, To  time.Time
	Growth    time.Duration
	Types     []TypeShare
	Seed      uint64
}

// DefaultWorkload is a billion modelled resources in seven types over eight years, Observations dominating, each
// stored resource standing for a thousand.
func DefaultWorkload() Workload {
	return Workload{
		Resources: 1_000_000_000,
		Weight:    1000,
		From:      time.Date(2018, 1, 1, 0, 0, 0, 0, time.UTC),
		To:        time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		Growth:    2 * 365 * 24 * time.Hour,
		Types: []TypeShare{
			{"Observation", 0.60}, {"Encounter", 0.12}, {"Condition", 0.08}, {"MedicationRequest", 0.08},
			{"Procedure", 0.06}, {"DiagnosticReport", 0.04}, {"Patient", 0.02},
		},
		Seed: 1,
	}
}

// Validate refuses a workload that cannot be generated.
func (w Workload) Validate() error {
	switch {
	case w.Weight < 1:
		return fmt.Errorf("workload: weight %d is below 1", w.Weight)
	case w.Resources < w.Weight:
		return fmt.Errorf("workload: %d resources are fewer than one stored resource of weight %d", w.Resources, w.Weight)
	case !w.From.Before(w.To):
		return fmt.Errorf("workload: from %s is not before to %s", w.From, w.To)
	case w.Growth <= 0:
		return fmt.Errorf("workload: growth %s is not positive", w.Growth)
	case len(w.Types) == 0:
		return fmt.Errorf("workload: no types")
	}
	sum := 0.0
	for _, t := range w.Types {
		if t.Share <= 0 {
			return fmt.Errorf("workload: type %s has share %v", t.Type, t.Share)
		}
		sum += t.Share
	}
	if math.Abs(sum-1) > 1e-9 {
		return fmt.Errorf("workload: shares sum to %v, not 1", sum)
	}
	return nil
}

// Stored is the number of stored resources: Resources / Weight.
func (w Workload) Stored() int { return int(w.Resources / w.Weight) }

// Bucket is a workload's modelled resources of one type in 30 days from Start.
type Bucket struct {
	Type      string    `json:"type"`
	Start     time.Time `json:"start"`
	Resources int64     `json:"resources"`
}

// BucketSpan is the length of a bucket (and of Microsoft's tool's windows).
const BucketSpan = 30 * 24 * time.Hour

// Generate draws the stored resources (compact JSON, each with meta.lastUpdated at millisecond precision) and the
// workload's 30-day buckets from the oldest resource, in modelled resources; the same workload always gives the
// same output.
func (w Workload) Generate() ([][]byte, []Bucket) {
	rng := rand.New(rand.NewPCG(w.Seed, w.Seed^0x9e3779b97f4a7c15))
	span := w.To.Sub(w.From).Seconds()
	tau := w.Growth.Seconds()
	grown := math.Expm1(span / tau)
	n := w.Stored()
	out := make([][]byte, 0, n)
	type key struct {
		typ string
		at  time.Time
	}
	var times []time.Time
	var types []string
	for i := range n {
		typ := w.pickType(rng.Float64())
		// The inverse of the growing density's distribution: most draws land in the later years.
		at := w.From.Add(time.Duration(tau * math.Log1p(rng.Float64()*grown) * float64(time.Second))).Truncate(time.Millisecond)
		if !at.Before(w.To) {
			at = w.To.Add(-time.Millisecond)
		}
		out = append(out, fmt.Appendf(nil, `{"resourceType":%q,"id":"s%09d","meta":{"versionId":"1","lastUpdated":%q}}`,
			typ, i, at.UTC().Format("2006-01-02T15:04:05.000Z07:00")))
		times = append(times, at)
		types = append(types, typ)
	}
	oldest := slices.MinFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	counts := map[key]int64{}
	for i, at := range times {
		start := oldest.Add(at.Sub(oldest) / BucketSpan * BucketSpan)
		counts[key{types[i], start}] += w.Weight
	}
	buckets := make([]Bucket, 0, len(counts))
	for k, c := range counts {
		buckets = append(buckets, Bucket{Type: k.typ, Start: k.at, Resources: c})
	}
	slices.SortFunc(buckets, func(a, b Bucket) int {
		if c := a.Start.Compare(b.Start); c != 0 {
			return c
		}
		if a.Type < b.Type {
			return -1
		}
		if a.Type > b.Type {
			return 1
		}
		return 0
	})
	return out, buckets
}

func (w Workload) pickType(u float64) string {
	for _, t := range w.Types {
		if u < t.Share {
			return t.Type
		}
		u -= t.Share
	}
	return w.Types[len(w.Types)-1].Type
}
