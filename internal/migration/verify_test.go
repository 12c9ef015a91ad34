package migration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/bus"
	"github.com/fhir-migrator/fhir-migrator/internal/staging"
)

// resourceLine is the NDJSON line of a generated staged resource; the searchable destination answers the same.
func resourceLine(typ, id, status string) string {
	return fmt.Sprintf(`{"resourceType":%q,"id":%q,"meta":{"versionId":"1","lastUpdated":"2025-01-01T00:00:00Z"},"status":%q}`, typ, id, status)
}

// stagedIDs are the ids the content staging writes into a file.
func stagedIDs(u string, n int64) []string {
	parts := strings.Split(stripQuery(u), "/")
	stem := parts[len(parts)-2] + "-" + strings.TrimSuffix(parts[len(parts)-1], ".ndjson")
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d", stem, i)
	}
	return out
}

func typeOfFile(u string) string {
	name := u[strings.LastIndex(u, "/")+1:]
	return name[:strings.Index(name, "-")]
}

// contentStaging serves generated NDJSON for every staged file.
type contentStaging struct {
	*fakeStaging
	mu    sync.Mutex
	opens int
	// shortBy drops that many lines from each staged file of a type.
	shortBy map[string]int64
}

func (s *contentStaging) Open(ctx context.Context, u string) (io.ReadCloser, error) {
	s.mu.Lock()
	s.opens++
	s.mu.Unlock()
	if typeOfFile(u) == typeSearchParameter {
		return s.fakeStaging.Open(ctx, u)
	}
	n := s.reg.count(u)
	s.mu.Lock()
	n -= s.shortBy[typeOfFile(u)] // a staged file shorter than its manifest says
	s.mu.Unlock()
	var b bytes.Buffer
	for _, id := range stagedIDs(u, n) {
		b.WriteString(resourceLine(typeOfFile(u), id, "final") + "\n")
	}
	return io.NopCloser(&b), nil
}

// searchDest is the destination fake with _id search: every imported id is found except the dropped ones, and
// changed ones come back with another status.
type searchDest struct {
	*fakeServer
	mu      sync.Mutex
	dropped map[string]bool
	// droppedSuffixes drop ids by suffix, since export job numbers depend on the order of concurrent kick-offs.
	droppedSuffixes []string
	changed         map[string]bool
	searches        int
	// onSearch runs on each search (e.g. to advance the clock); wait, when set, before each search answers: an
	// error it returns is the search's.
	onSearch func()
	wait     func(context.Context) error
}

func (d *searchDest) Search(ctx context.Context, typ string, q url.Values, each func(json.RawMessage) error) error {
	d.mu.Lock()
	d.searches++
	on, wait := d.onSearch, d.wait
	var lines []string
	for id := range strings.SplitSeq(q.Get("_id"), ",") {
		key := typ + "/" + id
		if d.dropped[key] || slices.ContainsFunc(d.droppedSuffixes, func(sfx string) bool { return strings.HasSuffix(key, sfx) }) {
			continue
		}
		status := "final"
		if d.changed[key] {
			status = "amended"
		}
		lines = append(lines, resourceLine(typ, id, status))
	}
	d.mu.Unlock()
	if on != nil {
		on()
	}
	if wait != nil {
		if err := wait(ctx); err != nil {
			return err
		}
	}
	for _, l := range lines {
		if err := each(json.RawMessage(l)); err != nil {
			return err
		}
	}
	return nil
}

type idHarness struct {
	*harness
	dest    *searchDest
	staging *contentStaging
}

func newIDHarness(t *testing.T) *idHarness {
	ih := &idHarness{dest: &searchDest{dropped: map[string]bool{}, changed: map[string]bool{}}}
	ih.harness = newHarness(t, func(c *Config) {
		orig := c.FHIR
		c.FHIR = func(base string) (FHIRClient, error) {
			cl, err := orig(base)
			if err != nil || base != dstBase {
				return cl, err
			}
			ih.dest.fakeServer = cl.(*fakeServer)
			return ih.dest, nil
		}
		ih.staging = &contentStaging{fakeStaging: c.Staging.(*fakeStaging)}
		c.Staging = ih.staging
	})
	return ih
}

// drop makes the destination lose the ids of typ ending in the suffixes, and lowers its count.
func (ih *idHarness) drop(typ string, suffixes ...string) {
	ih.dest.mu.Lock()
	for _, sfx := range suffixes {
		ih.dest.droppedSuffixes = append(ih.dest.droppedSuffixes, sfx)
	}
	ih.dest.mu.Unlock()
	ih.dst.mu.Lock()
	if ih.dst.countOffset == nil {
		ih.dst.countOffset = map[string]int64{}
	}
	ih.dst.countOffset[typ] -= int64(len(suffixes))
	ih.dst.mu.Unlock()
}

func TestVerifyIDsFindsExactlyTheLostResources(t *testing.T) {
	t.Parallel()
	ih := newIDHarness(t)
	m := ih.start(`{` + endpoints + `,"types":["Patient","Observation"],"verify":"ids"}`)
	// The first Patient file holds 3 patients: the last two are lost.
	ih.drop("Patient", "-Patient-1-1", "-Patient-1-2")

	done := ih.drive(m.ID, time.Minute, 30)
	var lost []string
	for _, f := range ih.exported(done) {
		if strings.Contains(f.URL, "/Patient-1.ndjson") {
			lost = stagedIDs(f.URL, 3)[1:]
		}
	}
	require.Len(t, lost, 2)
	dbg, _ := json.Marshal(done)
	require.Equal(t, StatusFailed, done.Status, string(dbg))
	require.Equal(t, "verification_mismatch", done.Error.Code)
	require.Equal(t, "Patient: 2 of 5 exported ids are not in the destination", done.Error.Message)
	rows := rowsByType(done)
	require.Equal(t, int64(2), rows["Patient"].Missing)
	require.Equal(t, int64(5), rows["Patient"].Checked)
	require.Equal(t, int64(3), rows["Patient"].Destination)
	require.Equal(t, int64(5), rows["Patient"].Expected)
	require.False(t, rows["Patient"].Match)
	require.True(t, rows["Observation"].Match)
	require.Equal(t, int64(7), rows["Observation"].Checked)
	require.Equal(t, "2 of 5 exported ids are not in the destination", rows["Patient"].Explanation)

	want := []string{"Patient/" + lost[0], "Patient/" + lost[1]}
	require.Equal(t, want, done.Verification.Missing)
	require.Equal(t, int64(2), done.Verification.MissingCount)
	var all bytes.Buffer
	require.NoError(t, ih.svc.MissingIDs(context.Background(), m.ID, &all))
	require.Equal(t, strings.Join(want, "\n")+"\n", all.String())

	report, err := ih.svc.Report(context.Background(), m.ID)
	require.NoError(t, err)
	require.Contains(t, string(report), "FAILED")
	require.Contains(t, string(report), "| Patient | 5 | 5 | 5 | 0 | 5 | 0 | 0 | 5 | 3 | 5 | 2 | 0 | 0 | FAILED: missing |")
	require.Contains(t, string(report), "- Patient/"+lost[0])

	_, err = ih.svc.Cleanup(context.Background(), m.ID, CleanupRequest{})
	require.ErrorContains(t, err, "verification_not_passed")
}

func TestVerifyIntoANonEmptyDestination(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		mode string
		// overwritten: exported ids that already existed in the destination (IncrementalLoad overwrites them).
		overwritten int64
		// lost: suffixes of exported Patient ids the destination loses.
		lost    []string
		passed  bool
		explain string
	}{
		{"ids, other data only", "ids", 0, nil, true, ""},
		{"counts, other data only", "counts", 0, nil, true, "every exported id was looked up, as in ids mode"},
		{"ids, some ids already there", "ids", 2, nil, true, "overwritten (IncrementalLoad), not added"},
		// Counts cannot prove a destination that held the type: its ids are looked up, and decide.
		{"counts, some ids already there", "counts", 2, nil, true, "the destination held 100 before the migration, so counts cannot prove it"},
		{"counts, some ids already there and one lost", "counts", 2, []string{"-Patient-1-1"}, false, "1 of 5 exported ids are not in the destination"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ih := newIDHarness(t)
			ih.dst.countOffset = map[string]int64{"Patient": 100, "": 250}
			m := ih.start(`{` + endpoints + `,"types":["Patient","Observation"],"verify":"` + tc.mode + `"}`)
			require.Equal(t, int64(100), ih.get(m.ID).Baseline.Counts["Patient"])
			ih.dst.mu.Lock()
			ih.dst.countOffset["Patient"] -= tc.overwritten
			ih.dst.mu.Unlock()
			if tc.lost != nil {
				ih.drop("Patient", tc.lost...)
			}

			done := ih.drive(m.ID, time.Minute, 30)
			require.Equal(t, tc.passed, done.Verification.Passed, "%+v", done.Error)
			rows := rowsByType(done)
			row := rows["Patient"]
			require.Equal(t, int64(100), row.DestinationBefore)
			require.Equal(t, int64(105), row.Expected)
			require.Equal(t, 105-tc.overwritten-int64(len(tc.lost)), row.Destination)
			if tc.explain != "" {
				require.Contains(t, row.Explanation, tc.explain)
			}
			require.Equal(t, int64(5), row.Checked, "the overlapping type's ids were looked up")
			require.Equal(t, tc.mode == "counts", row.Overlap)
			if tc.mode == "counts" {
				require.Zero(t, rows["Observation"].Checked, "a type the destination did not hold is proven by counts")
				require.False(t, rows["Observation"].Overlap)
			}
			if tc.passed {
				require.Equal(t, StatusCompleted, done.Status)
				require.True(t, row.Proven)
				return
			}
			require.Equal(t, codeVerificationMismatch, done.Error.Code)
			require.False(t, row.Proven)
			require.Equal(t, reasonMissing, row.Reason)
			report, err := ih.svc.Report(context.Background(), m.ID)
			require.NoError(t, err)
			require.Contains(t, string(report), "counts cannot prove it")
		})
	}
}

func TestVerifyIDsResumesAcrossMessages(t *testing.T) {
	t.Parallel()
	ih := newIDHarness(t)
	// Every search takes "5 minutes": each invocation checks one file, saves its cursor, and sends the next.
	ih.dest.onSearch = func() { ih.clock.Advance(5 * time.Minute) }
	m := ih.start(`{` + endpoints + `,"types":["Patient","Observation"],"verify":"ids"}`)
	first := ih.untilVerifying(m.ID)
	var verifyMsgs []bus.Message
	for round := 0; ; round++ {
		require.Less(t, round, 10)
		msgs := append(first, ih.bus.Take()...)
		first = nil
		if len(msgs) == 0 {
			break
		}
		for _, msg := range msgs {
			require.Equal(t, bus.QueueVerifyCounts, msg.Queue)
			verifyMsgs = append(verifyMsgs, msg)
			// Delivered twice: the second delivery finds the cursor moved and cannot count a file twice.
			require.NoError(t, ih.svc.Verify(context.Background(), msg.Body))
			require.NoError(t, ih.svc.Verify(context.Background(), msg.Body))
		}
	}
	done := ih.get(m.ID)
	require.Equal(t, StatusCompleted, done.Status, "%+v", done.Error)
	require.Equal(t, int64(5), rowsByType(done)["Patient"].Checked)
	require.Equal(t, int64(7), rowsByType(done)["Observation"].Checked)
	require.Equal(t, 3, done.Verification.IDs.Files)
	require.GreaterOrEqual(t, len(verifyMsgs), 2, "the check continued in a new message")
	require.Equal(t, m.ID+"/verify/1/2", verifyMsgs[1].ID)
}

func TestVerifyFullReportsDifferencesByPath(t *testing.T) {
	t.Parallel()
	ih := newIDHarness(t)
	m := ih.start(`{` + endpoints + `,"types":["Observation"],"verify":"full","verifySample":4}`)
	// One export job only: its Content-Location is number 1.
	ids := stagedIDs(blobBase+"/"+m.ID+"/1/Observation-1.ndjson", 7)
	ih.dest.changed["Observation/"+ids[1]] = true
	ih.dest.changed["Observation/"+ids[6]] = true // beyond the sample: not compared

	done := ih.drive(m.ID, time.Minute, 30)
	require.Equal(t, StatusFailed, done.Status)
	row := rowsByType(done)["Observation"]
	require.Equal(t, int64(4), row.Compared)
	require.Equal(t, int64(1), row.Different)
	require.Equal(t, int64(7), row.Checked)
	require.Equal(t, []Difference{{Resource: "Observation/" + ids[1], Paths: []string{"status"}}}, done.Verification.Differences)
}

func TestDifferences(t *testing.T) {
	t.Parallel()
	initial := ignoredPaths("Patient", ModeInitial)
	cases := []struct {
		name     string
		a, b     string
		ignore   map[string]bool
		expected []string
	}{
		{"equal", `{"a":1,"b":[1,2]}`, `{"b":[1,2],"a":1}`, nil, nil},
		{"nested", `{"name":[{"given":["A","B"]}]}`, `{"name":[{"given":["A","C"]}]}`, nil, []string{"name[0].given[1]"}},
		{"added and removed", `{"a":1}`, `{"b":1}`, nil, []string{"a", "b"}},
		{"array length", `{"a":[1]}`, `{"a":[1,2]}`, nil, []string{"a"}},
		{"initial load meta", `{"meta":{"versionId":"3","lastUpdated":"x"},"id":"1"}`, `{"meta":{"versionId":"1","lastUpdated":"y"},"id":"1"}`, initial, nil},
		{"initial load adds meta", `{"id":"1"}`, `{"meta":{"versionId":"1","lastUpdated":"y"},"id":"1"}`, initial, nil},
		{"incremental keeps meta", `{"meta":{"versionId":"3"}}`, `{"meta":{"versionId":"1"}}`, ignoredPaths("Patient", ModeIncremental), []string{"meta.versionId"}},
		{"type change", `{"a":{"b":1}}`, `{"a":"x"}`, nil, []string{"a"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := differences([]byte(tc.a), []byte(tc.b), tc.ignore)
			require.NoError(t, err)
			require.Equal(t, tc.expected, got)
		})
	}
}

func TestReverifyAfterTheDestinationCaughtUp(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ih := newIDHarness(t)
	m := ih.start(`{` + endpoints + `,"types":["Patient"]}`)
	ih.dst.countOffset = map[string]int64{"Patient": -2} // the search index lags
	done := ih.drive(m.ID, time.Minute, 30)
	require.Equal(t, StatusFailed, done.Status)

	_, err := ih.svc.Reverify(ctx, m.ID, decode[ReverifyRequest](t, `{"verify":"everything"}`))
	require.ErrorContains(t, err, "invalid_verify")
	_, err = ih.svc.Reverify(ctx, "m-nope", ReverifyRequest{})
	require.ErrorContains(t, err, "not_found")

	ih.dst.mu.Lock()
	ih.dst.countOffset = nil
	ih.dst.mu.Unlock()
	again, err := ih.svc.Reverify(ctx, m.ID, decode[ReverifyRequest](t, `{"verify":"ids"}`))
	require.NoError(t, err)
	require.Equal(t, StatusVerifying, again.Status)
	require.Nil(t, again.Error)
	_, err = ih.svc.Reverify(ctx, m.ID, ReverifyRequest{})
	require.ErrorContains(t, err, "verification_running")

	done = ih.drive(m.ID, time.Minute, 30)
	require.Equal(t, StatusCompleted, done.Status, "%+v", done.Error)
	require.Equal(t, 2, done.Verification.Generation)
	require.Equal(t, VerifyModeIDs, done.Verification.Mode)
	require.Equal(t, int64(5), rowsByType(done)["Patient"].Checked)
}

func TestCleanupRules(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ih := newIDHarness(t)
	m := ih.start(`{` + endpoints + `,"types":["Patient"]}`)
	ih.staging.extra[m.ID] = []staging.BlobInfo{{Name: "1/Patient-1.ndjson", Size: 300}, {Name: "orphan/Patient-1.ndjson", Size: 200}}

	_, err := ih.svc.Cleanup(ctx, m.ID, CleanupRequest{})
	require.ErrorContains(t, err, "migration_running")
	_, err = ih.svc.Cleanup(ctx, "m-nope", CleanupRequest{})
	require.ErrorContains(t, err, "not_found")

	done := ih.drive(m.ID, time.Minute, 30)
	require.Equal(t, StatusCompleted, done.Status)

	dry, err := ih.svc.Cleanup(ctx, m.ID, decode[CleanupRequest](t, `{"dryRun":true}`))
	require.NoError(t, err)
	require.True(t, dry.DryRun)
	require.Equal(t, int64(500), dry.Bytes)
	require.Len(t, dry.Blobs, 2)
	require.Empty(t, ih.staging.deleted, "a dry run deletes nothing")
	require.Nil(t, ih.get(m.ID).Cleanup)

	res, err := ih.svc.Cleanup(ctx, m.ID, decode[CleanupRequest](t, `{}`))
	require.NoError(t, err)
	require.Equal(t, []string{m.ID}, ih.staging.deleted)
	c := ih.get(m.ID).Cleanup
	require.Equal(t, cleanupDone, c.State)
	require.Equal(t, 2, c.Blobs)
	require.Equal(t, int64(500), c.Bytes)
	require.Equal(t, res.Blobs, c.Deleted)

	_, err = ih.svc.Reverify(ctx, m.ID, decode[ReverifyRequest](t, `{"verify":"ids"}`))
	require.ErrorContains(t, err, "staged_files_deleted")
	_, err = ih.svc.Reverify(ctx, m.ID, ReverifyRequest{})
	require.NoError(t, err, "counts need no staged files")
}

func TestCleanupAfterVerify(t *testing.T) {
	t.Parallel()
	ih := newIDHarness(t)
	m := ih.start(`{` + endpoints + `,"types":["Patient"],"cleanup":"after-verify"}`)
	done := ih.drive(m.ID, time.Minute, 30)
	require.Equal(t, StatusCompleted, done.Status)
	require.Equal(t, []string{m.ID}, ih.staging.deleted)
	require.Equal(t, cleanupDone, done.Cleanup.State)

	// Not after a failed verification.
	ih2 := newIDHarness(t)
	ih2.dst.countOffset = map[string]int64{"Patient": -1}
	m2 := ih2.start(`{` + endpoints + `,"types":["Patient"],"cleanup":"after-verify"}`)
	done2 := ih2.drive(m2.ID, time.Minute, 30)
	require.Equal(t, StatusFailed, done2.Status)
	require.Empty(t, ih2.staging.deleted)
	require.Nil(t, done2.Cleanup)
}

func TestVerifyThatCannotBeDoneFailsOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// The plain harness stages no Patient lines and its destination refuses searches: no retry can check ids
	// there, and the round ends after its bounded attempts.
	h := newHarness(t, nil)
	m := h.start(`{` + endpoints + `,"types":["Patient"],"verify":"ids"}`)
	done := h.drive(m.ID, time.Minute, 30)
	require.Equal(t, StatusFailed, done.Status)
	require.Equal(t, "verification_failed", done.Error.Code)
	require.Contains(t, done.Error.Message, "attempt 5")
	require.Contains(t, done.Error.Message, "blob not found: https://acct.blob.core.windows.net/m-test-1/1/Patient-1.ndjson")
	require.False(t, done.Verification.Passed)

	h.clock.Advance(time.Hour)
	h.poll()
	require.Empty(t, h.bus.Take(), "a failed round is not re-driven")

	again, err := h.svc.Reverify(ctx, m.ID, decode[ReverifyRequest](t, `{"verify":"counts"}`))
	require.NoError(t, err, "a round that could not be done can be done again")
	require.Equal(t, StatusVerifying, again.Status)
	require.Equal(t, StatusCompleted, h.drive(m.ID, time.Minute, 30).Status)
}

func TestCleanupRacingAReverifyDeletesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ih := newIDHarness(t)
	m := ih.start(`{` + endpoints + `,"types":["Patient"]}`)
	require.Equal(t, StatusCompleted, ih.drive(m.ID, time.Minute, 30).Status)
	ih.staging.onList = func() {
		_, err := ih.svc.Reverify(ctx, m.ID, decode[ReverifyRequest](t, `{"verify":"ids"}`))
		require.NoError(t, err)
	}
	_, err := ih.svc.Cleanup(ctx, m.ID, CleanupRequest{})
	require.ErrorContains(t, err, "migration_running")
	require.Empty(t, ih.staging.deleted, "the files the re-verify reads are kept")
	got := ih.get(m.ID)
	require.Nil(t, got.Cleanup)
	require.Equal(t, StatusVerifying, got.Status)
}

// TestVerifyIDsSavesItsCursorEveryFewSeconds: the cursor is saved every checkpointEvery of checking, not once per
// file: a quick check of three files writes the document once for its progress and once for its verdict, a slow
// one after every file.
func TestVerifyIDsSavesItsCursorEveryFewSeconds(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		perSearch  time.Duration
		progresses int
	}{{"quick", 0, 1}, {"slow", checkpointEvery, 3}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ih := newIDHarness(t)
			ih.dest.onSearch = func() { ih.clock.Advance(tc.perSearch) }
			m := ih.start(`{` + endpoints + `,"types":["Patient","Observation"],"verify":"ids"}`)
			verify := ih.untilVerifying(m.ID)
			require.Len(t, verify, 1)
			ih.store.set(func(h *hookStore) { h.docPuts = 0 })
			require.NoError(t, ih.svc.Verify(context.Background(), verify[0].Body))
			done := ih.get(m.ID)
			require.Equal(t, StatusCompleted, done.Status, "%+v", done.Error)
			require.Equal(t, 3, done.Verification.IDs.NextFile)
			ih.store.mu.Lock()
			puts := ih.store.docPuts
			ih.store.mu.Unlock()
			require.Equal(t, tc.progresses+1, puts, "progress saves, then the verdict")
		})
	}
}

// untilVerifying sweeps and runs the imports until the migration is verifying, and returns the verify-counts
// messages sent, not delivered.
func (h *harness) untilVerifying(id string) []bus.Message {
	h.t.Helper()
	var verify []bus.Message
	for range 10 {
		h.clock.Advance(time.Minute)
		h.poll()
		for _, msg := range h.bus.Take() {
			if msg.Queue == bus.QueueRunImport {
				require.NoError(h.t, h.svc.RunImport(context.Background(), msg.Body))
			} else {
				verify = append(verify, msg)
			}
		}
		if h.get(id).Status == StatusVerifying {
			break
		}
	}
	require.Equal(h.t, StatusVerifying, h.get(id).Status)
	return verify
}

// With history or deletes the export's lines count versions and stubs, not resources: more lines than the source
// holds is no change of the source, fewer still a loss, and an id deleted on the source but present in the
// destination a mismatch.
func TestJudgeRowWithVersions(t *testing.T) {
	t.Parallel()
	r := TypeRow{Type: "Patient", Source: 5, Exported: 9, Imported: 9, Destination: 5, Expected: 5, Versions: true}
	judgeRow(&r, VerifyModeCounts, false)
	require.Empty(t, r.Reason, r.Explanation)
	require.True(t, r.Match)
	require.Contains(t, r.Explanation, "older versions and deletion stubs")

	plain := TypeRow{Type: "Patient", Source: 5, Exported: 9, Imported: 9, Destination: 5, Expected: 5}
	judgeRow(&plain, VerifyModeCounts, false)
	require.NotEmpty(t, plain.Reason, "without versions, the same figures do not pass")
	require.Contains(t, plain.Explanation, "updated or deleted on the source since")

	short := TypeRow{Type: "Patient", Source: 5, Exported: 4, Imported: 4, Destination: 4, Expected: 5, Versions: true}
	judgeRow(&short, VerifyModeCounts, false)
	require.Equal(t, reasonExportShort, short.Reason)

	extra := TypeRow{Type: "Patient", Source: 5, Exported: 9, Imported: 9, Destination: 6, Expected: 5, Versions: true, Lines: 9, Checked: 7, Extra: 1}
	judgeRow(&extra, VerifyModeIDs, false)
	require.Equal(t, reasonDifferent, extra.Reason)
	require.Contains(t, extra.Explanation, "1 ids deleted on the source are still in the destination")
}

// With versions, the lines read cannot explain a destination short of the source: when it held nothing before,
// the shortfall is a loss in ids and full modes too.
func TestAShortDestinationIsALossWhateverTheIDsFound(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{VerifyModeIDs, VerifyModeFull, VerifyModeCounts} {
		r := TypeRow{Type: "Patient", Source: 2, Exported: 2, Imported: 2, Destination: 1, Expected: 2, Versions: true, Lines: 2, Checked: 2}
		judgeRow(&r, mode, false)
		require.Equal(t, reasonMissing, r.Reason, mode)
	}
	before := TypeRow{Type: "Patient", Source: 2, Exported: 2, Imported: 2, Destination: 4, DestinationBefore: 3, Expected: 5, Lines: 2, Checked: 2}
	judgeRow(&before, VerifyModeIDs, false)
	require.Empty(t, before.Reason, "with resources there before, an id found overwrote one: explained, not failed")
}

// A type the cutover's reconciliation left alone (the destination held resources of it before) says so and why.
func TestJudgeRowNamesATypeNotReconciled(t *testing.T) {
	t.Parallel()
	r := TypeRow{Type: "Patient", Source: 5, Exported: 5, Imported: 5, Destination: 7, DestinationBefore: 2, Expected: 7,
		NotReconciled: "the destination held 2 resources of the type before the migration"}
	judgeRow(&r, VerifyModeCounts, false)
	require.Empty(t, r.Reason, r.Explanation)
	require.Contains(t, r.Explanation, "not reconciled at the cutover (the destination held 2 resources")
}
