package migration

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/fhir"
)

// windowedRun starts a migration of one type planned into many windows, each export answering what its window
// holds, and returns it after planning.
func windowedRun(t *testing.T, n int) (*harness, *Migration) {
	t.Helper()
	obs := spread(n, time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC))
	h, src := newPlanningHarness(t, func(c *Config) { c.MaxExportsPerSource = 20 }, map[string][]time.Time{"Observation": obs})
	h.src.filesFor = func(r fhir.ExportRequest, typ string) []int64 {
		q := url.Values{"_lastUpdated": {"le" + fhir.FormatInstant(*r.Till)}}
		if r.Since != nil { // the first window starts at the beginning
			q.Add("_lastUpdated", "ge"+fhir.FormatInstant(*r.Since))
		}
		c, err := src.Count(context.Background(), typ, q)
		require.NoError(t, err)
		return []int64{c}
	}
	m := h.start(`{` + endpoints + `,"types":["Observation"],"windowTarget":2,"till":"2026-01-01T00:00:00Z","verify":"counts"}`)
	for range 20 {
		h.poll()
		if h.get(m.ID).Status != StatusPlanning {
			break
		}
		h.clock.Advance(10 * time.Second)
	}
	got := h.get(m.ID)
	require.Equal(t, StatusExporting, got.Status)
	return h, got
}

// storedDoc is the migration document as stored, without its pages read back.
func storedDoc(t *testing.T, h *harness, id string) *Migration {
	t.Helper()
	data, _, err := h.store.Get(context.Background(), docName(id))
	require.NoError(t, err)
	var m Migration
	require.NoError(t, json.Unmarshal(data, &m))
	return &m
}

// TestFinishedJobsMoveToPages: finished jobs leave the document in pages written once; every load sees every job,
// and a migration whose saves each lose one race still ends with every job, in its pages or its document.
func TestFinishedJobsMoveToPages(t *testing.T) {
	t.Parallel()
	h, m := windowedRun(t, 200)
	windows := len(exportWindows(m))
	require.Greater(t, windows, 2*jobPageSize, "enough windows for several pages")
	var done *Migration
	for range 200 {
		h.store.mu.Lock()
		h.store.conflictOnce = true
		h.store.mu.Unlock()
		h.deliver()
		if got := h.get(m.ID); got.Status.Terminal() {
			done = got
			break
		}
		h.clock.Advance(10 * time.Second)
		h.poll()
	}
	require.NotNil(t, done)
	require.Equal(t, StatusCompleted, done.Status, "%+v", done.Error)
	require.Len(t, done.Jobs, 2*windows, "every export and import, read back from the pages")
	h.store.mu.Lock()
	conflicts := h.store.conflicts
	h.store.mu.Unlock()
	require.Greater(t, conflicts, 10, "saves lost races, pages written before them included")

	stored := storedDoc(t, h, m.ID)
	require.NotEmpty(t, stored.JobPages)
	require.Less(t, len(stored.Jobs), jobPageSize, "the document keeps fewer finished jobs than a page")
	paged := 0
	seen := map[string]bool{}
	for _, p := range stored.JobPages {
		require.True(t, strings.HasPrefix(p.Name, "files/"+m.ID+"/jobs-"), p.Name)
		data, _, err := h.store.Get(context.Background(), p.Name)
		require.NoError(t, err)
		var jobs []*Job
		require.NoError(t, json.Unmarshal(data, &jobs))
		require.Len(t, jobs, p.Jobs)
		for _, j := range jobs {
			require.True(t, j.State.Finished(), j.ID)
			require.False(t, seen[j.ID], "%s paged twice", j.ID)
			seen[j.ID] = true
		}
		paged += len(jobs)
	}
	for _, j := range stored.Jobs {
		require.False(t, seen[j.ID], "%s both paged and in the document", j.ID)
	}
	require.Equal(t, 2*windows, paged+len(stored.Jobs))
}

// TestAPagedJobNeverChanges: a save that would change a paged job fails instead of losing the change.
func TestAPagedJobNeverChanges(t *testing.T) {
	t.Parallel()
	h, m := windowedRun(t, 80)
	done := h.drive(m.ID, 10*time.Second, 200)
	require.Equal(t, StatusCompleted, done.Status, "%+v", done.Error)
	require.NotEmpty(t, storedDoc(t, h, m.ID).JobPages)
	_, _, err := h.svc.update(context.Background(), m.ID, func(doc *Migration) (*effects, error) {
		doc.Jobs[0].Counts["Observation"]++
		return nil, nil
	})
	require.ErrorContains(t, err, "changed after it was paged")
	require.Equal(t, done.Jobs[0].Counts, h.get(m.ID).Jobs[0].Counts)
}

// TestAPageThatDoesNotMatchFailsTheLoad: a page missing jobs the document counts fails the load openly.
func TestAPageThatDoesNotMatchFailsTheLoad(t *testing.T) {
	t.Parallel()
	h, m := windowedRun(t, 80)
	h.drive(m.ID, 10*time.Second, 200)
	page := storedDoc(t, h, m.ID).JobPages[0]
	data, etag, err := h.store.Get(context.Background(), page.Name)
	require.NoError(t, err)
	load := func() error {
		svc, err := NewService(h.svc.cfg) // a fresh instance: nothing cached
		require.NoError(t, err)
		_, err = svc.Get(context.Background(), m.ID)
		return err
	}
	// The same number of jobs, one of them changed: the count alone would let it pass.
	var jobs []map[string]any
	require.NoError(t, json.Unmarshal(data, &jobs))
	jobs[0]["lastError"] = "rewritten"
	tampered, err := json.Marshal(jobs)
	require.NoError(t, err)
	etag, err = h.store.Store.Put(context.Background(), page.Name, tampered, etag, nil)
	require.NoError(t, err)
	require.ErrorContains(t, load(), "does not hold what it was written with")

	etag, err = h.store.Store.Put(context.Background(), page.Name, []byte(`[]`), etag, nil)
	require.NoError(t, err)
	require.ErrorContains(t, load(), "does not hold what it was written with")

	_, err = h.store.Store.Put(context.Background(), page.Name, data, etag, nil)
	require.NoError(t, err)
	require.NoError(t, load(), "the page as written loads")
}
