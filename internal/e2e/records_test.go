package e2e

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/fhirsim"
	"github.com/fhir-migrator/fhir-migrator/internal/localstack"
)

// The sync tests judge from the simulators' own records (their job lists and their histories), never from the
// engine's document.

// requireEachExportImportedOnce judges the copy from the simulators' records alone: the source's export jobs,
// grouped by what they asked for (starting point and type: one window of the full copy, or one round's type), and
// the destination's import jobs. Every file an import read was written by a completed export and is read by one
// completed import only; in each group exactly one export's files were imported, each of them (a kick-off whose
// answer the handler never saved, killed in between, is exported again: that orphan's files are left alone), or
// none had any file to import. It answers how many groups were kicked off from syncing on (the rounds' exports;
// syncing is when the test saw the migration syncing).
func requireEachExportImportedOnce(t *testing.T, source, dest *fhirsim.Server, syncing time.Time) int {
	t.Helper()
	imported := map[string]int{}
	for _, imp := range dest.Stats().Imports {
		if imp.State != "completed" {
			continue
		}
		for _, in := range imp.Inputs {
			imported[in]++
		}
	}
	written := map[string]bool{}
	groups := map[string][]fhirsim.ExportJobStats{}
	rounds := map[string]bool{}
	for _, e := range source.Stats().Exports {
		q, err := url.ParseQuery(e.Query)
		require.NoError(t, err)
		key := q.Get("_since") + " " + q.Get("_type")
		groups[key] = append(groups[key], e)
		if !e.Created.Before(syncing) {
			rounds[key] = true
		}
		if e.State == "completed" {
			for _, f := range e.Output {
				written[f] = true
			}
		}
	}
	for f, n := range imported {
		require.True(t, written[f], "an import read %s, which no completed export wrote", f)
		require.Equal(t, 1, n, "%s imported %d times", f, n)
	}
	for key, exports := range groups {
		used := 0
		for _, e := range exports {
			var files, read int
			for _, f := range e.Output {
				if strings.Contains(f[strings.LastIndex(f, "/")+1:], "SearchParameter-") {
					continue // copied, not imported
				}
				files++
				if imported[f] > 0 {
					read++
				}
			}
			if read > 0 {
				used++
				require.Equal(t, files, read, "export from %q: every file imported", key)
			}
		}
		require.LessOrEqual(t, used, 1, "export from %q imported from %d jobs", key, used)
		if used == 0 {
			for _, e := range exports {
				require.Equal(t, "completed", e.State, "export from %q never completed", key)
			}
		}
	}
	return len(rounds)
}

// versionEntry is one version of a type's history listing.
type versionEntry struct {
	Method   string
	Resource json.RawMessage
}

// typeHistory lists every version of a type on a simulator, by Type/id/version.
func typeHistory(t *testing.T, base, typ string) map[string]versionEntry {
	t.Helper()
	out := map[string]versionEntry{}
	next := base + "/" + typ + "/_history?_count=1000&_sort=_lastUpdated"
	for next != "" {
		var b struct {
			Link []struct {
				Relation, URL string
			} `json:"link"`
			Entry []struct {
				Resource json.RawMessage `json:"resource"`
				Request  struct{ Method, URL string }
			} `json:"entry"`
		}
		require.NoError(t, localstack.GetJSON(t.Context(), base, next, &b))
		for _, e := range b.Entry {
			out[e.Request.URL] = versionEntry{Method: e.Request.Method, Resource: e.Resource}
		}
		next = ""
		for _, l := range b.Link {
			if l.Relation == "next" {
				next = l.URL
			}
		}
	}
	return out
}

// requireSameHistories compares every version of the types on both servers, resource by resource: the same
// versions, each with the same method and the same content (meta included). except names resources whose
// destination versions are the engine's own writes (repairs), compared by their current content only.
func requireSameHistories(t *testing.T, src, dst string, types []string, except map[string]bool) {
	t.Helper()
	for _, typ := range types {
		want, got := typeHistory(t, src, typ), typeHistory(t, dst, typ)
		for k := range except {
			for v := range want {
				if strings.HasPrefix(v, k+"/_history/") {
					delete(want, v)
				}
			}
			for v := range got {
				if strings.HasPrefix(v, k+"/_history/") {
					delete(got, v)
				}
			}
		}
		require.Equal(t, len(want), len(got), "%s: versions on the source and the destination", typ)
		for k, w := range want {
			g, ok := got[k]
			require.True(t, ok, "%s is not on the destination", k)
			require.Equal(t, w.Method, g.Method, k)
			require.JSONEq(t, string(w.Resource), string(g.Resource), k)
		}
	}
}
