package migration

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/fhir-migrator/fhir-migrator/internal/fhir"
)

const (
	// allTypes keys the expected total of a system export of every type.
	allTypes = "*"
	// maxErrorLines bounds the errors an import's error summary quotes.
	maxErrorLines = 10
	// maxErrorMessage bounds one quoted error.
	maxErrorMessage = 300
	// maxErrorFileLine bounds one line read from an error file.
	maxErrorFileLine = 1 << 20
)

// expectedCounts takes the source's counts for an export job's window, to confirm its manifest later. Types
// narrowed by a typeFilter are not counted (a count cannot apply the filter as the export does); a system
// export of every type is counted at system level. A count the server refuses (4xx) leaves the type
// unconfirmed rather than blocking the export; a transient failure is returned.
func expectedCounts(ctx context.Context, client FHIRClient, j *Job) (map[string]int64, error) {
	q := windowQuery(j.Since, j.Till)
	filtered := map[string]bool{}
	for _, f := range j.TypeFilter {
		typ, _, _ := strings.Cut(f, "?")
		filtered[typ] = true
	}
	types := j.Types
	if len(types) == 0 {
		types = []string{allTypes}
	}
	out := map[string]int64{}
	for _, t := range types {
		if filtered[t] {
			continue
		}
		name := t
		if t == allTypes {
			name = ""
		}
		n, err := client.Count(ctx, name, q)
		if err != nil {
			var fe *fhir.Error
			if errors.As(err, &fe) && !fe.Temporary() {
				continue
			}
			return nil, fmt.Errorf("count %s on the source before kick-off: %w", t, err)
		}
		out[t] = n
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// windowQuery is the search for an export window: _since is _lastUpdated=ge, _till is le (inclusive on the
// source, as its export is).
func windowQuery(since, till *time.Time) url.Values {
	q := url.Values{}
	if since != nil {
		q.Add("_lastUpdated", "ge"+since.UTC().Format(time.RFC3339Nano))
	}
	if till != nil {
		q.Add("_lastUpdated", "le"+till.UTC().Format(time.RFC3339Nano))
	}
	return q
}

// shortfall describes how a manifest falls short of the counts taken at kick-off, or is "" when it does not.
func shortfall(expected map[string]int64, output []File) string {
	if len(expected) == 0 {
		return ""
	}
	got := map[string]int64{}
	for _, f := range output {
		got[f.Type] += f.Count
		got[allTypes] += f.Count
	}
	var short []string
	for t, want := range expected {
		if got[t] < want {
			short = append(short, fmt.Sprintf("%s %d of %d", t, got[t], want))
		}
	}
	if len(short) == 0 {
		return ""
	}
	slices.Sort(short)
	return "manifest short of the source's counts: " + strings.Join(short, ", ")
}

// distrustManifest answers a completed export whose manifest is short: the first time it is polled again after
// ConfirmDelay (the service has answered 200 too early); a second short answer exports the job again.
func (s *Service) distrustManifest(m *Migration, j *Job, reason string, now time.Time, e *effects) {
	j.ShortManifests++
	if j.ShortManifests == 1 {
		j.LastError = reason + "; polled again to confirm"
		j.Polls++
		j.PollFailures = 0
		j.NextPollAt = timePtr(now.Add(s.cfg.ConfirmDelay))
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
		e.cancel(serverOf(m, j), j.ContentLocation, j.ID)
	}
	j.Reexports++
	if j.Reexports > s.cfg.MaxReexports {
		failMigration(m, j, fmt.Sprintf("exported %d times without a complete result, the last: %s", j.Reexports, reason), now, e)
		return
	}
	j.LastError = reason + "; exported again"
	j.State = JobQueued
	j.ContentLocation = ""
	j.NextPollAt = nil
	j.Expected = nil
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

// inputTypes maps an import job's input URLs to their resource types: the server names error files by
// OperationOutcome, not by the type that failed.
func inputTypes(j *Job) map[string]string {
	out := make(map[string]string, len(j.Inputs))
	for _, in := range j.Inputs {
		out[stripQuery(in.URL)] = in.Type
	}
	return out
}

// importErrorFiles turns an import result's error entries into the job's error files, typed by their input.
func importErrorFiles(j *Job, files []fhir.ImportErrorFile) []ErrorFile {
	types := inputTypes(j)
	var out []ErrorFile
	for _, f := range files {
		typ := f.Type
		if t, ok := types[stripQuery(f.InputURL)]; ok && t != "" {
			typ = t
		}
		out = append(out, ErrorFile{Type: typ, Count: f.Count, URL: f.URL, InputURL: f.InputURL})
	}
	return out
}

// summariseErrors digests an import's error files: failed resources per type and the first errors, read from
// the files (a file that cannot be read leaves its counts and says why).
func (s *Service) summariseErrors(ctx context.Context, files []ErrorFile) *ErrorSummary {
	if len(files) == 0 {
		return nil
	}
	sum := &ErrorSummary{ByType: map[string]int64{}}
	var unread []string
	for _, f := range files {
		sum.ByType[f.Type] += f.Count
		if f.URL == "" || len(sum.First) >= maxErrorLines {
			continue
		}
		if err := s.readErrorLines(ctx, f, sum); err != nil {
			unread = append(unread, err.Error())
		}
	}
	if len(unread) > 0 {
		sum.Unread = truncate(strings.Join(unread, "; "), maxErrorMessage)
	}
	return sum
}

func (s *Service) readErrorLines(ctx context.Context, f ErrorFile, sum *ErrorSummary) error {
	rc, err := s.cfg.Staging.Open(ctx, stripQuery(f.URL))
	if err != nil {
		return fmt.Errorf("error file of %s: %w", f.Type, err)
	}
	defer func() { _ = rc.Close() }()
	sc := bufio.NewScanner(rc)
	sc.Buffer(make([]byte, 0, 64<<10), maxErrorFileLine)
	for sc.Scan() && len(sum.First) < maxErrorLines {
		text := strings.TrimSpace(sc.Text())
		if text == "" {
			continue
		}
		sum.First = append(sum.First, ErrorLine{Type: f.Type, InputURL: f.InputURL, Message: outcomeText([]byte(text))})
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("error file of %s: %w", f.Type, err)
	}
	return nil
}

// outcomeText is the diagnostics of an OperationOutcome line, else the line itself, shortened.
func outcomeText(line []byte) string {
	var oo struct {
		Issue []struct {
			Diagnostics string `json:"diagnostics"`
			Details     struct {
				Text string `json:"text"`
			} `json:"details"`
		} `json:"issue"`
	}
	if json.Unmarshal(line, &oo) == nil {
		var parts []string
		for _, is := range oo.Issue {
			if t := strings.TrimSpace(is.Diagnostics); t != "" {
				parts = append(parts, t)
			} else if t := strings.TrimSpace(is.Details.Text); t != "" {
				parts = append(parts, t)
			}
		}
		if len(parts) > 0 {
			return truncate(strings.Join(parts, "; "), maxErrorMessage)
		}
	}
	return truncate(strings.ToValidUTF8(string(line), "?"), maxErrorMessage)
}

// serverJobFailed reports whether a status answer is the failure of the job itself ("export operation failed for
// reason: ..."), whatever its status code, rather than a failure to answer.
func serverJobFailed(err error) bool {
	var fe *fhir.Error
	return errors.As(err, &fe) && fe.StatusCode != 429 && strings.Contains(strings.ToLower(fe.Message), "operation failed for reason")
}
