package migration

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/store"
)

// docWrites wraps the engine's store and keeps, of the migration documents it writes, the first one out of
// planning (every window planned, none started) and the largest.
type docWrites struct {
	store.Store
	mu      sync.Mutex
	planned []byte
	largest []byte
}

func (s *docWrites) Put(ctx context.Context, name string, data []byte, etag string, md map[string]string) (string, error) {
	tag, err := s.Store.Put(ctx, name, data, etag, md)
	if err == nil && strings.HasPrefix(name, migrationPrefix) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.planned == nil && bytes.Contains(data, []byte(`"status":"`+StatusExporting+`"`)) {
			s.planned = bytes.Clone(data)
		}
		if len(data) > len(s.largest) {
			s.largest = data // never written to again: every save encodes a new document
		}
	}
	return tag, err
}

// storedBytes is the migration document as stored.
func storedBytes(t *testing.T, h *harness, id string) []byte {
	t.Helper()
	data, _, err := h.store.Get(context.Background(), docName(id))
	require.NoError(t, err)
	return data
}

// jobCounts counts a document's own jobs (its pages left out) by kind and state.
func jobCounts(t *testing.T, data []byte) map[string]int {
	t.Helper()
	var m Migration
	require.NoError(t, json.Unmarshal(data, &m))
	out := map[string]int{}
	for _, j := range m.Jobs {
		out[string(j.Kind)+" "+string(j.State)]++
	}
	return out
}

// TestWindowedDocumentSize bounds the stored document (its bytes as written to the store) of migrations planned
// and exported by BenchmarkWindowedDocument's run, on the in-memory store. The sizes are deterministic; none is a
// timing.
//
// queued: 500 windows and 100,000 files stay under 256 KiB with every window queued (right after planning) and
// with every export done and every import queued (the done exports moved to pages). The largest document written
// on the way, with every export running at once, is logged, not bounded.
//
// done: once every import is done, fewer than jobPageSize finished jobs stay in the document, the rest in pages,
// and it stays under 32 KiB. How many stay depends on when the last page was cut, so the size varies with the
// number of windows (from 1.6 KB to 21.5 KB between 16 and 250 windows). This runs on 64 windows (20.5 KB), not
// 500: every load of a migration decodes all of its pages, so driving 500 windows to the end takes minutes under
// the race detector.
func TestWindowedDocumentSize(t *testing.T) {
	t.Parallel()
	t.Run("queued", func(t *testing.T) {
		t.Parallel()
		const windows, limit = 500, 256 << 10
		writes := &docWrites{}
		h, m := manyWindowsExported(t, windows, func(c *Config) {
			writes.Store = c.Store
			c.Store = writes
		})
		require.Equal(t, 100_000, exportedFileCount(m))
		writes.mu.Lock()
		planned, largest := writes.planned, writes.largest
		writes.mu.Unlock()
		require.NotNil(t, planned, "planning ended")
		require.Equal(t, map[string]int{"export queued": windows}, jobCounts(t, planned), "every window queued right after planning")

		queued := storedBytes(t, h, m.ID)
		counts := jobCounts(t, queued)
		t.Logf("%d windows, %d files: the stored document is %d bytes with every window queued, "+
			"%d with every export done and every import queued (%v; at most %d, with %v)", windows, exportedFileCount(m), len(planned), len(queued), counts, len(largest), jobCounts(t, largest))
		assert.Less(t, len(planned), limit, "every window queued")
		assert.Less(t, len(queued), limit, "every export done, every import queued")
		assert.Equal(t, windows, counts["import queued"], "every import queued, in the document")
		assert.Less(t, counts["export done"], jobPageSize, "the finished exports moved to pages")
		delete(counts, "import queued")
		delete(counts, "export done")
		assert.Empty(t, counts, "nothing but queued imports and done exports")
	})
	t.Run("done", func(t *testing.T) {
		t.Parallel()
		const windows, limit = 64, 32 << 10
		h, m := manyWindowsExported(t, windows, nil)
		done := driveManyWindows(t, h, m.ID, windows)
		final := storedBytes(t, h, m.ID)
		counts := jobCounts(t, final)
		left := 0
		for _, n := range counts {
			left += n
		}
		t.Logf("%d windows, %d files: the stored document is %d bytes once done "+
			"(%d of %d jobs in %d pages, %v left in the document)", windows, exportedFileCount(m), len(final), len(done.Jobs)-left, len(done.Jobs), len(done.JobPages), counts)
		assert.Less(t, left, jobPageSize, "fewer finished jobs than a page stay in the document")
		assert.Less(t, len(final), limit, "done")
	})
}
