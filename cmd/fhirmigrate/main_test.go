package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// fakeService answers like the migration service: a start, then documents that progress to a final status.
func fakeService(t *testing.T, final string) (*httptest.Server, *atomic.Value) {
	t.Helper()
	var gets atomic.Int32
	var lastStart atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/api/migrations":
			body, _ := io.ReadAll(r.Body)
			lastStart.Store(string(body))
			if strings.Contains(string(body), "Spaceship") {
				w.WriteHeader(http.StatusBadRequest)
				_, _ = io.WriteString(w, `{"error":{"code":"unknown_type","message":"Spaceship is not a type of the source","field":"types[0]"}}`)
				return
			}
			w.WriteHeader(http.StatusAccepted)
			_, _ = io.WriteString(w, `{"id":"m-1","status":"exporting","request":{"source":"http://s","destination":"http://d"},"jobs":[{"id":"export-system","kind":"export","state":"queued"}]}`)
		case r.Method == http.MethodGet && r.URL.Path == "/api/migrations/m-1":
			if gets.Add(1) < 3 {
				_, _ = io.WriteString(w, `{"id":"m-1","status":"exporting","jobs":[{"id":"export-system","kind":"export","state":"running"}]}`)
				return
			}
			_, _ = io.WriteString(w, `{"id":"m-1","status":"`+final+`","jobs":[{"id":"export-system","kind":"export","state":"done","counts":{"Patient":3}},{"id":"import-export-system-1","kind":"import","state":"done","counts":{"Patient":3}}],
				"verification":{"rows":[{"type":"Patient","source":3,"exported":3,"imported":3,"destination":3,"match":true}]},
				"error":`+map[bool]string{true: `null`, false: `{"code":"verification_mismatch","message":"Patient exported 3, destination has 2"}`}[final == "completed"]+`}`)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &lastStart
}

func TestStartAndWatchCompleted(t *testing.T) {
	t.Parallel()
	srv, lastStart := fakeService(t, "completed")
	var out bytes.Buffer
	code, err := run(context.Background(), []string{"--url", srv.URL, "--interval", "1ms", "start", "--watch",
		"--source", "http://s", "--destination", "http://d", "--types", "Patient,Observation", "--since", "2020-01-01T00:00:00Z"}, &out)
	require.NoError(t, err)
	require.Equal(t, 0, code)
	require.JSONEq(t, `{"source":"http://s","destination":"http://d","types":["Patient","Observation"],"since":"2020-01-01T00:00:00Z"}`, lastStart.Load().(string))
	text := out.String()
	require.Contains(t, text, "started migration m-1")
	require.Contains(t, text, "exports 0/1 done (1 running, 0 resources)")
	require.Contains(t, text, "exports 1/1 done (0 running, 3 resources)")
	require.Contains(t, text, "migration m-1: completed")
	require.Regexp(t, `Patient\s+3\s+3\s+3\s+0\s+0\s+3\s+ok`, text)
}

func TestStartWithHistoryAndDeletes(t *testing.T) {
	t.Parallel()
	srv, lastStart := fakeService(t, "completed")
	code, err := run(context.Background(), []string{"--url", srv.URL, "start", "--source", "http://s", "--destination", "http://d",
		"--history", "--deletes"}, io.Discard)
	require.NoError(t, err)
	require.Equal(t, 0, code)
	require.JSONEq(t, `{"source":"http://s","destination":"http://d","history":true,"deletes":true}`, lastStart.Load().(string))
}

func TestWatchFailedExitsNonZero(t *testing.T) {
	t.Parallel()
	srv, _ := fakeService(t, "failed")
	var out bytes.Buffer
	code, err := run(context.Background(), []string{"--url", srv.URL, "--interval", "1ms", "watch", "m-1"}, &out)
	require.Error(t, err)
	require.Equal(t, 1, code)
	require.Contains(t, out.String(), "verification_mismatch: Patient exported 3, destination has 2")
}

func TestStartRefusedShowsCodeAndField(t *testing.T) {
	t.Parallel()
	srv, _ := fakeService(t, "completed")
	code, err := run(context.Background(), []string{"--url", srv.URL, "start", "--source", "http://s", "--destination", "http://d", "--types", "Spaceship"}, io.Discard)
	require.Equal(t, 1, code)
	require.ErrorContains(t, err, "unknown_type: Spaceship is not a type of the source (field types[0])")
}

func TestUsage(t *testing.T) {
	t.Parallel()
	code, err := run(context.Background(), nil, io.Discard)
	require.Equal(t, 2, code)
	require.ErrorContains(t, err, "usage")
}

func TestIDIsOnePathSegment(t *testing.T) {
	t.Parallel()
	var got atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Store(r.Method + " " + r.URL.EscapedPath())
		_, _ = io.WriteString(w, `{"id":"m-1","status":"canceled"}`)
	}))
	t.Cleanup(srv.Close)
	code, err := run(context.Background(), []string{"--url", srv.URL, "cancel", "m-1/cleanup"}, io.Discard)
	require.NoError(t, err)
	require.Equal(t, 0, code)
	require.Equal(t, "DELETE /api/migrations/m-1%2Fcleanup", got.Load())
}

func TestActionsCallTheirEndpoints(t *testing.T) {
	t.Parallel()
	type call struct{ method, path, body string }
	var got []call
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, call{r.Method, r.URL.Path, string(body)})
		mu.Unlock()
		if strings.HasSuffix(r.URL.Path, "/cleanup") && !strings.Contains(string(body), `"dryRun":true`) {
			w.WriteHeader(http.StatusConflict)
			_, _ = io.WriteString(w, `{"error":{"code":"verification_not_passed","message":"send force"}}`)
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	}))
	t.Cleanup(srv.Close)
	runOK := func(args ...string) string {
		var out bytes.Buffer
		code, err := run(context.Background(), append([]string{"--url", srv.URL}, args...), &out)
		require.NoError(t, err)
		require.Equal(t, 0, code)
		return out.String()
	}
	require.Equal(t, "ok\n", runOK("report", "m-1"))
	runOK("report", "m-1", "--missing")
	runOK("verify", "m-1", "--verify", "ids")
	runOK("cleanup", "m-1", "--dry-run")
	code, err := run(context.Background(), []string{"--url", srv.URL, "cleanup", "m-1"}, io.Discard)
	require.Equal(t, 1, code)
	require.ErrorContains(t, err, "verification_not_passed")
	code, _ = run(context.Background(), []string{"--url", srv.URL, "verify"}, io.Discard)
	require.Equal(t, 2, code)

	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []call{
		{"GET", "/api/migrations/m-1/report", ""},
		{"GET", "/api/migrations/m-1/report/missing", ""},
		{"POST", "/api/migrations/m-1/verify", `{"verify":"ids"}`},
		{"POST", "/api/migrations/m-1/cleanup", `{"dryRun":true,"errorFiles":false,"force":false}`},
		{"POST", "/api/migrations/m-1/cleanup", `{"dryRun":false,"errorFiles":false,"force":false}`},
	}, got)
}

// A syncing migration's watch shows its rounds and lag until the cutover; cutover posts the switch.
func TestWatchShowsTheSyncAndCutover(t *testing.T) {
	t.Parallel()
	var gets atomic.Int32
	var cutovers atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/api/migrations/m-1/cutover":
			cutovers.Add(1)
			w.WriteHeader(http.StatusAccepted)
			_, _ = io.WriteString(w, `{"id":"m-1","status":"syncing"}`)
		case r.Method == http.MethodGet && r.URL.Path == "/api/migrations/m-1":
			switch gets.Add(1) {
			case 1:
				_, _ = io.WriteString(w, `{"id":"m-1","status":"syncing","sync":{"lagSeconds":754,"rounds":3}}`)
			case 2:
				_, _ = io.WriteString(w, `{"id":"m-1","status":"syncing","sync":{"lagSeconds":12,"rounds":4,"round":{"n":5,"final":true},"cutoverRequestedAt":"2026-12-02T10:00:00Z"}}`)
			default:
				_, _ = io.WriteString(w, `{"id":"m-1","status":"completed","sync":{"lagSeconds":3,"rounds":5},"cutover":{"at":"2026-12-02T10:00:09Z","lagSeconds":3}}`)
			}
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	var out bytes.Buffer
	code, err := run(context.Background(), []string{"--url", srv.URL, "cutover", "m-1"}, &out)
	require.NoError(t, err)
	require.Equal(t, 0, code)
	require.Equal(t, int32(1), cutovers.Load())

	out.Reset()
	code, err = run(context.Background(), []string{"--url", srv.URL, "--interval", "1ms", "watch", "m-1"}, &out)
	require.NoError(t, err)
	require.Equal(t, 0, code)
	text := out.String()
	require.Contains(t, text, "sync: 3 rounds, lag 12m0s")
	require.Contains(t, text, "sync: 4 rounds, lag 10s, final round 5 running, cutover requested")
	require.Contains(t, text, "cut over at 2026-12-02T10:00:09Z (lag 0s)")
}

// cutover --accept and repair post their bodies to their actions.
func TestCutoverAcceptAndRepair(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	seen := map[string]string{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen[r.Method+" "+r.URL.Path] = string(body)
		mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, `{"id":"m-1","status":"verifying"}`)
	}))
	defer srv.Close()
	for _, args := range [][]string{{"cutover", "m-1", "--accept", "refused-versions"}, {"repair", "m-1"},
		{"verify", "m-1", "--accept", "refused-versions"}} {
		var out bytes.Buffer
		code, err := run(context.Background(), append([]string{"--url", srv.URL}, args...), &out)
		require.NoError(t, err, args)
		require.Equal(t, 0, code, args)
	}
	mu.Lock()
	defer mu.Unlock()
	require.JSONEq(t, `{"accept":["refused-versions"]}`, seen["POST /api/migrations/m-1/cutover"])
	require.Contains(t, seen, "POST /api/migrations/m-1/repair")
	require.JSONEq(t, `{"accept":["refused-versions"]}`, seen["POST /api/migrations/m-1/verify"])
}
