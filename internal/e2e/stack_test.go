// Package e2e runs whole migrations on the local stack: the real handler binary, started by the local Functions
// host through the real host.json and function.json files, against two FHIR simulators and a real Azurite.
package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/azuritetest"
	"github.com/fhir-migrator/fhir-migrator/internal/devhost"
	"github.com/fhir-migrator/fhir-migrator/internal/fhirsim"
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
	_, file, _, _ := runtime.Caller(0)
	repoRoot = filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
	if testing.Short() {
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "e2e-handler-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	handlerBin = filepath.Join(dir, "handler")
	build := exec.Command("go", "build", "-o", handlerBin, "./handler")
	build.Dir = repoRoot
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build handler:", err)
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
	logs    *syncBuffer
}

type stackOptions struct {
	patients int
	settings map[string]string
	// destOptions are added to the destination simulator's options (faults, seed data).
	destOptions []fhirsim.Option
}

func newStack(t *testing.T, opts stackOptions) *stack {
	t.Helper()
	if testing.Short() {
		t.Skip("stack-level test; run without -short")
	}
	if opts.patients == 0 {
		opts.patients = 10
	}
	s := &stack{t: t, logs: &syncBuffer{}}
	s.srcSim = fhirsim.New(fhirsim.WithFlavor(fhirsim.FlavorAPIForFHIR), fhirsim.WithStorage(azurite.ConnectionString),
		fhirsim.WithSeed(opts.patients, 7), fhirsim.WithJobDelay(50*time.Millisecond), fhirsim.WithRollover(500))
	s.destSim = fhirsim.New(append([]fhirsim.Option{fhirsim.WithFlavor(fhirsim.FlavorAHDS), fhirsim.WithStorage(azurite.ConnectionString),
		fhirsim.WithJobDelay(50 * time.Millisecond)}, opts.destOptions...)...)
	s.source = serveLoopback(t, s.srcSim)
	s.dest = serveLoopback(t, s.destSim)
	t.Cleanup(func() { s.srcSim.Close(); s.destSim.Close() })

	n := stackSeq.Add(1)
	settings := map[string]string{
		"FUNCTIONS_WORKER_RUNTIME": "custom",
		"AzureWebJobsStorage":      azurite.ConnectionString,
		"StagingStorage":           azurite.ConnectionString,
		"MigrationContainer":       fmt.Sprintf("docs-%d-%d", time.Now().UnixNano()%1e9, n),
		"AllowedHosts":             "127.0.0.1",
		"FhirCredential":           "dev",
		"PollSchedule":             "*/1 * * * * *",
		"PollInitial":              "200ms",
		"PollMax":                  "1s",
		"RetryDelay":               "1s",
		"RedriveAfter":             "10s",
		"LogLevel":                 "info",
	}
	for k, v := range opts.settings {
		settings[k] = v
	}
	h, err := devhost.New(devhost.Config{
		AppRoot:        repoRoot,
		Settings:       settings,
		Addr:           "127.0.0.1:0",
		ExecutablePath: handlerBin,
		HandlerStdout:  s.logs,
	})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	require.NoError(t, h.Start(ctx))
	s.host = h
	t.Cleanup(func() {
		_ = h.Close()
		if t.Failed() {
			t.Logf("handler log:\n%s", s.logs.String())
		}
	})
	return s
}

func serveLoopback(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := httptest.NewUnstartedServer(h)
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// api calls the service's HTTP API through the local host, as Postman or curl would.
func (s *stack) api(method, path string, body any) (int, []byte) {
	s.t.Helper()
	var rd io.Reader
	if body != nil {
		switch b := body.(type) {
		case string:
			rd = strings.NewReader(b)
		case []byte:
			rd = bytes.NewReader(b)
		default:
			raw, err := json.Marshal(b)
			require.NoError(s.t, err)
			rd = bytes.NewReader(raw)
		}
	}
	req, err := http.NewRequest(method, s.host.URL()+path, rd)
	require.NoError(s.t, err)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(s.t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(s.t, err)
	return resp.StatusCode, raw
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
	out := map[string]json.RawMessage{}
	for _, typ := range types {
		next := base + "/" + typ + "?_count=1000"
		for next != "" {
			var b struct {
				Entry []struct {
					Resource json.RawMessage `json:"resource"`
				} `json:"entry"`
				Link []struct {
					Relation string `json:"relation"`
					URL      string `json:"url"`
				} `json:"link"`
			}
			getJSON(t, base, next, &b)
			next = ""
			for _, l := range b.Link {
				if l.Relation == "next" {
					next = l.URL
				}
			}
			for _, e := range b.Entry {
				var head struct {
					ResourceType string `json:"resourceType"`
					ID           string `json:"id"`
				}
				require.NoError(t, json.Unmarshal(e.Resource, &head))
				out[head.ResourceType+"/"+head.ID] = e.Resource
			}
		}
	}
	return out
}

func count(t *testing.T, base, typ string, query url.Values) int64 {
	t.Helper()
	q := url.Values{}
	for k, v := range query {
		q[k] = v
	}
	q.Set("_summary", "count")
	var b struct {
		Total *int64 `json:"total"`
	}
	getJSON(t, base, base+"/"+typ+"?"+q.Encode(), &b)
	require.NotNil(t, b.Total)
	return *b.Total
}

func getJSON(t *testing.T, base, u string, into any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+devToken(base))
	req.Header.Set("Accept", "application/fhir+json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(raw))
	require.NoError(t, json.Unmarshal(raw, into))
}

// devToken is the local development token for a simulator: "dev." + base64url(audience).
func devToken(base string) string {
	u, _ := url.Parse(base)
	return "dev." + base64.RawURLEncoding.EncodeToString([]byte(u.Scheme+"://"+u.Host))
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
