package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/azuritetest"
	"github.com/fhir-migrator/fhir-migrator/internal/store"
)

var azurite *azuritetest.Azurite

func TestMain(m *testing.M) { azuritetest.Main(m, &azurite) }

// stores returns each Store implementation over a fresh namespace: the same contract must hold for both.
func stores(t *testing.T) map[string]store.Store {
	t.Helper()
	ctx := context.Background()
	client, err := azurite.Client()
	require.NoError(t, err)
	name := fmt.Sprintf("docs-%s", sanitize(t.Name()))
	b, err := store.NewBlob(ctx, client, name)
	require.NoError(t, err)
	// A second NewBlob on an existing container must work too (the handler restarts).
	_, err = store.NewBlob(ctx, client, name)
	require.NoError(t, err)
	return map[string]store.Store{"blob": b, "memory": store.NewMemory()}
}

func sanitize(s string) string {
	out := make([]byte, 0, len(s))
	for _, c := range []byte(s) {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			out = append(out, c)
		case c >= 'A' && c <= 'Z':
			out = append(out, c+'a'-'A')
		}
	}
	if len(out) > 40 {
		out = out[len(out)-40:]
	}
	return string(out)
}

func TestETagSemantics(t *testing.T) {
	t.Parallel()
	for kind, s := range stores(t) {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			_, _, err := s.Get(ctx, "migrations/a.json")
			require.ErrorIs(t, err, store.ErrNotFound)

			tag1, err := s.Put(ctx, "migrations/a.json", []byte(`{"v":1}`), "", map[string]string{"status": "exporting"})
			require.NoError(t, err)
			require.NotEmpty(t, tag1)

			_, err = s.Put(ctx, "migrations/a.json", []byte(`{"v":9}`), "", nil)
			require.ErrorIs(t, err, store.ErrConflict, "create-only must not overwrite")

			tag2, err := s.Put(ctx, "migrations/a.json", []byte(`{"v":2}`), tag1, map[string]string{"status": "completed"})
			require.NoError(t, err)
			require.NotEqual(t, tag1, tag2)

			_, err = s.Put(ctx, "migrations/a.json", []byte(`{"v":3}`), tag1, nil)
			require.ErrorIs(t, err, store.ErrConflict, "stale ETag must lose")

			_, err = s.Put(ctx, "migrations/missing.json", []byte(`{}`), tag2, nil)
			require.ErrorIs(t, err, store.ErrConflict, "If-Match on a missing document")

			data, tag, err := s.Get(ctx, "migrations/a.json")
			require.NoError(t, err)
			require.JSONEq(t, `{"v":2}`, string(data))
			require.Equal(t, tag2, tag)

			_, err = s.Put(ctx, "hosts/x.json", []byte(`{}`), "", nil)
			require.NoError(t, err)
			items, err := s.List(ctx, "migrations/")
			require.NoError(t, err)
			require.Len(t, items, 1)
			require.Equal(t, "migrations/a.json", items[0].Name)
			require.Equal(t, "completed", items[0].Metadata["status"])
			require.Equal(t, tag2, items[0].ETag)
		})
	}
}

// TestConcurrentWritersLoseNothing runs read-modify-write loops from many goroutines on one document; with
// If-Match and retry on conflict, every increment must survive.
func TestConcurrentWritersLoseNothing(t *testing.T) {
	t.Parallel()
	for kind, s := range stores(t) {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			_, err := s.Put(ctx, "counter.json", []byte(`{"n":0,"by":{}}`), "", nil)
			require.NoError(t, err)

			const writers, each = 6, 8
			var wg sync.WaitGroup
			errs := make(chan error, writers)
			for w := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range each {
						if err := increment(ctx, s, fmt.Sprintf("w%d", w)); err != nil {
							errs <- err
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				require.NoError(t, err)
			}
			data, _, err := s.Get(ctx, "counter.json")
			require.NoError(t, err)
			var doc struct {
				N  int            `json:"n"`
				By map[string]int `json:"by"`
			}
			require.NoError(t, json.Unmarshal(data, &doc))
			require.Equal(t, writers*each, doc.N)
			for w := range writers {
				require.Equal(t, each, doc.By[fmt.Sprintf("w%d", w)])
			}
		})
	}
}

func increment(ctx context.Context, s store.Store, who string) error {
	for range 200 {
		data, tag, err := s.Get(ctx, "counter.json")
		if err != nil {
			return err
		}
		var doc struct {
			N  int            `json:"n"`
			By map[string]int `json:"by"`
		}
		if err := json.Unmarshal(data, &doc); err != nil {
			return err
		}
		doc.N++
		doc.By[who]++
		out, _ := json.Marshal(doc)
		_, err = s.Put(ctx, "counter.json", out, tag, nil)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		return err
	}
	return fmt.Errorf("%s: too many conflicts", who)
}

// TestListPageWalksEveryDocumentOnce: pages of at most max documents, in name order, with their metadata, until
// the marker runs out; other prefixes stay out.
func TestListPageWalksEveryDocumentOnce(t *testing.T) {
	t.Parallel()
	for kind, s := range stores(t) {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			for i := range 7 {
				_, err := s.Put(ctx, fmt.Sprintf("migrations/m-%02d.json", i), []byte(`{}`), "", map[string]string{"status": fmt.Sprint(i)})
				require.NoError(t, err)
			}
			_, err := s.Put(ctx, "reports/r.md", []byte(`x`), "", nil)
			require.NoError(t, err)
			var names []string
			marker, pages := "", 0
			for {
				items, next, err := s.ListPage(ctx, "migrations/", 3, marker)
				require.NoError(t, err)
				require.LessOrEqual(t, len(items), 3)
				for _, it := range items {
					names = append(names, it.Name)
					require.NotEmpty(t, it.Metadata["status"])
				}
				pages++
				if next == "" {
					break
				}
				marker = next
			}
			require.Equal(t, 3, pages)
			require.Len(t, names, 7)
			require.Equal(t, "migrations/m-00.json", names[0])
			require.Equal(t, "migrations/m-06.json", names[6])
		})
	}
}
