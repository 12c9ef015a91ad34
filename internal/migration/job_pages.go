package migration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/fhir-migrator/fhir-migrator/internal/store"
)

// Finished jobs leave the document in pages: once jobPageSize of them have finished, they are written as one blob,
// named by its content and written once, and the document keeps only the page's name. A finished job never changes
// again, so a page never needs rewriting, and the document of a migration of many windows holds only what is still
// moving (and fewer than jobPageSize finished jobs). Loading a migration reads its pages back, so the engine always
// sees every job; pages are cached by name, which is safe because a name is its content's hash.

// jobPageSize is how many finished jobs are moved out of the document at once.
const jobPageSize = 32

// jobPageCacheBytes bounds the pages a Service keeps in memory.
const jobPageCacheBytes = 64 << 20

// JobPage names a blob of finished jobs moved out of the document.
type JobPage struct {
	Name string `json:"name"`
	Jobs int    `json:"jobs"`
}

func jobPageName(id string, n int, data []byte) string {
	sum := sha256.Sum256(data)
	return fmt.Sprintf("%s%s/jobs-%04d-%x.json", filesPrefix, id, n, sum[:8])
}

// pageCache keeps decoded-ready page contents by name (immutable), evicting the oldest past its byte bound.
type pageCache struct {
	mu    sync.Mutex
	data  map[string][]byte
	order []string
	bytes int
}

func newPageCache() *pageCache { return &pageCache{data: map[string][]byte{}} }

func (c *pageCache) get(name string) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d, ok := c.data[name]
	return d, ok
}

func (c *pageCache) put(name string, d []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.data[name]; ok || len(d) > jobPageCacheBytes {
		return
	}
	c.data[name] = d
	c.order = append(c.order, name)
	c.bytes += len(d)
	for c.bytes > jobPageCacheBytes {
		old := c.order[0]
		c.order = c.order[1:]
		c.bytes -= len(c.data[old])
		delete(c.data, old)
	}
}

// readPages puts the jobs of m's pages in front of the document's own, and remembers them as paged (with their
// encoding, so that a save can prove none of them changed).
func (s *Service) readPages(ctx context.Context, m *Migration) error {
	if len(m.JobPages) == 0 {
		return nil
	}
	raws := make([][]byte, len(m.JobPages))
	errs := make([]error, len(m.JobPages))
	fanOut(len(m.JobPages), s.cfg.PollConcurrency, func(i int) {
		name := m.JobPages[i].Name
		if d, ok := s.pages.get(name); ok {
			raws[i] = d
			return
		}
		d, _, err := s.cfg.Store.Get(ctx, name)
		if err != nil {
			errs[i] = fmt.Errorf("read job page %s: %w", name, err)
			return
		}
		raws[i] = d
		s.pages.put(name, d)
	})
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("load migration %s: %w", m.ID, err)
	}
	var jobs []*Job
	m.paged = map[string][]byte{}
	for i, raw := range raws {
		// A page's name is its content's hash: a page changed since it was written (whatever it holds) is refused.
		if want := jobPageName(m.ID, i+1, raw); want != m.JobPages[i].Name {
			return fmt.Errorf("job page %s does not hold what it was written with (its content hashes to %s)", m.JobPages[i].Name, want)
		}
		var page []json.RawMessage
		if err := json.Unmarshal(raw, &page); err != nil {
			return fmt.Errorf("decode job page %s: %w", m.JobPages[i].Name, err)
		}
		if len(page) != m.JobPages[i].Jobs {
			return fmt.Errorf("job page %s holds %d jobs, the document says %d", m.JobPages[i].Name, len(page), m.JobPages[i].Jobs)
		}
		for _, r := range page {
			var j Job
			if err := json.Unmarshal(r, &j); err != nil {
				return fmt.Errorf("decode job page %s: %w", m.JobPages[i].Name, err)
			}
			if _, dup := m.paged[j.ID]; dup || m.job(j.ID) != nil {
				return fmt.Errorf("job page %s: job %s is listed twice", m.JobPages[i].Name, j.ID)
			}
			m.paged[j.ID] = r
			jobs = append(jobs, &j)
		}
	}
	m.Jobs = append(jobs, m.Jobs...)
	return nil
}

// encodeForSave is the document to store for m: paged jobs left out (each proven unchanged), and, when enough
// jobs finished since the last page, a new page written first. A page written by a save that then loses its race is
// never named by a document; it stays in the store like the staged files until cleanup.
func (s *Service) encodeForSave(ctx context.Context, m *Migration) ([]byte, error) {
	if err := s.pageRounds(ctx, m); err != nil {
		return nil, err
	}
	var live, finished []*Job
	for _, j := range m.Jobs {
		if raw, ok := m.paged[j.ID]; ok {
			now, err := json.Marshal(j)
			if err != nil {
				return nil, fmt.Errorf("encode job %s: %w", j.ID, err)
			}
			if !bytes.Equal(now, raw) {
				return nil, fmt.Errorf("migration %s: job %s changed after it was paged", m.ID, j.ID)
			}
			continue
		}
		live = append(live, j)
		if j.State.Finished() {
			finished = append(finished, j)
		}
	}
	if len(m.paged)+len(live) != len(m.Jobs) {
		return nil, fmt.Errorf("migration %s: a paged job is missing from the jobs", m.ID)
	}
	all := m.Jobs
	defer func() { m.Jobs = all }()
	if len(finished) >= jobPageSize {
		data, err := json.Marshal(finished)
		if err != nil {
			return nil, fmt.Errorf("encode job page: %w", err)
		}
		name := jobPageName(m.ID, len(m.JobPages)+1, data)
		if _, err := s.cfg.Store.Put(ctx, name, data, "", map[string]string{"kind": "jobs"}); err != nil && !errors.Is(err, store.ErrConflict) {
			return nil, fmt.Errorf("write job page %s: %w", name, err) // ErrConflict: written before, same content
		}
		s.pages.put(name, data)
		m.JobPages = append(m.JobPages, JobPage{Name: name, Jobs: len(finished)})
		if m.paged == nil {
			m.paged = map[string][]byte{}
		}
		var page []json.RawMessage
		if err := json.Unmarshal(data, &page); err != nil {
			return nil, fmt.Errorf("decode job page %s: %w", name, err)
		}
		for i, j := range finished {
			m.paged[j.ID] = page[i]
		}
		live = slicesWithout(live, finished)
	}
	m.Jobs = live
	return encodeDoc(m)
}

// slicesWithout is s less the jobs in drop (both in the same order).
func slicesWithout(s, drop []*Job) []*Job {
	gone := make(map[*Job]bool, len(drop))
	for _, j := range drop {
		gone[j] = true
	}
	out := make([]*Job, 0, len(s)-len(drop))
	for _, j := range s {
		if !gone[j] {
			out = append(out, j)
		}
	}
	return out
}
