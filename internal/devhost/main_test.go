package devhost

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The test binary doubles as the custom handler: started by the host with DEVHOST_TEST_HANDLER=1 in its app
// settings, it relays every request to the test's recorder, which decides the answer.
func TestMain(m *testing.M) {
	if os.Getenv("DEVHOST_TEST_HANDLER") == "1" {
		os.Exit(runStandIn())
	}
	os.Exit(m.Run())
}

// startedEvent is what the stand-in reports once it listens.
type startedEvent struct {
	PID  int               `json:"pid"`
	Args []string          `json:"args"`
	Dir  string            `json:"dir"`
	Env  map[string]string `json:"env"`
}

// invocation is one request the stand-in received.
type invocation struct {
	Path     string      `json:"path"`
	RawPath  string      `json:"rawPath"` // the path as sent, escaped
	RawQuery string      `json:"rawQuery"`
	Method   string      `json:"method"`
	Host     string      `json:"host"`
	Header   http.Header `json:"header"`
	Body     string      `json:"body"`
}

// reply is the recorder's answer for the stand-in to give; Crash makes it exit without answering.
type reply struct {
	Status int               `json:"status"`
	Body   string            `json:"body"`
	Header map[string]string `json:"header"`
	Crash  bool              `json:"crash"`
}

var standInEnv = []string{"FUNCTIONS_CUSTOMHANDLER_PORT", "FUNCTIONS_CUSTOMHANDLER_WORKER_ID", "FUNCTIONS_APP_ROOT_PATH",
	"DEVHOST_URL", "MySetting"}

func runStandIn() int {
	recorder := os.Getenv("RECORDER_URL")
	if d, err := time.ParseDuration(os.Getenv("STANDIN_START_DELAY")); err == nil {
		time.Sleep(d)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:"+os.Getenv("FUNCTIONS_CUSTOMHANDLER_PORT"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "stand-in:", err)
		return 2
	}
	dir, _ := os.Getwd()
	ev := startedEvent{PID: os.Getpid(), Args: os.Args[1:], Dir: dir, Env: map[string]string{}}
	for _, k := range standInEnv {
		ev.Env[k] = os.Getenv(k)
	}
	raw, _ := json.Marshal(ev)
	resp, err := http.Post(recorder+"/started", "application/json", bytes.NewReader(raw))
	if err != nil {
		fmt.Fprintln(os.Stderr, "stand-in:", err)
		return 2
	}
	resp.Body.Close()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Path == "/" {
			http.NotFound(w, r)
			return
		}
		body, _ := io.ReadAll(r.Body)
		inv := invocation{Path: r.URL.Path, RawPath: r.URL.EscapedPath(), RawQuery: r.URL.RawQuery, Method: r.Method, Host: r.Host, Header: r.Header, Body: string(body)}
		raw, _ := json.Marshal(inv)
		resp, err := http.Post(recorder+"/invoke", "application/json", bytes.NewReader(raw))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		var rep reply
		if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		if rep.Crash {
			os.Exit(3)
		}
		for k, v := range rep.Header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(rep.Status)
		_, _ = io.WriteString(w, rep.Body)
	})}
	_ = srv.Serve(ln)
	return 0
}

// recorder is the test's side of the stand-in handler.
type recorder struct {
	srv *httptest.Server

	mu          sync.Mutex
	started     []startedEvent
	invocations []invocation
	answer      func(inv invocation) reply
}

func newRecorder(t *testing.T, answer func(inv invocation) reply) *recorder {
	t.Helper()
	rec := &recorder{answer: answer}
	rec.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/started":
			var ev startedEvent
			if err := json.NewDecoder(r.Body).Decode(&ev); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			rec.mu.Lock()
			rec.started = append(rec.started, ev)
			rec.mu.Unlock()
		case "/invoke":
			var inv invocation
			if err := json.NewDecoder(r.Body).Decode(&inv); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			rec.mu.Lock()
			rec.invocations = append(rec.invocations, inv)
			answer := rec.answer
			rec.mu.Unlock()
			rep := reply{Status: http.StatusOK, Body: `{"Outputs":{},"Logs":[],"ReturnValue":null}`}
			if answer != nil {
				rep = answer(inv)
			}
			_ = json.NewEncoder(w).Encode(rep)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(rec.srv.Close)
	return rec
}

func (r *recorder) startedEvents() []startedEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]startedEvent{}, r.started...)
}

// calls returns the invocations whose path is /{name} (or any, for "").
func (r *recorder) calls(path string) []invocation {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []invocation
	for _, inv := range r.invocations {
		if path == "" || inv.Path == path {
			out = append(out, inv)
		}
	}
	return out
}

// waitFor waits, with a generous timeout, until cond holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	require.Eventually(t, cond, 30*time.Second, 10*time.Millisecond, "waiting for %s", what)
}

type appSpec struct {
	hostJSON  string
	functions map[string]string // folder -> function.json
}

func writeApp(t *testing.T, spec appSpec) string {
	t.Helper()
	root := t.TempDir()
	hj := spec.hostJSON
	if hj == "" {
		hj = hostJSONWith(true, 16)
	}
	require.NoError(t, os.WriteFile(filepath.Join(root, "host.json"), []byte(hj), 0o644))
	for name, fj := range spec.functions {
		require.NoError(t, os.MkdirAll(filepath.Join(root, name), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(root, name, "function.json"), []byte(fj), 0o644))
	}
	return root
}

func hostJSONWith(forward bool, maxConcurrent int) string {
	return fmt.Sprintf(`{"version":"2.0","functionTimeout":"00:00:30",
 "customHandler":{"description":{"defaultExecutablePath":"bin/handler","workingDirectory":"","arguments":["--flag=%%MySetting%%"]},
  "enableForwardingHttpRequest":%t},
 "extensions":{"http":{"routePrefix":"api"},"serviceBus":{"maxConcurrentCalls":%d}}}`, forward, maxConcurrent)
}

const (
	fnQueueWork = `{"bindings":[{"type":"serviceBusTrigger","direction":"in","name":"msg","queueName":"work","connection":"ServiceBusConnection"}]}`
	fnTimerTick = `{"bindings":[{"type":"timerTrigger","direction":"in","name":"timer","schedule":"%TickSchedule%","runOnStartup":false}]}`
)

type hostOptions struct {
	spec        appSpec
	answer      func(inv invocation) reply
	maxDelivery int
	clock       func() time.Time
	settings    map[string]string
	// chaos hooks
	duplicateRate, dropRate float64
	chaosSeed               int64
}

type testHost struct {
	*Host
	rec  *recorder
	root string
	logs *syncBuffer
}

// syncBuffer collects the handler's output for failure reports.
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

func startHost(t *testing.T, opts hostOptions) *testHost {
	t.Helper()
	rec := newRecorder(t, opts.answer)
	root := writeApp(t, opts.spec)
	settings := map[string]string{
		"DEVHOST_TEST_HANDLER": "1",
		"RECORDER_URL":         rec.srv.URL,
		"MySetting":            "from-settings",
		"TickSchedule":         "*/1 * * * * *",
	}
	for k, v := range opts.settings {
		settings[k] = v
	}
	logs := &syncBuffer{}
	h, err := New(Config{
		AppRoot:          root,
		Settings:         settings,
		Addr:             "127.0.0.1:0",
		ExecutablePath:   os.Args[0],
		MaxDeliveryCount: opts.maxDelivery,
		HandlerStdout:    logs,
		Logger:           slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Clock:            opts.clock,
		DuplicateRate:    opts.duplicateRate,
		DropRate:         opts.dropRate,
		ChaosSeed:        opts.chaosSeed,
	})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	require.NoError(t, h.Start(ctx))
	t.Cleanup(func() {
		require.NoError(t, h.Close())
		if t.Failed() {
			t.Logf("host and handler log:\n%s", logs.String())
		}
	})
	return &testHost{Host: h, rec: rec, root: root, logs: logs}
}

// do calls the local host as a client would.
func (th *testHost) do(t *testing.T, method, path, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, th.URL()+path, strings.NewReader(body))
	require.NoError(t, err)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(raw)
}

// send posts a message through the admin API, as the handler's local sender does.
func (th *testHost) send(t *testing.T, queue, id, body, scheduled string) {
	t.Helper()
	raw, err := json.Marshal(map[string]string{"messageId": id, "body": body, "contentType": "application/json",
		"scheduledEnqueueTimeUtc": scheduled})
	require.NoError(t, err)
	resp, out := th.do(t, http.MethodPost, "/admin/servicebus/queues/"+queue+"/messages", string(raw))
	require.Equal(t, http.StatusCreated, resp.StatusCode, out)
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}
