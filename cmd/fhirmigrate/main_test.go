package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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

// A phase's rate and expected end are drawn only once its jobs of the full copy have run 30 s and moved 1% of the
// expected resources; a copy (SearchParameters) is not an import.
func TestRatesWaitForAMeasure(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 25, 10, 20, 0, 0, time.UTC)
	ago := func(s int) string { return now.Add(-time.Duration(s) * time.Second).Format(time.RFC3339) }
	type job struct {
		kind  string
		start int // seconds before now
		done  int64
		round int
	}
	frame := func(jobs ...job) (exports, imports string) {
		t.Helper()
		var js []string
		for i, j := range jobs {
			state, counts := "running", ""
			if j.done > 0 {
				state, counts = "done", fmt.Sprintf(`,"counts":{"Patient":%d}`, j.done)
			}
			js = append(js, fmt.Sprintf(`{"id":"j%d","kind":%q,"state":%q,"round":%d,"startedAt":%q%s}`, i, j.kind, state, j.round, ago(j.start), counts))
		}
		doc := `{"id":"m-1","status":"exporting","jobs":[` + strings.Join(js, ",") + `],"progress":{"exports":{"done":1,"total":2},"imports":{"done":0,"total":1},
			"estimate":{"expected":10000,"exported":5000,"imported":100,"exportRate":100,"importRate":0.8,
			"exportEnd":"` + now.Add(time.Minute).Format(time.RFC3339) + `","importEnd":"` + now.Add(3*time.Minute).Format(time.RFC3339) + `"}}}`
		var m migrationDoc
		require.NoError(t, json.Unmarshal([]byte(doc), &m))
		lines := m.progressBars(now, time.Minute)
		require.Len(t, lines, 4)
		return lines[1][strings.LastIndex(lines[1], "resources  ")+len("resources  "):], lines[2][strings.LastIndex(lines[2], "resources  ")+len("resources  "):]
	}
	for _, c := range []struct {
		name             string
		jobs             []job
		exports, imports string
	}{
		{"the exports' first 29 s", []job{{"export", 29, 5000, 0}, {"export", 29, 0, 0}}, "measuring", "measuring"},
		{"the exports' 30 s", []job{{"export", 30, 5000, 0}, {"export", 30, 0, 0}}, "100/s  ETA 1m0s", "measuring"},
		{"under 1% exported", []job{{"export", 600, 99, 0}, {"export", 600, 0, 0}}, "measuring", "measuring"},
		{"1% exported", []job{{"export", 600, 100, 0}, {"export", 600, 0, 0}}, "100/s  ETA 1m0s", "measuring"},
		{"only the copy imported", []job{{"export", 600, 5000, 0}, {"copy", 300, 100, 0}, {"import", 300, 0, 0}}, "100/s  ETA 1m0s", "measuring"},
		{"the imports' first seconds, the copy's long ago", []job{{"export", 600, 5000, 0}, {"copy", 300, 4, 0}, {"import", 29, 100, 0}}, "100/s  ETA 1m0s", "measuring"},
		{"a sync round's imports do not measure the copy's", []job{{"export", 600, 5000, 0}, {"import", 3000, 9000, 1}, {"import", 10, 0, 0}}, "100/s  ETA 1m0s", "measuring"},
		{"1% imported over 30 s", []job{{"export", 600, 5000, 0}, {"copy", 300, 4, 0}, {"import", 30, 100, 0}}, "100/s  ETA 1m0s", "0.8/s  ETA 3m0s"},
	} {
		exports, imports := frame(c.jobs...)
		require.Equal(t, c.exports, exports, c.name)
		require.Equal(t, c.imports, imports, c.name)
	}
}

// start answers with the migration planning its export windows, which it then watches.
func TestStartSaysItIsPlanning(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, `{"id":"m-1","status":"planning","request":{"source":"http://s","destination":"http://d"},"jobs":[],"planning":{"counts":0,"pending":[{"type":"*"}]}}`)
	}))
	t.Cleanup(srv.Close)
	var out bytes.Buffer
	code, err := run(context.Background(), []string{"--url", srv.URL, "start", "--source", "http://s", "--destination", "http://d"}, &out)
	require.NoError(t, err)
	require.Equal(t, 0, code)
	require.Equal(t, "started migration m-1 (http://s -> http://d): planning the export windows\n"+
		"follow it: fhirmigrate --url "+srv.URL+" watch m-1\n", out.String())
}
