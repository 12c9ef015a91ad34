package migration

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/fhir-migrator/fhir-migrator/internal/store"
)

// Defaults of a sync (request sync): a delta every 15 minutes, each from the high-water mark less 5 minutes.
const (
	DefaultSyncInterval = 15 * time.Minute
	DefaultSyncMargin   = 5 * time.Minute
	// recentRounds is how many finished rounds the document lists; older ones move to blobs, a page at a time.
	recentRounds = 20
)

// Duration is a time.Duration written as Go's duration text ("15m0s") in requests and documents.
type Duration time.Duration

// MarshalJSON writes the duration as text.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a duration written as text ("15m", "3s").
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration is a string such as \"15m\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Sync is the state of a migration kept in step with its source.
type Sync struct {
	// HighWater: every change the source made up to it is copied. It starts at the end of the full copy's plan,
	// and each finished round moves it to its export's transactionTime.
	HighWater time.Time `json:"highWater"`
	// LagSeconds is now less HighWater, computed when the document is served.
	LagSeconds float64 `json:"lagSeconds"`
	// Rounds counts the finished rounds; Round is the one in flight (never more than one).
	Rounds int        `json:"rounds"`
	Round  *SyncRound `json:"round,omitempty"`
	// Attempts counts the failed attempts of the round to come; LastError is the latest one's error.
	Attempts  int    `json:"attempts,omitempty"`
	LastError string `json:"lastError,omitempty"`
	// NextAt is when the next round starts (at once after a cutover request).
	NextAt *time.Time `json:"nextAt,omitempty"`
	// Recent are the last finished rounds, oldest first; RoundPages name the blobs older ones were moved to.
	Recent     []SyncRound `json:"recent,omitempty"`
	RoundPages []string    `json:"roundPages,omitempty"`
	// CutoverRequestedAt: the operator stopped writes to the source and asked for the switch; the next round is
	// the final one, then the migration is verified.
	CutoverRequestedAt *time.Time `json:"cutoverRequestedAt,omitempty"`
	// Accept is what the cutover request accepted, for its verification ("refused-versions").
	Accept []string `json:"accept,omitempty"`
	// DestinationWrites are the versions found on the destination that no round imported (destwrites.go).
	DestinationWrites *DestinationWrites `json:"destinationWrites,omitempty"`
	// Checks are what is verified while the migration syncs: the staged files' ids and the reconciliation passes
	// (sync_checks.go).
	Checks *SyncChecks `json:"checks,omitempty"`
}

// SyncRound is one delta: an export of what the source changed since Since (deletions included), and its
// imports.
type SyncRound struct {
	N       int       `json:"n"`
	Attempt int       `json:"attempt"`
	Since   time.Time `json:"since"`
	// Till is the export's transactionTime (or its _till, when earlier): the round holds every change up to it.
	Till       *time.Time `json:"till,omitempty"`
	Final      bool       `json:"final,omitempty"`
	StartedAt  time.Time  `json:"startedAt"`
	FinishedAt *time.Time `json:"finishedAt,omitempty"`
	// Exported counts the exported lines (versions and deletion stubs included), Imported what the imports
	// loaded, ImportErrors what they refused.
	Exported     int64 `json:"exported"`
	Imported     int64 `json:"imported"`
	ImportErrors int64 `json:"importErrors,omitempty"`
	// Jobs are the round's export jobs (their imports carry their files).
	Jobs []string `json:"jobs"`
	// WritesChecked is when the destination was checked for direct writes, once every job was done: the round
	// closes after it. CheckFailures counts the checks that could not be done, CheckError the latest.
	WritesChecked *time.Time `json:"writesChecked,omitempty"`
	CheckFailures int        `json:"checkFailures,omitempty"`
	CheckError    string     `json:"checkError,omitempty"`
}

// Cutover is the switch: the final round was verified against the source at At.
type Cutover struct {
	RequestedAt time.Time `json:"requestedAt"`
	At          time.Time `json:"at"`
	// LagSeconds is At less the final high-water mark.
	LagSeconds float64 `json:"lagSeconds"`
}

func syncInterval(r *Request) time.Duration {
	if r.SyncInterval > 0 {
		return time.Duration(r.SyncInterval)
	}
	return DefaultSyncInterval
}

// syncMargin is the request's margin: its default is applied when the request is accepted, so 0 means none.
func syncMargin(r *Request) time.Duration { return time.Duration(r.SyncMargin) }

// enterSync turns a verified full copy into a synced migration: the first round starts at once, from the end of
// the full copy's plan less the margin.
func enterSync(m *Migration, now time.Time) {
	m.Status = StatusSyncing
	hw := now
	if till := migratedTill(m); till != nil {
		hw = *till
	}
	m.Sync = &Sync{HighWater: hw, NextAt: timePtr(now)}
}

// settleSync is settle for a syncing migration: it closes the round in flight when its jobs ended (moving the
// high-water mark, or recording a failed attempt to retry), starts the next round when due, and after the final
// round starts the cutover's verification.
func settleSync(m *Migration, now time.Time, e *effects) bool {
	sy := m.Sync
	if sy == nil {
		return false
	}
	if r := sy.Round; r != nil {
		jobs := roundJobs(m, r)
		failed := ""
		for _, j := range jobs {
			switch {
			case !j.State.Finished():
				return false // still in flight
			case j.State != JobDone && failed == "":
				failed = fmt.Sprintf("%s job %s %s: %s", j.Kind, j.ID, j.State, j.LastError)
			}
		}
		if failed != "" {
			// A failed delta is tried again, from the same high-water mark, before any later one.
			sy.Attempts++
			sy.LastError = fmt.Sprintf("round %d attempt %d: %s", r.N, r.Attempt, failed)
			sy.Round = nil
			sy.NextAt = timePtr(now.Add(min(syncInterval(&m.Request), time.Minute)))
			return true
		}
		if r.WritesChecked == nil {
			return false // the sweep checks the destination for direct writes first (checkRound)
		}
		finishRound(m, r, jobs, now)
		if r.Final {
			startVerification(m, m.Request.Verify, m.Request.VerifySample, now, e)
			m.Verification.Accept = slices.Clone(sy.Accept)
			if fastCutover(m) {
				seedCutoverCheck(m)
			}
			return true
		}
		if sy.CutoverRequestedAt == nil {
			return true // the next round at its time
		}
		sy.NextAt = timePtr(now) // the final round follows at once
	}
	if sy.NextAt == nil || !now.Before(*sy.NextAt) {
		startRound(m, now, sy.CutoverRequestedAt != nil)
		return true
	}
	return false
}

// roundJobs are the jobs of a round's attempt: its exports and the imports and copies carrying their files.
func roundJobs(m *Migration, r *SyncRound) []*Job {
	var out []*Job
	for _, j := range m.Jobs {
		if slices.Contains(r.Jobs, j.ID) || (j.From != "" && slices.Contains(r.Jobs, j.From)) {
			out = append(out, j)
		}
	}
	return out
}

// finishRound records a round whose jobs all ended done and moves the high-water mark to its export's
// transactionTime.
func finishRound(m *Migration, r *SyncRound, jobs []*Job, now time.Time) {
	sy := m.Sync
	// The exports hold every change up to their manifests' transactionTime, and no later than the _till they were
	// sent with; with several exports, the earliest is what all of them hold.
	r.Till = roundHeld(kindOf(&m.Request).Bounds(), jobs)
	for _, j := range jobs {
		switch j.Kind {
		case KindExport:
			r.Exported += sum(j.Counts)
		default:
			r.Imported += sum(j.Counts)
			if j.ErrorSummary != nil {
				r.ImportErrors += sum(j.ErrorSummary.ByType)
			}
		}
	}
	if r.Till == nil {
		r.Till = timePtr(r.StartedAt) // no transactionTime: what the round asked for up to its start
	}
	r.FinishedAt = timePtr(now)
	if r.Till.After(sy.HighWater) {
		sy.HighWater = *r.Till
	}
	sy.Rounds++
	sy.Attempts, sy.LastError = 0, ""
	sy.Recent = append(sy.Recent, *r)
	sy.Round = nil
	// Rounds start every syncInterval, counted from the start of the one before (at once when it took longer): the
	// lag then stays under the interval plus one round's duration, where waiting the interval after each round's
	// end would add a second round's duration to it.
	sy.NextAt = timePtr(later(now, r.StartedAt.Add(syncInterval(&m.Request))))
}

// later is the later of two instants.
func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// startRound queues the exports of the next round: what changed on the source since the high-water mark less the
// margin, deletions included, one export per type with the per-type strategy.
func startRound(m *Migration, now time.Time, final bool) {
	sy := m.Sync
	n, attempt := sy.Rounds+1, sy.Attempts+1
	// On a boundary of the kind (rounded down): a transactionTime finer than the source's export selects would
	// leave out what shares its first tick.
	since := kindOf(&m.Request).Bounds().align(sy.HighWater.Add(-syncMargin(&m.Request)))
	base := fmt.Sprintf("sync-%d-a%d", n, attempt)
	var jobs []*Job
	if m.Request.ExportStrategy == StrategyPerType {
		for _, t := range planTypes(&m.Request, m.SourceTypes) {
			jobs = append(jobs, &Job{ID: base + "-" + t, Types: []string{t}})
		}
	} else {
		jobs = append(jobs, &Job{ID: base, Types: slices.Clone(m.Request.Types)})
	}
	r := &SyncRound{N: n, Attempt: attempt, Since: since, Final: final, StartedAt: now}
	for _, j := range jobs {
		if m.job(j.ID) != nil {
			r.Jobs = append(r.Jobs, j.ID) // already there: never queued twice, still the round's
			continue
		}
		j.Kind, j.State, j.Round, j.CreatedAt = KindExport, JobQueued, n, now
		j.Since = timePtr(since)
		m.Jobs = append(m.Jobs, j)
		r.Jobs = append(r.Jobs, j.ID)
	}
	sy.Round = r
	sy.NextAt = nil
}

// startVerification starts a verification round: status verifying, a new generation, and its message.
func startVerification(m *Migration, mode string, sample int, now time.Time, e *effects) {
	m.Status = StatusVerifying
	gen := 1
	if m.Verification != nil {
		gen = m.Verification.Generation + 1
	}
	m.Verification = &Verification{Generation: gen, Dispatch: 1, DispatchAt: now, Mode: mode, Sample: sample}
	e.send(verifyMessage(m.ID, gen, 1, time.Time{}))
}

// afterVerification applies a sync migration's rules to a decided verification. The full copy's round is
// counted against a source still being written: a source that changed meanwhile (or counts that prove nothing
// either way) enters syncing with a note, since the deltas carry those changes and the cutover's verification
// decides; a proven loss fails it. A passed cutover verification completes the switch.
func afterVerification(m *Migration, now time.Time) {
	if !m.Request.Sync {
		return
	}
	if m.Sync == nil {
		if m.Status == StatusFailed && m.Error != nil && (m.Error.Code == codeSourceChanged || m.Error.Code == codeCountMismatch) {
			m.Notes = appendNote(m.Notes, "the source changed while the full copy ran ("+m.Error.Message+
				"): the sync rounds copy those changes, and the verification after the cutover decides")
			m.Error = nil
		}
		if m.Status == StatusCompleted || (m.Status == StatusFailed && m.Error == nil) {
			enterSync(m, now)
		}
		return
	}
	if m.Sync.CutoverRequestedAt != nil && m.Sync.Round == nil && m.Status == StatusCompleted && m.Cutover == nil {
		m.Cutover = &Cutover{RequestedAt: *m.Sync.CutoverRequestedAt, At: now,
			LagSeconds: max(now.Sub(m.Sync.HighWater).Seconds(), 0)}
		m.Sync.LagSeconds = m.Cutover.LagSeconds
	}
}

func appendNote(notes []string, note string) []string {
	if slices.Contains(notes, note) {
		return notes
	}
	return append(notes, note)
}

// firstVerifyMode is the mode of a migration's first verification: a sync's full copy is counted only, since
// ids looked up on a source still being written would differ for every change made meanwhile; the request's
// mode runs after the cutover, when writes have stopped.
func firstVerifyMode(r *Request) string {
	if r.Sync && r.Verify != VerifyModeNone {
		return VerifyModeCounts
	}
	return r.Verify
}

// CutoverRequest is the optional body of POST /api/migrations/{id}/cutover: what the operator accepts for the
// cutover's verification ("refused-versions": versions the destination refused that are not a resource's newest).
type CutoverRequest struct {
	Accept []string `json:"accept,omitempty"`
}

// Cutover asks a syncing migration for its switch: the operator has stopped writes to the source. The next
// round is the final one (at once, or after the round in flight), then the destination is verified against the
// source in the request's mode. Asking again changes nothing.
func (s *Service) Cutover(ctx context.Context, id string, req CutoverRequest) (*Migration, error) {
	if bad := checkAccept(req.Accept); bad != nil {
		return nil, bad
	}
	m, _, err := s.update(ctx, id, func(m *Migration) (*effects, error) {
		if m.Status != StatusSyncing || m.Sync == nil {
			return nil, conflict("not_syncing", "migration %s is %s: only a syncing migration can be cut over", m.ID, m.Status)
		}
		if m.Sync.CutoverRequestedAt != nil {
			if !sameAccept(m.Sync.Accept, req.Accept) {
				return nil, conflict("cutover_requested", "the cutover of migration %s was requested at %s with accept %q: "+
					"a cutover under way is not changed; once it ends, re-verify with the accept list wanted",
					m.ID, m.Sync.CutoverRequestedAt.Format(time.RFC3339), m.Sync.Accept)
			}
			return nil, errUnchanged
		}
		now := s.now()
		m.Sync.CutoverRequestedAt = timePtr(now)
		m.Sync.NextAt = timePtr(now)
		m.Sync.Accept = slices.Clone(req.Accept)
		return nil, nil
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound(id)
	}
	if err != nil {
		return nil, err
	}
	s.log.Info("cutover requested", "migration", id, "highWater", m.Sync.HighWater)
	return m.served(s.now()), nil
}

// sameAccept tells whether two accept lists name the same things, in any order.
func sameAccept(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// pageRounds moves the oldest finished rounds past twice recentRounds into a blob written once (named by its
// content), keeping the document's list short however long a sync runs.
func (s *Service) pageRounds(ctx context.Context, m *Migration) error {
	sy := m.Sync
	if sy == nil || len(sy.Recent) < 2*recentRounds {
		return nil
	}
	old := sy.Recent[:len(sy.Recent)-recentRounds]
	data, err := json.Marshal(old)
	if err != nil {
		return fmt.Errorf("encode sync rounds: %w", err)
	}
	sum := sha256.Sum256(data)
	name := fmt.Sprintf("%s%s/rounds-%04d-%x.json", filesPrefix, m.ID, len(sy.RoundPages)+1, sum[:8])
	if _, err := s.cfg.Store.Put(ctx, name, data, "", map[string]string{"kind": "rounds"}); err != nil && !errors.Is(err, store.ErrConflict) {
		return fmt.Errorf("write sync rounds %s: %w", name, err)
	}
	sy.RoundPages = append(sy.RoundPages, name)
	sy.Recent = slices.Clone(sy.Recent[len(old):])
	return nil
}
