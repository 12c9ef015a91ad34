package migration

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/bus"
)

// syncIDHarness is a sync harness whose staged files hold generated resources and whose two servers find every
// staged id by _id search (but the ones a test drops).
func syncIDHarness(t *testing.T, deltaFiles map[string][]int64) (*harness, *searchDest) {
	h, _, dst := syncIDHarnessWith(t, deltaFiles, nil)
	return h, dst
}

// syncIDHarnessWith is syncIDHarness with the configuration tuned, returning both servers.
func syncIDHarnessWith(t *testing.T, deltaFiles map[string][]int64, tune func(*Config)) (*harness, *searchDest, *searchDest) {
	src := &searchDest{dropped: map[string]bool{}, changed: map[string]bool{}}
	dst := &searchDest{dropped: map[string]bool{}, changed: map[string]bool{}}
	h := syncHarnessWith(t, deltaFiles, func(c *Config) {
		if tune != nil {
			tune(c)
		}
		orig := c.FHIR
		c.FHIR = func(base string) (FHIRClient, error) {
			cl, err := orig(base)
			if err != nil {
				return cl, err
			}
			switch base {
			case srcBase:
				src.fakeServer = cl.(*fakeServer)
				return src, nil
			case dstBase:
				dst.fakeServer = cl.(*fakeServer)
				return dst, nil
			}
			return cl, nil
		}
		c.Staging = &contentStaging{fakeStaging: c.Staging.(*fakeStaging)}
	})
	return h, src, dst
}

// TestSyncChecksFollowTheRounds: while a migration with verify ids syncs, its full copy's files and then each
// finished round's are checked in the background, reconciliation passes run one after another, and the cutover's
// id check starts where the sync's stopped, reading only the rest.
func TestSyncChecksFollowTheRounds(t *testing.T) {
	t.Parallel()
	h, _ := syncIDHarness(t, map[string][]int64{"Patient": {2}})
	m := h.start(`{` + endpoints + `,"types":["Patient"],"sync":true,"syncInterval":"1m","verify":"ids"}`)
	m = h.driveUntil(m.ID, 10*time.Second, 300, "two rounds checked and a pass", func(m *Migration) bool {
		c := m.Sync != nil && m.Sync.Checks != nil
		return c && m.Sync.Checks.CheckedRounds >= 2 && m.Sync.Checks.Passes >= 1
	})
	c := m.Sync.Checks
	require.Equal(t, VerifyModeIDs, c.Mode)
	require.Empty(t, c.LastError)
	spans := syncFileSpans(m)
	require.Equal(t, 0, spans[0].round, "the full copy first")
	require.GreaterOrEqual(t, c.NextFile, spans[0].to)
	require.Zero(t, c.Suspects)
	require.Positive(t, c.Types["Patient"].Checked)
	require.Equal(t, c.Types["Patient"].Lines, c.Types["Patient"].Checked)
	require.NotNil(t, c.LastPass)
	require.NotNil(t, c.LastPass.FinishedAt)
	require.Equal(t, []string{"Patient"}, c.LastPass.Types)

	_, err := h.svc.Cutover(context.Background(), m.ID, CutoverRequest{})
	require.NoError(t, err)
	done := h.drive(m.ID, 10*time.Second, 300)
	require.Equal(t, StatusCompleted, done.Status, "%+v", done.Error)
	ids := done.Verification.IDs
	require.GreaterOrEqual(t, ids.FromSync, spans[0].to, "the files checked while syncing are not read again")
	require.Equal(t, exportedFileCount(done), ids.NextFile, "the rest read at the cutover")
	require.Equal(t, "counts", done.Verification.Reconcile.Method)
	require.True(t, done.Verification.Reconcile.Compare.Done)
	require.NotNil(t, done.Verification.Reconcile.Compare.PassStartedAt)
}

// TestASuspectIsLookedUpAgainAtTheCutover: an id the destination lacks when the sync checks its file is a suspect;
// the cutover looks it up again once writes stopped, and still missing, it fails the cutover, named.
func TestASuspectIsLookedUpAgainAtTheCutover(t *testing.T) {
	t.Parallel()
	h, dst := syncIDHarness(t, nil)
	m := h.start(`{` + endpoints + `,"types":["Patient"],"sync":true,"syncInterval":"1m","verify":"ids"}`)
	m = h.driveUntil(m.ID, 10*time.Second, 300, "syncing", func(m *Migration) bool { return m.Status == StatusSyncing })
	first := h.exported(m)[0]
	lost := "Patient/" + stagedIDs(first.URL, first.Count)[0]
	dst.mu.Lock()
	dst.dropped[lost] = true
	dst.mu.Unlock()
	m = h.driveUntil(m.ID, 10*time.Second, 300, "the full copy checked", func(m *Migration) bool {
		return m.Sync.Checks != nil && m.Sync.Checks.CheckedRounds >= 0
	})
	require.Equal(t, int64(1), m.Sync.Checks.Suspects)
	require.Equal(t, []string{lost + " (missing)"}, m.Sync.Checks.SuspectsListed)
	_, err := h.svc.Cutover(context.Background(), m.ID, CutoverRequest{})
	require.NoError(t, err)
	done := h.drive(m.ID, 10*time.Second, 300)
	require.Equal(t, StatusFailed, done.Status)
	require.Equal(t, codeVerificationMismatch, done.Error.Code)
	require.True(t, done.Verification.IDs.SuspectsDone)
	require.Equal(t, []string{lost}, done.Verification.Missing)
	require.Equal(t, int64(1), done.Verification.Rows[0].Missing)
}

// TestSyncChecksAreDrivenAndStopAtTheCutover: the sweep starts the checks of a syncing migration, sends their
// message again only when the one due has not run RedriveAfter later, and stops at the cutover request; a stale
// message does nothing.
func TestSyncChecksAreDrivenAndStopAtTheCutover(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	m := &Migration{ID: "m-1", Status: StatusSyncing, Request: Request{Sync: true, Verify: VerifyModeFull}, Sync: &Sync{}}
	e := &effects{}
	require.True(t, driveSyncChecks(m, now, time.Minute, e))
	require.Equal(t, VerifyModeFull, m.Sync.Checks.Mode)
	require.Equal(t, -1, m.Sync.Checks.CheckedRounds)
	require.Len(t, e.messages, 1)
	require.Equal(t, bus.QueueVerifyCounts, e.messages[0].Queue)
	require.Equal(t, "m-1/sync-checks/1", e.messages[0].ID)
	require.False(t, driveSyncChecks(m, now.Add(59*time.Second), time.Minute, &effects{}), "due, not lost yet")
	require.True(t, driveSyncChecks(m, now.Add(61*time.Second), time.Minute, &effects{}), "lost: sent again")
	require.Equal(t, 2, m.Sync.Checks.Dispatch)
	require.True(t, syncChecksCurrent(m, 2))
	require.False(t, syncChecksCurrent(m, 1), "a stale dispatch")
	m.Sync.CutoverRequestedAt = timePtr(now)
	require.False(t, driveSyncChecks(m, now.Add(time.Hour), time.Minute, &effects{}))
	require.False(t, syncChecksCurrent(m, 2), "the cutover took over")

	counts := &Migration{Status: StatusSyncing, Request: Request{Sync: true, Verify: VerifyModeCounts}, Sync: &Sync{}}
	driveSyncChecks(counts, now, time.Minute, &effects{})
	require.Empty(t, counts.Sync.Checks.Mode, "counts: no file is read while syncing")
}

func TestSyncFileSpansStopAtTheRoundInFlight(t *testing.T) {
	t.Parallel()
	m := &Migration{Sync: &Sync{Rounds: 2}, Jobs: []*Job{
		{Kind: KindExport, State: JobDone, Files: 3},
		{Kind: KindImport, State: JobDone, Files: 3},
		{Kind: KindExport, State: JobDone, Files: 2},
		{Kind: KindExport, State: JobFailed, Round: 1, Files: 9},
		{Kind: KindExport, State: JobDone, Round: 1, Files: 1},
		{Kind: KindExport, State: JobDone, Round: 2, Files: 4},
		{Kind: KindExport, State: JobDone, Round: 3, Files: 5},
	}}
	spans := syncFileSpans(m)
	require.Equal(t, []fileSpan{{0, 0, 5}, {1, 5, 6}, {2, 6, 10}}, spans)
	round, checked := syncCursorPlace(spans, 5)
	require.Equal(t, 0, checked)
	require.Equal(t, 1, round)
	round, checked = syncCursorPlace(spans, 3)
	require.Equal(t, -1, checked)
	require.Equal(t, 0, round)
	_, checked = syncCursorPlace(spans, 10)
	require.Equal(t, 2, checked)
}

func TestSeedCutoverCheck(t *testing.T) {
	t.Parallel()
	m := &Migration{Request: Request{Verify: VerifyModeIDs, Sync: true, CutoverVerify: CutoverVerifyFast},
		Sync: &Sync{Checks: &SyncChecks{Mode: VerifyModeIDs, NextFile: 7, Files: 9,
			Types: map[string]*IDTally{"Patient": {Lines: 3, Checked: 3}}, SuspectsBlob: "files/m/sync-suspects.txt"}},
		Verification: &Verification{Mode: VerifyModeIDs}}
	seedCutoverCheck(m)
	ids := m.Verification.IDs
	require.Equal(t, 7, ids.NextFile)
	require.Equal(t, 7, ids.FromSync)
	require.Equal(t, "files/m/sync-suspects.txt", ids.Suspects)
	require.False(t, ids.SuspectsDone)
	ids.Types["Patient"].Lines = 99
	require.Equal(t, int64(3), m.Sync.Checks.Types["Patient"].Lines, "a copy")

	for _, tweak := range []func(m *Migration){
		func(m *Migration) { m.Request.CutoverVerify = CutoverVerifyFullIDs },
		func(m *Migration) { m.Verification.Mode = VerifyModeFull },
		func(m *Migration) { m.Sync.Checks.NextFile = 0 },
	} {
		m.Verification.IDs = nil
		m.Request.CutoverVerify, m.Verification.Mode, m.Sync.Checks.NextFile = CutoverVerifyFast, VerifyModeIDs, 7
		tweak(m)
		seedCutoverCheck(m)
		require.Nil(t, m.Verification.IDs, "every file is read at the cutover")
	}
}

// TestFilesPendingGoBeforeThePass: a finished round's files wait for the checks until the cursor reaches them; the
// pass yields to them (syncPassStep returns after a page when filesPending).
func TestFilesPendingGoBeforeThePass(t *testing.T) {
	t.Parallel()
	m := &Migration{Sync: &Sync{Rounds: 1, Checks: &SyncChecks{Mode: VerifyModeIDs, NextFile: 5}}, Jobs: []*Job{
		{Kind: KindExport, State: JobDone, Files: 5},
		{Kind: KindExport, State: JobDone, Round: 1, Files: 2},
		{Kind: KindExport, State: JobRunning, Round: 2},
	}}
	require.True(t, filesPending(m), "round 1's two files")
	m.Sync.Checks.NextFile = 7
	require.False(t, filesPending(m), "every finished round's files checked; the round in flight waits")
	m.Sync.Checks.NextFile, m.Sync.Checks.Mode = 5, ""
	require.False(t, filesPending(m), "counts: no file is read while syncing")
}

// TestChecksInFlightGiveWay: the background checks' searches in flight stop when a round starts (the round has the
// servers to itself) and when the sweep re-sent the checks' message (two invocations would share the services'
// search rate); neither counts as a failure, and nothing of the interrupted batch is saved.
func TestChecksInFlightGiveWay(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// interrupt makes the running invocation give way; it returns the dispatch then current.
		interrupt func(h *harness, id string) int
	}{
		{"a round starts", func(h *harness, id string) int {
			m, _, err := h.svc.update(context.Background(), id, func(m *Migration) (*effects, error) {
				startRound(m, h.clock.Now(), false)
				return nil, nil
			})
			require.NoError(t, err)
			return m.Sync.Checks.Dispatch
		}},
		{"the message is re-sent", func(h *harness, id string) int {
			// The sweep's decision for a message it takes for lost (the invocation beats, so the sweep itself
			// would not take this one for lost: see TestALongStepIsNotTakenForLost).
			m, _, err := h.svc.update(context.Background(), id, func(m *Migration) (*effects, error) {
				require.True(t, driveSyncChecks(m, h.clock.Now().Add(time.Hour), h.svc.cfg.RedriveAfter, &effects{}))
				return nil, nil
			})
			require.NoError(t, err)
			return m.Sync.Checks.Dispatch
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h, m, ran := checksSearching(t, func(ctx context.Context) error {
				<-ctx.Done() // answers only when the search is given up
				return ctx.Err()
			})
			dispatch := tc.interrupt(h, m.ID)
			select {
			case err := <-ran:
				require.NoError(t, err)
			case <-time.After(time.Minute):
				t.Fatal("the checks' search in flight was not given up")
			}
			after := h.get(m.ID).Sync.Checks
			require.Zero(t, after.Failures, "giving way is no failure: %s", after.LastError)
			require.Empty(t, after.LastError)
			require.Equal(t, m.Sync.Checks.NextFile, after.NextFile, "nothing of the interrupted batch saved")
			if tc.name == "a round starts" {
				require.Equal(t, dispatch+1, after.Dispatch, "the checks asked again, after the round")
			} else {
				require.Equal(t, dispatch, after.Dispatch, "the stale invocation schedules nothing")
			}
		})
	}
}

// TestARoundWithoutFilesIsChecked: a round that staged no file (nothing changed on the source) counts as checked,
// so that the document's checkedRounds keeps up with the rounds.
func TestARoundWithoutFilesIsChecked(t *testing.T) {
	t.Parallel()
	h, _ := syncIDHarness(t, nil)
	m := h.start(`{` + endpoints + `,"types":["Patient"],"sync":true,"syncInterval":"1m","verify":"ids"}`)
	m = h.driveUntil(m.ID, 10*time.Second, 300, "three rounds, every one checked", func(m *Migration) bool {
		return m.Sync != nil && m.Sync.Rounds >= 3 && m.Sync.Checks != nil && m.Sync.Checks.CheckedRounds >= m.Sync.Rounds
	})
	c := m.Sync.Checks
	require.Equal(t, exportedFileCount(m), c.NextFile, "only the full copy staged files")
	require.Equal(t, c.NextFile, c.Files)
	for _, r := range m.Sync.Recent {
		require.Zero(t, r.Exported, "round %d exported nothing", r.N)
	}
}

// checksSearching runs a syncing migration's first round with the background checks held, then runs the current
// checks' message in the background, each destination search waiting on wait; it returns once a search waits,
// with the migration as it was and the channel the invocation's error comes on.
func checksSearching(t *testing.T, wait func(context.Context) error) (*harness, *Migration, chan error) {
	h, _, dst := syncIDHarnessWith(t, map[string][]int64{"Patient": {2}}, func(c *Config) { c.PollInitial = 20 * time.Millisecond })
	h.hold = func(msg bus.Message) bool { return strings.Contains(msg.ID, "/"+taskSyncChecks+"/") }
	m := h.start(`{` + endpoints + `,"types":["Patient"],"sync":true,"syncInterval":"1h","verify":"ids"}`)
	m = h.driveUntil(m.ID, 10*time.Second, 300, "the first round finished", func(m *Migration) bool {
		return m.Sync != nil && m.Sync.Rounds >= 1 && m.Sync.Round == nil
	})
	require.True(t, filesPending(m), "the full copy's files wait for the checks")
	current := slices.IndexFunc(h.held, func(msg bus.Message) bool {
		return msg.ID == syncCheckMessage(m.ID, m.Sync.Checks.Dispatch, time.Time{}).ID
	})
	require.GreaterOrEqual(t, current, 0, "the current checks' message is held")

	searching := make(chan struct{})
	var once sync.Once
	dst.mu.Lock()
	dst.wait = func(ctx context.Context) error {
		once.Do(func() { close(searching) })
		return wait(ctx)
	}
	dst.mu.Unlock()
	ran := make(chan error, 1)
	go func() { ran <- h.svc.Verify(context.Background(), h.held[current].Body) }()
	select {
	case <-searching:
	case err := <-ran:
		t.Fatalf("the checks returned (%v) before searching", err)
	}
	return h, m, ran
}

// TestALongStepIsNotTakenForLost: a batch of files that takes longer than RedriveAfter (large files at the
// service's search rate) keeps its message: the running invocation beats, the sweep sends no other, and the batch
// ends and is saved. Without the beat the sweep would re-send the message, the watcher would stop this invocation,
// and the next would start the same batch over, never saved.
func TestALongStepIsNotTakenForLost(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	h, m, ran := checksSearching(t, func(ctx context.Context) error {
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	dispatch := m.Sync.Checks.Dispatch
	for range 6 { // three times RedriveAfter, in steps of half of it
		h.clock.Advance(h.svc.cfg.RedriveAfter / 2)
		now := h.clock.Now()
		require.Eventually(t, func() bool { return !h.get(m.ID).Sync.Checks.DueAt.Before(now) },
			30*time.Second, 5*time.Millisecond, "the running checks beat")
		h.poll()
		require.Equal(t, dispatch, h.get(m.ID).Sync.Checks.Dispatch, "the sweep took the running checks for lost")
	}
	close(release)
	select {
	case err := <-ran:
		require.NoError(t, err)
	case <-time.After(time.Minute):
		t.Fatal("the checks did not end once their searches were answered")
	}
	after := h.get(m.ID).Sync.Checks
	require.Greater(t, after.NextFile, m.Sync.Checks.NextFile, "the long batch is saved")
	require.Zero(t, after.Failures, after.LastError)
}
