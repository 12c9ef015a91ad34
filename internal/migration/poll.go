package migration

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/fhir-migrator/fhir-migrator/internal/fhir"
	"github.com/fhir-migrator/fhir-migrator/internal/store"
)

// Poll is the PollJob timer sweep: for every active migration, re-drive what stalled, kick off queued exports
// within the source's limit, poll every due export and import, and apply the answers. One migration's errors are
// logged and do not stop the others.
func (s *Service) Poll(ctx context.Context) error {
	items, err := s.cfg.Store.List(ctx, migrationPrefix)
	if err != nil {
		return fmt.Errorf("list migrations: %w", err)
	}
	for _, it := range items {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if Status(metaValue(it.Metadata, "status")).Terminal() && metaValue(it.Metadata, "cancels") == "" {
			continue
		}
		id := idFromName(it.Name)
		if err := s.advance(ctx, id); err != nil {
			s.log.Error("advance migration failed", "migration", id, "err", err)
		}
	}
	return nil
}

// metaValue reads listed metadata case-insensitively (HTTP header canonicalisation may capitalise the key).
func metaValue(md map[string]string, key string) string {
	if v, ok := md[key]; ok {
		return v
	}
	for k, v := range md {
		if strings.EqualFold(k, key) {
			return v
		}
	}
	return ""
}

// call is one FHIR call of a sweep and its answer, matched back to its job by job id and Content-Location (a
// status poll) or attempt number (a kick-off).
type call struct {
	jobID string
	kind  JobKind
	// attempt is set for an export kick-off; contentLocation is the polled one, or the one a kick-off got.
	attempt         int
	contentLocation string
	export          *fhir.ExportStatus
	imp             *fhir.ImportStatus
	err             error
	// expected are the source's counts taken before an export kick-off, at countedAt.
	expected  map[string]int64
	countedAt time.Time
	// changed counts, for the short types of a confirmed short manifest, the resources changed on the source
	// since the kick-off count.
	changed map[string]int64
	// manifest names the blob a completed export's manifest was written to; importErrors the blob of a finished
	// import's error files (typed by input), and errorSummary their digest.
	manifest string
	// files are a completed export's files as its source kind staged them (SourceKind.StageFiles).
	files []File
	// notes are what staging the files has to say in the report (a bulk-data source's export errors).
	notes        []string
	importErrors string
	errorSummary *ErrorSummary
}

func (c *call) isKickoff() bool { return c.attempt > 0 }

// advance moves one migration forward.
func (s *Service) advance(ctx context.Context, id string) error {
	now := s.now()
	m, eff, err := s.update(ctx, id, func(m *Migration) (*effects, error) {
		e := &effects{}
		if !s.housekeep(m, now, e) {
			return e, errUnchanged
		}
		return e, nil
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	s.perform(ctx, id, eff)
	if m.Status.Terminal() {
		return nil
	}
	if m.Status == StatusPlanning {
		if err := s.planStep(ctx, m); err != nil {
			return err
		}
		if m, _, err = s.load(ctx, id); err != nil || m.Status != StatusExporting {
			return err // still planning, or stopped: the exports start when the plan is done
		}
	}

	m, freed, err := s.exchange(ctx, m, now, true)
	if err != nil {
		return err
	}
	if freed {
		// An export that ended here freed its source slot: the next window starts now, not a tick later.
		if m, _, err = s.exchange(ctx, m, s.now(), false); err != nil {
			return err
		}
	}
	if roundReadyForCheck(m) {
		if m, err = s.checkRound(ctx, m); err != nil {
			return err
		}
	}
	return s.dispatchWaiting(ctx, m, now)
}

// exchange kicks off the queued exports the source has slots for and, with polls, polls every due job; it saves
// the answers and reports whether an export ended (freeing its slot).
func (s *Service) exchange(ctx context.Context, m *Migration, now time.Time, polls bool) (*Migration, bool, error) {
	kickoffs, m, err := s.recordExportAttempts(ctx, m, now)
	if err != nil {
		return m, false, err
	}
	calls := kickoffs
	for _, j := range m.Jobs {
		if polls && j.State == JobRunning && j.ContentLocation != "" && (j.NextPollAt == nil || !j.NextPollAt.After(now)) {
			calls = append(calls, &call{jobID: j.ID, kind: j.Kind, contentLocation: j.ContentLocation})
		}
	}
	if len(calls) == 0 {
		return m, false, nil
	}
	s.runCalls(ctx, m, calls)

	saved, eff, err := s.update(ctx, m.ID, func(m *Migration) (*effects, error) {
		e := &effects{}
		for _, c := range calls {
			s.applyCall(m, c, now, e)
		}
		settle(m, now, e)
		return e, nil
	})
	if err != nil {
		// The servers' answers are lost with this save: kick-offs become orphans, polls are repeated.
		return m, false, fmt.Errorf("save answers: %w", err)
	}
	s.perform(ctx, m.ID, eff)
	freed := false
	for _, c := range calls {
		if j := saved.job(c.jobID); c.kind == KindExport && !c.isKickoff() && j != nil && j.State.Finished() {
			freed = true
		}
	}
	return saved, freed && !saved.Status.Terminal(), nil
}

// recordExportAttempts takes source slots for the due queued exports, in order, while one is free, and records
// their kick-off attempts (state starting) before any call is made.
func (s *Service) recordExportAttempts(ctx context.Context, m *Migration, now time.Time) ([]*call, *Migration, error) {
	var acquired []string
	for _, j := range m.Jobs {
		if j.Kind != KindExport || j.State != JobQueued || (j.NextPollAt != nil && j.NextPollAt.After(now)) {
			continue
		}
		ok, err := s.acquireSlot(ctx, m.Request.Source, slotExport, slotHolder(m.ID, j.ID), s.cfg.MaxExportsPerSource)
		if err != nil {
			s.log.Error("acquire export slot failed", "migration", m.ID, "job", j.ID, "err", err)
			break
		}
		if !ok {
			break
		}
		acquired = append(acquired, j.ID)
	}
	if len(acquired) == 0 {
		return nil, m, nil
	}
	var kickoffs []*call
	saved, eff, err := s.update(ctx, m.ID, func(m *Migration) (*effects, error) {
		kickoffs = kickoffs[:0]
		e := &effects{}
		for _, id := range acquired {
			j := m.job(id)
			if m.Status.Terminal() || j == nil || j.State != JobQueued || (j.NextPollAt != nil && j.NextPollAt.After(now)) {
				if j == nil || (j.State != JobStarting && j.State != JobRunning) {
					e.release(m.Request.Source, slotExport, slotHolder(m.ID, id))
				}
				continue
			}
			if j.Till == nil {
				// The window ends now: the count taken before the kick-off and the export cover the same range,
				// and verification can count it again later. On a boundary of the source's kind, as every window is.
				j.Till = timePtr(kindOf(&m.Request).Bounds().align(now))
			}
			kickoffs = append(kickoffs, &call{jobID: id, kind: KindExport, attempt: recordAttempt(j, now)})
		}
		if len(kickoffs) == 0 {
			return e, errUnchanged
		}
		return e, nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("record export attempts: %w", err)
	}
	s.perform(ctx, m.ID, eff)
	return kickoffs, saved, nil
}

// recordAttempt starts a new kick-off attempt of j and returns its number.
func recordAttempt(j *Job, now time.Time) int {
	n := len(j.Attempts) + 1
	j.Attempts = append(j.Attempts, Attempt{N: n, StartedAt: now})
	j.State = JobStarting
	j.ContentLocation = ""
	j.NextPollAt = nil
	j.Polls, j.PollFailures = 0, 0
	j.Expected, j.CountedAt, j.ShortManifests = nil, nil, 0
	if j.StartedAt == nil {
		j.StartedAt = timePtr(now)
	}
	return n
}

// runCalls makes the sweep's FHIR calls for one migration concurrently, at most PollConcurrency at a time.
func (s *Service) runCalls(ctx context.Context, m *Migration, calls []*call) {
	clients := map[string]FHIRClient{}
	clientErr := map[string]error{}
	for _, base := range []string{m.Request.Source, m.Request.Destination} {
		clients[base], clientErr[base] = s.clientOf(&m.Request, base)
	}
	fanOut(len(calls), s.cfg.PollConcurrency, func(i int) {
		c := calls[i]
		j := m.job(c.jobID)
		base := serverOf(m, j)
		if err := clientErr[base]; err != nil {
			c.err = fmt.Errorf("client for %s: %w", base, err)
			return
		}
		client := clients[base]
		switch {
		case c.isKickoff():
			c.countedAt = s.now()
			if kindOf(&m.Request).CountsExports(&m.Request) {
				c.expected, c.err = expectedCounts(ctx, client, kindOf(&m.Request).Bounds(), j)
			}
			if c.err == nil {
				c.contentLocation, c.err = client.ExportKickoff(ctx, exportRequest(m, j))
			}
		case c.kind == KindExport:
			c.export, c.err = client.ExportStatus(ctx, c.contentLocation)
			if c.err != nil || !c.export.Done || c.export.Manifest == nil {
				return
			}
			in := StageInput{Migration: m, Job: j, Manifest: c.export.Manifest, Source: client, Staging: s.cfg.Staging,
				Log: s.log.With("migration", m.ID, "job", j.ID), Note: func(n string) { c.notes = append(c.notes, n) }}
			if s.cfg.SourceFiles != nil {
				if in.Files, c.err = s.cfg.SourceFiles(m.Request.Source); c.err != nil {
					return
				}
			}
			c.files, c.err = kindOf(&m.Request).StageFiles(ctx, in)
			if c.err != nil {
				return
			}
			if j.ShortManifests > 0 {
				// A short manifest confirmed by a re-poll: did enough of the source change since the count?
				if short := shortfall(j.Expected, c.files); len(short) > 0 {
					if c.changed, c.err = changedSince(ctx, client, j, short); c.err != nil {
						return
					}
				}
			}
			// Written before the document names it; a manifest that is not accepted leaves a small unused blob.
			c.manifest = manifestName(m.ID, j.ID, len(j.Attempts))
			c.err = s.putJSON(ctx, c.manifest, manifestBlob{Output: c.files, Error: manifestErrors(c.export.Manifest)})
		default:
			c.imp, c.err = client.ImportStatus(ctx, c.contentLocation)
			if c.err == nil && c.imp.Done && c.imp.Result != nil && len(c.imp.Result.Error) > 0 {
				c.importErrors, c.errorSummary, c.err = s.keepImportErrors(ctx, m, j, c.imp.Result.Error)
			}
		}
	})
}

// manifestErrors are a manifest's error files (resources the export could not write).
func manifestErrors(man *fhir.Manifest) []ErrorFile {
	var out []ErrorFile
	for _, f := range man.Error {
		out = append(out, ErrorFile{Type: f.Type, Count: f.Count, URL: f.URL})
	}
	return out
}

// manifestFiles are a manifest's output files.
func manifestFiles(man *fhir.Manifest) []File {
	out := make([]File, 0, len(man.Output))
	for _, f := range man.Output {
		out = append(out, File(f))
	}
	return out
}

// exportRequest is the kick-off of an export job, as the source's kind sends it.
func exportRequest(m *Migration, j *Job) fhir.ExportRequest {
	return kindOf(&m.Request).ExportRequest(&m.Request, j)
}

// applyCall applies one answer to the fresh document; answers that no longer match their job are stale.
func (s *Service) applyCall(m *Migration, c *call, now time.Time, e *effects) {
	if c.isKickoff() {
		s.applyKickoff(m, &Job{ID: c.jobID, Kind: c.kind}, c.attempt, c.contentLocation, c.err, now, e)
		if j := m.job(c.jobID); c.err == nil && j != nil && j.State == JobRunning && j.ContentLocation == c.contentLocation {
			j.Expected = c.expected
			j.CountedAt = timePtr(c.countedAt)
		}
		return
	}
	j := m.job(c.jobID)
	if j == nil || j.State != JobRunning || j.ContentLocation != c.contentLocation || m.Status.Terminal() {
		return
	}
	if c.err != nil {
		s.applyPollError(m, j, c.err, now, e)
		return
	}
	switch {
	case c.export != nil && c.export.Done:
		if c.export.Manifest == nil {
			s.applyPollError(m, j, errors.New("completed export status without a manifest"), now, e)
			return
		}
		if t, err := time.Parse(time.RFC3339Nano, c.export.Manifest.TransactionTime); err == nil {
			j.TransactionTime = timePtr(t.UTC())
			if kindOf(&m.Request).Bounds().OneExport {
				// Sent without a till (or with the request's, as _until), the export holds exactly what its
				// transactionTime says, up to the request's till: the window ends there (the next sync round starts
				// there), and so does a full copy's migrated range.
				held := t.UTC()
				if m.Request.Till != nil && m.Request.Till.Before(held) {
					held = *m.Request.Till
				}
				j.Till = timePtr(held)
				if j.Round == 0 && m.Planning != nil && m.Request.Till == nil {
					m.Planning.Till = held
				}
			}
		}
		for _, n := range c.notes {
			m.Notes = appendNote(m.Notes, n)
		}
		output := c.files
		if short := shortfall(j.Expected, output); len(short) > 0 {
			s.distrustManifest(m, j, short, c.changed, c.manifest, output, now, e)
			return
		}
		completeExport(m, j, c.manifest, output, now, e)
	case c.imp != nil && c.imp.Done:
		if c.imp.Result == nil {
			s.applyPollError(m, j, errors.New("completed import status without a result"), now, e)
			return
		}
		j.Counts = map[string]int64{}
		for _, o := range c.imp.Result.Output {
			j.Counts[o.Type] += o.Count
		}
		j.ErrorFiles = c.importErrors
		j.ErrorSummary = c.errorSummary
		finishJob(m, j, JobDone, now, e)
	default:
		var retryAfter time.Duration
		if c.export != nil {
			retryAfter = c.export.RetryAfter
		} else if c.imp != nil {
			retryAfter = c.imp.RetryAfter
		}
		j.Polls++
		j.PollFailures = 0
		if a := j.lastAttempt(); a != nil && c.export != nil {
			a.RunningAt = timePtr(now)
		}
		delay := s.delay(retryAfter, j.Polls)
		if j.Round > 0 && retryAfter == 0 {
			// A sync round's jobs are small and their end sets the lag: polled at least every four PollInitial.
			delay = min(delay, 4*s.cfg.PollInitial)
		}
		j.NextPollAt = timePtr(now.Add(delay))
	}
}

func (s *Service) applyPollError(m *Migration, j *Job, err error, now time.Time, e *effects) {
	temporary, retryAfter, reason, code := classify(err)
	if serverJobFailed(err) {
		// The job itself failed on the server (not the status call): an export is run again, bounded.
		if j.Kind == KindExport {
			s.reexport(m, j, reason, false, now, e)
			return
		}
		failMigration(m, j, "", reason, now, e)
		return
	}
	if !temporary {
		failMigration(m, j, code, reason, now, e)
		return
	}
	j.PollFailures++
	j.LastError = reason
	if j.PollFailures > s.cfg.MaxPollFailures {
		failMigration(m, j, code, fmt.Sprintf("%d status polls in a row failed, the last: %s", j.PollFailures, reason), now, e)
		return
	}
	j.NextPollAt = timePtr(now.Add(s.delay(retryAfter, j.Polls+j.PollFailures)))
}

// applyKickoff applies the answer to kick-off attempt n of a job (export, import or copy alike). An answer for
// an attempt that is no longer the job's current one is stale; a server job it created is canceled.
func (s *Service) applyKickoff(m *Migration, ref *Job, n int, contentLocation string, err error, now time.Time, e *effects) {
	j := m.job(ref.ID)
	current := j != nil && !m.Status.Terminal() && j.State == JobStarting && j.lastAttempt() != nil &&
		j.lastAttempt().N == n && !j.lastAttempt().Orphaned
	if !current {
		if err == nil && contentLocation != "" && (j == nil || j.ContentLocation != contentLocation) {
			cancelServerJob(m, serverOf(m, ref), contentLocation, ref.ID, "a kick-off answered after its attempt was given up", now, e)
		}
		if j == nil || (j.State != JobStarting && j.State != JobRunning) {
			releaseSlot(m, ref, e)
		}
		return
	}
	a := j.lastAttempt()
	a.AnsweredAt = timePtr(now)
	if err == nil {
		a.ContentLocation = contentLocation
		j.State = JobRunning
		j.ContentLocation = contentLocation
		j.NextPollAt = timePtr(now.Add(s.cfg.PollInitial))
		j.LastError = ""
		return
	}
	temporary, retryAfter, reason, code := classify(err)
	a.Error = reason
	j.LastError = reason
	switch {
	case !temporary:
		failMigration(m, j, code, reason, now, e)
	case failedKickoffs(j) >= s.cfg.MaxAttempts:
		failMigration(m, j, code, fmt.Sprintf("%d kick-off attempts failed, the last: %s", failedKickoffs(j), reason), now, e)
	default:
		j.State = JobQueued
		releaseSlot(m, j, e)
		if j.Kind == KindExport {
			j.NextPollAt = timePtr(now.Add(s.delay(retryAfter, len(j.Attempts)-1)))
			return
		}
		if retryAfter <= 0 {
			retryAfter = s.cfg.RetryDelay
		}
		dispatch(m, j, now.Add(retryAfter), now, e)
	}
}

// classify tells a fault worth retrying from a refusal: a FHIR server's answer says so itself; anything else
// (network, timeouts) is temporary. A count the source would not give is always retried (a role may not have
// reached the service yet) and, once the retries are spent, fails with its own code; code is "" otherwise.
func classify(err error) (temporary bool, retryAfter time.Duration, reason, code string) {
	var ce *countError
	var fe *fhir.Error
	switch {
	case isPermanent(err):
		return false, 0, err.Error(), ""
	case errors.As(err, &ce):
		if errors.As(err, &fe) {
			retryAfter = fe.RetryAfter
		}
		return true, retryAfter, err.Error(), codeSourceCountUnavailable
	case errors.As(err, &fe):
		return fe.Temporary(), fe.RetryAfter, err.Error(), ""
	}
	return true, 0, err.Error(), ""
}

// permanentError marks a fault of our own that a retry cannot fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

func permanent(err error) error { return &permanentError{err: err} }

func isPermanent(err error) bool {
	var pe *permanentError
	return errors.As(err, &pe)
}

// serverJobFailed reports whether a status answer is the failure of the job itself ("export operation failed for
// reason: ..."), whatever its status code, rather than a failure to answer.
func serverJobFailed(err error) bool {
	var fe *fhir.Error
	return errors.As(err, &fe) && !fhir.Throttled(err) && strings.Contains(strings.ToLower(fe.Message), "operation failed for reason")
}
