package migration

import (
	"context"
	"errors"
	"fmt"
	"slices"
)

// takeBaseline counts, before anything is imported, the destination's resources of every type the migration may
// bring (those the destination supports) and its total, so that a destination that was not empty can be
// verified. A failed count does not stop the start: the baseline records the error and the report says so.
func (s *Service) takeBaseline(ctx context.Context, id string, req *Request, sourceTypes, destTypes []string) *Baseline {
	b := &Baseline{TakenAt: s.now(), Counts: map[string]int64{}}
	types := req.Types
	if len(types) == 0 {
		types = sourceTypes
	}
	var counted []string
	for _, t := range types {
		if slices.Contains(destTypes, t) {
			counted = append(counted, t)
		}
	}
	client, err := s.cfg.FHIR(req.Destination)
	if err != nil {
		b.Error = fmt.Sprintf("client for %s: %v", req.Destination, err)
		b.Uncounted = counted
		return b
	}
	counts := make([]int64, len(counted))
	errs := make([]error, len(counted)+1)
	fanOut(len(counted)+1, s.cfg.PollConcurrency, func(i int) {
		if i == len(counted) {
			total, err := client.Count(ctx, "", nil)
			if err != nil {
				errs[i] = fmt.Errorf("count every resource: %w", err)
				return
			}
			b.Total = max(total, 0)
			return
		}
		n, err := client.Count(ctx, counted[i], nil)
		if err != nil {
			errs[i] = fmt.Errorf("count %s: %w", counted[i], err)
			return
		}
		// A count below zero is no count: a misbehaving server must not lower the expectation.
		counts[i] = max(n, 0)
	})
	for i, t := range counted {
		if errs[i] != nil {
			b.Uncounted = append(b.Uncounted, t)
			continue
		}
		b.Counts[t] = counts[i] // zero included: a type absent from Counts has no known count before

	}
	if err := errors.Join(errs...); err != nil {
		b.Error = err.Error()
		s.log.Warn("destination baseline incomplete", "migration", id, "destination", req.Destination, "err", err)
	}
	return b
}
