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
)

// Verify modes beyond counts and none.
const (
	VerifyIDs  = "ids"
	VerifyFull = "full"
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

// Error codes of a verification round that did not pass.
const (
	// codeVerificationMismatch: the destination does not hold what was exported.
	codeVerificationMismatch = "verification_mismatch"
	// codeVerificationFailed: the check itself could not be done, whatever the retries.
	codeVerificationFailed = "verification_failed"
)

// Verify handles a verify-counts message. Counts mode compares exported, imported and destination counts per type
// (with the baseline taken at start) in one invocation. Ids and full modes first stream every exported file and
// look its ids up in the destination, saving a cursor after each file and continuing in a new message when the
// invocation's budget is spent; the last invocation takes the counts, writes the report and finishes the
// migration (completed, or failed with verification_mismatch). Stale and duplicate messages are acknowledged; a
// failed call is returned as a transient fault, and a fault no retry can fix fails the round (verification_failed).
func (s *Service) Verify(ctx context.Context, body []byte) error {
	var msg VerifyMessage
	if err := json.Unmarshal(body, &msg); err != nil || msg.MigrationID == "" || msg.Generation <= 0 {
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
	mode := verifyMode(m)
	if mode == VerifyNone {
		return s.skipVerification(ctx, msg)
	}
	if mode == VerifyIDs || mode == VerifyFull {
		done, err := s.checkIDs(ctx, m, msg.Generation)
		if isPermanent(err) {
			return s.failVerification(ctx, msg, err)
		}
		if err != nil {
			return fmt.Errorf("verify ids of migration %s: %w", m.ID, err)
		}
		if !done {
			return nil
		}
		if m, _, err = s.load(ctx, msg.MigrationID); err != nil {
			return err
		}
		if !verifiable(m, msg.Generation) {
			return nil
		}
	}
	return s.finishVerification(ctx, m, msg.Generation)
}

func (s *Service) skipVerification(ctx context.Context, msg VerifyMessage) error {
	_, _, err := s.update(ctx, msg.MigrationID, func(m *Migration) (*effects, error) {
		if !verifiable(m, msg.Generation) {
			return nil, errUnchanged
		}
		m.Verification.CheckedAt = timePtr(s.now())
		m.Verification.Skipped = true
		m.Status = StatusCompleted
		return nil, nil
	})
	if err != nil {
		return fmt.Errorf("save verification: %w", err)
	}
	return nil
}

// failVerification ends a round that cannot be done: redelivering it would fail the same way for ever. The
// migration can be verified again (for example by counts).
func (s *Service) failVerification(ctx context.Context, msg VerifyMessage, cause error) error {
	_, _, err := s.update(ctx, msg.MigrationID, func(m *Migration) (*effects, error) {
		if !verifiable(m, msg.Generation) {
			return nil, errUnchanged
		}
		m.Status = StatusFailed
		m.Error = &Failure{Code: codeVerificationFailed, Message: cause.Error()}
		return nil, nil
	})
	if err != nil {
		return fmt.Errorf("save verification failure: %w", err)
	}
	s.log.Error("verification could not be done", "migration", msg.MigrationID, "generation", msg.Generation, "err", cause)
	return nil
}

// finishVerification takes the counts, decides, writes the report and ends the migration.
func (s *Service) finishVerification(ctx context.Context, m *Migration, generation int) error {
	log := s.log.With("migration", m.ID, "generation", generation)
	rows, err := s.countRows(ctx, m)
	if err != nil {
		return fmt.Errorf("verify migration %s: %w", m.ID, err)
	}
	system, err := s.systemTotal(ctx, m, rows)
	if err != nil {
		return fmt.Errorf("verify migration %s: %w", m.ID, err)
	}
	now := s.now()
	// The report is decided on this copy first, so that it is written before the document says where it is.
	decided := *m
	dv := *m.Verification
	decided.Verification = &dv
	decideVerification(&decided, rows, system, now)
	reportName := reportDocName(m.ID)
	if err := s.putReport(ctx, reportName, renderReport(&decided)); err != nil {
		return fmt.Errorf("write report of %s: %w", m.ID, err)
	}
	m, _, err = s.update(ctx, m.ID, func(m *Migration) (*effects, error) {
		if !verifiable(m, generation) {
			return nil, errUnchanged
		}
		decideVerification(m, rows, system, now)
		m.Verification.Report = reportName
		if m.Verification.Passed && m.Request.Cleanup == CleanupAfterVerify && m.Cleanup == nil {
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

// decideVerification fills the rows' expectations and explanations from the baseline and the id checks, and sets
// the migration's final status.
func decideVerification(m *Migration, rows []TypeRow, system *SystemTotal, now time.Time) {
	v := m.Verification
	mode := verifyMode(m)
	v.CheckedAt = timePtr(now)
	v.System = system
	var mismatches []string
	for i := range rows {
		r := &rows[i]
		if m.Baseline != nil {
			r.DestinationBefore = m.Baseline.Counts[r.Type]
		}
		if v.IDs != nil {
			if t := v.IDs.Types[r.Type]; t != nil {
				r.Checked, r.Missing, r.Duplicates = t.Checked, t.Missing, t.Duplicates
				r.Compared, r.Different = t.Compared, t.Different
			}
		}
		r.Expected = r.DestinationBefore + r.Exported - r.Duplicates
		r.Match, r.Explanation = judgeRow(r, mode, m.Request.ImportMode)
		if !r.Match {
			mismatches = append(mismatches, mismatchText(r, mode))
		}
	}
	v.Rows = rows
	v.Passed = len(mismatches) == 0
	if v.Passed {
		m.Status = StatusCompleted
		m.Error = nil
		return
	}
	m.Status = StatusFailed
	m.Error = &Failure{Code: codeVerificationMismatch, Message: strings.Join(mismatches, "; ")}
}

// judgeRow decides one type. Counts mode needs the destination to hold exactly before + exported; ids and full
// modes trust the id lookups (and content comparisons), and only explain a count that differs.
func judgeRow(r *TypeRow, mode, importMode string) (bool, string) {
	var why []string
	if r.ImportErrors > 0 {
		why = append(why, fmt.Sprintf("%d resources failed to import (see the import error files)", r.ImportErrors))
	}
	if r.Duplicates > 0 {
		why = append(why, fmt.Sprintf("the export held %d duplicate resources, which collapse on import", r.Duplicates))
	}
	if r.Missing > 0 {
		why = append(why, fmt.Sprintf("%d exported ids are not in the destination", r.Missing))
	}
	if r.Different > 0 {
		why = append(why, fmt.Sprintf("%d of %d compared resources differ in the destination", r.Different, r.Compared))
	}
	delta := r.Destination - r.Expected
	switch {
	case delta < 0 && r.DestinationBefore > 0 && importMode == ModeIncremental && r.Missing == 0 && mode != VerifyCounts:
		why = append(why, fmt.Sprintf("the destination has %d fewer than before + exported although no id is missing: "+
			"that many exported ids already existed there and were overwritten (IncrementalLoad), not lost", -delta))
	case delta < 0 && r.DestinationBefore > 0:
		why = append(why, fmt.Sprintf("the destination has %d fewer than before + exported: resources are lost, or exported ids "+
			"already existed there and were overwritten (IncrementalLoad); verify with \"ids\" to tell", -delta))
	case delta < 0:
		why = append(why, fmt.Sprintf("the destination has %d fewer than exported", -delta))
	case delta > 0:
		why = append(why, fmt.Sprintf("the destination has %d more than before + exported: written by someone else meanwhile", delta))
	}
	match := delta == 0 && r.Missing == 0 && r.Different == 0
	if mode != VerifyCounts {
		match = r.Missing == 0 && r.Different == 0
	}
	return match, strings.Join(why, "; ")
}

func mismatchText(r *TypeRow, mode string) string {
	switch {
	case mode != VerifyCounts && r.Missing > 0:
		return fmt.Sprintf("%s: %d of %d exported ids missing in the destination", r.Type, r.Missing, r.Checked)
	case mode != VerifyCounts && r.Different > 0:
		return fmt.Sprintf("%s: %d resources differ in the destination", r.Type, r.Different)
	case r.DestinationBefore > 0:
		return fmt.Sprintf("%s exported %d, destination had %d before and has %d (expected %d)",
			r.Type, r.Exported, r.DestinationBefore, r.Destination, r.Expected)
	}
	return fmt.Sprintf("%s exported %d, destination has %d", r.Type, r.Exported, r.Destination)
}

// countRows builds one row per exported type; the destination counts are taken concurrently.
func (s *Service) countRows(ctx context.Context, m *Migration) ([]TypeRow, error) {
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
		if j.Kind != KindExport {
			for _, f := range j.Errors {
				row(f.Type).ImportErrors += f.Count
			}
		}
	}
	rows := make([]TypeRow, 0, len(byType))
	for _, r := range byType {
		rows = append(rows, *r)
	}
	slices.SortFunc(rows, func(a, b TypeRow) int { return strings.Compare(a.Type, b.Type) })

	client, err := s.cfg.FHIR(m.Request.Destination)
	if err != nil {
		return nil, fmt.Errorf("client for %s: %w", m.Request.Destination, err)
	}
	errs := make([]error, len(rows))
	fanOut(len(rows), s.cfg.PollConcurrency, func(i int) {
		n, err := client.Count(ctx, rows[i].Type, nil)
		if err != nil {
			errs[i] = fmt.Errorf("count %s on the destination: %w", rows[i].Type, err)
			return
		}
		rows[i].Destination = n
	})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return rows, nil
}

// systemTotal counts every resource of the destination (?_summary=count); it is reported, not judged, since types
// that were not migrated may change meanwhile.
func (s *Service) systemTotal(ctx context.Context, m *Migration, rows []TypeRow) (*SystemTotal, error) {
	client, err := s.cfg.FHIR(m.Request.Destination)
	if err != nil {
		return nil, fmt.Errorf("client for %s: %w", m.Request.Destination, err)
	}
	after, err := client.Count(ctx, "", nil)
	if err != nil {
		return nil, fmt.Errorf("count every resource on the destination: %w", err)
	}
	t := &SystemTotal{After: after}
	if m.Baseline != nil {
		t.Before = m.Baseline.Total
	}
	for _, r := range rows {
		t.Exported += r.Exported
	}
	return t, nil
}
