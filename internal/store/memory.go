package store

import (
	"context"
	"maps"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// Memory is an in-memory Store with the same ETag semantics as Blob, for unit tests of logic.
type Memory struct {
	mu   sync.Mutex
	seq  int
	docs map[string]memDoc
}

type memDoc struct {
	data []byte
	etag string
	meta map[string]string
}

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory { return &Memory{docs: map[string]memDoc{}} }

// Get implements Store.
func (m *Memory) Get(_ context.Context, name string) ([]byte, string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, ok := m.docs[name]
	if !ok {
		return nil, "", ErrNotFound
	}
	return append([]byte(nil), d.data...), d.etag, nil
}

// Put implements Store.
func (m *Memory) Put(_ context.Context, name string, data []byte, etag string, metadata map[string]string) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, exists := m.docs[name]
	switch {
	case etag == "" && exists:
		return "", ErrConflict
	case etag != "" && (!exists || d.etag != etag):
		return "", ErrConflict
	}
	m.seq++
	tag := `"m` + strconv.Itoa(m.seq) + `"`
	m.docs[name] = memDoc{data: append([]byte(nil), data...), etag: tag, meta: maps.Clone(metadata)}
	return tag, nil
}

// ListPage implements Store: the marker is the last name of the previous page.
func (m *Memory) ListPage(ctx context.Context, prefix string, max int, marker string) ([]Item, string, error) {
	all, err := m.List(ctx, prefix)
	if err != nil {
		return nil, "", err
	}
	start := sort.Search(len(all), func(i int) bool { return all[i].Name > marker })
	end := min(start+max, len(all))
	next := ""
	if end < len(all) {
		next = all[end-1].Name
	}
	return all[start:end], next, nil
}

// List implements Store.
func (m *Memory) List(_ context.Context, prefix string) ([]Item, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var items []Item
	for name, d := range m.docs {
		if strings.HasPrefix(name, prefix) {
			items = append(items, Item{Name: name, ETag: d.etag, Metadata: maps.Clone(d.meta)})
		}
	}
	sort.Slice(items, func(i, j int) bool { return items[i].Name < items[j].Name })
	return items, nil
}
