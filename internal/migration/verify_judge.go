package migration

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Error codes of a verification round that did not pass (error.code of the migration).
const (
	// codeVerificationMismatch: a proven loss: exported ids missing in the destination, differing contents, an
	// export or staged files short of what the source holds, or a destination short of the source.
	codeVerificationMismatch = "verification_mismatch"
	// codeSourceChanged: the source no longer holds what was exported in the migrated range (updated or deleted
	// since); the destination cannot be judged against it.
	codeSourceChanged = "source_changed"
	// codeCountMismatch: the counts do not add up and prove nothing either way (a destination that held
	// resources before, or one written meanwhile): verify with "ids" to decide.
	codeCountMismatch = "count_mismatch"
	// codeBaselineIncomplete: the destination's count before the migration could not be taken for a type that
	// only counts verified.
	codeBaselineIncomplete = "baseline_incomplete"
	// codeVerificationFailed: the check itself could not be done, whatever the retries.
	codeVerificationFailed = "verification_failed"
	// codeRefusedVersions: the destination refused versions that are not a resource's newest (duplicates at one
	// millisecond, versions out of order): its history is short of the source's until the operator accepts it.
	codeRefusedVersions = "refused_versions"
	// codeDestinationWritten: versions were written on the destination directly while it was synced.
	codeDestinationWritten = "destination_written"
)

// verificationCodes are the error codes a finished verification round may end with (a new round may be started).
var verificationCodes = []string{codeVerificationMismatch, codeSourceChanged, codeCountMismatch, codeBaselineIncomplete,
	codeVerificationFailed, codeRefusedVersions, codeDestinationWritten}

// Row reasons, most serious first; each maps to the migration's error code.
const (
	reasonMissing            = "missing"
	reasonDifferent          = "different"
	reasonExportShort        = "export_short"
	reasonStagedMismatch     = "staged_mismatch"
	reasonHistoryMismatch    = "history_mismatch"
	reasonRefusedVersions    = codeRefusedVersions
	reasonSourceChanged      = codeSourceChanged
	reasonCountMismatch      = codeCountMismatch
	reasonBaselineIncomplete = codeBaselineIncomplete
)

var reasonRank = map[string]int{reasonMissing: 1, reasonDifferent: 2, reasonExportShort: 3, reasonStagedMismatch: 4,
	reasonHistoryMismatch: 5, reasonRefusedVersions: 6, reasonSourceChanged: 7, reasonCountMismatch: 8, reasonBaselineIncomplete: 9}

func reasonCode(reason string) string {
	switch reason {
	case reasonMissing, reasonDifferent, reasonExportShort, reasonStagedMismatch, reasonHistoryMismatch:
		return codeVerificationMismatch
	}
	return reason
}

// decideVerification fills the rows' expectations from the baseline and the id checks, judges each, and sets
// the migration's final status: completed, or failed with the code of the most serious problem found.
func decideVerification(m *Migration, rows []TypeRow, system *SystemTotal, now time.Time) {
	v := m.Verification
	mode := verifyMode(m)
	v.CheckedAt = timePtr(now)
	v.System = system
	worst := ""
	var problems []string
	overlap := overlapTypes(m)
	for i := range rows {
		r := &rows[i]
		if before, ok := baselineCount(m.Baseline, r.Type); ok {
			r.DestinationBefore = before
		} else {
			r.BaselineMissing = true
		}
		if v.IDs != nil {
			if t := v.IDs.Types[r.Type]; t != nil {
				r.Lines, r.Checked, r.Missing, r.Duplicates = t.Lines, t.Checked, t.Missing, t.Duplicates
				r.Compared, r.Different, r.Extra = t.Compared, t.Different, t.Extra
			}
		}
		if rc := v.Reconcile; rc != nil && rc.ByType[r.Type] != nil {
			tl := rc.ByType[r.Type]
			r.Reconciled = tl
			r.Extra += tl.Extra
		}
		if rc := v.Reconcile; rc != nil {
			r.NotReconciled = rc.Skipped[r.Type]
		}
		if rf := v.Refused; rf != nil {
			r.Refused, r.Stale, r.RefusedOlder = rf.ByType[r.Type], rf.StaleByType[r.Type], rf.OlderByType[r.Type]
			r.RefusedUnread = rf.UnreadByType[r.Type]
		}
		r.Expected = r.DestinationBefore + r.Source
		rowMode := mode
		if mode == VerifyModeCounts && (r.BaselineMissing || r.DestinationBefore > 0) && r.Exported > 0 {
			// Counts cannot prove a destination that held the type before: its ids were looked up (overlapTypes),
			// unless the staged files are gone.
			if overlap[r.Type] {
				r.Overlap, rowMode = true, VerifyModeIDs
			} else if stagedFilesGone(m) {
				r.NotProven = true
			}
		}
		problem := judgeRow(r, rowMode, v.Refused != nil && v.Refused.Accepted)
		if r.Reason == "" {
			continue
		}
		problems = append(problems, r.Type+": "+problem)
		if worst == "" || reasonRank[r.Reason] < reasonRank[worst] {
			worst = r.Reason
		}
	}
	v.Rows = rows
	if rc := v.Reconcile; rc != nil {
		// What the fast cutover's comparison found missing is listed with the ids the checks found missing.
		for _, id := range rc.Missing {
			if len(v.Missing) < maxListedMissing && !slices.Contains(v.Missing, id) {
				v.Missing = append(v.Missing, id)
			}
		}
	}
	code := reasonCode(worst)
	if w := v.DestinationWrites; w != nil && w.Unresolved > 0 {
		var ids []string
		for _, l := range w.Listed[:min(len(w.Listed), 10)] {
			ids = append(ids, fmt.Sprintf("%s/%s version %s", l.Type, l.ID, l.Version))
		}
		ids = append(ids, w.Problems...)
		problems = append(problems, fmt.Sprintf("%d versions were written directly on the destination while it was synced "+
			"(%s): remove them, keep the destination unwritten until the cutover, and verify again", w.Unresolved, strings.Join(ids, ", ")))
		if worst == "" || reasonRank[worst] > reasonRank[reasonHistoryMismatch] {
			code = codeDestinationWritten
		}
		worst = cmp.Or(worst, codeDestinationWritten)
	}
	v.Passed = worst == ""
	if v.Passed {
		m.Status = StatusCompleted
		m.Error = nil
		afterVerification(m, now)
		return
	}
	m.Status = StatusFailed
	m.Error = &Failure{Code: code, Message: strings.Join(problems, "; ")}
	afterVerification(m, now)
}

// baselineCount is the destination's count of typ before the migration, if it was taken.
func baselineCount(b *Baseline, typ string) (int64, bool) {
	if b == nil {
		return 0, false
	}
	n, ok := b.Counts[typ]
	return n, ok
}

// judgeRow decides one type and returns the text of its most serious problem (Reason is set to its code).
//
// In every mode the export is compared with the source's own count of the migrated range, taken now: fewer
// exported than the source holds is a loss (export_short); more is a source that changed since (source_changed).
// Counts mode then needs the destination to hold exactly before + source; short of it is a loss when it held
// nothing before, and unproven (count_mismatch) when it did, since an imported id may overwrite one that was
// there. Ids and full modes need every staged line counted by the manifests, every id found and every compared
// content equal, and only explain a destination count that differs.
func judgeRow(r *TypeRow, mode string, acceptRefused bool) string {
	var why []string
	first := ""
	raise := func(reason, format string, args ...any) {
		text := fmt.Sprintf(format, args...)
		why = append(why, text)
		if r.Reason == "" || reasonRank[reason] < reasonRank[r.Reason] {
			r.Reason, first = reason, text
		}
	}
	note := func(format string, args ...any) { why = append(why, fmt.Sprintf(format, args...)) }
	ids := mode == VerifyModeIDs || mode == VerifyModeFull

	distinct := r.Exported - r.Duplicates
	upper := max(r.Source, r.SourceUpper)
	if r.Versions {
		// Older versions and deletion stubs are lines too: the export holds at least the current resources.
		upper = max(upper, distinct)
		note("the export wrote %d lines: current versions, and older versions and deletion stubs", r.Exported)
	}
	switch {
	case distinct < r.Source:
		raise(reasonExportShort, "the source holds %d in the migrated range and the export wrote %d: %d were never exported",
			r.Source, distinct, r.Source-distinct)
	case distinct > upper:
		raise(reasonSourceChanged, "the export wrote %d and the source now holds %d in the migrated range: %d were updated or "+
			"deleted on the source since", distinct, upper, distinct-upper)
	}
	if r.SourceUpper > r.Source {
		note("several typeFilter entries: the source holds between %d and %d (their union was exported)", r.Source, r.SourceUpper)
	}
	switch h := r.History; {
	case h != nil && h.Compared && h.Source != h.Destination && h.Source == h.Destination+r.Refused:
		note("the source holds %d versions of the type and the destination %d: the %d it refused", h.Source, h.Destination, r.Refused)
	case h != nil && h.Compared && h.Source != h.Destination:
		raise(reasonHistoryMismatch, "the source holds %d versions of the type (current, older and deleted) and the destination %d",
			h.Source, h.Destination)
	case h != nil && !h.Compared:
		note("versions not counted: %s", h.Why)
	}
	if r.Stale > 0 {
		raise(reasonDifferent, "the destination refused the newest version of %d resources and holds older ones (POST .../repair "+
			"writes the source's current versions)", r.Stale)
	}
	if r.RefusedUnread > 0 && acceptRefused {
		note("%d refused lines could not be read back to their resources (accepted)", r.RefusedUnread)
	} else if r.RefusedUnread > 0 {
		raise(reasonRefusedVersions, "%d refused lines could not be read back to their resources (their staged rows are gone "+
			"or unreadable): see the import error files, and accept them with {\"accept\": [\"refused-versions\"]}", r.RefusedUnread)
	}
	switch {
	case r.RefusedOlder > 0 && acceptRefused:
		note("the destination refused %d older versions (accepted)", r.RefusedOlder)
	case r.RefusedOlder > 0:
		raise(reasonRefusedVersions, "the destination refused %d older versions (duplicates at one millisecond or versions out of "+
			"order; listed in the report): accept them with {\"accept\": [\"refused-versions\"]}", r.RefusedOlder)
	}
	if r.ImportErrors > 0 {
		note("%d resources failed to import (see the import error files)", r.ImportErrors)
	}
	if r.Duplicates > 0 {
		note("the export held %d duplicate resources, which collapse on import", r.Duplicates)
	}
	switch {
	case r.Overlap && r.BaselineMissing:
		note("the destination's count of the type before the migration is unknown, so counts cannot prove it: every " +
			"exported id was looked up, as in ids mode")
	case r.Overlap:
		note("the destination held %d before the migration, so counts cannot prove it (an imported id may overwrite one "+
			"that was there): every exported id was looked up, as in ids mode", r.DestinationBefore)
	}
	if r.NothingInRange {
		note("nothing in range: the source holds none of the type in the migrated range")
	}
	if ids {
		if r.Lines != r.Exported {
			raise(reasonStagedMismatch, "the staged files hold %d resource lines where their manifests count %d", r.Lines, r.Exported)
		}
		if r.Missing > 0 {
			raise(reasonMissing, "%d of %d exported ids are not in the destination", r.Missing, r.Checked)
		}
		if r.Different > 0 {
			raise(reasonDifferent, "%d of %d compared resources differ in the destination", r.Different, r.Compared)
		}
	}
	if r.Extra > 0 {
		raise(reasonDifferent, "%d ids deleted on the source are still in the destination", r.Extra)
	}
	if tl := r.Reconciled; tl != nil && tl.Missing > 0 {
		raise(reasonMissing, "the cutover's count comparison found %d resources the source holds missing from the destination "+
			"(listed in verification.reconcile.missing)", tl.Missing)
	}
	if tl := r.Reconciled; tl != nil && tl.Removed+tl.Purged > 0 {
		note("the cutover removed %d resources the source no longer holds and purged %d histories the source purged", tl.Removed, tl.Purged)
	}
	if r.NotReconciled != "" {
		note("not reconciled at the cutover (%s): what the source hard-deleted or purged is not looked for", r.NotReconciled)
	}
	switch {
	case r.NotCopied:
		note("not copied: the destination refuses writes in initial import mode; the batch to send is kept (see the notes)")
	case r.BaselineMissing && ids:
		note("the destination's count before the migration is unknown; every id was looked up instead")
	case r.BaselineMissing && r.NotProven:
		note("not proven: the destination's count before the migration is unknown and the staged files are deleted, so " +
			"neither counts nor ids can tell")
	case r.BaselineMissing:
		raise(reasonBaselineIncomplete, "the destination's count before the migration could not be taken, so its count after "+
			"proves nothing: verify with \"ids\"")
	default:
		// Against the source; when the export itself differs from the source (already raised), against what was
		// exported, so that the same resources are not reported twice.
		delta := r.Destination - r.Expected
		if r.Reason == reasonExportShort || r.Reason == reasonSourceChanged {
			delta = r.Destination - (r.DestinationBefore + distinct)
		}
		switch {
		case delta == 0:
		case ids && delta < 0 && r.Missing >= -delta:
			// the missing ids account for it
		case delta < 0 && r.DestinationBefore == 0:
			// Nothing was there to overwrite: the destination is short of the source, whatever the ids found (with
			// versions, lines are not resources, so the ids cannot account for it).
			raise(reasonMissing, "the destination holds %d and the source %d: %d are missing", r.Destination, r.Expected, -delta)
		case ids && delta < 0 && r.Missing == 0:
			note("the destination has %d fewer than before + source although every id was found: that many ids already "+
				"existed there and were overwritten (IncrementalLoad), not added", -delta)
		case ids && delta < 0:
			note("the destination has %d fewer than before + source: %d ids are missing, and %d already existed there "+
				"and were overwritten (IncrementalLoad)", -delta, r.Missing, -delta-r.Missing)
		case ids:
			note("the destination has %d more than before + source: written by someone else meanwhile", delta)
		case r.NotProven:
			note("not proven: the destination holds %d where before (%d) + source (%d) is %d, and it held resources of the "+
				"type before, so an imported id may have overwritten one that was there; the staged files are deleted, so "+
				"the ids cannot be looked up", r.Destination, r.DestinationBefore, r.Source, r.Expected)
		case delta < 0:
			raise(reasonCountMismatch, "the destination holds %d, %d fewer than before (%d) + source (%d): lost, or ids that "+
				"already existed were overwritten (IncrementalLoad); unproven, verify with \"ids\" to tell",
				r.Destination, -delta, r.DestinationBefore, r.Source)
		default:
			raise(reasonCountMismatch, "the destination holds %d, %d more than before (%d) + source (%d): written by someone "+
				"else meanwhile, so the count proves nothing; verify with \"ids\"", r.Destination, delta, r.DestinationBefore, r.Source)
		}
	}
	r.Match = r.Reason == ""
	r.NotProven = r.NotProven && r.Match && (r.BaselineMissing || r.Destination != r.Expected)
	r.Proven = r.Match && !r.NotCopied && !r.NotProven
	r.Explanation = strings.Join(why, "; ")
	return first
}
