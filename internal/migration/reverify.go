package migration

import (
	"context"
	"slices"
	"time"
)

// ReverifyRequest is the optional body of POST /api/migrations/{id}/verify: this round's mode and sample.
type ReverifyRequest struct {
	Verify       *string `json:"verify"`
	VerifySample *int    `json:"verifySample"`
}

// Reverify starts a new verification round of a migration whose jobs all finished (for example once the
// destination's search index caught up): status verifying, a new generation, and its verify-counts message.
func (s *Service) Reverify(ctx context.Context, id string, req ReverifyRequest) (*Migration, error) {
	if req.Verify != nil {
		switch *req.Verify {
		case VerifyModeCounts, VerifyModeIDs, VerifyModeFull:
		default:
			return nil, invalid("invalid_verify", "verify", "verify must be %q, %q or %q", VerifyModeCounts, VerifyModeIDs, VerifyModeFull)
		}
	}
	if req.VerifySample != nil && *req.VerifySample < 0 {
		return nil, invalid("invalid_verify_sample", "verifySample", "verifySample must be 0 or more")
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
		m.Verification = &Verification{Generation: gen, Dispatch: 1, DispatchAt: now, Mode: mode, Sample: sample}
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
