package migration

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/fhir-migrator/fhir-migrator/internal/bus"
	"github.com/fhir-migrator/fhir-migrator/internal/fhir"
)

const (
	// maxBatchEntries bounds the entries of one batch Bundle of a copy job.
	maxBatchEntries = 100
	// maxResourceLine bounds one NDJSON line (one resource) read by a copy job.
	maxResourceLine = 16 << 20
)

// RunImport handles a run-import message: it starts one import job on the destination (within the destination's
// limit, else it schedules its own retry), or runs one copy job. Malformed, unknown, duplicate and stale messages
// are acknowledged (nil); an error means a transient fault worth an immediate redelivery.
func (s *Service) RunImport(ctx context.Context, body []byte) error {
	var msg RunImportMessage
	if err := json.Unmarshal(body, &msg); err != nil || msg.MigrationID == "" || msg.JobID == "" {
		s.log.Warn("malformed run-import message acknowledged", "body", truncate(string(body), 200))
		return nil
	}
	log := s.log.With("migration", msg.MigrationID, "job", msg.JobID)
	m, err := s.messageTarget(ctx, bus.QueueRunImport, msg.MigrationID, log)
	if m == nil {
		return err
	}
	j := m.job(msg.JobID)
	if j == nil || j.Kind == KindExport || !runnable(m, j) {
		log.Info("run-import acknowledged without action", "status", m.Status, "state", jobState(j))
		return nil
	}
	if j.Kind == KindCopy {
		return s.runCopy(ctx, m.ID, j.ID)
	}
	return s.runImport(ctx, m, j.ID)
}

func runnable(m *Migration, j *Job) bool {
	return j != nil && !m.Status.Terminal() && j.State == JobQueued
}

func jobState(j *Job) JobState {
	if j == nil {
		return ""
	}
	return j.State
}

func (s *Service) runImport(ctx context.Context, m *Migration, jobID string) error {
	log := s.log.With("migration", m.ID, "job", jobID)
	dest := m.Request.Destination
	ok, err := s.acquireSlot(ctx, dest, slotImport, slotHolder(m.ID, jobID), s.cfg.MaxImportsPerDestination)
	if err != nil {
		return fmt.Errorf("acquire import slot: %w", err)
	}
	now := s.now()
	if !ok {
		// The job waits without a message: the sweep dispatches waiting imports as slots free up.
		_, _, err := s.update(ctx, m.ID, func(m *Migration) (*effects, error) {
			j := m.job(jobID)
			if !runnable(m, j) || j.WaitingSlot != nil {
				return nil, errUnchanged
			}
			j.WaitingSlot, j.DispatchAt = timePtr(now), nil
			return nil, nil
		})
		if err != nil {
			return fmt.Errorf("record import waiting for a slot: %w", err)
		}
		log.Info("destination busy, import waits for a slot", "limit", s.cfg.MaxImportsPerDestination)
		return nil
	}
	attempt, m, err := s.startAttempt(ctx, m.ID, jobID, true)
	if err != nil || attempt == 0 {
		return err
	}
	j := m.job(jobID)
	var contentLocation string
	ins, err := s.inputs(ctx, m, j)
	var client FHIRClient
	if err == nil {
		client, err = s.cfg.FHIR(dest)
	}
	if err == nil {
		contentLocation, err = client.ImportKickoff(ctx, importRequest(m, ins))
	}
	_, eff, uerr := s.update(ctx, m.ID, func(m *Migration) (*effects, error) {
		e := &effects{}
		s.applyKickoff(m, &Job{ID: jobID, Kind: KindImport}, attempt, contentLocation, err, s.now(), e)
		settle(m, s.now(), e)
		return e, nil
	})
	if uerr != nil {
		// The attempt stays starting; the sweep re-sends it and $import answers the same job for the same body.
		return fmt.Errorf("save import kick-off: %w", uerr)
	}
	s.perform(ctx, m.ID, eff)
	if err != nil {
		log.Warn("import kick-off failed", "attempt", attempt, "err", err)
	} else {
		log.Info("import started", "attempt", attempt, "contentLocation", contentLocation)
	}
	return nil
}

func importRequest(m *Migration, ins []Input) fhir.ImportRequest {
	inputs := make([]fhir.ImportInput, len(ins))
	for i, in := range ins {
		inputs[i] = fhir.ImportInput{Type: in.Type, URL: in.URL}
	}
	return fhir.ImportRequest{Mode: m.Request.ImportMode, Inputs: inputs}
}

// startAttempt saves a new kick-off attempt of a queued import or copy job before the call; it returns 0 when
// the job is no longer queued (a duplicate message lost the race), freeing a slot the job does not use.
func (s *Service) startAttempt(ctx context.Context, migrationID, jobID string, holdsSlot bool) (int, *Migration, error) {
	var attempt int
	m, eff, err := s.update(ctx, migrationID, func(m *Migration) (*effects, error) {
		attempt = 0
		j := m.job(jobID)
		if !runnable(m, j) {
			e := &effects{}
			if holdsSlot && (j == nil || (j.State != JobStarting && j.State != JobRunning)) {
				e.release(m.Request.Destination, slotImport, slotHolder(m.ID, jobID))
			}
			return e, errUnchanged
		}
		attempt = recordAttempt(j, s.now())
		return nil, nil
	})
	if err != nil {
		return 0, nil, fmt.Errorf("record attempt of %s: %w", jobID, err)
	}
	s.perform(ctx, migrationID, eff)
	return attempt, m, nil
}

// dispatchWaiting sends the run-import messages of as many waiting imports of m (in job order) as the destination
// has free import slots. Migrations sharing a destination may both send for the same slot: the one that loses
// waits again.
func (s *Service) dispatchWaiting(ctx context.Context, m *Migration, now time.Time) error {
	waiting := 0
	for _, j := range m.Jobs {
		if j.State == JobQueued && j.WaitingSlot != nil {
			waiting++
		}
	}
	if waiting == 0 || m.Status.Terminal() {
		return nil
	}
	free, err := s.freeSlots(ctx, m.Request.Destination, slotImport, s.cfg.MaxImportsPerDestination)
	if err != nil || free == 0 {
		return err
	}
	_, eff, err := s.update(ctx, m.ID, func(m *Migration) (*effects, error) {
		e := &effects{}
		n := 0
		for _, j := range m.Jobs {
			if n == free || m.Status.Terminal() {
				break
			}
			if j.State == JobQueued && j.WaitingSlot != nil {
				j.WaitingSlot = nil
				dispatch(m, j, now, now, e)
				n++
			}
		}
		if n == 0 {
			return nil, errUnchanged
		}
		return e, nil
	})
	if err != nil {
		return fmt.Errorf("dispatch waiting imports: %w", err)
	}
	s.perform(ctx, m.ID, eff)
	return nil
}
