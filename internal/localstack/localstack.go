// Package localstack assembles the local stack in-process: FHIR simulators on loopback, the local Functions host
// running the built handler, and the small HTTP calls that drive and inspect it. The end-to-end tests and the
// chaos runner both stand on it.
package localstack

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/fhir-migrator/fhir-migrator/internal/devhost"
	"github.com/fhir-migrator/fhir-migrator/internal/fhirsim"
)

// RepoRoot walks up from the working directory to the folder holding host.json and go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("working directory: %w", err)
	}
	for {
		_, e1 := os.Stat(filepath.Join(dir, "host.json"))
		_, e2 := os.Stat(filepath.Join(dir, "go.mod"))
		if e1 == nil && e2 == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("repository root (host.json and go.mod) not found above the working directory")
		}
		dir = parent
	}
}

// BuildHandler builds the handler of the repository at root into dir and returns the binary's path.
func BuildHandler(ctx context.Context, root, dir string) (string, error) {
	bin := filepath.Join(dir, "handler")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./handler")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build handler: %w\n%s", err, out)
	}
	return bin, nil
}

// ServeLoopback serves h on a 127.0.0.1 ephemeral port; the caller closes the server.
func ServeLoopback(h http.Handler) (*httptest.Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener = ln
	srv.Start()
	return srv, nil
}

// Simulator is one FHIR simulator served on loopback.
type Simulator struct {
	Sim *fhirsim.Server
	Srv *httptest.Server
	URL string
}

func (s *Simulator) close() {
	s.Srv.Close()
	s.Sim.Close()
}

func serveSimulator(opts []fhirsim.Option) (*Simulator, error) {
	sim := fhirsim.New(opts...)
	srv, err := ServeLoopback(sim)
	if err != nil {
		sim.Close()
		return nil, err
	}
	return &Simulator{Sim: sim, Srv: srv, URL: srv.URL}, nil
}

// Options shape one local stack.
type Options struct {
	// Storage is the Azurite connection string shared by the simulators and the handler.
	Storage string
	// RepoRoot holds host.json and the function folders; HandlerBinary is the built handler.
	RepoRoot      string
	HandlerBinary string
	// Source options follow the source defaults (API for FHIR, Storage, 50ms jobs).
	Source []fhirsim.Option
	// Dests holds one option list per destination simulator, each after the defaults (AHDS, Storage, 50ms jobs).
	Dests [][]fhirsim.Option
	// Settings override the handler's app settings (Settings).
	Settings map[string]string
	// Logs collects the handler's output (default: a new buffer); HandlerLog gets a copy when set.
	Logs       *SyncBuffer
	HandlerLog io.Writer
	// HostLog writes the local host's own log along with the handler's output (default: devhost's logger);
	// QuietHost discards it.
	HostLog   bool
	QuietHost bool
	// DuplicateRate, DropRate and ChaosSeed are the local host's chaos hooks.
	DuplicateRate float64
	DropRate      float64
	ChaosSeed     int64
	// Principal is the signed-in caller the local host puts on every request (devhost.Principal; nil: none).
	Principal *devhost.Principal
}

// Settings are the handler's app settings for a local stack on storage, with overrides applied.
func Settings(storage string, overrides map[string]string) map[string]string {
	s := map[string]string{
		"FUNCTIONS_WORKER_RUNTIME": "custom",
		"AzureWebJobsStorage":      storage,
		"StagingStorage":           storage,
		"AllowedHosts":             "127.0.0.1",
		"FhirCredential":           "dev",
		"PollSchedule":             "*/1 * * * * *",
		"PollInitial":              "200ms",
		"PollMax":                  "1s",
		"RetryDelay":               "1s",
		"RedriveAfter":             "10s",
		"LogLevel":                 "info",
	}
	maps.Copy(s, overrides)
	return s
}

// Stack is a running local stack; Close stops it.
type Stack struct {
	Source  *Simulator
	Dests   []*Simulator
	Host    *devhost.Host
	Logs    *SyncBuffer
	storage string
	mu      sync.Mutex
	closes  []func()
}

// Start serves the simulators and starts the local host with the handler; on error what started is stopped.
func Start(ctx context.Context, opts Options) (*Stack, error) {
	s := &Stack{Logs: opts.Logs}
	if s.Logs == nil {
		s.Logs = &SyncBuffer{}
	}
	if err := s.start(ctx, opts); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Stack) start(ctx context.Context, opts Options) error {
	s.storage = opts.Storage
	src, err := serveSimulator(append([]fhirsim.Option{fhirsim.WithFlavor(fhirsim.FlavorAPIForFHIR),
		fhirsim.WithStorage(opts.Storage), fhirsim.WithJobDelay(50 * time.Millisecond)}, opts.Source...))
	if err != nil {
		return fmt.Errorf("source simulator: %w", err)
	}
	s.Source = src
	s.closes = append(s.closes, src.close)
	for i, extra := range opts.Dests {
		if _, err := s.AddDestination(extra); err != nil {
			return fmt.Errorf("destination simulator %d: %w", i+1, err)
		}
	}
	var out io.Writer = s.Logs
	if opts.HandlerLog != nil {
		out = io.MultiWriter(s.Logs, opts.HandlerLog)
	}
	var logger *slog.Logger
	switch {
	case opts.HostLog:
		logger = slog.New(slog.NewTextHandler(out, nil))
	case opts.QuietHost:
		logger = slog.New(slog.DiscardHandler)
	}
	h, err := devhost.New(devhost.Config{
		AppRoot: opts.RepoRoot, Settings: Settings(opts.Storage, opts.Settings), Addr: "127.0.0.1:0",
		ExecutablePath: opts.HandlerBinary, HandlerStdout: out, Logger: logger,
		DuplicateRate: opts.DuplicateRate, DropRate: opts.DropRate, ChaosSeed: opts.ChaosSeed, Principal: opts.Principal,
	})
	if err != nil {
		return fmt.Errorf("local host: %w", err)
	}
	startCtx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	if err := h.Start(startCtx); err != nil {
		return fmt.Errorf("start local host: %w", err)
	}
	s.Host = h
	s.closes = append(s.closes, func() { _ = h.Close() })
	return nil
}

// AddDestination serves one more destination simulator (AHDS, the stack's storage, 50ms jobs, then extra), also
// while the stack runs; Close stops it with the rest.
func (s *Stack) AddDestination(extra []fhirsim.Option) (*Simulator, error) {
	d, err := serveSimulator(append([]fhirsim.Option{fhirsim.WithFlavor(fhirsim.FlavorAHDS),
		fhirsim.WithStorage(s.storage), fhirsim.WithJobDelay(50 * time.Millisecond)}, extra...))
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Dests = append(s.Dests, d)
	s.closes = append(s.closes, d.close)
	return d, nil
}

// Close stops the local host, then the simulators.
func (s *Stack) Close() {
	s.mu.Lock()
	closes := s.closes
	s.closes = nil
	s.mu.Unlock()
	for i := len(closes) - 1; i >= 0; i-- {
		closes[i]()
	}
}

// API calls the service's HTTP API at base (the local host), as Postman or curl would.
func API(ctx context.Context, base, method, path string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, base+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(resp.Body)
	return resp.StatusCode, raw, err
}

// Resources reads every resource of the given types (all types when none) from a simulator through its search
// API, keyed "Type/id".
func Resources(ctx context.Context, base string, types ...string) (map[string]json.RawMessage, error) {
	starts := []string{base + "?_count=1000"}
	if len(types) > 0 {
		starts = starts[:0]
		for _, typ := range types {
			starts = append(starts, base+"/"+typ+"?_count=1000")
		}
	}
	out := map[string]json.RawMessage{}
	for _, next := range starts {
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
			if err := GetJSON(ctx, base, next, &b); err != nil {
				return nil, err
			}
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
				if err := json.Unmarshal(e.Resource, &head); err != nil {
					return nil, fmt.Errorf("search entry of %s: %w", base, err)
				}
				out[head.ResourceType+"/"+head.ID] = e.Resource
			}
		}
	}
	return out, nil
}

// Count asks a simulator how many resources of typ match query (_summary=count).
func Count(ctx context.Context, base, typ string, query url.Values) (int64, error) {
	q := url.Values{}
	maps.Copy(q, query)
	q.Set("_summary", "count")
	var b struct {
		Total *int64 `json:"total"`
	}
	if err := GetJSON(ctx, base, base+"/"+typ+"?"+q.Encode(), &b); err != nil {
		return 0, err
	}
	if b.Total == nil {
		return 0, fmt.Errorf("count %s at %s: no total", typ, base)
	}
	return *b.Total, nil
}

// GetJSON reads u from the simulator at base with its dev token into into, retrying injected faults.
func GetJSON(ctx context.Context, base, u string, into any) error {
	var last error
	for range 10 {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+DevToken(base))
		req.Header.Set("Accept", "application/fhir+json")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			raw, rerr := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			switch {
			case rerr != nil:
				err = rerr
			case resp.StatusCode != http.StatusOK:
				err = fmt.Errorf("GET %s: HTTP %d: %s", u, resp.StatusCode, Truncate(raw))
			default:
				if err := json.Unmarshal(raw, into); err != nil {
					return fmt.Errorf("GET %s: decode: %w", u, err)
				}
				return nil
			}
		}
		last = err
		if err := Sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
	return last
}

// Write sends one FHIR write (PUT or POST of a resource, DELETE) to the simulator at base with its dev token and
// returns the answer's status and body; a test changes a source this way while a migration runs.
func Write(ctx context.Context, base, method, path string, resource []byte) (int, []byte, error) {
	var body io.Reader
	if resource != nil {
		body = bytes.NewReader(resource)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, body)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+DevToken(base))
	if resource != nil {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: read: %w", method, path, err)
	}
	return resp.StatusCode, raw, nil
}

// DevToken is the local development token for the simulator at base: its audience is base's origin.
func DevToken(base string) string {
	u, err := url.Parse(base)
	if err != nil {
		return fhirsim.DevToken(base)
	}
	return fhirsim.DevToken(u.Scheme + "://" + u.Host)
}

// Sleep waits d or until ctx ends.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Truncate shortens an answer body for an error message.
func Truncate(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "..."
	}
	return string(b)
}

// SyncBuffer collects output from several writers.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
