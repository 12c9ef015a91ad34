package migration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fhir-migrator/fhir-migrator/internal/bus"
	"github.com/fhir-migrator/fhir-migrator/internal/store"
)

// Verify while syncing. A cutover that checks everything after writes stop reads every staged file again and lists
// every id of both servers: hours at a billion resources, all of them downtime. So while a migration syncs, what the
// cutover would check of the data already in place is checked in the background, a step at a time:
//
//   - the staged files: with verify ids or full, the full copy's files and then each finished round's are checked
//     as the cutover's verification checks them (every id looked up on both servers; contents compared in full),
//     from a cursor over the files in the order of verification.ids. The source is still written, so an id that
//     differs (deleted or updated there since, not copied yet) proves nothing: it is kept as a suspect, and the
//     cutover looks each suspect up again once writes have stopped. The cutover's verification starts at the
//     cursor: it reads only the files not checked yet (the rounds the checks did not reach, and the final round's).
//   - reconciliation passes: a pass lists the destination's ids of every reconciled type, a page at a time, and
//     looks each up on the source; one the source does not hold at all (404: hard-deleted or purged, which no
//     export carries) is removed from the destination with a hard delete (with reconcile report, only counted).
//     One deleted there (410) is left to the rounds, which carry the deletion (a delete on the destination would
//     be a version of its own, which the round's import then conflicts with). Each pass records when it started:
//     a hard delete made after that may have been missed, and the cutover's count comparison looks for it.
//
// Both are driven by verify-counts messages of their own (task sync-checks), one at a time (a dispatch number),
// re-sent by the sweep when one is lost. An invocation works at most syncCheckBudget, then schedules the next as
// long after as it worked: the background checks use the servers' search capacity at most half of the time, take no
// export or import slot, and never hold a round (rounds are the sweep's; the checks only save their own cursor).
// While one works, a watcher reads the document every PollInitial and drops its searches in flight when a round
// starts, the cutover is requested, or the sweep re-sent the message: a round never waits behind them, and two
// invocations never share the services' search rate.

// taskSyncChecks is the task of a sync-checks message.
const taskSyncChecks = "sync-checks"

// syncCheckFiles is how many staged files the background checks read at once.
const syncCheckFiles = 4

// maxListedSuspects bounds the suspects a document lists (every one is in the suspects blob).
const maxListedSuspects = 20

// SyncChecks is what a syncing migration has verified so far while syncing.
type SyncChecks struct {
	// Mode is what the staged files are checked for: ids or full (the request's verify); empty when the request
	// verifies by counts or not at all (then the files are not read while syncing).
	Mode string `json:"mode,omitempty"`
	// NextFile is the cursor over the staged files, in the order of verification.ids: every file before it is
	// checked. Files counts the files of the full copy and of the finished rounds when last saved; Round is the
	// round the cursor is in (0: the full copy), CheckedRounds the rounds whose every file is checked (-1: not even
	// the full copy's; 0: the full copy's).
	NextFile      int `json:"nextFile"`
	Files         int `json:"files"`
	Round         int `json:"round"`
	CheckedRounds int `json:"checkedRounds"`
	// Types tallies the checked files per type: lines read, ids looked up, duplicates, contents compared.
	Types map[string]*IDTally `json:"types,omitempty"`
	// Suspects counts the ids that differed when checked (missing, extra, or different from the source's
	// current content): the cutover looks each up again. SuspectsBlob lists them all, SuspectsListed the first.
	Suspects       int64    `json:"suspects,omitempty"`
	SuspectsBlob   string   `json:"suspectsBlob,omitempty"`
	SuspectsListed []string `json:"suspectsListed,omitempty"`
	// Pass is the reconciliation pass under way, LastPass the latest completed one, Passes the completed ones.
	Pass     *SyncPass `json:"pass,omitempty"`
	LastPass *SyncPass `json:"lastPass,omitempty"`
	Passes   int       `json:"passes"`
	// FirstPassAt is when the first pass started. Removed counts what every pass removed since, by type in
	// RemovedByType (their rate tells the cutover how many hard deletes to expect since the last pass started);
	// RemovedListed are the first, Reports name the passes' lists of every one. The cutover's reconciliation reports
	// them with its own.
	FirstPassAt   *time.Time       `json:"firstPassAt,omitempty"`
	Removed       int64            `json:"removed,omitempty"`
	RemovedByType map[string]int64 `json:"removedByType,omitempty"`
	RemovedListed []string         `json:"removedListed,omitempty"`
	Reports       []string         `json:"reports,omitempty"`
	// Dispatch numbers the checks' messages; DueAt is when the latest is due (the sweep sends another when none
	// ran RedriveAfter later); CheckedAt is when an invocation last saved.
	Dispatch  int        `json:"dispatch"`
	DueAt     time.Time  `json:"dueAt"`
	CheckedAt *time.Time `json:"checkedAt,omitempty"`
	// Failures counts the invocations in a row that could not do their work, LastError the latest reason: they
	// are tried again later; none fails the migration (the cutover checks again).
	Failures  int    `json:"failures,omitempty"`
	LastError string `json:"lastError,omitempty"`
}

// SyncPass is one reconciliation pass over the destination's ids while syncing.
type SyncPass struct {
	N int `json:"n"`
	// StartedAt: a hard delete on the source after it may not be seen by this pass.
	StartedAt  time.Time  `json:"startedAt"`
	FinishedAt *time.Time `json:"finishedAt,omitempty"`
	// Types are the reconciled types; TypeIndex and Next the cursor (the type being listed, its next page).
	Types     []string `json:"types"`
	TypeIndex int      `json:"typeIndex"`
	Next      string   `json:"next,omitempty"`
	// Checked counts the destination's ids looked up on the source; Removed those removed (hard-deleted on the
	// source); Extra, with reconcile report, those only counted.
	Checked int64 `json:"checked"`
	Removed int64 `json:"removed,omitempty"`
	Extra   int64 `json:"extra,omitempty"`
	// Listed are the first removed (or extra) ids with what was done; Report names the blob listing every one.
	Listed []string `json:"listed,omitempty"`
	Report string   `json:"report,omitempty"`
}

// syncCheckMode is what the staged files are checked for while syncing: the request's ids or full, else nothing.
func syncCheckMode(r *Request) string {
	if r.Verify == VerifyModeIDs || r.Verify == VerifyModeFull {
		return r.Verify
	}
	return ""
}

// syncCheckBudget is how long one invocation of the background checks works: a quarter of RedriveAfter (so the
// sweep never takes a running one for lost), at most verifyBudget.
func (s *Service) syncCheckBudget() time.Duration {
	return min(verifyBudget, s.cfg.RedriveAfter/4)
}

func syncCheckMessage(migrationID string, dispatch int, at time.Time) bus.Message {
	body, _ := json.Marshal(VerifyMessage{MigrationID: migrationID, Task: taskSyncChecks, Dispatch: dispatch})
	return bus.Message{
		Queue:     bus.QueueVerifyCounts,
		ID:        fmt.Sprintf("%s/%s/%d", migrationID, taskSyncChecks, dispatch),
		Body:      body,
		NotBefore: at,
	}
}

// driveSyncChecks is the sweep's part: it starts the background checks of a migration that syncs, and sends their
// message again when the one due was not run RedriveAfter later (lost, or its invocation killed).
func driveSyncChecks(m *Migration, now time.Time, redriveAfter time.Duration, e *effects) bool {
	if m.Status != StatusSyncing || m.Sync == nil || m.Sync.CutoverRequestedAt != nil {
		return false
	}
	c := m.Sync.Checks
	switch {
	case c == nil:
		c = &SyncChecks{Mode: syncCheckMode(&m.Request), CheckedRounds: -1}
		m.Sync.Checks = c
	case now.Before(c.DueAt.Add(redriveAfter)):
		return false
	}
	c.Dispatch++
	c.DueAt = now
	e.send(syncCheckMessage(m.ID, c.Dispatch, time.Time{}))
	return true
}

// yieldToRound reports whether the background checks wait: a round is in flight (its export, import and write
// check have the servers and the document to themselves; the checks go on between rounds).
func yieldToRound(m *Migration) bool { return m.Sync != nil && m.Sync.Round != nil }

// stillFree reloads the document and reports whether the checks may go on: their dispatch is current and no round
// is in flight.
func (s *Service) stillFree(ctx context.Context, id string, dispatch int) bool {
	m, _, err := s.load(ctx, id)
	return err == nil && syncChecksCurrent(m, dispatch) && !yieldToRound(m)
}

// syncChecksCurrent reports whether a sync-checks message of this dispatch is the one to run now.
func syncChecksCurrent(m *Migration, dispatch int) bool {
	return m.Status == StatusSyncing && m.Sync != nil && m.Sync.CutoverRequestedAt == nil && m.Sync.Checks != nil &&
		m.Sync.Checks.Dispatch == dispatch
}

// fileSpan is where one round's staged files lie in the order of verification.ids.
type fileSpan struct{ round, from, to int }

// syncFileSpans lists, in file order, the spans of the full copy's files and of each finished round's: the files
// the background checks may read (a round in flight is not checked until it is finished).
func syncFileSpans(m *Migration) []fileSpan {
	var out []fileSpan
	i := 0
	for _, j := range m.Jobs {
		if j.Kind != KindExport || j.State != JobDone {
			continue
		}
		if m.Sync != nil && j.Round > m.Sync.Rounds {
			break // the round in flight: it and everything after wait
		}
		if n := len(out); n > 0 && out[n-1].round == j.Round {
			out[n-1].to += j.Files
		} else {
			out = append(out, fileSpan{round: j.Round, from: i, to: i + j.Files})
		}
		i += j.Files
	}
	return out
}

// syncCursorPlace is the round the cursor is in and the rounds checked in full, for the document.
func syncCursorPlace(spans []fileSpan, next int) (round, checked int) {
	checked = -1
	for _, sp := range spans {
		if sp.to <= next {
			checked = sp.round
			round = sp.round
			continue
		}
		return sp.round, checked
	}
	return round, checked
}

// runSyncChecks handles a sync-checks message: it checks staged files from the cursor, then goes on with the
// reconciliation pass, within the budget, and schedules the next invocation. A stale message is acknowledged.
func (s *Service) runSyncChecks(ctx context.Context, msg VerifyMessage) error {
	log := s.log.With("migration", msg.MigrationID, "task", taskSyncChecks)
	m, err := s.messageTarget(ctx, bus.QueueVerifyCounts, msg.MigrationID, log)
	if m == nil {
		return err
	}
	if !syncChecksCurrent(m, msg.Dispatch) {
		return nil // stale, duplicate, or the cutover took over
	}
	started := s.now()
	deadline := started.Add(s.syncCheckBudget())
	var workErr error
	if !yieldToRound(m) {
		// The work stops within a PollInitial of a round starting, the cutover being requested, or this message
		// going stale (the sweep sent another): its searches in flight are dropped, what it saved stays.
		work, stop := context.WithCancelCause(ctx)
		go s.watchSyncChecks(work, stop, msg.MigrationID, msg.Dispatch, started)
		workErr = s.syncCheckWork(work, m, msg.Dispatch, deadline)
		if errors.Is(context.Cause(work), errSyncChecksStop) && ctx.Err() == nil {
			workErr = nil
		}
		stop(nil)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	worked := s.now().Sub(started)
	// The next invocation starts as long after as this one worked (at least a second, and soon when there was
	// nothing to do only if a round may have finished meanwhile).
	pause := max(worked, time.Second)
	if workErr != nil {
		log.Warn("sync checks asked again later", "err", workErr)
	}
	var next, files int
	scheduled := false
	_, eff, err := s.update(ctx, msg.MigrationID, func(m *Migration) (*effects, error) {
		scheduled = false
		if !syncChecksCurrent(m, msg.Dispatch) {
			return nil, errUnchanged
		}
		c := m.Sync.Checks
		now := s.now()
		if workErr != nil {
			c.Failures++
			c.LastError = truncate(workErr.Error(), maxErrorMessage)
			pause = max(pause, s.retryDelay(c.Failures))
		} else {
			c.Failures, c.LastError = 0, ""
		}
		switch {
		case yieldToRound(m):
			// A round runs: its time is the checks' rest, and its files are to be checked as soon as it ends (a
			// file left unchecked is read by the cutover, in the downtime): look again soon.
			pause = 4 * s.cfg.PollInitial
		case syncIdle(m, now) && workErr == nil:
			pause = max(pause, min(syncInterval(&m.Request)/4, time.Minute))
		}
		c.Dispatch++
		c.DueAt = now.Add(pause)
		next, files, scheduled = c.NextFile, c.Files, true
		e := &effects{}
		e.send(syncCheckMessage(m.ID, c.Dispatch, c.DueAt))
		return e, nil
	})
	if err != nil {
		return fmt.Errorf("schedule the sync checks: %w", err)
	}
	if !scheduled {
		log.Debug("sync checks stale: another message took over", "worked", worked.Round(time.Millisecond))
		return nil
	}
	log.Info("sync checks", "worked", worked.Round(time.Millisecond), "next_in", pause.Round(time.Millisecond),
		"next_file", next, "files", files)
	s.perform(ctx, msg.MigrationID, eff)
	return nil
}

// errSyncChecksStop is the cause the background checks' work is canceled with when it must give way.
var errSyncChecksStop = errors.New("the sync checks give way: a round started, the cutover was requested, or another message took over")

// watchSyncChecks reloads the document every PollInitial while the checks work, and stops the work when a round is
// in flight or the checks' message is no longer the current one. Without it a step already started (a batch of
// files, a page of a pass) would go on searching while a round needs the servers, or after the sweep re-sent the
// message, with two invocations' searches then sharing the services' rates.
//
// It is also the work's heartbeat: every quarter of RedriveAfter from beat (the invocation's start) it moves the
// checks' dueAt to now, so that the sweep does not take a step that runs long (a batch of large files at the
// service's search rate) for a lost message and re-send it, which would stop this one and start the same step
// again, never saved. A killed invocation beats no more, and is re-sent RedriveAfter later.
func (s *Service) watchSyncChecks(ctx context.Context, stop context.CancelCauseFunc, id string, dispatch int, beat time.Time) {
	t := time.NewTicker(s.cfg.PollInitial)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		m, _, err := s.load(ctx, id)
		if err != nil {
			continue // the work's own reads and saves report a store that fails
		}
		if !syncChecksCurrent(m, dispatch) || yieldToRound(m) {
			stop(errSyncChecksStop)
			return
		}
		if now := s.now(); now.Sub(beat) >= s.cfg.RedriveAfter/4 {
			if _, _, err := s.update(ctx, id, func(m *Migration) (*effects, error) {
				if !syncChecksCurrent(m, dispatch) {
					return nil, errUnchanged
				}
				m.Sync.Checks.DueAt = now
				return nil, nil
			}); err == nil {
				beat = now // a beat that failed is tried again at the next tick
			}
		}
	}
}

// syncIdle reports whether the background checks have nothing to do now: every checkable file checked, and no pass
// due.
func syncIdle(m *Migration, now time.Time) bool {
	c := m.Sync.Checks
	spans := syncFileSpans(m)
	files := 0
	if len(spans) > 0 {
		files = spans[len(spans)-1].to
	}
	return (c.Mode == "" || c.NextFile >= files) && c.Pass == nil && !passDue(m, now)
}

// filesPending reports whether staged files wait for the background checks.
func filesPending(m *Migration) bool {
	c := m.Sync.Checks
	spans := syncFileSpans(m)
	return c.Mode != "" && len(spans) > 0 && c.NextFile < spans[len(spans)-1].to
}

// passDue reports whether a new reconciliation pass may start: the request reconciles, no pass is under way, and
// the latest finished at least a sync interval ago (passes follow one another, paced by the rounds).
func passDue(m *Migration, now time.Time) bool {
	c := m.Sync.Checks
	if m.Request.Reconcile == "" || c.Pass != nil {
		return false
	}
	return c.LastPass == nil || c.LastPass.FinishedAt == nil ||
		!now.Before(c.LastPass.FinishedAt.Add(syncInterval(&m.Request)))
}

// syncCheckWork checks files, then passes, until the deadline.
func (s *Service) syncCheckWork(ctx context.Context, m *Migration, dispatch int, deadline time.Time) error {
	for s.now().Before(deadline) && !yieldToRound(m) {
		more, err := s.checkSyncFiles(ctx, m, dispatch, deadline)
		if err != nil {
			return err
		}
		if m, _, err = s.load(ctx, m.ID); err != nil {
			return err
		}
		if !syncChecksCurrent(m, dispatch) {
			return nil
		}
		if more || yieldToRound(m) {
			continue
		}
		did, err := s.syncPassStep(ctx, m, dispatch, deadline)
		if err != nil || !did {
			return err
		}
		if m, _, err = s.load(ctx, m.ID); err != nil {
			return err
		}
		if !syncChecksCurrent(m, dispatch) {
			return nil
		}
	}
	return nil
}

// checkSyncFiles checks checkable files from the cursor, a few at once, until the deadline or checkpointEvery of
// checking, and saves the cursor and tallies once; it reports whether it checked any.
func (s *Service) checkSyncFiles(ctx context.Context, m *Migration, dispatch int, deadline time.Time) (bool, error) {
	c := m.Sync.Checks
	if c.Mode == "" {
		return false, nil
	}
	spans := syncFileSpans(m)
	if len(spans) == 0 {
		return false, nil
	}
	total := spans[len(spans)-1].to
	if c.NextFile >= total {
		// Nothing to read; a round that staged no file is checked all the same, and the document says so.
		round, checked := syncCursorPlace(spans, c.NextFile)
		if round == c.Round && checked == c.CheckedRounds && total == c.Files {
			return false, nil
		}
		_, _, err := s.update(ctx, m.ID, func(m *Migration) (*effects, error) {
			c := m.Sync.Checks
			if !syncChecksCurrent(m, dispatch) || c.NextFile != total || len(syncFileSpans(m)) != len(spans) {
				return nil, errUnchanged
			}
			c.Files = total
			c.Round, c.CheckedRounds = syncCursorPlace(syncFileSpans(m), total)
			return nil, nil
		})
		if err != nil {
			return false, fmt.Errorf("save the sync checks: %w", err)
		}
		return false, nil
	}
	from := c.NextFile
	dst, err := s.cfg.FHIR(m.Request.Destination)
	if err != nil {
		return false, fmt.Errorf("client for %s: %w", m.Request.Destination, err)
	}
	src, err := s.sourceClient(&m.Request)
	if err != nil {
		return false, fmt.Errorf("client for %s: %w", m.Request.Source, err)
	}
	held, err := s.heldFiles(ctx, m)
	if err != nil {
		return false, err
	}
	var files []File
	if err := s.exportedFiles(ctx, m, from, func(i int, f File) (bool, error) {
		files = append(files, f)
		return i+1 < total, nil
	}); err != nil {
		return false, err
	}
	if len(files) != total-from {
		return false, fmt.Errorf("the manifests list %d files from %d, their jobs count %d", len(files), from, total-from)
	}
	started := s.now()
	tally := map[string]*IDTally{}
	var suspects []string
	compared := map[string]int64{} // compared by this invocation, for verifySample
	to := from
	for to < total && s.now().Before(deadline) && s.now().Sub(started) < checkpointEvery {
		if to > from && !s.stillFree(ctx, m.ID, dispatch) {
			break // a round started, or the cutover: what is checked is saved, the rest waits
		}
		batch := files[to-from : min(to-from+syncCheckFiles, len(files))]
		results := make([]*fileCheck, len(batch))
		errs := make([]error, len(batch))
		budget := map[string]int64{}
		if c.Mode == VerifyModeFull {
			budget = syncCompareBudget(m, c, compared)
		}
		// The files read at once share the migration's PollConcurrency searches on each server: under a service that
		// shares its search rate among the requests it runs, more at once only makes each slower (and a round's own
		// searches wait behind them).
		fanOut(len(batch), syncCheckFiles, func(i int) {
			results[i], errs[i] = s.checkFile(ctx, dst, src, batch[i], maps.Clone(budget), comparison{importMode: m.Request.ImportMode},
				!held[stripQuery(batch[i].URL)], s.cfg.PollConcurrency/syncCheckFiles)
		})
		if err := errors.Join(errs...); err != nil {
			return false, err
		}
		for _, r := range results {
			for t, n := range r.types {
				cur := tally[t]
				if cur == nil {
					cur = &IDTally{}
					tally[t] = cur
				}
				cur.Lines += n.Lines
				cur.Checked += n.Checked
				cur.Duplicates += n.Duplicates
				cur.Compared += n.Compared
				compared[t] += n.Compared
			}
			for _, id := range r.missing {
				suspects = append(suspects, "missing\t"+id)
			}
			for _, d := range r.diffs {
				kind := "different"
				if slices.Contains(d.Paths, extraPath) {
					kind = "extra"
				}
				suspects = append(suspects, kind+"\t"+d.Resource)
			}
		}
		to += len(batch)
	}
	blob := c.SuspectsBlob
	if len(suspects) > 0 {
		blob = suspectsBlobName(m.ID)
		if err := s.appendLines(ctx, blob, suspects); err != nil {
			return false, fmt.Errorf("write the sync's suspects: %w", err)
		}
	}
	saved := false
	_, _, err = s.update(ctx, m.ID, func(m *Migration) (*effects, error) {
		saved = false
		if !syncChecksCurrent(m, dispatch) || m.Sync.Checks.NextFile != from {
			return nil, errUnchanged
		}
		saved = true
		c := m.Sync.Checks
		now := s.now()
		c.NextFile, c.Files = to, total
		c.Round, c.CheckedRounds = syncCursorPlace(syncFileSpans(m), to)
		if c.Types == nil {
			c.Types = map[string]*IDTally{}
		}
		for t, n := range tally {
			if c.Types[t] == nil {
				c.Types[t] = &IDTally{}
			}
			c.Types[t].add(n)
		}
		if len(suspects) > 0 {
			c.Suspects += int64(len(suspects))
			c.SuspectsBlob = blob
			for _, l := range suspects {
				if len(c.SuspectsListed) >= maxListedSuspects {
					break
				}
				kind, id, _ := strings.Cut(l, "\t")
				c.SuspectsListed = append(c.SuspectsListed, id+" ("+kind+")")
			}
		}
		c.CheckedAt = timePtr(now)
		c.DueAt = now // a heartbeat: the sweep does not take this invocation for lost
		return nil, nil
	})
	if err != nil {
		return false, fmt.Errorf("save the sync checks: %w", err)
	}
	return saved, nil
}

// typesOrAll is the request's types, or those tallied so far when it names none.
func (r *Request) typesOrAll(tallied map[string]*IDTally) map[string]bool {
	out := map[string]bool{}
	for _, t := range r.Types {
		out[t] = true
	}
	for t := range tallied {
		out[t] = true
	}
	return out
}

// syncCompareBudget is, per type, how many more resources the background full check compares: all, or what
// verifySample leaves.
func syncCompareBudget(m *Migration, c *SyncChecks, compared map[string]int64) map[string]int64 {
	out := map[string]int64{}
	sample := int64(m.Request.VerifySample)
	for t := range m.Request.typesOrAll(c.Types) {
		out[t] = -1
		if sample > 0 {
			done := compared[t]
			if c.Types[t] != nil {
				done += c.Types[t].Compared
			}
			out[t] = max(sample-done, 0)
		}
	}
	if len(m.Request.Types) == 0 {
		// Every type: those not tallied yet are compared in full (or up to the sample).
		for _, t := range m.SourceTypes {
			if _, ok := out[t]; !ok {
				out[t] = -1
				if sample > 0 {
					out[t] = sample
				}
			}
		}
	}
	return out
}

// extraPath is the path checkFile lists an id under when the source deleted it and the destination holds it.
const extraPath = "(deleted on the source, present in the destination)"

func suspectsBlobName(id string) string {
	return fmt.Sprintf("%s%s/sync-suspects.txt", filesPrefix, id)
}

// appendLines adds lines to a text blob of the document store (one writer at a time: the checks' dispatch).
func (s *Service) appendLines(ctx context.Context, name string, lines []string) error {
	old, _, err := s.cfg.Store.Get(ctx, name)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	var b bytes.Buffer
	b.Write(old)
	for _, l := range lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return s.putReport(ctx, name, b.Bytes())
}

// reconcileTypes are the types a reconciliation goes over, and those it leaves alone with why: SearchParameters
// (copied with PUTs) and the types the destination held before the migration, or whose count then is unknown.
func reconcileTypes(m *Migration) ([]string, map[string]string) {
	var types []string
	skipped := map[string]string{}
	for _, t := range planTypes(&m.Request, m.SourceTypes) {
		before, known := baselineCount(m.Baseline, t)
		switch {
		case t == typeSearchParameter:
		case !known:
			skipped[t] = "the destination's count of the type before the migration is unknown: its own resources are not told from the source's"
		case before != 0:
			skipped[t] = fmt.Sprintf("the destination held %d resources of the type before the migration: they are not the source's to remove", before)
		default:
			types = append(types, t)
		}
	}
	slices.Sort(types)
	return types, skipped
}

// syncPassStep goes on with the reconciliation pass (starting one when due) until the deadline, a page at a time,
// saving after each; it reports whether it did anything.
func (s *Service) syncPassStep(ctx context.Context, m *Migration, dispatch int, deadline time.Time) (bool, error) {
	c := m.Sync.Checks
	if c.Pass == nil {
		if !passDue(m, s.now()) {
			return false, nil
		}
		types, _ := reconcileTypes(m)
		n := c.Passes + 1
		now := s.now()
		started := false
		_, _, err := s.update(ctx, m.ID, func(m *Migration) (*effects, error) {
			started = false
			if !syncChecksCurrent(m, dispatch) || m.Sync.Checks.Pass != nil || m.Sync.Checks.Passes != n-1 {
				return nil, errUnchanged
			}
			started = true
			m.Sync.Checks.Pass = &SyncPass{N: n, StartedAt: now, Types: types}
			if m.Sync.Checks.FirstPassAt == nil {
				m.Sync.Checks.FirstPassAt = timePtr(now)
			}
			return nil, nil
		})
		if err != nil || !started {
			return false, err
		}
		if m, _, err = s.load(ctx, m.ID); err != nil {
			return false, err
		}
	}
	src, dst, written, err := s.reconcileOpen(ctx, m)
	if err != nil {
		return false, err
	}
	mark := m.Sync.HighWater // the writes read above are every one up to it
	for {
		p := m.Sync.Checks.Pass
		if p == nil || !syncChecksCurrent(m, dispatch) || yieldToRound(m) {
			return true, nil
		}
		// Pages until the deadline or checkpointEvery, then one save: a killed invocation redoes at most that much
		// (a removal done twice is no removal the second time).
		cur := *p
		var steps []*reconcileStep
		began := s.now()
		for cur.TypeIndex < len(cur.Types) {
			step, err := s.passPage(ctx, m, &cur, src, dst, written, mark)
			if err != nil {
				return true, err
			}
			steps = append(steps, step)
			if cur.Next = step.next; step.next == "" {
				cur.TypeIndex++
			}
			if !s.now().Before(deadline) || s.now().Sub(began) >= checkpointEvery || !s.stillFree(ctx, m.ID, dispatch) {
				break
			}
		}
		if err := s.savePass(ctx, m.ID, dispatch, p, steps, cur.TypeIndex, cur.Next); err != nil {
			return true, err
		}
		if m, _, err = s.load(ctx, m.ID); err != nil {
			return true, err
		}
		if !s.now().Before(deadline) || filesPending(m) {
			// A finished round's files go before the rest of the pass: a pass over every id takes hours, and a
			// file left unchecked is read by the cutover, in the downtime.
			return true, nil
		}
	}
}

// passPage lists one page of the pass's current type on the destination and looks its ids up on the source, a
// hundred at a time, several at once; an id the source does not hold is read there, and removed from the
// destination when the source holds nothing of it (404).
func (s *Service) passPage(ctx context.Context, m *Migration, p *SyncPass, src, dst FHIRClient, written map[string]bool,
	mark time.Time) (*reconcileStep, error) {
	t := p.Types[p.TypeIndex]
	step := &reconcileStep{typ: t}
	page, next, err := dst.SearchPage(ctx, t, url.Values{"_elements": {"id"}, "_count": {strconv.Itoa(reconcilePage)}}, p.Next)
	if err != nil {
		return nil, fmt.Errorf("list the ids of %s on the destination: %w", t, err)
	}
	step.next = next
	// Only what the rounds' write checks have looked at is removed: a version dated after the high-water mark may be
	// a direct write not recorded yet, which is never the pass's to remove (the cutover names it).
	var ids []string
	for _, raw := range page {
		var head struct {
			ResourceType string `json:"resourceType"`
			ID           string `json:"id"`
			Meta         struct {
				LastUpdated string `json:"lastUpdated"`
			} `json:"meta"`
		}
		if json.Unmarshal(raw, &head) != nil || head.ResourceType != t || !idPattern.MatchString(head.ID) {
			continue
		}
		step.checked++
		if at, err := time.Parse(time.RFC3339Nano, head.Meta.LastUpdated); err != nil || at.After(mark) {
			continue
		}
		ids = append(ids, head.ID)
	}
	chunks := slices.Collect(slices.Chunk(ids, idsPerSearch))
	found := make([]map[string]bool, len(chunks))
	errs := make([]error, len(chunks))
	fanOut(len(chunks), s.cfg.PollConcurrency, func(i int) {
		found[i], errs[i] = lookUpIDs(ctx, src, t, chunks[i])
	})
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("look up %s ids on the source: %w", t, err)
	}
	var gone []string
	for i, ch := range chunks {
		for _, id := range ch {
			if !found[i][id] && !written[t+"/"+id] {
				gone = append(gone, id)
			}
		}
	}
	del := m.Request.Reconcile == ReconcileDelete
	lines := make([]string, len(gone))
	removed := make([]bool, len(gone))
	errs = make([]error, len(gone))
	fanOut(len(gone), s.cfg.PollConcurrency, func(i int) {
		id := gone[i]
		cur, err := src.Read(ctx, t, id)
		if err != nil {
			errs[i] = fmt.Errorf("read %s/%s on the source: %w", t, id, err)
			return
		}
		if cur.Status != 404 {
			return // written again since the search, or deleted (410): the rounds carry it
		}
		if !del {
			lines[i] = t + "/" + id + ": hard-deleted or purged on the source, still on the destination"
			return
		}
		if err := dst.Delete(ctx, t, id, true); err != nil {
			errs[i] = fmt.Errorf("remove %s/%s from the destination: %w", t, id, err)
			return
		}
		removed[i] = true
		lines[i] = t + "/" + id + ": hard-deleted or purged on the source: removed from the destination"
	})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for i, l := range lines {
		if l == "" {
			continue
		}
		if removed[i] {
			step.removed++
		} else {
			step.extra++
		}
		step.lines = append(step.lines, l)
	}
	return step, nil
}

// idsOf reads the ids of a page of resources of type t.
func idsOf(page []json.RawMessage, t string) []string {
	var ids []string
	for _, raw := range page {
		var head struct {
			ResourceType string `json:"resourceType"`
			ID           string `json:"id"`
		}
		if json.Unmarshal(raw, &head) == nil && head.ResourceType == t && idPattern.MatchString(head.ID) {
			ids = append(ids, head.ID)
		}
	}
	return ids
}

// lookUpIDs answers which of up to idsPerSearch ids of type t the server holds.
func lookUpIDs(ctx context.Context, c FHIRClient, t string, ids []string) (map[string]bool, error) {
	found := map[string]bool{}
	q := url.Values{"_id": {strings.Join(ids, ",")}, "_elements": {"id"}, "_count": {strconv.Itoa(len(ids))}}
	err := c.Search(ctx, t, q, func(r json.RawMessage) error {
		var head struct {
			ResourceType string `json:"resourceType"`
			ID           string `json:"id"`
		}
		if json.Unmarshal(r, &head) == nil && head.ResourceType == t {
			found[head.ID] = true
		}
		return nil
	})
	return found, err
}

// savePass adds pages' steps to the pass under way (when its cursor is still the one the steps started from),
// moves its cursor, and ends the pass after its last page.
func (s *Service) savePass(ctx context.Context, id string, dispatch int, from *SyncPass, steps []*reconcileStep, typeIndex int, next string) error {
	report := from.Report
	var lines []string
	for _, st := range steps {
		lines = append(lines, st.lines...)
	}
	if len(lines) > 0 {
		report = fmt.Sprintf("%s%s-pass/%04d.txt", reportPrefix, id, from.N)
		if err := s.appendLines(ctx, report, lines); err != nil {
			return fmt.Errorf("write the pass's list: %w", err)
		}
	}
	_, _, err := s.update(ctx, id, func(m *Migration) (*effects, error) {
		if !syncChecksCurrent(m, dispatch) {
			return nil, errUnchanged
		}
		c := m.Sync.Checks
		p := c.Pass
		if p == nil || p.N != from.N || p.TypeIndex != from.TypeIndex || p.Next != from.Next {
			return nil, errUnchanged
		}
		now := s.now()
		for _, step := range steps {
			p.Checked += step.checked
			p.Removed += step.removed
			p.Extra += step.extra
			p.Listed = append(p.Listed, step.lines[:min(len(step.lines), max(maxListedSuspects-len(p.Listed), 0))]...)
			if step.removed == 0 {
				continue
			}
			c.Removed += step.removed
			if c.RemovedByType == nil {
				c.RemovedByType = map[string]int64{}
			}
			c.RemovedByType[step.typ] += step.removed
			for _, l := range step.lines {
				if strings.HasSuffix(l, "removed from the destination") && len(c.RemovedListed) < maxListedRefused {
					c.RemovedListed = append(c.RemovedListed, l)
				}
			}
			if !slices.Contains(c.Reports, report) {
				c.Reports = append(c.Reports, report)
			}
		}
		p.Report = report
		p.TypeIndex, p.Next = typeIndex, next
		if p.TypeIndex >= len(p.Types) {
			p.FinishedAt = timePtr(now)
			c.LastPass, c.Pass = p, nil
			c.Passes++
		}
		c.CheckedAt = timePtr(now)
		c.DueAt = now
		return nil, nil
	})
	if err != nil {
		return fmt.Errorf("save the reconciliation pass: %w", err)
	}
	return nil
}

// seedCutoverCheck starts a fast cutover's id check where the sync's checks stopped: the files they checked are
// not read again, their tallies carry over, and their suspects are looked up again (recheckSuspects).
func seedCutoverCheck(m *Migration) {
	c := m.Sync.Checks
	v := m.Verification
	if c == nil || c.Mode == "" || c.Mode != verifyMode(m) || m.Request.CutoverVerify == CutoverVerifyFullIDs || c.NextFile == 0 {
		return
	}
	types := map[string]*IDTally{}
	for t, n := range c.Types {
		cp := *n
		types[t] = &cp
	}
	v.IDs = &IDCheck{NextFile: c.NextFile, Files: c.Files, Types: types, FromSync: c.NextFile, Suspects: c.SuspectsBlob,
		SuspectsDone: c.SuspectsBlob == ""}
}

// recheckSuspects looks every id that differed while syncing up again on both servers, now that writes have
// stopped and the final round is in: what still differs counts as missing, extra or different.
func (s *Service) recheckSuspects(ctx context.Context, m *Migration, generation int) error {
	ids := m.Verification.IDs
	data, _, err := s.cfg.Store.Get(ctx, ids.Suspects)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("read the sync's suspects: %w", err)
	}
	byType := map[string][]string{}
	kinds := map[string]string{}
	var invalid []string
	for l := range strings.SplitSeq(string(data), "\n") {
		kind, key, ok := strings.Cut(l, "\t")
		if !ok {
			continue
		}
		t, id, _ := strings.Cut(key, "/")
		if !typePattern.MatchString(t) || !idPattern.MatchString(id) {
			invalid = append(invalid, key) // a line with no valid id: missing, whatever happened since
			continue
		}
		if _, seen := kinds[key]; !seen {
			byType[t] = append(byType[t], id)
		}
		if kinds[key] == "" || kind == "different" {
			kinds[key] = kind
		}
	}
	src, err := s.sourceClient(&m.Request)
	if err != nil {
		return fmt.Errorf("client for %s: %w", m.Request.Source, err)
	}
	dst, err := s.cfg.FHIR(m.Request.Destination)
	if err != nil {
		return fmt.Errorf("client for %s: %w", m.Request.Destination, err)
	}
	res := newFileCheck()
	res.missing = append(res.missing, invalid...)
	for _, key := range invalid {
		t, _, _ := strings.Cut(key, "/")
		res.tally(t).Missing++
	}
	types := slices.Sorted(maps.Keys(byType))
	for _, t := range types {
		for ch := range slices.Chunk(byType[t], idsPerSearch) {
			b := &idBatch{typ: t, ids: ch}
			if verifyMode(m) == VerifyModeFull {
				b.raw = map[string][]byte{}
				for _, id := range ch {
					if kinds[t+"/"+id] == "different" {
						b.raw[id] = []byte("{}") // compared between the servers, not with the staged line
					}
				}
			}
			missing, extra, _, diffs, err := lookUpOnBoth(ctx, src, dst, b, comparison{importMode: m.Request.ImportMode})
			if err != nil {
				return err
			}
			tl := res.tally(t)
			tl.Missing += int64(len(missing))
			tl.Extra += int64(len(extra))
			tl.Different += int64(len(diffs))
			res.missing = append(res.missing, missing...)
			for _, id := range extra {
				diffs = append(diffs, Difference{Resource: id, Paths: []string{extraPath}})
			}
			res.diffs = append(res.diffs, diffs...)
		}
	}
	res.missingCount = int64(len(res.missing))
	if len(res.missing) > 0 {
		if err := s.putReport(ctx, missingPartName(m.ID, generation, 999998), []byte(strings.Join(res.missing, "\n")+"\n")); err != nil {
			return fmt.Errorf("write the missing suspects: %w", err)
		}
	}
	_, _, err = s.update(ctx, m.ID, func(m *Migration) (*effects, error) {
		if !verifiable(m, generation) || m.Verification.IDs == nil || m.Verification.IDs.SuspectsDone {
			return nil, errUnchanged
		}
		v := m.Verification
		for t, n := range res.types {
			if v.IDs.Types == nil {
				v.IDs.Types = map[string]*IDTally{}
			}
			if v.IDs.Types[t] == nil {
				v.IDs.Types[t] = &IDTally{}
			}
			v.IDs.Types[t].add(n)
		}
		v.MissingCount += res.missingCount
		if res.missingCount > 0 {
			v.MissingReport = missingReportPrefix(m.ID, generation)
		}
		v.Missing = append(v.Missing, res.missing[:min(len(res.missing), max(maxListedMissing-len(v.Missing), 0))]...)
		v.Differences = append(v.Differences, res.diffs[:min(len(res.diffs), max(maxListedDifferences-len(v.Differences), 0))]...)
		v.IDs.SuspectsDone = true
		v.DispatchAt = s.now()
		return nil, nil
	})
	if err != nil {
		return fmt.Errorf("save the suspects' check: %w", err)
	}
	return nil
}
