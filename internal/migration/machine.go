package migration

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// maxImportInputs is the most input files one $import request may carry.
const maxImportInputs = 10000

// typeSearchParameter resources cannot be imported: they are copied with batch PUTs.
const typeSearchParameter = "SearchParameter"

// The decisions below are pure functions of (document, time): they change the document and record effects,
// and never call anything. The steps around them load, call the servers, and save.

// releaseSlot records the release of the slot a job may hold (exports on the source, imports on the destination).
func releaseSlot(m *Migration, j *Job, e *effects) {
	switch j.Kind {
	case KindExport:
		e.release(m.Request.Source, slotExport, slotHolder(m.ID, j.ID))
	case KindImport:
		e.release(m.Request.Destination, slotImport, slotHolder(m.ID, j.ID))
	}
}

func serverOf(m *Migration, j *Job) string {
	if j.Kind == KindExport {
		return m.Request.Source
	}
	return m.Request.Destination
}

// finishJob ends a job in state and frees what it held.
func finishJob(m *Migration, j *Job, state JobState, now time.Time, e *effects) {
	j.State = state
	j.NextPollAt = nil
	j.FinishedAt = timePtr(now)
	releaseSlot(m, j, e)
}

// failMigration fails job permanently, and with it the migration: every other unfinished job is canceled (the
// running ones on their server too) and every slot released. code is the migration's error code; "" names it
// after the job's kind (export_failed, import_failed, copy_failed).
func failMigration(m *Migration, j *Job, code, reason string, now time.Time, e *effects) {
	j.LastError = reason
	finishJob(m, j, JobFailed, now, e)
	if m.Status == StatusSyncing && j.Round > 0 {
		// A sync round's failure fails that round only: its other jobs stop, and settleSync tries it again.
		if r := m.Sync.Round; r != nil {
			for _, o := range roundJobs(m, r) {
				if o.State.Finished() {
					continue
				}
				if o.State == JobRunning && o.ContentLocation != "" {
					cancelServerJob(m, serverOf(m, o), o.ContentLocation, o.ID, "sync round failed", now, e)
				}
				finishJob(m, o, JobCanceled, now, e)
			}
		}
		return
	}
	if code == "" {
		code = string(j.Kind) + "_failed"
	}
	m.Error = &Failure{Code: code, Message: fmt.Sprintf("%s job %s failed: %s", j.Kind, j.ID, reason)}
	stopMigration(m, StatusFailed, now, e)
}

// cancelServerJob records the DELETE of a server job in the document and asks for it. The record stays until the
// server answers, so a DELETE that failed, or was never sent because the handler died, is sent again by the sweep.
func cancelServerJob(m *Migration, server, contentLocation, jobID, reason string, now time.Time, e *effects) {
	if !slices.ContainsFunc(m.Cancels, func(c ServerCancel) bool { return c.ContentLocation == contentLocation }) {
		m.Cancels = append(m.Cancels, ServerCancel{Job: jobID, Server: server, ContentLocation: contentLocation,
			Reason: reason, RequestedAt: now})
	}
	e.cancel(m, server, contentLocation, jobID)
}

// pendingCancels counts the recorded DELETEs still to be seen through.
func pendingCancels(m *Migration) int {
	n := 0
	for _, c := range m.Cancels {
		if !c.GaveUp {
			n++
		}
	}
	return n
}

// redriveCancels sends again every recorded DELETE that is due: not answered RedriveAfter after it was decided
// (the handler may have died before sending it) or after its last failure's backoff.
func redriveCancels(m *Migration, now time.Time, redriveAfter time.Duration, e *effects) bool {
	changed := false
	for i := range m.Cancels {
		c := &m.Cancels[i]
		due := c.NextAt
		if due.IsZero() {
			due = c.RequestedAt.Add(redriveAfter)
		}
		if c.GaveUp || due.After(now) {
			continue
		}
		c.NextAt = now.Add(redriveAfter)
		e.cancel(m, c.Server, c.ContentLocation, c.Job)
		changed = true
	}
	return changed
}

// stopMigration ends the migration in status, canceling every unfinished job.
func stopMigration(m *Migration, status Status, now time.Time, e *effects) {
	m.Status = status
	for _, o := range m.Jobs {
		if o.State.Finished() {
			continue
		}
		if o.State == JobRunning && o.ContentLocation != "" {
			cancelServerJob(m, serverOf(m, o), o.ContentLocation, o.ID, "migration "+string(status), now, e)
		}
		finishJob(m, o, JobCanceled, now, e)
	}
}

// settle moves the migration's status from its jobs: exporting until every export is done, importing until every
// import and copy is done, then verifying (a new verification generation and its message); a syncing migration
// moves its rounds (settleSync). It reports whether it changed the document.
func settle(m *Migration, now time.Time, e *effects) bool {
	if m.Status == StatusSyncing {
		return settleSync(m, now, e)
	}
	if m.Status.Terminal() || m.Status == StatusVerifying || m.Status == StatusPlanning {
		return false
	}
	before := m.Status
	exportsDone, othersDone := true, true
	for _, j := range m.Jobs {
		if j.State == JobDone {
			continue
		}
		if j.Kind == KindExport {
			exportsDone = false
		} else {
			othersDone = false
		}
	}
	switch {
	case !exportsDone:
		m.Status = StatusExporting
	case !othersDone:
		m.Status = StatusImporting
	default:
		startVerification(m, firstVerifyMode(&m.Request), m.Request.VerifySample, now, e)
	}
	return m.Status != before
}

// completeExport records an export's manifest (written as the blob manifest), frees its slot, and plans the jobs
// that carry its files to the destination: imports of at most maxImportInputs files each, and one copy job for
// SearchParameter files.
func completeExport(m *Migration, j *Job, manifest string, output []File, now time.Time, e *effects) {
	j.Manifest, j.Files = manifest, len(output)
	j.Counts = map[string]int64{}
	for _, f := range output {
		j.Counts[f.Type] += f.Count
	}
	finishJob(m, j, JobDone, now, e)

	imports, copies := carried(output)
	for n, batch := range chunk(imports, maxImportInputs) {
		addCarrier(m, &Job{ID: fmt.Sprintf("import-%s-%d", j.ID, n+1), Kind: KindImport, First: n * maxImportInputs,
			Files: len(batch), Types: typesOf(batch)}, j, now, e)
	}
	if len(copies) > 0 {
		addCarrier(m, &Job{ID: "copy-" + j.ID, Kind: KindCopy, Files: len(copies), Types: typesOf(copies)}, j, now, e)
	}
}

// addCarrier adds an import or copy job for the files of export job from, and dispatches it.
func addCarrier(m *Migration, j *Job, from *Job, now time.Time, e *effects) {
	if m.job(j.ID) != nil {
		return
	}
	j.From, j.Manifest, j.State, j.CreatedAt, j.Round = from.ID, from.Manifest, JobQueued, now, from.Round
	m.Jobs = append(m.Jobs, j)
	dispatch(m, j, now, now, e)
}

func chunk[T any](s []T, size int) [][]T {
	var out [][]T
	for len(s) > 0 {
		n := min(size, len(s))
		out = append(out, s[:n:n])
		s = s[n:]
	}
	return out
}

// stripQuery drops a SAS or any query string: $import refuses input URLs with one.
func stripQuery(u string) string {
	if i := strings.IndexAny(u, "?#"); i >= 0 {
		return u[:i]
	}
	return u
}

// housekeep is the sweep's first decision on a migration: requeue kick-offs orphaned by a crash, cancel and
// requeue exports stalled past the deadline, re-dispatch run-import and verify-counts messages that made no
// progress, and settle the status.
func (s *Service) housekeep(m *Migration, now time.Time, e *effects) bool {
	changed := redriveCancels(m, now, s.cfg.RedriveAfter, e)
	if m.Status.Terminal() {
		return changed
	}
	cutoff := now.Add(-s.cfg.RedriveAfter)
	for _, j := range m.Jobs {
		if m.Status.Terminal() {
			break
		}
		switch j.State {
		case JobRunning:
			if !stalled(j, now, s.cfg.ExportDeadline) {
				continue
			}
			// The deadline is judged on the server's answer, not on the engine's last poll, which the backoff may
			// have left well before it: a job not seen running since the deadline is asked now (this sweep's
			// polls), and given up in a later sweep if it still runs. One that cannot be asked for PollMax more
			// (its polls fail) is given up all the same.
			if a := j.lastAttempt(); !seenRunningSince(a, attemptAccepted(a).Add(s.cfg.ExportDeadline)) &&
				now.Before(attemptAccepted(a).Add(s.cfg.ExportDeadline+s.cfg.PollMax)) {
				if j.NextPollAt == nil || j.NextPollAt.After(now) {
					j.NextPollAt = timePtr(now)
					changed = true
				}
				continue
			}
			s.reexport(m, j, fmt.Sprintf("stalled: not finished %s after the source accepted it; canceled", s.cfg.ExportDeadline), true, now, e)
			changed = true
		case JobStarting:
			a := j.lastAttempt()
			if a == nil || a.ContentLocation != "" || a.StartedAt.After(cutoff) {
				continue
			}
			// The handler died between recording the attempt and saving its answer.
			a.Orphaned = true
			j.State = JobQueued
			changed = true
			if j.Kind == KindExport {
				j.Orphans++
			}
			if n := failedKickoffs(j); n >= s.cfg.MaxAttempts {
				failMigration(m, j, "", fmt.Sprintf("%d kick-off attempts failed or were never answered", n), now, e)
				continue
			}
			if j.Kind == KindExport {
				j.NextPollAt = nil
				continue
			}
			// An import re-sent with the identical body is the same server job; a copy only re-PUTs.
			dispatch(m, j, now, now, e)
		case JobQueued:
			if j.Kind != KindExport && j.DispatchAt != nil && !j.DispatchAt.After(cutoff) {
				dispatch(m, j, now, now, e)
				changed = true
			}
		}
	}
	changed = driveSyncChecks(m, now, s.cfg.RedriveAfter, e) || changed
	if v := m.Verification; m.Status == StatusVerifying && v != nil && !v.DispatchAt.After(cutoff) {
		v.Dispatch++
		v.DispatchAt = now
		e.send(verifyMessage(m.ID, v.Generation, v.Dispatch, time.Time{}))
		changed = true
	}
	return settle(m, now, e) || changed
}
