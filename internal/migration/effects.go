package migration

import (
	"context"
	"fmt"

	"github.com/fhir-migrator/fhir-migrator/internal/bus"
)

// effects are what a saved decision asks to happen next; they run only after the save, so a lost effect is
// re-driven from the document and never acts on a decision that was not stored.
type effects struct {
	messages []bus.Message
	cancels  []remoteJob
	releases []slotRef
}

// remoteJob is a job on a FHIR server, addressed by its Content-Location.
type remoteJob struct {
	baseURL, contentLocation, jobID string
	// sourceKind is the migration's source kind when the job is on its source ("" on the destination).
	sourceKind string
}

type slotRef struct {
	baseURL, kind, holder string
}

func (e *effects) send(m bus.Message) { e.messages = append(e.messages, m) }

func (e *effects) cancel(m *Migration, baseURL, contentLocation, jobID string) {
	rj := remoteJob{baseURL: baseURL, contentLocation: contentLocation, jobID: jobID}
	if baseURL == m.Request.Source {
		rj.sourceKind = m.Request.SourceKind
	}
	e.cancels = append(e.cancels, rj)
}

func (e *effects) release(baseURL, kind, holder string) {
	e.releases = append(e.releases, slotRef{baseURL: baseURL, kind: kind, holder: holder})
}

// perform runs the effects of a saved decision. Failures are logged, not returned: each effect is re-driven
// from the document (messages by the sweep's redrive, DELETEs of server jobs from the document's cancels, slots
// by eviction of leaked holders).
func (s *Service) perform(ctx context.Context, migrationID string, e *effects) {
	if e == nil {
		return
	}
	log := s.log.With("migration", migrationID)
	for _, m := range e.messages {
		if err := s.cfg.Bus.Send(ctx, m); err != nil {
			log.Error("send message failed; the sweep will re-send it", "queue", m.Queue, "messageId", m.ID, "err", err)
		}
	}
	if len(e.cancels) > 0 {
		answers := make(map[string]error, len(e.cancels))
		for _, c := range e.cancels {
			client, err := s.cfg.FHIR(c.baseURL)
			if c.sourceKind != "" {
				client, err = s.sourceClient(&Request{Source: c.baseURL, SourceKind: c.sourceKind})
			}
			if err == nil {
				err = client.CancelJob(ctx, c.contentLocation)
			}
			answers[c.contentLocation] = err
			if err != nil {
				log.Warn("cancel of a server job failed; it will be sent again", "job", c.jobID, "contentLocation", c.contentLocation, "err", err)
				continue
			}
			log.Info("server job canceled", "job", c.jobID, "contentLocation", c.contentLocation)
		}
		if err := s.recordCancels(ctx, migrationID, answers); err != nil {
			log.Error("record cancel answers failed; the sweep will send them again", "err", err)
		}
	}
	type group struct{ baseURL, kind string }
	grouped := map[group][]string{}
	var order []group
	for _, r := range e.releases {
		g := group{r.baseURL, r.kind}
		if _, ok := grouped[g]; !ok {
			order = append(order, g)
		}
		grouped[g] = append(grouped[g], r.holder)
	}
	for _, g := range order {
		if err := s.releaseSlots(ctx, g.baseURL, g.kind, grouped[g]); err != nil {
			log.Error("release slots failed", "kind", g.kind, "holders", grouped[g], "err", err)
		}
	}
}

// recordCancels saves the servers' answers to DELETEs: a confirmed one leaves the document, a failed one is
// scheduled again with backoff, and after MaxAttempts failures it stays, given up, with a note for the operator.
func (s *Service) recordCancels(ctx context.Context, migrationID string, answers map[string]error) error {
	_, _, err := s.update(ctx, migrationID, func(m *Migration) (*effects, error) {
		now := s.now()
		changed := false
		kept := m.Cancels[:0:0]
		for _, c := range m.Cancels {
			err, answered := answers[c.ContentLocation]
			switch {
			case !answered || c.GaveUp:
				kept = append(kept, c)
				continue
			case err == nil:
				changed = true
				continue // confirmed: nothing left to do
			}
			changed = true
			c.Attempts++
			c.LastError = truncate(err.Error(), maxErrorMessage)
			c.NextAt = now.Add(s.backoff(c.Attempts))
			if c.Attempts >= s.cfg.MaxAttempts {
				c.GaveUp = true
				m.Notes = append(m.Notes, fmt.Sprintf("the server job of %s could not be canceled after %d attempts (%s): "+
					"send DELETE %s yourself so that it stops", c.Job, c.Attempts, c.LastError, c.ContentLocation))
			}
			kept = append(kept, c)
		}
		if !changed {
			return nil, errUnchanged
		}
		m.Cancels = kept
		if len(m.Cancels) == 0 {
			m.Cancels = nil
		}
		return nil, nil
	})
	return err
}
