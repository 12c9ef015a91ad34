// Package e2e runs whole migrations on the local stack: the real handler binary, started by the local Functions
// host through the real host.json and function.json files, against two FHIR simulators and a real Azurite.
package e2e

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/azuritetest"
	"github.com/fhir-migrator/fhir-migrator/internal/devhost"
	"github.com/fhir-migrator/fhir-migrator/internal/fhirsim"
	"github.com/fhir-migrator/fhir-migrator/internal/localstack"
)

var (
	azurite    *azuritetest.Azurite
	handlerBin string
	repoRoot   string
	stackSeq   atomic.Int64
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	flag.Parse()
	root, err := localstack.RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	repoRoot = root
	if testing.Short() {
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "e2e-handler-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	if handlerBin, err = localstack.BuildHandler(context.Background(), repoRoot, dir); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	a, err := azuritetest.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer a.Stop()
	azurite = a
	return m.Run()
}

// stack is one isolated local stack: its own simulators, local host, handler process and containers.
type stack struct {
	t       *testing.T
	host    *devhost.Host
	source  *httptest.Server
	dest    *httptest.Server
	srcSim  *fhirsim.Server
	destSim *fhirsim.Server
	logs    *localstack.SyncBuffer
	// docs is the container of the migration documents.
	docs string
}

type stackOptions struct {
	patients int
	settings map[string]string
	// destOptions are added to the destination simulator's options (faults, seed data); sourceOptions to the
	// source's.
	destOptions   []fhirsim.Option
	sourceOptions []fhirsim.Option
	// principal is the signed-in caller the local host puts on every request (s.host.SetPrincipal changes it).
	principal *devhost.Principal
}

func newStack(t *testing.T, opts stackOptions) *stack {
	t.Helper()
	if testing.Short() {
		t.Skip("stack-level test; run without -short")
	}
	if opts.patients == 0 {
		opts.patients = 10
	}
	settings := map[string]string{"MigrationContainer": fmt.Sprintf("docs-%d-%d", time.Now().UnixNano()%1e9, stackSeq.Add(1))}
	maps.Copy(settings, opts.settings)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	st, err := localstack.Start(ctx, localstack.Options{
		Storage: azurite.ConnectionString, RepoRoot: repoRoot, HandlerBinary: handlerBin,
		Source:   append([]fhirsim.Option{fhirsim.WithSeed(opts.patients, 7), fhirsim.WithRollover(500)}, opts.sourceOptions...),
		Dests:    [][]fhirsim.Option{opts.destOptions},
		Settings: settings, Principal: opts.principal,
	})
	require.NoError(t, err)
	s := &stack{t: t, host: st.Host, source: st.Source.Srv, dest: st.Dests[0].Srv, srcSim: st.Source.Sim,
		destSim: st.Dests[0].Sim, logs: st.Logs, docs: settings["MigrationContainer"]}
	t.Cleanup(func() {
		st.Close()
		if t.Failed() {
			t.Logf("handler log:\n%s", s.logs.String())
		}
	})
	return s
}

func serveLoopback(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	srv, err := localstack.ServeLoopback(h)
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	return srv
}

// api calls the service's HTTP API through the local host, as Postman or curl would.
func (s *stack) api(method, path string, body any) (int, []byte) {
	s.t.Helper()
	var raw []byte
	switch b := body.(type) {
	case nil:
	case string:
		raw = []byte(b)
	case []byte:
		raw = b
	default:
		var err error
		raw, err = json.Marshal(b)
		require.NoError(s.t, err)
	}
	status, answer, err := localstack.API(context.Background(), s.host.URL(), method, path, raw)
	require.NoError(s.t, err)
	return status, answer
}

// doc is the part of the migration document the tests read.
type doc struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Jobs   []struct {
		ID    string `json:"id"`
		Kind  string `json:"kind"`
		State string `json:"state"`
	} `json:"jobs"`
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	Notes []string `json:"notes"`
}

func (s *stack) start(req map[string]any) string {
	s.t.Helper()
	status, raw := s.api(http.MethodPost, "/api/migrations", req)
	require.Equal(s.t, http.StatusAccepted, status, string(raw))
	var d doc
	require.NoError(s.t, json.Unmarshal(raw, &d))
	require.NotEmpty(s.t, d.ID)
	return d.ID
}

// await polls the migration until it ends, calling during(d) on each poll, and returns the final document.
func (s *stack) await(id string, during func(d doc)) (doc, []byte) {
	s.t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		status, raw := s.api(http.MethodGet, "/api/migrations/"+id, nil)
		require.Equal(s.t, http.StatusOK, status, string(raw))
		var d doc
		require.NoError(s.t, json.Unmarshal(raw, &d))
		switch d.Status {
		case "completed", "failed", "canceled":
			return d, raw
		}
		if during != nil {
			during(d)
		}
		require.True(s.t, time.Now().Before(deadline), "migration %s still %s after 3 minutes:\n%s", id, d.Status, raw)
		time.Sleep(250 * time.Millisecond)
	}
}

// resources reads every resource of the given types from a simulator through its search API.
func resources(t *testing.T, base string, types ...string) map[string]json.RawMessage {
	t.Helper()
	out, err := localstack.Resources(t.Context(), base, types...)
	require.NoError(t, err)
	return out
}

func count(t *testing.T, base, typ string, query url.Values) int64 {
	t.Helper()
	n, err := localstack.Count(t.Context(), base, typ, query)
	require.NoError(t, err)
	return n
}
