package migration

import (
	"context"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/fhir-migrator/fhir-migrator/internal/fhir"
)

// allTypes keys the expected total of a system export of every type.
const allTypes = "*"

// codeSourceCountUnavailable: the source would not count an export's window, so its manifest could not be checked.
const codeSourceCountUnavailable = "source_count_unavailable"

// countError is a failure to count on the source what an export must hold: the export is not started (or its
// manifest not accepted) without that count, and the attempt is retried like a refused kick-off.
type countError struct{ err error }

func (e *countError) Error() string { return e.err.Error() }
func (e *countError) Unwrap() error { return e.err }

// rangeCount is the source's count of one type over an export job's window and filters. A type narrowed by
// typeFilter entries is counted once per entry, each a search of its own: the export is their union, so the
// largest is a lower bound and the sum an upper bound.
type rangeCount struct{ lower, upper int64 }

// countRange counts typ ("*": every type, at system level) on the source over job j's window and filters, with
// extra added to every query (a _lastUpdated bound).
func countRange(ctx context.Context, client FHIRClient, b WindowBounds, j *Job, typ string, extra url.Values) (rangeCount, error) {
	name := typ
	if typ == allTypes {
		name = ""
	}
	filters := filterQueries(j.TypeFilter)[typ]
	if len(filters) == 0 {
		filters = []typeFilter{{entry: typ}}
	}
	var rc rangeCount
	for _, f := range filters {
		q := windowQuery(b, j.Since, j.Till)
		for _, add := range []url.Values{f.query, extra} {
			for k, vs := range add {
				q[k] = append(q[k], vs...)
			}
		}
		n, err := client.Count(ctx, name, q)
		if err != nil {
			return rangeCount{}, fmt.Errorf("count %s on the source: %w", f.entry, err)
		}
		n = max(n, 0) // a count below zero is no count
		rc.lower = max(rc.lower, n)
		rc.upper += n
	}
	return rc, nil
}

// typeFilter is one _typeFilter entry and the search query it stands for.
type typeFilter struct {
	entry string
	query url.Values
}

// filterQueries parses typeFilter entries ("Type?query", checked at start) into search queries per type.
func filterQueries(filters []string) map[string][]typeFilter {
	out := map[string][]typeFilter{}
	for _, f := range filters {
		typ, query, _ := strings.Cut(f, "?")
		q, err := url.ParseQuery(query)
		if err != nil {
			q = url.Values{} // refused at start; an unparsable entry counts as no filter here
		}
		out[typ] = append(out[typ], typeFilter{entry: f, query: q})
	}
	return out
}

// exportTypes are the types an export job covers: its _type list, or every type the source has (a document that
// does not know them falls back to the types the manifest counted).
func exportTypes(m *Migration, j *Job) []string {
	switch {
	case len(j.Types) > 0:
		return j.Types
	case len(m.SourceTypes) > 0:
		return m.SourceTypes
	}
	return slices.Sorted(maps.Keys(j.Counts))
}

// expectedCounts takes the source's counts for an export job's window before its kick-off, to confirm its
// manifest later: per type (the lower bound for filtered types), or in total for a system export of every type.
// A count that cannot be taken fails the attempt: nothing is read as "no resources expected".
func expectedCounts(ctx context.Context, client FHIRClient, b WindowBounds, j *Job) (map[string]int64, error) {
	types := j.Types
	if len(types) == 0 {
		types = []string{allTypes}
	}
	out := make(map[string]int64, len(types))
	for _, t := range types {
		rc, err := countRange(ctx, client, b, j, t, nil)
		if err != nil {
			return nil, &countError{fmt.Errorf("before kick-off: %w", err)}
		}
		out[t] = rc.lower
	}
	return out, nil
}

// changedSince counts, for each short type, the source's resources (with the job's filters) last updated after
// the kick-off count: each may have left the window since, which explains a manifest short by as many.
func changedSince(ctx context.Context, client FHIRClient, j *Job, short []shortType) (map[string]int64, error) {
	if j.CountedAt == nil {
		return nil, nil
	}
	after := url.Values{"_lastUpdated": {"gt" + fhir.FormatInstant(*j.CountedAt)}}
	window := *j
	window.Since, window.Till = nil, nil // changed since the count, wherever the resource was before
	out := make(map[string]int64, len(short))
	for _, st := range short {
		rc, err := countRange(ctx, client, WindowBounds{Tick: instant}, &window, st.typ, after) // no window: no bounds
		if err != nil {
			return nil, &countError{fmt.Errorf("changes since the kick-off count: %w", err)}
		}
		out[st.typ] = rc.lower
	}
	return out, nil
}

// windowQuery is the search for an export window: _since is _lastUpdated=ge, and the till ends it as the source
// kind's export ends it (WindowBounds.countTill: le on Azure API for FHIR, lt one tick later on the FHIR service).
func windowQuery(b WindowBounds, since, till *time.Time) url.Values {
	q := url.Values{}
	if since != nil {
		q.Add("_lastUpdated", "ge"+fhir.FormatInstant(*since))
	}
	if till != nil {
		q.Add("_lastUpdated", b.countTill(*till))
	}
	return q
}

// shortType is a type whose manifest holds fewer resources than the source counted.
type shortType struct {
	typ       string
	got, want int64
}

// shortfall lists the types whose manifest falls short of the counts taken at kick-off.
func shortfall(expected map[string]int64, output []File) []shortType {
	got := map[string]int64{}
	for _, f := range output {
		got[f.Type] += f.Count
		got[allTypes] += f.Count
	}
	var short []shortType
	for t, want := range expected {
		if got[t] < want {
			short = append(short, shortType{typ: t, got: got[t], want: want})
		}
	}
	slices.SortFunc(short, func(a, b shortType) int { return strings.Compare(a.typ, b.typ) })
	return short
}

func shortText(short []shortType) string {
	parts := make([]string, len(short))
	for i, st := range short {
		parts[i] = fmt.Sprintf("%s %d of %d", st.typ, st.got, st.want)
	}
	return "manifest short of the source's counts: " + strings.Join(parts, ", ")
}

// explainedByChanges reports whether, for every short type, at least as many resources changed on the source
// since the count as the manifest lacks.
func explainedByChanges(short []shortType, changed map[string]int64) bool {
	for _, st := range short {
		if n, ok := changed[st.typ]; !ok || n < st.want-st.got {
			return false
		}
	}
	return len(short) > 0
}

// distrustManifest answers a completed export whose manifest is short: the first time it is polled again after
// ConfirmDelay (the service has answered 200 too early). A second short answer is accepted only when the source
// shows at least as many resources changed since the count as are lacking (they left the window), with a note;
// otherwise the job is exported again.
func (s *Service) distrustManifest(m *Migration, j *Job, short []shortType, changed map[string]int64, manifest string,
	output []File, now time.Time, e *effects) {
	reason := shortText(short)
	j.ShortManifests++
	if j.ShortManifests == 1 {
		j.LastError = reason + "; polled again to confirm"
		j.Polls++
		j.PollFailures = 0
		j.NextPollAt = timePtr(now.Add(s.cfg.ConfirmDelay))
		return
	}
	if explainedByChanges(short, changed) {
		parts := make([]string, len(short))
		for i, st := range short {
			parts[i] = fmt.Sprintf("%s lacks %d of the %d counted, and %d changed on the source since the count",
				st.typ, st.want-st.got, st.want, changed[st.typ])
		}
		m.Notes = append(m.Notes, fmt.Sprintf("%s: the manifest was accepted short (%s): resources updated or "+
			"deleted after %s left the window and are not part of this migration", j.ID, strings.Join(parts, "; "),
			j.CountedAt.Format(time.RFC3339)))
		completeExport(m, j, manifest, output, now, e)
		return
	}
	s.reexport(m, j, reason+", still after a re-poll", false, now, e)
}

// reexport gives up the running attempt of an export job (canceling it on the source when it may still run)
// and queues the job again, at most MaxReexports times; then the job fails with the reason.
func (s *Service) reexport(m *Migration, j *Job, reason string, cancel bool, now time.Time, e *effects) {
	if a := j.lastAttempt(); a != nil {
		a.Abandoned = reason
	}
	if cancel && j.ContentLocation != "" {
		cancelServerJob(m, serverOf(m, j), j.ContentLocation, j.ID, reason, now, e)
	}
	j.Reexports++
	if j.Reexports > s.cfg.MaxReexports {
		failMigration(m, j, "", fmt.Sprintf("exported %d times without a complete result, the last: %s", j.Reexports, reason), now, e)
		return
	}
	j.LastError = reason + "; exported again"
	j.State = JobQueued
	j.ContentLocation = ""
	j.NextPollAt = nil
	j.Expected, j.CountedAt = nil, nil
	j.ShortManifests = 0
	releaseSlot(m, j, e)
}

// stalled reports whether a running export has not finished ExportDeadline after its server accepted it.
func stalled(j *Job, now time.Time, deadline time.Duration) bool {
	if j.Kind != KindExport || j.State != JobRunning {
		return false
	}
	a := j.lastAttempt()
	if a == nil {
		return false
	}
	since := a.StartedAt
	if a.AnsweredAt != nil {
		since = *a.AnsweredAt
	}
	return !now.Before(since.Add(deadline))
}

// failedKickoffs counts the attempts of a job that never got a server job: refused, failed or orphaned.
func failedKickoffs(j *Job) int {
	n := 0
	for _, a := range j.Attempts {
		if a.Error != "" || a.Orphaned {
			n++
		}
	}
	return n
}
