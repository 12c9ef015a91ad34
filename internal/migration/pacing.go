package migration

import (
	"sync"
	"time"
)

// backoff is the delay before poll number n (0-based) of a job: PollInitial doubled per poll, capped at PollMax,
// jittered into [d/2, d] so that jobs started together do not poll together.
func (s *Service) backoff(n int) time.Duration {
	d := s.cfg.PollInitial
	for i := 0; i < n && d < s.cfg.PollMax; i++ {
		d *= 2
	}
	d = min(d, s.cfg.PollMax)
	return d/2 + time.Duration(s.cfg.Random()*float64(d/2))
}

// fanOut runs fn(0) .. fn(n-1) with at most limit of them at a time, and returns when all have.
func fanOut(n, limit int, fn func(i int)) {
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			fn(i)
		})
	}
	wg.Wait()
}

// delay is the server's Retry-After when it sent one, else the job's backoff.
func (s *Service) delay(retryAfter time.Duration, n int) time.Duration {
	if retryAfter > 0 {
		return retryAfter
	}
	return s.backoff(n)
}

// retryDelay is the wait before the n-th (1-based) retry of a step that could not get an answer: RetryDelay
// doubled per retry, at most 8 times RetryDelay (role assignments take minutes to reach a FHIR service).
func (s *Service) retryDelay(n int) time.Duration {
	d := s.cfg.RetryDelay
	for i := 1; i < n && d < 8*s.cfg.RetryDelay; i++ {
		d *= 2
	}
	d = min(d, 8*s.cfg.RetryDelay)
	return d/2 + time.Duration(s.cfg.Random()*float64(d/2))
}
