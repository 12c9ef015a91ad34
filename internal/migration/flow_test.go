package migration

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/bus"
	"github.com/fhir-migrator/fhir-migrator/internal/fhir"
)

const endpoints = `"source":"` + srcBase + `","destination":"` + dstBase + `"`

func rowsByType(m *Migration) map[string]TypeRow {
	out := map[string]TypeRow{}
	for _, r := range m.Verification.Rows {
		out[r.Type] = r
	}
	return out
}

func TestMigrationPerTypeImportsWhileExporting(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.src.exportPendingByType["Observation"] = 5
	m := h.start(`{` + endpoints + `,"types":["Patient","Observation","SearchParameter"]}`)

	h.poll()
	ex, _, _ := h.src.snapshot()
	require.Equal(t, 3, ex, "every export kicked off within the source's limit")
	for _, j := range h.get(m.ID).Jobs {
		require.Equal(t, JobRunning, j.State, j.ID)
		require.Len(t, j.Attempts, 1)
	}

	h.clock.Advance(5 * time.Second)
	h.poll()
	require.Equal(t, 2, h.deliver(), "one run-import for Patient's import, one for the SearchParameter copy")
	got := h.get(m.ID)
	require.Equal(t, StatusExporting, got.Status)
	require.Equal(t, JobRunning, got.job("export-Observation").State)
	imp := got.job("import-export-Patient-1")
	require.NotNil(t, imp)
	require.Equal(t, JobRunning, imp.State, "the import runs while another export still runs")
	exportID := strings.TrimPrefix(got.job("export-Patient").ContentLocation, srcBase+"/_operations/export/")
	require.Equal(t, []Input{
		{Type: "Patient", URL: blobBase + "/" + m.ID + "/" + exportID + "/Patient-1.ndjson"},
		{Type: "Patient", URL: blobBase + "/" + m.ID + "/" + exportID + "/Patient-2.ndjson"},
	}, h.inputs(got, imp.ID), "inputs carry no query string")
	cp := got.job("copy-export-SearchParameter")
	require.Equal(t, JobDone, cp.State)
	require.Equal(t, map[string]int64{"SearchParameter": 2}, cp.Counts)
	require.Contains(t, got.Notes, reindexNote)
	require.Len(t, h.dst.batches, 1)
	require.Len(t, h.dst.batches[0], 2)
	require.Equal(t, "SearchParameter", h.dst.batches[0][0].Type)

	done := h.drive(m.ID, time.Minute, 50)
	require.Equal(t, StatusCompleted, done.Status, "%+v", done.Error)
	require.Nil(t, done.Error)
	rows := rowsByType(done)
	require.Equal(t, TypeRow{Type: "Patient", Source: 5, Exported: 5, Imported: 5, Destination: 5, Expected: 5, Proven: true, Match: true}, rows["Patient"])
	require.Equal(t, TypeRow{Type: "Observation", Source: 7, Exported: 7, Imported: 7, Destination: 7, Expected: 7, Proven: true, Match: true}, rows["Observation"])
	require.Equal(t, TypeRow{Type: "SearchParameter", Source: 2, Exported: 2, Imported: 2, Destination: 2, Expected: 2, Proven: true, Match: true}, rows["SearchParameter"])
	require.Equal(t, Progress{Exports: JobTally{3, 3}, Imports: JobTally{2, 2}, Copies: JobTally{1, 1},
		ResourcesExported: 14, ResourcesImported: 14}, *done.Progress)
	ex, im, _ := h.src.snapshot()
	require.Equal(t, 3, ex, "one kick-off per export job")
	_, im, _ = h.dst.snapshot()
	require.Equal(t, 2, im, "one $import per import job")
	require.Empty(t, h.hostSlots(srcBase)[slotExport])
	require.Empty(t, h.hostSlots(dstBase)[slotImport])
}

func TestMigrationSystemExport(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.src.exportPending = 2
	h.dst.importPending = 1
	m := h.start(`{` + endpoints + `,"importMode":"InitialLoad"}`)
	done := h.drive(m.ID, time.Minute, 50)
	require.Equal(t, StatusCompleted, done.Status, "%+v", done.Error)
	require.Len(t, h.src.exportKickoffs, 1)
	require.Empty(t, h.src.exportKickoffs[0].Types)
	require.Equal(t, m.ID, h.src.exportKickoffs[0].Container)
	require.Len(t, h.dst.importKickoffs, 1)
	require.Equal(t, ModeInitial, h.dst.importKickoffs[0].Mode)
	require.Len(t, h.dst.importKickoffs[0].Inputs, 3, "Observation and Patient files in one import; SearchParameter copied")
	require.Len(t, rowsByType(done), 3)
	for _, r := range done.Verification.Rows {
		require.True(t, r.Match, r.Type)
	}
}

func TestImportJobsHoldAtMost10000Files(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.src.files = map[string][]int64{"Observation": make([]int64, maxImportInputs+1)}
	for i := range h.src.files["Observation"] {
		h.src.files["Observation"][i] = 1
	}
	m := h.start(`{` + endpoints + `,"types":["Observation"]}`)
	h.poll()
	h.clock.Advance(5 * time.Second)
	h.poll()
	got := h.get(m.ID)
	require.Len(t, got.Jobs, 3)
	require.Len(t, h.inputs(got, "import-export-Observation-1"), maxImportInputs)
	require.Len(t, h.inputs(got, "import-export-Observation-2"), 1)
	require.Less(t, len(mustJSON(t, got)), 16<<10, "the document names the manifest, it does not list 10,001 files")
	var ids []string
	for _, msg := range h.bus.Sent() {
		ids = append(ids, msg.ID)
	}
	require.Equal(t, []string{
		m.ID + "/run-import/import-export-Observation-1/1",
		m.ID + "/run-import/import-export-Observation-2/1",
	}, ids)
	h.bus.Take()
	for _, id := range ids {
		body, _ := json.Marshal(RunImportMessage{MigrationID: m.ID, JobID: strings.Split(id, "/")[2]})
		require.NoError(t, h.svc.RunImport(context.Background(), body))
	}
	require.Len(t, h.dst.importKickoffs, 2)
	require.Len(t, h.dst.importKickoffs[0].Inputs, maxImportInputs)
	require.Len(t, h.dst.importKickoffs[1].Inputs, 1)
}

func TestExportLimitPerSourceAcrossMigrations(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *Config) { c.MaxExportsPerSource = 2 })
	h.src.exportPending = 2
	// Both fill one destination, so its counts are the sum: verification would not be about this test.
	m1 := h.start(`{` + endpoints + `,"types":["Patient","Observation","SearchParameter"],"verify":"none"}`)
	m2 := h.start(`{` + endpoints + `,"types":["Patient","Observation"],"verify":"none"}`)
	h.poll()
	ex, _, _ := h.src.snapshot()
	require.Equal(t, 2, ex)
	require.Len(t, h.hostSlots(srcBase)[slotExport], 2)
	// Windows start smallest first: SearchParameter (2), Patient (5), then Observation (7).
	require.Equal(t, []string{"export-SearchParameter", "export-Patient", "export-Observation"}, jobIDs(h.get(m1.ID)))
	require.Equal(t, JobQueued, h.get(m1.ID).job("export-Observation").State)
	require.Equal(t, JobQueued, h.get(m2.ID).job("export-Observation").State)

	for range 100 {
		h.deliver()
		if h.get(m1.ID).Status.Terminal() && h.get(m2.ID).Status.Terminal() {
			break
		}
		h.clock.Advance(time.Minute)
		h.poll()
		require.LessOrEqual(t, len(h.hostSlots(srcBase)[slotExport]), 2)
	}
	require.Equal(t, StatusCompleted, h.get(m1.ID).Status, "%+v", h.get(m1.ID).Error)
	require.Equal(t, StatusCompleted, h.get(m2.ID).Status, "%+v", h.get(m2.ID).Error)
	require.Equal(t, 2, h.src.maxRunning, "never more than the limit running on the source")
	ex, _, _ = h.src.snapshot()
	require.Equal(t, 5, ex)
}

func TestConcurrentSweepsKickOffOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	m := h.start(`{` + endpoints + `,"types":["Patient","Observation","SearchParameter"]}`)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() { _ = h.svc.Poll(context.Background()) })
	}
	wg.Wait()
	ex, _, _ := h.src.snapshot()
	require.Equal(t, 3, ex, "a recorded attempt is never kicked off twice")
	for _, j := range h.get(m.ID).Jobs {
		require.Len(t, j.Attempts, 1, j.ID)
	}
}

func TestDuplicateMessagesAreHarmless(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	m := h.start(`{` + endpoints + `,"types":["Patient"]}`)
	h.poll()
	h.clock.Advance(5 * time.Second)
	h.poll()
	msgs := h.bus.Take()
	require.Len(t, msgs, 1)
	require.Equal(t, bus.QueueRunImport, msgs[0].Queue)
	require.JSONEq(t, `{"migrationId":"`+m.ID+`","jobId":"import-export-Patient-1"}`, string(msgs[0].Body))
	for range 3 {
		require.NoError(t, h.svc.RunImport(context.Background(), msgs[0].Body))
	}
	_, im, _ := h.dst.snapshot()
	require.Equal(t, 1, im, "a duplicate run-import starts no second $import")

	h.clock.Advance(5 * time.Second)
	h.poll()
	verify := h.bus.Take()
	require.Len(t, verify, 1)
	require.Equal(t, m.ID+"/verify/1/1", verify[0].ID)
	for range 3 {
		require.NoError(t, h.svc.Verify(context.Background(), verify[0].Body))
	}
	require.NoError(t, h.svc.RunImport(context.Background(), msgs[0].Body))
	done := h.get(m.ID)
	require.Equal(t, StatusCompleted, done.Status)
	require.Equal(t, TypeRow{Type: "Patient", Source: 5, Exported: 5, Imported: 5, Destination: 5, Expected: 5, Proven: true, Match: true}, rowsByType(done)["Patient"])
	_, im, _ = h.dst.snapshot()
	require.Equal(t, 1, im)

	for _, body := range []string{`{`, `{"migrationId":"m-unknown","jobId":"x"}`, `{"migrationId":"` + m.ID + `","jobId":"nope"}`} {
		require.NoError(t, h.svc.RunImport(context.Background(), []byte(body)))
	}
	for _, body := range []string{`nope`, `{"migrationId":"m-unknown","generation":1}`, `{"migrationId":"` + m.ID + `","generation":7}`} {
		require.NoError(t, h.svc.Verify(context.Background(), []byte(body)))
	}
}

func TestCrashAfterRecordedAttemptMakesAnOrphan(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	m := h.start(`{` + endpoints + `,"types":["Patient"]}`)
	h.src.onKickoff = func() error {
		h.store.set(func(s *hookStore) { s.failPuts = true })
		return errors.New("connection reset")
	}
	h.poll()
	h.store.set(func(s *hookStore) { s.failPuts = false })
	h.src.mu.Lock()
	h.src.onKickoff = nil
	h.src.mu.Unlock()

	j := h.get(m.ID).job("export-Patient")
	require.Equal(t, JobStarting, j.State, "the attempt was saved before the call, its answer never")
	require.Len(t, j.Attempts, 1)

	h.clock.Advance(time.Minute)
	h.poll()
	ex, _, _ := h.src.snapshot()
	require.Equal(t, 1, ex, "an attempt in flight is not kicked off again")

	h.clock.Advance(time.Minute)
	h.poll()
	j = h.get(m.ID).job("export-Patient")
	require.Equal(t, 1, j.Orphans)
	require.True(t, j.Attempts[0].Orphaned)
	require.Equal(t, JobRunning, j.State)
	require.NotEmpty(t, j.Attempts[1].ContentLocation)
	ex, _, _ = h.src.snapshot()
	require.Equal(t, 2, ex)

	done := h.drive(m.ID, time.Minute, 20)
	require.Equal(t, StatusCompleted, done.Status)
	require.Equal(t, 1, done.Progress.OrphanedAttempts)
	ex, _, _ = h.src.snapshot()
	require.Equal(t, 2, ex, "never a kick-off for an answered attempt")
}

func TestImportLeftStartingIsResentToTheSameJob(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	m := h.start(`{` + endpoints + `,"types":["Patient"]}`)
	h.poll()
	h.clock.Advance(5 * time.Second)
	h.poll()
	h.dst.onKickoff = func() error {
		h.store.set(func(s *hookStore) { s.failPuts = true })
		return nil
	}
	msgs := h.bus.Take()
	require.Error(t, h.svc.RunImport(context.Background(), msgs[0].Body), "the answer could not be saved")
	h.store.set(func(s *hookStore) { s.failPuts = false })
	h.dst.mu.Lock()
	h.dst.onKickoff = nil
	h.dst.mu.Unlock()
	require.Equal(t, JobStarting, h.get(m.ID).job("import-export-Patient-1").State)

	h.clock.Advance(2 * time.Minute)
	h.poll()
	resent := h.bus.Take()
	require.Len(t, resent, 1)
	require.Equal(t, m.ID+"/run-import/import-export-Patient-1/2", resent[0].ID)
	require.NoError(t, h.svc.RunImport(context.Background(), resent[0].Body))
	_, im, _ := h.dst.snapshot()
	require.Equal(t, 2, im)
	require.Len(t, h.dst.imports, 1, "the identical body registered the same server job")
	done := h.drive(m.ID, time.Minute, 20)
	require.Equal(t, StatusCompleted, done.Status)
}

func TestStoreConflictIsRetried(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	m := h.start(`{` + endpoints + `,"types":["Patient"]}`)
	h.store.set(func(s *hookStore) { s.conflictOnce = true })
	h.poll()
	require.Equal(t, 1, h.store.conflicts)
	j := h.get(m.ID).job("export-Patient")
	require.Equal(t, JobRunning, j.State)
	require.Len(t, j.Attempts, 1)
	ex, _, _ := h.src.snapshot()
	require.Equal(t, 1, ex)
}

func TestVerificationMismatchFails(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.dst.countOffset = map[string]int64{"Patient": -1}
	m := h.start(`{` + endpoints + `,"types":["Patient","Observation"]}`)
	done := h.drive(m.ID, time.Minute, 20)
	require.Equal(t, StatusFailed, done.Status)
	require.Equal(t, "verification_mismatch", done.Error.Code)
	require.Equal(t, "Patient: the destination holds 4 and the source 5: 1 are missing", done.Error.Message)
	require.False(t, rowsByType(done)["Patient"].Match)
	require.True(t, rowsByType(done)["Observation"].Match)
}

func TestVerifyNoneAndCountFailures(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.dst.countErr = errors.New("timeout")
	m := h.start(`{` + endpoints + `,"types":["Patient"],"verify":"none"}`)
	done := h.drive(m.ID, time.Minute, 20)
	require.Equal(t, StatusCompleted, done.Status)
	require.True(t, done.Verification.Skipped)

	// A destination that cannot count is asked again later, a bounded number of times, then the round fails
	// openly: never read as "nothing there", never verifying for ever. (Its baseline could not be taken either,
	// so the ids are looked up first: the harness holds the staged files.)
	h = newIDHarness(t).harness
	h.dst.countErr = errors.New("timeout")
	m = h.start(`{` + endpoints + `,"types":["Patient"]}`)
	var verifyDeliveries int
	for range 40 {
		h.poll()
		h.clock.Advance(time.Minute)
		for _, msg := range h.bus.Take() {
			if msg.Queue == bus.QueueRunImport {
				require.NoError(t, h.svc.RunImport(context.Background(), msg.Body))
				continue
			}
			if msg.NotBefore.After(h.clock.Now()) {
				h.clock.Advance(msg.NotBefore.Sub(h.clock.Now()))
			}
			verifyDeliveries++
			require.NoError(t, h.svc.Verify(context.Background(), msg.Body), "a fault is answered by a scheduled retry, not a redelivery")
		}
		if h.get(m.ID).Status.Terminal() {
			break
		}
	}
	done = h.get(m.ID)
	require.Equal(t, StatusFailed, done.Status)
	require.Equal(t, codeVerificationFailed, done.Error.Code)
	require.Contains(t, done.Error.Message, "timeout")
	require.Contains(t, done.Error.Message, "attempt 5")
	require.Equal(t, 5, done.Verification.Failures)
	require.Equal(t, 5, verifyDeliveries, "MaxAttempts rounds of counting, no more")
}

func TestCancelStopsServerJobs(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.src.exportPendingByType["Observation"] = 100
	h.dst.importPending = 100
	m := h.start(`{` + endpoints + `,"types":["Patient","Observation"]}`)
	h.poll()
	h.clock.Advance(5 * time.Second)
	h.poll()
	h.deliver()
	got := h.get(m.ID)
	require.Equal(t, JobRunning, got.job("import-export-Patient-1").State)
	require.Len(t, h.hostSlots(dstBase)[slotImport], 1)

	canceled, err := h.svc.Cancel(context.Background(), m.ID)
	require.NoError(t, err)
	require.Equal(t, StatusCanceled, canceled.Status)
	for _, j := range canceled.Jobs {
		require.True(t, j.State == JobDone || j.State == JobCanceled, "%s is %s", j.ID, j.State)
	}
	_, _, srcCanceled := h.src.snapshot()
	_, _, dstCanceled := h.dst.snapshot()
	require.Equal(t, []string{got.job("export-Observation").ContentLocation}, srcCanceled)
	require.Equal(t, []string{got.job("import-export-Patient-1").ContentLocation}, dstCanceled)
	require.Empty(t, h.hostSlots(srcBase)[slotExport])
	require.Empty(t, h.hostSlots(dstBase)[slotImport])

	_, err = h.svc.Cancel(context.Background(), m.ID)
	var refusal *Error
	require.ErrorAs(t, err, &refusal)
	require.Equal(t, Conflict, refusal.Kind)
	require.Equal(t, "already_finished", refusal.Code)
	_, err = h.svc.Cancel(context.Background(), "m-unknown")
	require.ErrorAs(t, err, &refusal)
	require.Equal(t, NotFound, refusal.Kind)

	list, err := h.svc.List(context.Background(), ListRequest{})
	require.NoError(t, err)
	require.Len(t, list.Migrations, 1)
	require.Equal(t, StatusCanceled, list.Migrations[0].Status)
	require.Empty(t, list.ContinuationToken)
}

func TestKickoffFailures(t *testing.T) {
	t.Parallel()
	refused := &fhir.Error{Op: "export kick-off", StatusCode: 400, Message: "_typeFilter is not supported"}
	busy := &fhir.Error{Op: "export kick-off", StatusCode: 429, RetryAfter: 10 * time.Second}
	tests := []struct {
		name     string
		errs     []error
		polls    int
		state    JobState
		status   Status
		code     string
		kickoffs int
	}{
		{"refused fails the migration", []error{refused}, 1, JobFailed, StatusFailed, "export_failed", 1},
		{"throttled is retried after Retry-After", []error{busy}, 2, JobRunning, StatusExporting, "", 2},
		{"attempts are bounded", []error{busy, busy, busy}, 4, JobFailed, StatusFailed, "export_failed", 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, func(c *Config) { c.MaxAttempts = 3 })
			h.src.exportPending = 100
			h.src.kickoffErrs = tc.errs
			m := h.start(`{` + endpoints + `,"types":["Patient"]}`)
			for range tc.polls {
				h.poll()
				h.clock.Advance(10 * time.Second)
			}
			got := h.get(m.ID)
			j := got.job("export-Patient")
			require.Equal(t, tc.state, j.State)
			require.Equal(t, tc.status, got.Status)
			if tc.code != "" {
				require.Equal(t, tc.code, got.Error.Code)
				require.Contains(t, got.Error.Message, tc.errs[len(tc.errs)-1].Error())
			}
			ex, _, _ := h.src.snapshot()
			require.Equal(t, tc.kickoffs, ex)
			if j.State != JobRunning {
				require.Empty(t, h.hostSlots(srcBase)[slotExport], "slot released")
			}
		})
	}
}

func TestFailedExportCancelsTheOthers(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.src.exportPending = 100
	m := h.start(`{` + endpoints + `,"types":["Patient","Observation"]}`)
	h.poll()
	got := h.get(m.ID)
	// The server forgets Observation's export: its status answers 404.
	h.src.mu.Lock()
	h.src.exports[got.job("export-Observation").ContentLocation].gone = true
	h.src.mu.Unlock()
	h.clock.Advance(5 * time.Second)
	h.poll()
	got = h.get(m.ID)
	require.Equal(t, StatusFailed, got.Status)
	require.Equal(t, "export_failed", got.Error.Code)
	require.Contains(t, got.Error.Message, "export-Observation")
	require.Equal(t, JobCanceled, got.job("export-Patient").State)
	_, _, canceled := h.src.snapshot()
	require.Equal(t, []string{got.job("export-Patient").ContentLocation}, canceled)
	require.Empty(t, h.hostSlots(srcBase)[slotExport])
}

func TestImportWaitsForADestinationSlot(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *Config) { c.MaxImportsPerDestination = 1 })
	h.dst.importPending = 3
	m := h.start(`{` + endpoints + `,"types":["Patient","Observation"]}`)
	h.poll()
	h.clock.Advance(5 * time.Second)
	h.poll()
	h.deliver()
	got := h.get(m.ID)
	require.Equal(t, JobRunning, got.job("import-export-Patient-1").State)
	waiting := got.job("import-export-Observation-1")
	require.Equal(t, JobQueued, waiting.State)
	require.Equal(t, 1, waiting.Dispatch)
	require.Equal(t, h.clock.Now(), *waiting.WaitingSlot)
	require.Nil(t, waiting.DispatchAt)
	require.Empty(t, h.pending, "a waiting import has no message out: nothing retries on a timer")

	// Sweeps while the slot is held send nothing, and do not re-drive the waiting job as a lost message.
	for range 3 {
		h.clock.Advance(time.Minute)
		h.poll()
		require.Zero(t, h.deliver())
	}
	require.Equal(t, JobQueued, h.get(m.ID).job("import-export-Observation-1").State)
	require.Equal(t, JobRunning, h.get(m.ID).job("import-export-Patient-1").State)

	// The sweep that sees the running import finish frees its slot and dispatches the waiting one.
	h.clock.Advance(time.Minute)
	h.poll()
	got = h.get(m.ID)
	require.Equal(t, JobDone, got.job("import-export-Patient-1").State)
	next := got.job("import-export-Observation-1")
	require.Nil(t, next.WaitingSlot)
	require.Equal(t, 2, next.Dispatch)
	require.Equal(t, 1, h.deliver())
	require.Equal(t, JobRunning, h.get(m.ID).job("import-export-Observation-1").State)

	done := h.drive(m.ID, 30*time.Second, 50)
	require.Equal(t, StatusCompleted, done.Status)
}

// TestWaitingImportsSurviveALeakedSlot: a slot held by a job that no longer runs (its handler died) is evicted by
// the sweep, which then dispatches the waiting import; nothing waits for ever.
func TestWaitingImportsSurviveALeakedSlot(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *Config) { c.MaxImportsPerDestination = 1 })
	ok, err := h.svc.acquireSlot(context.Background(), dstBase, slotImport, "m-gone/import-x", 1)
	require.NoError(t, err)
	require.True(t, ok)
	m := h.start(`{` + endpoints + `,"types":["Patient"]}`)
	h.poll()
	h.clock.Advance(5 * time.Second)
	h.poll()
	h.deliver()
	require.NotNil(t, h.get(m.ID).job("import-export-Patient-1").WaitingSlot)
	done := h.drive(m.ID, time.Minute, 20)
	require.Equal(t, StatusCompleted, done.Status)
	require.NotContains(t, h.hostSlots(dstBase)[slotImport], "m-gone/import-x")
}

func TestThrottledImportSchedulesItsRetry(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.dst.kickoffErrs = []error{&fhir.Error{Op: "import kick-off", StatusCode: 429, RetryAfter: 7 * time.Second}}
	m := h.start(`{` + endpoints + `,"types":["Patient"]}`)
	h.poll()
	h.clock.Advance(5 * time.Second)
	h.poll()
	h.deliver()
	j := h.get(m.ID).job("import-export-Patient-1")
	require.Equal(t, JobQueued, j.State)
	require.Equal(t, "import kick-off: HTTP 429", j.Attempts[0].Error)
	require.Empty(t, h.hostSlots(dstBase)[slotImport])
	require.Len(t, h.pending, 1)
	require.Equal(t, h.clock.Now().Add(7*time.Second), h.pending[0].NotBefore)
	h.clock.Advance(7 * time.Second)
	require.Equal(t, 1, h.deliver())
	require.Equal(t, JobRunning, h.get(m.ID).job("import-export-Patient-1").State)
}

func TestSweepRedrivesLostMessages(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	m := h.start(`{` + endpoints + `,"types":["Patient"]}`)
	h.poll()
	h.clock.Advance(5 * time.Second)
	h.poll()
	require.Len(t, h.bus.Take(), 1, "the run-import message is lost")
	h.clock.Advance(time.Minute)
	h.poll()
	require.Empty(t, h.bus.Sent(), "not yet stalled")
	h.clock.Advance(time.Minute)
	h.poll()
	resent := h.bus.Take()
	require.Len(t, resent, 1)
	require.Equal(t, m.ID+"/run-import/import-export-Patient-1/2", resent[0].ID)
	require.NoError(t, h.svc.RunImport(context.Background(), resent[0].Body))

	h.clock.Advance(5 * time.Second)
	h.poll()
	require.Len(t, h.bus.Take(), 1, "the verify-counts message is lost")
	require.Equal(t, StatusVerifying, h.get(m.ID).Status)
	h.clock.Advance(2 * time.Minute)
	h.poll()
	again := h.bus.Take()
	require.Len(t, again, 1)
	require.Equal(t, m.ID+"/verify/1/2", again[0].ID)
	var body VerifyMessage
	require.NoError(t, json.Unmarshal(again[0].Body, &body))
	require.Equal(t, VerifyMessage{MigrationID: m.ID, Generation: 1}, body)
	require.NoError(t, h.svc.Verify(context.Background(), again[0].Body))
	require.Equal(t, StatusCompleted, h.get(m.ID).Status)
}

func TestLeakedSlotIsEvicted(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *Config) { c.MaxExportsPerSource = 1 })
	ctx := context.Background()
	ok, err := h.svc.acquireSlot(ctx, srcBase, slotExport, "m-gone/export-Patient", 1)
	require.NoError(t, err)
	require.True(t, ok)
	m := h.start(`{` + endpoints + `,"types":["Patient"]}`)
	h.poll()
	require.Equal(t, JobQueued, h.get(m.ID).job("export-Patient").State, "a fresh holder is trusted")
	h.clock.Advance(3 * time.Minute)
	h.poll()
	require.Equal(t, JobRunning, h.get(m.ID).job("export-Patient").State, "a holder with no running job is evicted")
	require.Equal(t, []string{m.ID + "/export-Patient"}, keys(h.hostSlots(srcBase)[slotExport]))
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestMessageIDs(t *testing.T) {
	t.Parallel()
	at := h0().Add(time.Minute)
	m := runImportMessage("m-1", "import-export-Patient-1", 3, at)
	require.Equal(t, bus.Message{Queue: bus.QueueRunImport, ID: "m-1/run-import/import-export-Patient-1/3",
		Body: []byte(`{"migrationId":"m-1","jobId":"import-export-Patient-1"}`), NotBefore: at}, m)
	v := verifyMessage("m-1", 2, 1, time.Time{})
	require.Equal(t, "m-1/verify/2/1", v.ID)
	require.Equal(t, bus.QueueVerifyCounts, v.Queue)
	require.True(t, strings.HasPrefix(string(v.Body), `{"migrationId":"m-1","generation":2}`))
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	require.NoError(t, err)
	return data
}

func jobIDs(m *Migration) []string {
	var out []string
	for _, j := range m.Jobs {
		out = append(out, j.ID)
	}
	return out
}

// TestListPagesSummariesFromMetadata: the list is built from the documents' listed metadata, a page at a time,
// and agrees with the documents.
func TestListPagesSummariesFromMetadata(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	var ids []string
	for range 5 {
		ids = append(ids, h.start(`{`+endpoints+`,"types":["Patient"]}`).ID)
	}
	h.drive(ids[0], time.Minute, 30)
	var seen []Summary
	token, pages := "", 0
	for {
		res, err := h.svc.List(context.Background(), ListRequest{Top: 2, ContinuationToken: token})
		require.NoError(t, err)
		require.LessOrEqual(t, len(res.Migrations), 2)
		seen = append(seen, res.Migrations...)
		pages++
		if res.ContinuationToken == "" {
			break
		}
		token = res.ContinuationToken
	}
	require.Equal(t, 3, pages)
	require.Len(t, seen, 5)
	for _, sum := range seen {
		m := h.get(sum.ID)
		require.Equal(t, m.Status, sum.Status, sum.ID)
		require.Equal(t, m.Request.Source, sum.Source)
		require.True(t, m.CreatedAt.Equal(sum.CreatedAt))
		p := *m.Progress
		p.Estimate = nil // an estimate needs the jobs' times: the list shows the tallies only
		require.Equal(t, p, sum.Progress, sum.ID)
		require.Nil(t, sum.Progress.Estimate)
	}
	for _, req := range []ListRequest{{Top: 501}, {Top: -1}, {ContinuationToken: "%%%"}, {ContinuationToken: "not-one-we-gave"}} {
		_, err := h.svc.List(context.Background(), req)
		var refusal *Error
		require.ErrorAs(t, err, &refusal)
		require.Equal(t, Invalid, refusal.Kind)
	}
}

// TestAnEndedExportStartsTheNextAtOnce: the sweep that sees an export end frees its slot and kicks off the next
// queued window in the same sweep, not a tick later.
func TestAnEndedExportStartsTheNextAtOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *Config) { c.MaxExportsPerSource = 1 })
	m := h.start(`{` + endpoints + `,"types":["Patient","Observation"],"verify":"none"}`)
	h.poll()
	ex, _, _ := h.src.snapshot()
	require.Equal(t, 1, ex, "one slot: one export")
	first := h.get(m.ID).job("export-Patient")
	require.Equal(t, JobRunning, first.State)

	h.clock.Advance(10 * time.Second)
	h.poll()
	got := h.get(m.ID)
	require.Equal(t, JobDone, got.job("export-Patient").State)
	require.Equal(t, JobRunning, got.job("export-Observation").State, "kicked off in the sweep that freed the slot")
	ex, _, _ = h.src.snapshot()
	require.Equal(t, 2, ex)
	require.LessOrEqual(t, len(h.hostSlots(srcBase)[slotExport]), 1)
}
