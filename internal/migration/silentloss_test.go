package migration

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/bus"
	"github.com/fhir-migrator/fhir-migrator/internal/fhir"
)

// Each test here is a way resources could go missing while a migration still reported passed: it now fails
// openly with a code that says why, or completes with nothing missing.

// TestStagedFileShorterThanItsManifestFailsIDsAndFull: every line of a staged file is found in the destination,
// but the file holds one line fewer than its manifest counts: that resource was never staged, so never imported.
func TestStagedFileShorterThanItsManifestFailsIDsAndFull(t *testing.T) {
	t.Parallel()
	for _, body := range []string{`"verify":"ids"`, `"verify":"full","verifySample":1`} {
		t.Run(body, func(t *testing.T) {
			t.Parallel()
			ih := newIDHarness(t)
			ih.staging.shortBy = map[string]int64{"Patient": 1}
			m := ih.start(`{` + endpoints + `,"types":["Patient","Observation"],` + body + `}`)
			done := ih.drive(m.ID, time.Minute, 30)
			require.Equal(t, StatusFailed, done.Status)
			require.Equal(t, codeVerificationMismatch, done.Error.Code)
			row := rowsByType(done)["Patient"]
			require.Equal(t, int64(5), row.Exported)
			require.Equal(t, int64(3), row.Lines, "two files, one line short each")
			require.Zero(t, row.Missing, "every line read was found")
			require.Equal(t, reasonStagedMismatch, row.Reason)
			require.False(t, row.Proven)
			require.Contains(t, done.Error.Message, "Patient: the staged files hold 3 resource lines where their manifests count 5")
			require.True(t, rowsByType(done)["Observation"].Match)
		})
	}
}

// TestFilteredShortManifestIsNotTrusted: a _typeFilter type is counted as the search its filter is, so a
// system-cancelled export answering 200 with half its files is caught, exported again, and fails openly.
func TestFilteredShortManifestIsNotTrusted(t *testing.T) {
	t.Parallel()
	h, src, _ := newFaultHarness(t, func(c *Config) { c.MaxReexports = 1 })
	h.src.setCount("Observation", 7)
	h.src.setFiles("Observation", 4) // what the cancelled export wrote
	m := h.start(`{` + endpoints + `,"types":["Observation"],"typeFilter":["Observation?status=final","Observation?code=1234-5"]}`)
	done := h.drive(m.ID, time.Minute, 40)
	require.Equal(t, StatusFailed, done.Status)
	require.Equal(t, "export_failed", done.Error.Code)
	require.Contains(t, done.Error.Message, "manifest short of the source's counts: Observation 4 of 7")
	require.Len(t, done.Jobs, 1, "nothing of a short export was imported")
	statuses, codes := 0, 0
	for _, q := range src.countQueries {
		if q.Get("status") == "final" {
			statuses++
		}
		if q.Get("code") == "1234-5" {
			codes++
		}
	}
	require.Positive(t, statuses, "each entry is a search of its own")
	require.Positive(t, codes)
}

// TestSeveralFilterEntriesTakeTheLargestCount: the export of several entries is their union, so the largest
// entry's count is the lower bound a manifest must reach.
func TestSeveralFilterEntriesTakeTheLargestCount(t *testing.T) {
	t.Parallel()
	h, src, _ := newFaultHarness(t, nil)
	m := h.start(`{` + endpoints + `,"types":["Observation"],"typeFilter":["Observation?status=final","Observation?code=1234-5"]}`)
	src.mu.Lock()
	src.countErrs = nil
	src.mu.Unlock()
	h.src.mu.Lock()
	h.src.counts["Observation"] = 0
	h.src.mu.Unlock()
	filtered := &filterCounts{faultyServer: src, byParam: map[string]int64{"status": 5, "code": 6}}
	h.svc.cfg.FHIR = func(base string) (FHIRClient, error) {
		if base == srcBase {
			return filtered, nil
		}
		return h.dst, nil
	}
	h.poll()
	require.Equal(t, map[string]int64{"Observation": 6}, h.get(m.ID).job("export-Observation").Expected)
}

// filterCounts answers a filtered count by the filter's parameter.
type filterCounts struct {
	*faultyServer
	byParam map[string]int64
}

func (f *filterCounts) Count(ctx context.Context, t string, q url.Values) (int64, error) {
	for p, n := range f.byParam {
		if q.Has(p) {
			return n, nil
		}
	}
	return f.faultyServer.Count(ctx, t, q)
}

// TestCountsCompareWithTheSourceNotTheManifests: verification counts the migrated range on the source again. A
// source that now holds more than was exported exposes a lossy export; one that holds fewer changed since.
func TestCountsCompareWithTheSourceNotTheManifests(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		source int64
		code   string
		reason string
		text   string
	}{
		{"export lost resources", 6, codeVerificationMismatch, reasonExportShort, "Patient: the source holds 6 in the migrated range and the export wrote 5: 1 were never exported"},
		{"source changed", 4, codeSourceChanged, reasonSourceChanged, "Patient: the export wrote 5 and the source now holds 4 in the migrated range: 1 were updated or deleted on the source since"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for _, mode := range []string{"counts", "ids"} {
				ih := newIDHarness(t)
				m := ih.start(`{` + endpoints + `,"types":["Patient"],"verify":"` + mode + `"}`)
				ih.poll()
				ih.clock.Advance(5 * time.Second)
				ih.poll()
				require.Equal(t, JobDone, ih.get(m.ID).job("export-Patient").State, "the manifest matched the kick-off count")
				ih.src.setCount("Patient", tc.source)
				done := ih.drive(m.ID, time.Minute, 30)
				require.Equal(t, StatusFailed, done.Status, mode)
				require.Equal(t, tc.code, done.Error.Code, mode)
				require.Equal(t, tc.text, done.Error.Message, mode)
				row := rowsByType(done)["Patient"]
				require.Equal(t, tc.source, row.Source)
				require.Equal(t, tc.reason, row.Reason)
				require.False(t, row.Match)
				require.Equal(t, int64(5), row.Destination, "the destination holds what was exported")
			}
		})
	}
}

// TestVerificationEndsWhenTheDestinationRefusesCounts: a destination answering 403 for ever is asked a bounded
// number of times, with backoff; then the migration fails verification_failed with the server's reason.
func TestVerificationEndsWhenTheDestinationRefusesCounts(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	m := h.start(`{` + endpoints + `,"types":["Patient"]}`)
	h.dst.mu.Lock()
	h.dst.countErr = &fhir.Error{Op: "count Patient", StatusCode: 403, Message: "principal lacks FHIR Data Reader"}
	h.dst.mu.Unlock()
	var retries []time.Duration
	for range 99 {
		msgs := h.bus.Take() // taken as soon as sent: NotBefore - now is the delay chosen
		if len(msgs) == 0 {
			h.clock.Advance(5 * time.Second)
			h.poll()
			continue
		}
		for _, msg := range msgs {
			if msg.Queue == bus.QueueVerifyCounts && !msg.NotBefore.IsZero() {
				retries = append(retries, msg.NotBefore.Sub(h.clock.Now()))
				h.clock.Advance(msg.NotBefore.Sub(h.clock.Now()))
			}
			h.handle(msg)
		}
		if h.get(m.ID).Status.Terminal() {
			break
		}
	}
	done := h.get(m.ID)
	require.Equal(t, StatusFailed, done.Status)
	require.Equal(t, codeVerificationFailed, done.Error.Code)
	require.Contains(t, done.Error.Message, "principal lacks FHIR Data Reader")
	require.Equal(t, []time.Duration{30 * time.Second, time.Minute, 2 * time.Minute, 4 * time.Minute}, retries,
		"RetryDelay doubled per retry (jitter pinned by Random=1)")
	_, err := h.svc.Reverify(context.Background(), m.ID, ReverifyRequest{})
	require.NoError(t, err, "a round that could not be done can be started again")
}

// TestIncompleteBaselineIsNotZero: a type whose count before failed is unknown, not empty: counts cannot prove it,
// so its ids are looked up in every mode; after cleanup (no staged files) a counts re-verify says not proven.
func TestIncompleteBaselineIsNotZero(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"counts", "ids"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			ih := newIDHarness(t)
			ih.dst.countErr = errors.New("connection reset")
			m := ih.start(`{` + endpoints + `,"types":["Patient","Observation"],"verify":"` + mode + `"}`)
			ih.dst.mu.Lock()
			ih.dst.countErr = nil
			ih.dst.mu.Unlock()
			b := ih.get(m.ID).Baseline
			require.ElementsMatch(t, []string{"Patient", "Observation"}, b.Uncounted)
			require.Empty(t, b.Counts)
			done := ih.drive(m.ID, time.Minute, 30)
			row := rowsByType(done)["Patient"]
			require.True(t, row.BaselineMissing)
			require.Equal(t, StatusCompleted, done.Status, "%+v", done.Error)
			require.True(t, row.Proven, "every id looked up")
			require.Equal(t, int64(5), row.Checked)
			require.Equal(t, mode == "counts", row.Overlap)
			if mode == "ids" {
				return
			}
			_, err := ih.svc.Cleanup(context.Background(), m.ID, CleanupRequest{})
			require.NoError(t, err)
			_, err = ih.svc.Reverify(context.Background(), m.ID, ReverifyRequest{})
			require.NoError(t, err)
			again := ih.drive(m.ID, time.Minute, 30)
			require.Equal(t, StatusCompleted, again.Status, "not proven is not failed: %+v", again.Error)
			row = rowsByType(again)["Patient"]
			require.True(t, row.NotProven)
			require.False(t, row.Proven)
			require.True(t, row.Match)
			require.Zero(t, row.Checked)
			require.Contains(t, row.Explanation, "not proven")
			report, err := ih.svc.Report(context.Background(), m.ID)
			require.NoError(t, err)
			require.Contains(t, string(report), "| unknown | unknown |")
			require.Contains(t, string(report), "NOT PROVEN")
		})
	}
}

// TestFailedCancelIsRecordedAndDrivenAgain: a DELETE of a stalled export that fails is kept in the document and
// sent again by the sweep until the server confirms it; after MaxAttempts it is given up with a note.
func TestFailedCancelIsRecordedAndDrivenAgain(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *Config) { c.ExportDeadline = time.Hour })
	h.src.exportPendingByType["Patient"] = 1000
	m := h.start(`{` + endpoints + `,"types":["Patient"]}`)
	h.poll()
	stalled := h.get(m.ID).job("export-Patient").ContentLocation
	h.src.mu.Lock()
	h.src.cancelErrs = []error{errors.New("connection reset"), errors.New("connection reset")}
	h.src.mu.Unlock()
	h.clock.Advance(time.Hour)
	h.poll() // past the deadline: asked once more, still running
	h.poll()
	got := h.get(m.ID)
	require.Len(t, got.Cancels, 1, "the failed DELETE is in the document")
	c := got.Cancels[0]
	require.Equal(t, stalled, c.ContentLocation)
	require.Equal(t, 1, c.Attempts)
	require.Contains(t, c.LastError, "connection reset")

	for range 10 {
		h.clock.Advance(time.Minute)
		h.poll()
	}
	got = h.get(m.ID)
	require.Empty(t, got.Cancels, "confirmed on the third DELETE and forgotten only then")
	_, _, canceled := h.src.snapshot()
	require.Contains(t, canceled, stalled)

	// A server that never confirms: given up after MaxAttempts, and the operator is told.
	h2 := newHarness(t, nil)
	h2.src.exportPendingByType["Patient"] = 1000
	m2 := h2.start(`{` + endpoints + `,"types":["Patient"]}`)
	h2.poll()
	running := h2.get(m2.ID).job("export-Patient").ContentLocation
	h2.src.mu.Lock()
	for range 20 {
		h2.src.cancelErrs = append(h2.src.cancelErrs, &fhir.Error{Op: "cancel job", StatusCode: 500, Message: "boom"})
	}
	h2.src.mu.Unlock()
	_, err := h2.svc.Cancel(context.Background(), m2.ID)
	require.NoError(t, err)
	for range 30 {
		h2.clock.Advance(time.Minute)
		h2.poll()
	}
	got = h2.get(m2.ID)
	require.Equal(t, StatusCanceled, got.Status)
	require.Len(t, got.Cancels, 1)
	require.True(t, got.Cancels[0].GaveUp)
	require.Equal(t, 5, got.Cancels[0].Attempts)
	require.Equal(t, 5, h2.src.cancelCalls, "MaxAttempts DELETEs, then no more")
	require.Len(t, got.Notes, 1)
	require.Contains(t, got.Notes[0], "send DELETE "+running+" yourself")
}

// TestInitialLoadKeepsSearchParametersForLater: an InitialLoad destination refuses every write but $import, so the
// SearchParameters are not PUT: their batch is kept, the notes say how to send it, and the report shows the type
// as not copied.
func TestInitialLoadKeepsSearchParametersForLater(t *testing.T) {
	t.Parallel()
	ih := newIDHarness(t)
	h := ih.harness
	m := h.start(`{` + endpoints + `,"types":["Patient","SearchParameter"],"importMode":"InitialLoad","verify":"ids"}`)
	done := h.drive(m.ID, time.Minute, 40)
	require.Equal(t, StatusCompleted, done.Status, "%+v", done.Error)
	require.Empty(t, done.Verification.Missing, "held-back resources are not looked up")
	require.Equal(t, int64(2), rowsByType(done)["SearchParameter"].Lines, "but their staged lines are counted")
	require.Empty(t, h.dst.batches, "no write reached the destination")
	row := rowsByType(done)["SearchParameter"]
	require.True(t, row.NotCopied)
	require.False(t, row.Proven)
	require.Contains(t, row.Explanation, "not copied")
	require.Len(t, done.Notes, 1)
	require.Contains(t, done.Notes[0], "2 SearchParameter resources were not copied")
	require.Contains(t, done.Notes[0], "GET /api/migrations/"+m.ID+"/report/search-parameters")
	require.NotContains(t, strings.Join(done.Notes, " "), reindexNote)

	bundle, err := h.svc.SearchParameterBundle(context.Background(), m.ID)
	require.NoError(t, err)
	require.Contains(t, string(bundle), `"type": "batch"`)
	require.Equal(t, 2, strings.Count(string(bundle), `"method": "PUT"`))
	report, err := h.svc.Report(context.Background(), m.ID)
	require.NoError(t, err)
	require.Contains(t, string(report), "NOT COPIED")

	h2 := newHarness(t, nil)
	m2 := h2.start(`{` + endpoints + `,"types":["Patient"]}`)
	_, err = h2.svc.SearchParameterBundle(context.Background(), m2.ID)
	var refusal *Error
	require.ErrorAs(t, err, &refusal)
	require.Equal(t, NotFound, refusal.Kind)
}
