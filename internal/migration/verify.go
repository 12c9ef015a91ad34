package migration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/fhir-migrator/fhir-migrator/internal/bus"
	"github.com/fhir-migrator/fhir-migrator/internal/fhir"
)

// Verify modes (the request's "verify"): the name of the VerifyCounts function and queue is another thing.
const (
	VerifyModeCounts = "counts"
	VerifyModeIDs    = "ids"
	VerifyModeFull   = "full"
	VerifyModeNone   = "none"
)

const (
	// maxListedMissing bounds the missing ids kept in the document; the report blob lists them all.
	maxListedMissing = 1000
	// maxListedDifferences bounds the differing resources kept in the document.
	maxListedDifferences = 100
	// verifyBudget is how long one verify-counts invocation checks files before it saves its cursor and
	// continues in a new message (the Functions timeout is 10 minutes).
	verifyBudget = 4 * time.Minute
)

// Verify handles a verify-counts message. Every mode but none first counts, on the source, each export job's
// window again: the source's own answer, not the manifests, is what the destination must hold. Ids and full
// modes then stream every exported file and look its ids up in the destination, saving a cursor after each file
// and continuing in a new message when the invocation's budget is spent; the last invocation takes the counts,
// writes the report and finishes the migration (completed, or failed with the code of the most serious problem).
// Stale and duplicate messages are acknowledged. An answer the round needs and cannot get (a count, a search, a
// staged file) is asked again later, with backoff, at most MaxAttempts times; then the round fails openly
// (verification_failed).
func (s *Service) Verify(ctx context.Context, body []byte) error {
	var msg VerifyMessage
	if err := json.Unmarshal(body, &msg); err == nil && msg.Task == taskSyncChecks && msg.MigrationID != "" {
		return s.runSyncChecks(ctx, msg)
	}
	if err := json.Unmarshal(body, &msg); err != nil || msg.MigrationID == "" || msg.Generation <= 0 || msg.Task != "" {
		s.log.Warn("malformed verify-counts message acknowledged", "body", truncate(string(body), 200))
		return nil
	}
	log := s.log.With("migration", msg.MigrationID, "generation", msg.Generation)
	m, err := s.messageTarget(ctx, bus.QueueVerifyCounts, msg.MigrationID, log)
	if m == nil {
		return err
	}
	if !verifiable(m, msg.Generation) {
		log.Info("stale verify-counts acknowledged", "status", m.Status)
		return nil
	}
	if m, err = s.repairFirst(ctx, m, msg.Generation); err != nil {
		return s.verificationFault(ctx, msg, fmt.Errorf("repair: %w", err))
	}
	if !verifiable(m, msg.Generation) {
		return nil
	}
	step := s.now()
	took := func(what string) {
		now := s.now()
		log.Info("verification step", "step", what, "seconds", now.Sub(step).Seconds())
		step = now
	}
	if reconcileDue(m) {
		done, err := s.reconcile(ctx, m, msg.Generation)
		if err != nil {
			return s.verificationFault(ctx, msg, fmt.Errorf("reconcile: %w", err))
		}
		if !done {
			return nil // goes on in the next message
		}
		took("reconcile")
		if m, _, err = s.load(ctx, msg.MigrationID); err != nil {
			return err
		}
		if !verifiable(m, msg.Generation) {
			return nil
		}
	}
	mode := verifyMode(m)
	if mode == VerifyModeNone {
		return s.skipVerification(ctx, msg)
	}
	if ids := m.Verification.IDs; ids != nil && ids.Suspects != "" && !ids.SuspectsDone {
		// A fast cutover: the ids that differed while syncing are looked up again first.
		if err := s.recheckSuspects(ctx, m, msg.Generation); err != nil {
			return s.verificationFault(ctx, msg, fmt.Errorf("verify the sync's suspects: %w", err))
		}
		took("suspects")
		if m, _, err = s.load(ctx, msg.MigrationID); err != nil {
			return err
		}
		if !verifiable(m, msg.Generation) {
			return nil
		}
	}
	if mode == VerifyModeIDs || mode == VerifyModeFull || len(overlapTypes(m)) > 0 {
		done, err := s.checkIDs(ctx, m, msg.Generation)
		if err != nil {
			return s.verificationFault(ctx, msg, fmt.Errorf("verify ids: %w", err))
		}
		if !done {
			return nil
		}
		took("ids")
		if m, _, err = s.load(ctx, msg.MigrationID); err != nil {
			return err
		}
		if !verifiable(m, msg.Generation) {
			return nil
		}
	}
	if err := s.finishVerification(ctx, m, msg.Generation); err != nil {
		return s.verificationFault(ctx, msg, err)
	}
	took("measure and decide")
	return nil
}

// verificationFault answers a round that could not get an answer it needs. A fault no retry can fix, or the
// MaxAttempts-th, ends the round verification_failed with the reason; any other is asked again after a backoff
// by a scheduled message, and the invocation succeeds (the host would redeliver at once, with no backoff).
func (s *Service) verificationFault(ctx context.Context, msg VerifyMessage, cause error) error {
	if ctx.Err() != nil {
		return cause // the invocation is ending: let the host deliver the message again
	}
	var eff *effects
	var failed bool
	_, eff, err := s.update(ctx, msg.MigrationID, func(m *Migration) (*effects, error) {
		failed = false
		if !verifiable(m, msg.Generation) {
			return nil, errUnchanged
		}
		v := m.Verification
		v.Failures++
		v.LastError = truncate(cause.Error(), maxErrorMessage*2)
		now := s.now()
		if isPermanent(cause) || v.Failures >= s.cfg.MaxAttempts {
			failed = true
			m.Status = StatusFailed
			m.Error = &Failure{Code: codeVerificationFailed,
				Message: fmt.Sprintf("verification could not be done (attempt %d): %s", v.Failures, cause)}
			return nil, nil
		}
		e := &effects{}
		v.Dispatch++
		v.DispatchAt = now.Add(s.retryDelay(v.Failures))
		e.send(verifyMessage(m.ID, msg.Generation, v.Dispatch, v.DispatchAt))
		return e, nil
	})
	if err != nil {
		return fmt.Errorf("save verification fault (%v): %w", cause, err)
	}
	s.perform(ctx, msg.MigrationID, eff)
	if failed {
		s.log.Error("verification could not be done", "migration", msg.MigrationID, "generation", msg.Generation, "err", cause)
	} else {
		s.log.Warn("verification asked again later", "migration", msg.MigrationID, "generation", msg.Generation, "err", cause)
	}
	return nil
}

func (s *Service) skipVerification(ctx context.Context, msg VerifyMessage) error {
	_, _, err := s.update(ctx, msg.MigrationID, func(m *Migration) (*effects, error) {
		if !verifiable(m, msg.Generation) {
			return nil, errUnchanged
		}
		now := s.now()
		m.Verification.CheckedAt = timePtr(now)
		m.Verification.Skipped = true
		m.Status = StatusCompleted
		afterVerification(m, now)
		return nil, nil
	})
	if err != nil {
		return fmt.Errorf("save verification: %w", err)
	}
	return nil
}

// finishVerification takes the counts, decides, writes the report and ends the migration.
func (s *Service) finishVerification(ctx context.Context, m *Migration, generation int) error {
	log := s.log.With("migration", m.ID, "generation", generation)
	rows, system, refused, err := s.measure(ctx, m)
	if err != nil {
		return err
	}
	writes, err := s.destinationWritten(ctx, m)
	if err != nil {
		return err
	}
	now := s.now()
	// The report is decided on this copy first, so that it is written before the document says where it is.
	decided := *m
	dv := *m.Verification
	decided.Verification = &dv
	dv.Refused, dv.DestinationWrites = refused, writes
	decideVerification(&decided, slices.Clone(rows), system, now)
	reportName := reportDocName(m.ID)
	if err := s.putReport(ctx, reportName, renderReport(&decided)); err != nil {
		return fmt.Errorf("write report of %s: %w", m.ID, err)
	}
	m, _, err = s.update(ctx, m.ID, func(m *Migration) (*effects, error) {
		if !verifiable(m, generation) {
			return nil, errUnchanged
		}
		m.Verification.Refused, m.Verification.DestinationWrites = refused, writes
		decideVerification(m, slices.Clone(rows), system, now)
		m.Verification.Report = reportName
		if m.Status == StatusCompleted && m.Verification.Passed && m.Request.Cleanup == CleanupAfterVerify && m.Cleanup == nil {
			m.Cleanup = &Cleanup{State: cleanupPending, RequestedAt: now, Container: m.Request.Container}
		}
		return nil, nil
	})
	if err != nil {
		return fmt.Errorf("save verification: %w", err)
	}
	log.Info("migration verified", "status", m.Status, "passed", m.Verification.Passed)
	if m.Cleanup != nil && m.Cleanup.State == cleanupPending && m.Request.Cleanup == CleanupAfterVerify {
		if _, err := s.cleanup(ctx, m.ID, CleanupRequest{}); err != nil {
			log.Error("cleanup after verification failed; POST .../cleanup to retry", "err", err)
		}
	}
	return nil
}

// overlapTypes are, in counts mode, the exported types counts cannot prove: the destination held resources of
// them before the migration, or its count then is unknown. Their ids are looked up as in ids mode (their staged
// files are read); none when the staged files are deleted (a re-verify after cleanup), and none in other modes
// (ids and full look every type up).
func overlapTypes(m *Migration) map[string]bool {
	if verifyMode(m) != VerifyModeCounts || stagedFilesGone(m) {
		return nil
	}
	out := map[string]bool{}
	for _, j := range m.Jobs {
		if j.Kind != KindExport || j.State != JobDone {
			continue
		}
		for t, n := range j.Counts {
			if before, ok := baselineCount(m.Baseline, t); n > 0 && (!ok || before > 0) {
				out[t] = true
			}
		}
	}
	return out
}

// stagedFilesGone tells whether the migration's staged files were deleted (or are being).
func stagedFilesGone(m *Migration) bool {
	return m.Cleanup != nil && m.Cleanup.State != cleanupFailed
}

func verifiable(m *Migration, generation int) bool {
	return m.Status == StatusVerifying && m.Verification != nil && m.Verification.Generation == generation
}

// verifyMode is this round's mode: the re-verify's choice, else the start request's.
func verifyMode(m *Migration) string {
	if m.Verification != nil && m.Verification.Mode != "" {
		return m.Verification.Mode
	}
	return m.Request.Verify
}

func verifySample(m *Migration) int {
	if m.Verification != nil && m.Verification.Mode != "" {
		return m.Verification.Sample
	}
	return m.Request.VerifySample
}

// measure takes what a round compares: per type the manifests' and import results' counts from the jobs, the
// source's own count of the migrated range (and the type's filters), and the destination's counts now; with
// history the versions on both servers; and the versions the destination refused, judged on both servers. A type
// the source holds nothing of and nothing was exported of is left out.
func (s *Service) measure(ctx context.Context, m *Migration) ([]TypeRow, *SystemTotal, *RefusedSummary, error) {
	byType := map[string]*TypeRow{}
	row := func(t string) *TypeRow {
		if byType[t] == nil {
			byType[t] = &TypeRow{Type: t}
		}
		return byType[t]
	}
	for _, j := range m.Jobs {
		if j.State != JobDone {
			continue
		}
		for t, n := range j.Counts {
			if j.Kind == KindExport {
				row(t).Exported += n
			} else {
				row(t).Imported += n
			}
		}
		if j.Kind == KindCopy && j.Bundle != "" {
			for _, t := range j.Types {
				row(t).NotCopied = true
			}
		}
		if j.Kind != KindExport && j.ErrorSummary != nil {
			for t, n := range j.ErrorSummary.ByType {
				row(t).ImportErrors += n
			}
		}
	}
	// The source is counted over the range the request asked for, type by type, not window by window: windows
	// that missed a part of the range (a gap between two, a range found empty) cannot hide it.
	types := slices.Clone(planTypes(&m.Request, m.SourceTypes))
	for t := range byType {
		if !slices.Contains(types, t) {
			types = append(types, t)
		}
	}
	if !kindOf(&m.Request).CountsExports(&m.Request) {
		// No search counts what the source exported (a Patient or Group export, or a source without
		// _summary=count): the manifests' lines, counted as the files were staged, stand for the source.
		for _, r := range byType {
			r.Source = r.Exported
		}
		types = nil
	}
	src, err := s.sourceClient(&m.Request)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("client for %s: %w", m.Request.Source, err)
	}
	till := migratedTill(m)
	counts := make([]rangeCount, len(types))
	errs := make([]error, len(types))
	fanOut(len(types), s.cfg.PollConcurrency, func(i int) {
		t := types[i]
		if n, _, ok := comparedCounts(m, t); ok {
			// The fast cutover's comparison counted the same range moments ago, writes stopped: not counted twice.
			counts[i] = rangeCount{lower: n, upper: n}
			return
		}
		whole := &Job{Types: []string{t}, Since: m.Request.Since, Till: till, TypeFilter: filtersOf(&m.Request, []string{t})}
		counts[i], errs[i] = countRange(ctx, src, kindOf(&m.Request).Bounds(), whole, t, nil)
	})
	if err := errors.Join(errs...); err != nil {
		return nil, nil, nil, fmt.Errorf("count the migrated range on the source: %w", err)
	}
	for i, t := range types {
		row(t).Source += counts[i].lower
		row(t).SourceUpper += counts[i].upper
	}
	for _, t := range m.Request.Types {
		row(t) // every requested type has a row, with nothing in range where that is so
	}
	rows := make([]TypeRow, 0, len(byType))
	for _, r := range byType {
		empty := r.Source == 0 && r.SourceUpper == 0 && r.Exported == 0 && r.Imported == 0
		r.NothingInRange = empty && slices.Contains(m.Request.Types, r.Type)
		// With history a type may hold versions and deletions and no current resource: kept until its versions
		// are counted.
		if empty && !m.Request.History && !r.NothingInRange {
			continue
		}
		if r.SourceUpper == r.Source {
			r.SourceUpper = 0
		}
		rows = append(rows, *r)
	}
	slices.SortFunc(rows, func(a, b TypeRow) int { return strings.Compare(a.Type, b.Type) })

	dst, err := s.cfg.FHIR(m.Request.Destination)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("client for %s: %w", m.Request.Destination, err)
	}
	errs = make([]error, len(rows)+1)
	system := &SystemTotal{}
	if m.Baseline != nil {
		system.Before = m.Baseline.Total
	}
	fast := m.Verification.Reconcile != nil && m.Verification.Reconcile.Compare != nil
	fanOut(len(rows)+1, s.cfg.PollConcurrency, func(i int) {
		if i == len(rows) {
			if fast {
				// A fast cutover does not scan every resource of the destination for a figure it only reports: the
				// total is the sum of the rows' counts.
				system.Summed = true
				return
			}
			// Every type of the destination: reported, not judged, since types not migrated may change meanwhile.
			n, err := dst.Count(ctx, "", nil)
			if err != nil {
				errs[i] = fmt.Errorf("count every resource on the destination: %w", err)
			}
			system.After = n
			return
		}
		if _, n, ok := comparedCounts(m, rows[i].Type); ok {
			rows[i].Destination = n
			return
		}
		n, err := dst.Count(ctx, rows[i].Type, nil)
		if err != nil {
			errs[i] = fmt.Errorf("count %s on the destination: %w", rows[i].Type, err)
			return
		}
		rows[i].Destination = n
	})
	if err := errors.Join(errs...); err != nil {
		return nil, nil, nil, err
	}
	if system.Summed {
		for _, r := range rows {
			system.After += r.Destination
		}
	}
	for i := range rows {
		system.Exported += rows[i].Exported
		rows[i].Versions = m.Request.associated()
	}
	if err := s.countHistory(ctx, m, src, dst, rows); err != nil {
		return nil, nil, nil, err
	}
	refused, err := s.checkRefused(ctx, m, src, dst, m.Verification.Generation, slices.Contains(m.Verification.Accept, acceptRefusedVersions))
	if err != nil {
		return nil, nil, nil, err
	}
	return slices.DeleteFunc(rows, emptyRow), system, refused, nil
}

// destinationWritten reads again, after a cutover, the versions the rounds found written directly on the
// destination: those it still holds fail the verification (destination_written).
func (s *Service) destinationWritten(ctx context.Context, m *Migration) (*DestinationWrites, error) {
	if m.Sync == nil || m.Sync.CutoverRequestedAt == nil || m.Sync.Round != nil || m.Sync.DestinationWrites == nil {
		return nil, nil
	}
	dst, err := s.cfg.FHIR(m.Request.Destination)
	if err != nil {
		return nil, fmt.Errorf("client for %s: %w", m.Request.Destination, err)
	}
	return s.recheckWrites(ctx, m, dst)
}

// countHistory compares, for a migration with history, every type's versions on both servers over the migrated
// range (_history?_since&_before&_summary=count: current, older and deleted versions by their own lastUpdated,
// what the exports selected). A synced migration compares at its cutover, when writes have stopped, not while
// the source is live. A row says why its versions were not compared: a SearchParameter (copied with PUTs, newest
// version only), a type the destination held before, a source that does not count versions.
func (s *Service) countHistory(ctx context.Context, m *Migration, src, dst FHIRClient, rows []TypeRow) error {
	if !m.Request.History || (m.Request.Sync && (m.Sync == nil || m.Sync.CutoverRequestedAt == nil || m.Sync.Round != nil)) {
		return nil
	}
	hr := fhir.HistoryRange{Since: m.Request.Since}
	if till := migratedTill(m); till != nil {
		hr.Before = timePtr(kindOf(&m.Request).Bounds().next(*till))
	}
	errs := make([]error, len(rows))
	fanOut(len(rows), s.cfg.PollConcurrency, func(i int) {
		r := &rows[i]
		before, known := baselineCount(m.Baseline, r.Type)
		switch {
		case r.Type == typeSearchParameter:
			r.History = &HistoryCounts{Why: "SearchParameter resources are copied with PUTs, their newest version only: their versions are not copied"}
			return
		case !known || before != 0:
			r.History = &HistoryCounts{Why: "the destination held resources of the type before: their versions count there too"}
			return
		case m.Planning != nil && m.Planning.Versions == countLive:
			r.History = &HistoryCounts{Why: "the source does not count versions (" + m.Planning.VersionsNote + ")"}
			return
		}
		h := &HistoryCounts{Compared: true}
		var err error
		if h.Source, err = src.HistoryCount(ctx, r.Type, hr); err != nil {
			errs[i] = fmt.Errorf("count the history of %s on the source: %w", r.Type, err)
			return
		}
		if h.Destination, err = dst.HistoryCount(ctx, r.Type, hr); err != nil {
			errs[i] = fmt.Errorf("count the history of %s on the destination: %w", r.Type, err)
			return
		}
		r.History = h
	})
	return errors.Join(errs...)
}

// emptyRow reports a type nothing was found of on either server (no resource, no version, nothing exported) that
// the request did not name.
func emptyRow(r TypeRow) bool {
	return !r.NothingInRange && r.Source == 0 && r.Exported == 0 && r.Imported == 0 && r.Destination == 0 && r.ImportErrors == 0 &&
		(r.History == nil || (r.History.Source == 0 && r.History.Destination == 0))
}

// migratedTill is the end of the migrated range: the request's till, or when planning started.
func migratedTill(m *Migration) *time.Time {
	switch {
	case m.Sync != nil && !m.Sync.HighWater.IsZero():
		return &m.Sync.HighWater // a synced migration holds every change up to its high-water mark
	case m.Request.Till != nil:
		return m.Request.Till
	case m.Planning != nil:
		return &m.Planning.Till
	}
	var last *time.Time // a document from before planning: the latest window's end
	for _, j := range m.Jobs {
		if j.Kind == KindExport && j.Till != nil && (last == nil || j.Till.After(*last)) {
			last = j.Till
		}
	}
	return last
}
