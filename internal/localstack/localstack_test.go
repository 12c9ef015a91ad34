package localstack

import (
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/fhirsim"
)

func TestRepoRootHoldsHostJSON(t *testing.T) {
	t.Parallel()
	root, err := RepoRoot()
	require.NoError(t, err)
	require.FileExists(t, filepath.Join(root, "host.json"))
	require.FileExists(t, filepath.Join(root, "go.mod"))
}

func TestDevTokenUsesTheOrigin(t *testing.T) {
	t.Parallel()
	require.Equal(t, fhirsim.DevToken("http://127.0.0.1:8080"), DevToken("http://127.0.0.1:8080/Patient?_count=1"))
}

func TestResourcesAndCountReadASimulator(t *testing.T) {
	t.Parallel()
	sim := fhirsim.New(fhirsim.WithSeed(2, 7))
	t.Cleanup(sim.Close)
	srv, err := ServeLoopback(sim)
	require.NoError(t, err)
	t.Cleanup(srv.Close)

	all, err := Resources(t.Context(), srv.URL)
	require.NoError(t, err)
	patients, err := Resources(t.Context(), srv.URL, "Patient")
	require.NoError(t, err)
	require.Len(t, patients, 2)
	require.Greater(t, len(all), len(patients), "no type reads every type")
	for key := range patients {
		require.True(t, strings.HasPrefix(key, "Patient/"), key)
		require.Contains(t, all, key)
	}
	n, err := Count(t.Context(), srv.URL, "Patient", url.Values{})
	require.NoError(t, err)
	require.Equal(t, int64(2), n)
}

func TestGetJSONReportsAnErrorAnswer(t *testing.T) {
	t.Parallel()
	srv, err := ServeLoopback(http.NotFoundHandler())
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	var into map[string]any
	require.ErrorContains(t, GetJSON(t.Context(), srv.URL, srv.URL+"/Patient", &into), "HTTP 404")
}

func TestSettingsOverrideTheDefaults(t *testing.T) {
	t.Parallel()
	s := Settings("UseDevelopmentStorage=true", map[string]string{"LogLevel": "debug", "MigrationContainer": "docs"})
	require.Equal(t, "debug", s["LogLevel"])
	require.Equal(t, "docs", s["MigrationContainer"])
	require.Equal(t, "UseDevelopmentStorage=true", s["StagingStorage"])
	require.Equal(t, "custom", s["FUNCTIONS_WORKER_RUNTIME"])
}

func TestSyncBufferKeepsEveryWrite(t *testing.T) {
	t.Parallel()
	var b SyncBuffer
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() { fmt.Fprintf(&b, "line %d\n", i) })
	}
	wg.Wait()
	require.Len(t, strings.Split(strings.TrimSpace(b.String()), "\n"), 8)
}
