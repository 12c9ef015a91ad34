package migration

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// ReverifyRequest is the optional body of POST /api/migrations/{id}/verify: this round's mode and sample, and what
// the operator accepts ("refused-versions": versions the destination refused that are not a resource's newest).
type ReverifyRequest struct {
	Verify       *string  `json:"verify"`
	VerifySample *int     `json:"verifySample"`
	Accept       []string `json:"accept,omitempty"`
}

// checkAccept validates an accept list: each value known, none twice.
func checkAccept(accept []string) *Error {
	for i, a := range accept {
		if !slices.Contains(acceptValues, a) || slices.Index(accept, a) != i {
			return invalid("invalid_accept", fmt.Sprintf("accept[%d]", i), "accept takes %s, once", orList(acceptValues))
		}
	}
	return nil
}

// Reverify starts a new verification round of a migration whose jobs all finished (for example once the
// destination's search index caught up): status verifying, a new generation, and its verify-counts message.
func (s *Service) Reverify(ctx context.Context, id string, req ReverifyRequest) (*Migration, error) {
	if req.Verify != nil && !slices.Contains(reverifyModes, *req.Verify) {
		return nil, invalid("invalid_verify", "verify", "verify must be %s", orList(reverifyModes))
	}
	if req.VerifySample != nil && *req.VerifySample < 0 {
		return nil, invalid("invalid_verify_sample", "verifySample", "verifySample must be 0 or more")
	}
	if bad := checkAccept(req.Accept); bad != nil {
		return nil, bad
	}
	m, eff, err := s.update(ctx, id, func(m *Migration) (*effects, error) {
		mode, sample := m.Request.Verify, m.Request.VerifySample
		if mode == VerifyModeNone {
			mode = VerifyModeCounts
		}
		if req.Verify != nil {
			mode = *req.Verify
		}
		if req.VerifySample != nil {
			sample = *req.VerifySample
		}
		if refusal := reverifiable(m, mode); refusal != nil {
			return nil, refusal
		}
		now := s.now()
		gen := 1
		if m.Verification != nil {
			gen = m.Verification.Generation + 1
		}
		m.Status = StatusVerifying
		m.Error = nil
		m.Verification = &Verification{Generation: gen, Dispatch: 1, DispatchAt: now, Mode: mode, Sample: sample,
			Accept: slices.Clone(req.Accept)}
		e := &effects{}
		e.send(verifyMessage(m.ID, gen, 1, time.Time{}))
		return e, nil
	})
	if err != nil {
		return nil, err
	}
	s.perform(ctx, id, eff)
	s.log.Info("verification started again", "migration", id, "generation", m.Verification.Generation, "mode", m.Verification.Mode)
	return m.served(s.now()), nil
}

// reverifiable: every job finished and the migration is completed, or failed by its verification.
func reverifiable(m *Migration, mode string) *Error {
	switch {
	case m.Status == StatusVerifying:
		return conflict("verification_running", "migration %s is being verified already", m.ID)
	case m.Status == StatusCompleted,
		m.Status == StatusFailed && m.Error != nil && slices.Contains(verificationCodes, m.Error.Code):
	default:
		return conflict("not_verifiable", "migration %s is %s: only a migration whose jobs all finished can be verified again", m.ID, m.Status)
	}
	if mode != VerifyModeCounts && m.Cleanup != nil && m.Cleanup.State != cleanupFailed {
		return refuse(Conflict, "staged_files_deleted", "verify", "the staged files of migration %s were cleaned up: only \"counts\" can be verified again", m.ID)
	}
	return nil
}

// Repair writes on the destination the source's current version of every resource its last verification found
// stale (the destination refused its newest version), then verifies again in the same mode: a new verification
// round that repairs first. Each repaired resource gets a new versionId and lastUpdated on the destination; the
// repairs are recorded (Repairs, and the report).
func (s *Service) Repair(ctx context.Context, id string) (*Migration, error) {
	m, eff, err := s.update(ctx, id, func(m *Migration) (*effects, error) {
		v := m.Verification
		switch {
		case m.Status == StatusVerifying:
			return nil, conflict("verification_running", "migration %s is being verified already", m.ID)
		case v == nil || v.Refused == nil || v.Refused.Stale == 0 || v.Refused.Report == "":
			return nil, conflict("nothing_to_repair", "migration %s: its last verification found no resource whose newest version the destination refused", m.ID)
		case m.Status != StatusFailed:
			return nil, conflict("nothing_to_repair", "migration %s is %s: only a migration failed by its verification is repaired", m.ID, m.Status)
		}
		now := s.now()
		m.Status = StatusVerifying
		m.Error = nil
		m.Verification = &Verification{Generation: v.Generation + 1, Dispatch: 1, DispatchAt: now, Mode: verifyMode(m),
			Sample: verifySample(m), Accept: slices.Clone(v.Accept), RepairFrom: v.Refused.Report}
		e := &effects{}
		e.send(verifyMessage(m.ID, m.Verification.Generation, 1, time.Time{}))
		return e, nil
	})
	if err != nil {
		return nil, err
	}
	s.perform(ctx, id, eff)
	s.log.Info("repair started", "migration", id, "generation", m.Verification.Generation, "from", m.Verification.RepairFrom)
	return m.served(s.now()), nil
}

// repairFirst runs the repair a verification round was started with, once: it writes the stale resources and
// records the repairs before the round checks anything.
func (s *Service) repairFirst(ctx context.Context, m *Migration, generation int) (*Migration, error) {
	v := m.Verification
	if v.RepairFrom == "" || v.RepairedAt != nil {
		return m, nil
	}
	stop := s.heartbeat(ctx, m.ID, generation)
	repairs, blob, err := s.repairStale(ctx, m, v.RepairFrom, generation)
	stop()
	if err != nil {
		return nil, err
	}
	m, _, err = s.update(ctx, m.ID, func(m *Migration) (*effects, error) {
		if !verifiable(m, generation) || m.Verification.RepairedAt != nil {
			return nil, errUnchanged
		}
		if m.Repairs == nil {
			m.Repairs = &Repairs{}
		}
		if !slices.Contains(m.Repairs.Blobs, blob) {
			m.Repairs.Blobs = append(m.Repairs.Blobs, blob)
			m.Repairs.Resources += len(repairs)
		}
		m.Verification.RepairedAt = timePtr(s.now())
		m.Notes = appendNote(m.Notes, fmt.Sprintf("%d resources were repaired on the destination with the source's current "+
			"version: their versionId and lastUpdated there are new (listed in %s)", m.Repairs.Resources, blob))
		return nil, nil
	})
	if err != nil {
		return nil, fmt.Errorf("save the repairs: %w", err)
	}
	s.log.Info("resources repaired", "migration", m.ID, "repaired", len(repairs), "blob", blob)
	return m, nil
}

// heartbeat keeps a verification round's dispatch time fresh while a long step of it runs outside any update (a
// repair of many resources), so that the sweep does not re-send the round meanwhile; stop ends it.
func (s *Service) heartbeat(ctx context.Context, id string, generation int) (stop func()) {
	every := max(s.cfg.RedriveAfter/3, time.Second)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			_, _, err := s.update(ctx, id, func(m *Migration) (*effects, error) {
				if !verifiable(m, generation) {
					return nil, errUnchanged
				}
				m.Verification.DispatchAt = s.now()
				return nil, nil
			})
			if err != nil && !errors.Is(err, errUnchanged) && ctx.Err() == nil {
				s.log.Warn("verification heartbeat not saved", "migration", id, "error", err)
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}
