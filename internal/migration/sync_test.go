package migration

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/fhir"
	"github.com/fhir-migrator/fhir-migrator/internal/localstack"
)

// syncHarness is a harness whose servers stamp manifests with the harness clock and whose deltas (exports with a
// since and no till) carry deltaFiles per type.
func syncHarness(t *testing.T, deltaFiles map[string][]int64) *harness {
	return syncHarnessWith(t, deltaFiles, nil)
}

// syncHarnessWith is syncHarness with tune applied to the service's Config (a logger, say).
func syncHarnessWith(t *testing.T, deltaFiles map[string][]int64, tune func(*Config)) *harness {
	h := newHarness(t, tune)
	h.src.now = h.clock.Now
	h.src.filesFor = func(r fhir.ExportRequest, typ string) []int64 {
		if r.Since != nil && isRound(*r.Since) {
			return deltaFiles[typ]
		}
		return h.src.files[typ]
	}
	h.src.countFor = func(typ string, q url.Values) (int64, bool) {
		for _, v := range q["_lastUpdated"] {
			if at, err := time.Parse(time.RFC3339Nano, strings.TrimPrefix(v, "ge")); err == nil && isRound(at) {
				var n int64
				for _, c := range deltaFiles[typ] {
					n += c
				}
				return n, true
			}
		}
		return 0, false
	}
	return h
}

// isRound tells a round's since (hours before the harness's start, or later) from a request's since (years).
func isRound(since time.Time) bool { return since.After(h0().Add(-24 * time.Hour)) }

// driveUntil advances the clock, sweeps and delivers until ok says so.
func (h *harness) driveUntil(id string, step time.Duration, maxSteps int, what string, ok func(*Migration) bool) *Migration {
	h.t.Helper()
	for range maxSteps {
		h.deliver()
		m := h.get(id)
		if ok(m) {
			return m
		}
		require.False(h.t, m.Status.Terminal(), "waiting for %s, the migration ended %s: %+v", what, m.Status, m.Error)
		h.clock.Advance(step)
		h.poll()
	}
	h.t.Fatalf("still waiting for %s after %d steps: %+v", what, maxSteps, h.get(id).Sync)
	return nil
}

func deltaKickoffs(h *harness) []fhir.ExportRequest {
	var out []fhir.ExportRequest
	for _, r := range h.src.exportKickoffs {
		if r.Since != nil && isRound(*r.Since) {
			out = append(out, r)
		}
	}
	return out
}

// Each round exports what changed since the high-water mark less the margin, deletions included, and moves the
// mark to its manifest's transactionTime: a resource changed exactly at a round's transactionTime is in the next
// round's range (since is inclusive).
func TestSyncRoundsFollowTheHighWaterMark(t *testing.T) {
	t.Parallel()
	h := syncHarness(t, nil)
	m := h.start(`{` + endpoints + `,"types":["Patient","Observation"],"sync":true,"syncInterval":"1m","syncMargin":"30s"}`)
	m = h.driveUntil(m.ID, 10*time.Second, 100, "syncing", func(m *Migration) bool { return m.Status == StatusSyncing })
	require.Equal(t, m.Planning.Till, m.Sync.HighWater, "the first round starts from the end of the full copy's plan")
	require.Equal(t, VerifyModeCounts, m.Verification.Mode)
	require.Empty(t, deltaKickoffs(h))

	m = h.driveUntil(m.ID, 10*time.Second, 100, "three rounds", func(m *Migration) bool { return m.Sync.Rounds == 3 })
	deltas := deltaKickoffs(h)
	require.Len(t, deltas, 6, "one export per type per round")
	marks := []time.Time{m.Planning.Till}
	for _, r := range m.Sync.Recent {
		require.NotNil(t, r.Till)
		marks = append(marks, *r.Till)
	}
	for i, r := range m.Sync.Recent {
		require.Equal(t, i+1, r.N)
		require.Equal(t, marks[i].Add(-30*time.Second), r.Since)
		require.False(t, r.Since.After(marks[i]), "a change at the last mark is in the next round")
		require.True(t, r.Till.After(marks[i]))
		for _, d := range deltas[2*i : 2*i+2] {
			require.Equal(t, r.Since, *d.Since)
			require.True(t, d.Deleted, "deltas carry deletions")
			require.False(t, d.History)
		}
	}
	require.Equal(t, *m.Sync.Recent[2].Till, m.Sync.HighWater)
	served, err := h.svc.Get(context.Background(), m.ID)
	require.NoError(t, err)
	require.InDelta(t, h.clock.Now().Sub(m.Sync.HighWater).Seconds(), served.Sync.LagSeconds, 0.001)
	// Rounds never overlap: each starts after the previous ended.
	for i := 1; i < len(m.Sync.Recent); i++ {
		require.False(t, m.Sync.Recent[i].StartedAt.Before(*m.Sync.Recent[i-1].FinishedAt))
	}
}

// A round that fails is tried again from the same mark before any later round, and the failure is shown.
func TestAFailedRoundIsRetriedBeforeTheNext(t *testing.T) {
	t.Parallel()
	h := syncHarness(t, map[string][]int64{"Patient": {1}})
	m := h.start(`{` + endpoints + `,"types":["Patient"],"sync":true,"syncInterval":"1m"}`)
	m = h.driveUntil(m.ID, 10*time.Second, 100, "syncing", func(m *Migration) bool { return m.Status == StatusSyncing })
	h.src.mu.Lock()
	h.src.kickoffErrs = []error{&fhir.Error{Op: "export kick-off", StatusCode: 400, Message: "bad request"}}
	h.src.mu.Unlock()
	mark := m.Sync.HighWater
	m = h.driveUntil(m.ID, 10*time.Second, 100, "a failed attempt", func(m *Migration) bool { return m.Sync.Attempts == 1 })
	require.Equal(t, StatusSyncing, m.Status, "a failed round does not fail the migration")
	require.Contains(t, m.Sync.LastError, "round 1 attempt 1")
	require.Equal(t, mark, m.Sync.HighWater)
	m = h.driveUntil(m.ID, 10*time.Second, 100, "round 1 done", func(m *Migration) bool { return m.Sync.Rounds == 1 })
	require.Equal(t, 2, m.Sync.Recent[0].Attempt)
	require.Equal(t, mark.Add(-DefaultSyncMargin), m.Sync.Recent[0].Since, "the retry starts from the same mark")
	require.Empty(t, m.Sync.LastError)
	require.Equal(t, int64(1), m.Sync.Recent[0].Exported)
	require.Equal(t, int64(1), m.Sync.Recent[0].Imported)
}

// The cutover runs one final round, then verifies in the request's mode, and records the switch; it is refused
// unless the migration is syncing.
func TestCutoverRunsAFinalRoundThenVerifies(t *testing.T) {
	t.Parallel()
	h := syncHarness(t, nil)
	m := h.start(`{` + endpoints + `,"types":["Patient"],"sync":true,"syncInterval":"10m"}`)
	_, err := h.svc.Cutover(context.Background(), m.ID, CutoverRequest{})
	var refusal *Error
	require.ErrorAs(t, err, &refusal)
	require.Equal(t, "not_syncing", refusal.Code)

	m = h.driveUntil(m.ID, 10*time.Second, 100, "round 1", func(m *Migration) bool { return m.Sync != nil && m.Sync.Rounds == 1 })
	cut, err := h.svc.Cutover(context.Background(), m.ID, CutoverRequest{})
	require.NoError(t, err)
	require.NotNil(t, cut.Sync.CutoverRequestedAt)
	again, err := h.svc.Cutover(context.Background(), m.ID, CutoverRequest{})
	require.NoError(t, err, "asking twice changes nothing")
	require.Equal(t, cut.Sync.CutoverRequestedAt, again.Sync.CutoverRequestedAt)
	_, err = h.svc.Cutover(context.Background(), m.ID, CutoverRequest{Accept: []string{acceptRefusedVersions}})
	require.ErrorAs(t, err, &refusal, "another accept list is not taken quietly")
	require.Equal(t, "cutover_requested", refusal.Code)

	done := h.drive(m.ID, 10*time.Second, 100)
	require.Equal(t, StatusCompleted, done.Status, "%+v", done.Error)
	require.NotNil(t, done.Cutover)
	require.Equal(t, 2, done.Sync.Rounds)
	require.True(t, done.Sync.Recent[1].Final, "the final round ran at once, not after the 10-minute interval")
	require.Less(t, done.Sync.Recent[1].StartedAt.Sub(*cut.Sync.CutoverRequestedAt), time.Minute)
	require.Equal(t, VerifyModeCounts, done.Verification.Mode)
	require.True(t, done.Verification.Passed)
	require.Equal(t, done.Sync.HighWater, *migratedTill(done), "the cutover verifies the range up to the final mark")

	_, err = h.svc.Cutover(context.Background(), m.ID, CutoverRequest{})
	require.ErrorAs(t, err, &refusal)
	require.Equal(t, "not_syncing", refusal.Code)
}

// The full copy of a live source is counted: a source that changed meanwhile enters syncing with a note; a
// destination short of the source fails.
func TestTheFullCopyOfALiveSourceEntersSyncing(t *testing.T) {
	t.Parallel()
	h := syncHarness(t, nil)
	h.src.countOffset = map[string]int64{"Patient": -1} // one updated or deleted on the source since its export
	m := h.start(`{` + endpoints + `,"types":["Patient"],"sync":true}`)
	m = h.driveUntil(m.ID, 10*time.Second, 100, "syncing", func(m *Migration) bool { return m.Status == StatusSyncing })
	require.Nil(t, m.Error)
	require.False(t, m.Verification.Passed)
	require.Contains(t, m.Notes[len(m.Notes)-1], "the sync rounds copy those changes")

	lost := syncHarness(t, nil)
	lost.dst.countOffset = map[string]int64{"Patient": -1} // the destination lost one
	m = lost.start(`{` + endpoints + `,"types":["Patient"],"sync":true}`)
	done := lost.drive(m.ID, 10*time.Second, 100)
	require.Equal(t, StatusFailed, done.Status)
	require.Equal(t, codeVerificationMismatch, done.Error.Code)
	require.Nil(t, done.Sync)
}

// However long a sync runs, the document lists the last rounds; older ones are in blobs, each written once.
func TestSyncRoundsArePaged(t *testing.T) {
	t.Parallel()
	h := syncHarness(t, nil)
	m := h.start(`{` + endpoints + `,"types":["Patient"],"sync":true,"syncInterval":"1s"}`)
	m = h.driveUntil(m.ID, 5*time.Second, 400, "45 rounds", func(m *Migration) bool { return m.Sync != nil && m.Sync.Rounds == 45 })
	require.NotEmpty(t, m.Sync.RoundPages)
	require.Less(t, len(m.Sync.Recent), 2*recentRounds)
	seen := len(m.Sync.Recent)
	next := 1
	for _, name := range m.Sync.RoundPages {
		data, _, err := h.store.Get(context.Background(), name)
		require.NoError(t, err)
		var page []SyncRound
		require.NoError(t, json.Unmarshal(data, &page))
		for _, r := range page {
			require.Equal(t, next, r.N, "rounds in order, none lost or twice")
			next++
		}
		seen += len(page)
	}
	require.Equal(t, m.Sync.Recent[0].N, next)
	require.Equal(t, 45, seen)
}

func TestSyncRefusals(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	for body, want := range map[string][2]string{
		`,"sync":true,"till":"2026-01-01T00:00:00Z"`:                              {"invalid_sync", "till"},
		`,"syncInterval":"1m"`:                                                    {"invalid_sync", "syncInterval"},
		`,"sync":true,"syncInterval":"soon"`:                                      {"invalid_sync", "syncInterval"},
		`,"sync":true,"syncInterval":"0s"`:                                        {"invalid_sync", "syncInterval"},
		`,"sync":true,"syncMargin":"-1m"`:                                         {"invalid_sync", "syncMargin"},
		`,"sync":true,"types":["Patient"],"typeFilter":["Patient?gender=female"]`: {"history_not_combinable", "typeFilter"},
		`,"sync":true,"importMode":"InitialLoad"`:                                 {"history_not_combinable", "importMode"},
		`,"reconcile":"delete"`:                                                   {"invalid_reconcile", "reconcile"},
		`,"sync":true,"reconcile":"purge"`:                                        {"invalid_reconcile", "reconcile"},
	} {
		_, err := h.svc.Start(context.Background(), decode[StartRequest](t, `{`+endpoints+body+`}`))
		var refusal *Error
		require.True(t, errors.As(err, &refusal), body)
		require.Equal(t, want[0], refusal.Code, body)
		require.Equal(t, want[1], refusal.Field, body)
	}
	res, err := h.svc.Start(context.Background(), decode[StartRequest](t, `{`+endpoints+`,"sync":true,"syncMargin":"0s"}`))
	require.NoError(t, err, "a margin of zero is allowed")
	require.Equal(t, Duration(0), res.Migration.Request.SyncMargin)
	require.Zero(t, syncMargin(&res.Migration.Request), "and kept: zero is not the default")
	require.Equal(t, Duration(DefaultSyncInterval), res.Migration.Request.SyncInterval)
	res, err = h.svc.Start(context.Background(), decode[StartRequest](t, `{`+endpoints+`,"sync":true}`))
	require.NoError(t, err)
	require.Equal(t, DefaultSyncMargin, syncMargin(&res.Migration.Request))
	require.Equal(t, ReconcileDelete, res.Migration.Request.Reconcile, "a sync reconciles by deleting unless told")
	res, err = h.svc.Start(context.Background(), decode[StartRequest](t, `{`+endpoints+`,"sync":true,"reconcile":"report"}`))
	require.NoError(t, err)
	require.Equal(t, ReconcileReport, res.Migration.Request.Reconcile)
}

// A syncing migration can be canceled like any other: the round in flight stops on its server too.
func TestCancelWhileSyncing(t *testing.T) {
	t.Parallel()
	h := syncHarness(t, nil)
	m := h.start(`{` + endpoints + `,"types":["Patient"],"sync":true}`)
	m = h.driveUntil(m.ID, 10*time.Second, 100, "syncing", func(m *Migration) bool { return m.Status == StatusSyncing })
	h.src.mu.Lock()
	h.src.exportPending = 1000 // a round that does not end by itself
	h.src.mu.Unlock()
	m = h.driveUntil(m.ID, 10*time.Second, 100, "a round running", func(m *Migration) bool {
		if m.Sync.Round == nil {
			return false
		}
		j := m.job(m.Sync.Round.Jobs[0])
		return j != nil && j.State == JobRunning
	})
	running := m.job(m.Sync.Round.Jobs[0]).ContentLocation
	canceled, err := h.svc.Cancel(context.Background(), m.ID)
	require.NoError(t, err)
	require.Equal(t, StatusCanceled, canceled.Status)
	h.src.mu.Lock()
	defer h.src.mu.Unlock()
	require.Contains(t, h.src.canceled, running, "the round's export is canceled on the source")
}

// After the cutover of a migration with history, every type's versions are counted on both servers; a
// destination missing versions fails, and where the counts cannot be compared the row says why.
func TestCutoverComparesHistoryCounts(t *testing.T) {
	t.Parallel()
	run := func(t *testing.T, body string, dstHistory map[string]int64) *Migration {
		h := syncHarness(t, nil)
		h.src.historyCounts = map[string]int64{"Patient": 9}
		h.dst.historyCounts = dstHistory
		m := h.start(`{` + endpoints + `,"types":["Patient"],"sync":true,"history":true` + body + `}`)
		syncing := h.driveUntil(m.ID, 10*time.Second, 100, "syncing", func(m *Migration) bool { return m.Status == StatusSyncing })
		for _, r := range syncing.Verification.Rows {
			require.Nil(t, r.History, "no versions compared while the source is live")
		}
		_, err := h.svc.Cutover(context.Background(), m.ID, CutoverRequest{})
		require.NoError(t, err)
		return h.drive(m.ID, 10*time.Second, 100)
	}
	done := run(t, ``, map[string]int64{"Patient": 9})
	require.Equal(t, StatusCompleted, done.Status, "%+v", done.Error)
	require.Equal(t, &HistoryCounts{Compared: true, Source: 9, Destination: 9}, done.Verification.Rows[0].History)

	short := run(t, ``, map[string]int64{"Patient": 7})
	require.Equal(t, StatusFailed, short.Status)
	require.Equal(t, codeVerificationMismatch, short.Error.Code)
	require.Equal(t, reasonHistoryMismatch, short.Verification.Rows[0].Reason)
	require.Contains(t, short.Error.Message, "the source holds 9 versions")

	// The versions are counted over the migrated range on both servers: a since bounds both alike.
	since := run(t, `,"since":"2020-01-01T00:00:00Z"`, map[string]int64{"Patient": 9})
	require.Equal(t, StatusCompleted, since.Status, "%+v", since.Error)
	require.True(t, since.Verification.Rows[0].History.Compared)
}

// Each finished round is one log line with the migration id, its figures and the lag at its end: the Azure
// dashboard charts the lag from these lines.
func TestEveryRoundIsLogged(t *testing.T) {
	t.Parallel()
	var sink localstack.SyncBuffer
	h := newHarness(t, func(c *Config) { c.Logger = slog.New(slog.NewJSONHandler(&sink, nil)) })
	h.src.now = h.clock.Now
	m := h.start(`{` + endpoints + `,"types":["Patient"],"sync":true,"syncInterval":"1m"}`)
	m = h.driveUntil(m.ID, 10*time.Second, 200, "three rounds", func(m *Migration) bool { return m.Sync != nil && m.Sync.Rounds == 3 })
	var rounds []map[string]any
	for _, l := range logLines(t, &sink) {
		if l["msg"] == LogRoundEnded {
			require.Equal(t, m.ID, l["migration"])
			require.ElementsMatch(t, []string{"time", "level", "msg", "migration", "round", "final", "since", "till",
				"exported", "imported", "failed", "lagSeconds"}, slices.Collect(maps.Keys(l)))
			rounds = append(rounds, l)
		}
	}
	require.Len(t, rounds, 3)
	for i, l := range rounds {
		r := m.Sync.Recent[i]
		require.InDelta(t, float64(r.N), l["round"], 0)
		require.InDelta(t, r.FinishedAt.Sub(*r.Till).Seconds(), l["lagSeconds"], 0.001)
		require.InDelta(t, float64(r.Exported), l["exported"], 0)
	}
}

// Review fixes, each pinned: reverting the fix fails its test.

// History alone (no deletes) still brings the deletion stubs: without its stub, an older version of a deleted
// resource would become current on the destination.
func TestHistoryAloneBringsDeletionStubs(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.start(`{` + endpoints + `,"types":["Patient"],"history":true}`)
	h.poll()
	h.src.mu.Lock()
	defer h.src.mu.Unlock()
	require.NotEmpty(t, h.src.exportKickoffs)
	for _, r := range h.src.exportKickoffs {
		require.True(t, r.History)
		require.True(t, r.Deleted, "history brings the deletion stubs")
	}
}

// A failed final round waits its backoff before the next attempt, as any failed round: it is not kicked off again
// at every sweep.
func TestAFailedFinalRoundWaitsItsBackoff(t *testing.T) {
	t.Parallel()
	h := syncHarness(t, nil)
	m := h.start(`{` + endpoints + `,"types":["Patient"],"sync":true,"syncInterval":"10m"}`)
	m = h.driveUntil(m.ID, 10*time.Second, 100, "a round done", func(m *Migration) bool { return m.Sync != nil && m.Sync.Rounds == 1 })
	h.src.mu.Lock()
	h.src.kickoffErrs = []error{&fhir.Error{Op: "export kick-off", StatusCode: 400, Message: "bad request"}}
	h.src.mu.Unlock()
	_, err := h.svc.Cutover(context.Background(), m.ID, CutoverRequest{})
	require.NoError(t, err)
	m = h.driveUntil(m.ID, time.Second, 50, "the final round failed", func(m *Migration) bool { return m.Sync.Attempts == 1 })
	require.NotNil(t, m.Sync.NextAt)
	backoff := m.Sync.NextAt.Sub(h.clock.Now())
	require.Greater(t, backoff, 30*time.Second, "the retry is scheduled a while later")
	before := len(h.src.exportKickoffs)
	for range 5 { // sweeps within the backoff start nothing
		h.clock.Advance(time.Second)
		h.poll()
		h.deliver()
	}
	h.src.mu.Lock()
	kicked := len(h.src.exportKickoffs)
	h.src.mu.Unlock()
	require.Equal(t, before, kicked, "no kick-off before the backoff is over")
	done := h.driveUntil(m.ID, 10*time.Second, 100, "completed", func(m *Migration) bool { return m.Status == StatusCompleted })
	require.Equal(t, 2, done.Sync.Recent[len(done.Sync.Recent)-1].Attempt, "the final round's second attempt")
}

// A verification started again after a cutover keeps the cutover's time.
func TestAReverifyKeepsTheCutoverTime(t *testing.T) {
	t.Parallel()
	h := syncHarness(t, nil)
	m := h.start(`{` + endpoints + `,"types":["Patient"],"sync":true,"syncInterval":"1m"}`)
	m = h.driveUntil(m.ID, 10*time.Second, 100, "syncing", func(m *Migration) bool { return m.Status == StatusSyncing })
	_, err := h.svc.Cutover(context.Background(), m.ID, CutoverRequest{})
	require.NoError(t, err)
	done := h.driveUntil(m.ID, 10*time.Second, 100, "completed", func(m *Migration) bool { return m.Status == StatusCompleted })
	require.NotNil(t, done.Cutover)
	at := done.Cutover.At
	h.clock.Advance(time.Hour)
	_, err = h.svc.Reverify(context.Background(), m.ID, ReverifyRequest{})
	require.NoError(t, err)
	again := h.driveUntil(m.ID, 10*time.Second, 100, "completed again", func(m *Migration) bool {
		return m.Status == StatusCompleted && m.Verification.Generation > done.Verification.Generation
	})
	require.Equal(t, at, again.Cutover.At, "the cutover happened when it happened")
}

// A round whose export job is already in the document (a save that lost its race after queuing it) keeps that
// job instead of queuing it twice.
func TestStartRoundKeepsAnAlreadyQueuedJob(t *testing.T) {
	t.Parallel()
	now := h0()
	m := &Migration{ID: "m-1", Status: StatusSyncing, Request: Request{Types: []string{"Patient"}, ExportStrategy: StrategyPerType},
		Sync: &Sync{HighWater: now}}
	queued := &Job{ID: "sync-1-a1-Patient", Kind: KindExport, State: JobRunning, Round: 1, Types: []string{"Patient"}}
	m.Jobs = []*Job{queued}
	startRound(m, now, false)
	require.Len(t, m.Jobs, 1, "not queued twice")
	require.Same(t, queued, m.Jobs[0])
	require.Equal(t, JobRunning, queued.State, "the job keeps its state")
	require.Equal(t, []string{"sync-1-a1-Patient"}, m.Sync.Round.Jobs, "still the round's")
}
