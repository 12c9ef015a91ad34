package fhirsim

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"time"
)

type jobState int

const (
	jobRunning jobState = iota
	jobCompleted
	jobFailed
	jobCanceled
)

// job is the state an export or import job shares; guarded by Server.mu.
type job struct {
	id      string
	created time.Time
	request string // the kick-off URL
	state   jobState
	polls   int
	failure string
	cancel  context.CancelFunc
	// gets and deletes count every status GET and DELETE of the job's Content-Location, whatever the answer: who
	// asked about the job at all (Stats).
	gets, deletes int
	// finished is when the job reached its final state (zero while it runs).
	finished time.Time
}

// stateName names a job state in Stats.
func (s jobState) String() string {
	switch s {
	case jobRunning:
		return "running"
	case jobCompleted:
		return "completed"
	case jobFailed:
		return "failed"
	}
	return "canceled"
}

func (j *job) stats() JobStats {
	st := JobStats{ID: j.id, Created: j.created, State: j.state.String(), Gets: j.gets, Deletes: j.deletes}
	if !j.finished.IsZero() {
		st.Finished = &j.finished
	}
	return st
}

// finishLocked moves the job to its final state. Caller holds s.mu.
func (s *Server) finishLocked(j *job, state jobState, failure string) {
	j.state, j.failure, j.finished = state, failure, s.now()
}

func newJobID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

// startLocked runs work in the background; the job completes no sooner than the configured job delay after it
// started. work records its results under s.mu itself. Caller holds s.mu, so the job is never seen without its cancel.
func (s *Server) startLocked(j *job, kind string, work func(ctx context.Context) error) {
	ctx, cancel := context.WithCancel(s.ctx)
	j.cancel = cancel
	if ctx.Err() != nil {
		s.finishLocked(j, jobFailed, kind+" operation failed for reason: the service is shutting down")
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer cancel()
		log := s.log.With("job", kind, "job_id", j.id)
		began := time.Now()
		err := work(ctx)
		if err == nil {
			wait := time.NewTimer(s.cfg.jobDelay - time.Since(began))
			select {
			case <-wait.C:
			case <-ctx.Done():
				wait.Stop()
			}
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		switch {
		case j.state != jobRunning || ctx.Err() != nil:
			// canceled by DELETE (state already set) or the server is closing
		case err != nil:
			s.finishLocked(j, jobFailed, err.Error())
			log.Warn("job failed", "err", err)
		default:
			s.finishLocked(j, jobCompleted, "")
			log.Info("job completed", "elapsed", time.Since(began))
		}
	}()
}

// pollLocked counts a status poll and reports whether it must still answer 202. Caller holds s.mu.
func (s *Server) pollLocked(j *job) (pending bool) {
	j.polls++
	return j.state == jobRunning || j.polls <= s.cfg.pollsBeforeDone
}

// writeAccepted answers 202 with an empty body and no Retry-After, as the real services do while a job runs.
func writeAccepted(w http.ResponseWriter) { w.WriteHeader(http.StatusAccepted) }
