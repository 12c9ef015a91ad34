package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/creack/pty"
	"github.com/stretchr/testify/require"
)

// recorded is one migration document as watch received it, at the time the service served it.
type recorded struct {
	At       time.Time       `json:"at"`
	Note     string          `json:"note"`
	Document json.RawMessage `json:"document"`
}

// testdata/watch-2000-patients.json is a migration of 2,000 patients (206,991 resources) from its start to its
// end, as the service serves it: planning (a count throttled), six export windows, the SearchParameter copy, five
// imports, verification. Its estimates are the service's (internal/migration/estimate.go) at each time.
func loadRecording(t *testing.T, name string) []recorded {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	var rec []recorded
	require.NoError(t, json.Unmarshal(raw, &rec))
	require.NotEmpty(t, rec)
	return rec
}

// replay serves a recording: a start is answered with its first document, the n-th GET with the n-th document
// (the last once past the end). The clock reads the time the document served last was recorded at, so that
// watch draws what it drew then.
func replay(t *testing.T, rec []recorded) (string, func() time.Time) {
	t.Helper()
	var served, gets atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := "m-20261125-101500-3fa2c1"
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/api/migrations":
			w.WriteHeader(http.StatusAccepted)
			_, _ = w.Write(rec[0].Document)
		case r.Method == http.MethodGet && r.URL.Path == "/api/migrations/"+id:
			n := min(int(gets.Add(1))-1, len(rec)-1)
			served.Store(int32(n))
			_, _ = w.Write(rec[n].Document)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL, func() time.Time { return rec[served.Load()].At }
}

// ansi matches the redraw's codes: back up N lines (the previous frame), then clear from the line's start.
var redrawCodes = regexp.MustCompile(`(?:\x1b\[(\d+)A)?\r\x1b\[J`)

// frames splits what a terminal received into what came before the first frame, the frames' lines, and what came
// after the last frame's lines (the report); each redraw must back up over exactly the previous frame's lines.
func frames(t *testing.T, screen string, lastLines int) (string, [][]string, string) {
	t.Helper()
	require.NotContains(t, strings.ReplaceAll(screen, "\r\n", ""), "\n", "the terminal turns every newline into CRLF")
	screen = strings.ReplaceAll(screen, "\r\n", "\n")
	at := redrawCodes.FindAllStringSubmatchIndex(screen, -1)
	require.NotEmpty(t, at, "no frame drawn:\n%s", screen)
	before := screen[:at[0][0]]
	require.Equal(t, -1, at[0][2], "the first frame backs up over nothing")
	var out [][]string
	for i, m := range at {
		end := len(screen)
		if i+1 < len(at) {
			end = at[i+1][0]
		}
		body := strings.TrimSuffix(screen[m[1]:end], "\n")
		lines := strings.Split(body, "\n")
		if i > 0 {
			up, err := strconv.Atoi(screen[m[2]:m[3]])
			require.NoError(t, err)
			require.Equal(t, len(out[i-1]), up, "frame %d backs up over the previous frame's lines", i)
		}
		out = append(out, lines)
	}
	last := out[len(out)-1]
	require.GreaterOrEqual(t, len(last), lastLines)
	out[len(out)-1] = last[:lastLines]
	return before, out, strings.Join(last[lastLines:], "\n")
}

// On a terminal of 100 columns, `start --watch` replays a recorded migration: the start says it is planning,
// each document is a frame drawn in place, with a rate and expected end per phase only once measured, each phase's
// own end, full lines once the copy is over, and no line reaching the last column.
func TestWatchReplaysARecordedMigrationOnATerminal(t *testing.T) {
	t.Parallel()
	rec := loadRecording(t, "watch-2000-patients.json")
	url, clock := replay(t, rec)

	ptmx, tty, err := pty.Open()
	require.NoError(t, err)
	t.Cleanup(func() { _ = ptmx.Close() })
	const width = 100
	require.NoError(t, pty.Setsize(ptmx, &pty.Winsize{Rows: 40, Cols: width}))
	var screen bytes.Buffer
	var mu sync.Mutex
	read := make(chan struct{})
	go func() {
		defer close(read)
		buf := make([]byte, 4096)
		for {
			n, err := ptmx.Read(buf)
			mu.Lock()
			screen.Write(buf[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	require.True(t, isTerminal(tty))
	code, err := runAt(context.Background(), []string{"--url", url, "--interval", "1ms", "start", "--watch",
		"--source", "http://127.0.0.1:8081", "--destination", "http://127.0.0.1:8082"}, tty, clock)
	require.NoError(t, err)
	require.Equal(t, 0, code)
	require.NoError(t, tty.Close())
	select {
	case <-read:
	case <-time.After(5 * time.Second):
	}
	mu.Lock()
	out := screen.String()
	mu.Unlock()

	const id = "m-20261125-101500-3fa2c1"
	want := [][]string{
		{ // 10:15:00 planning, nothing counted yet
			id + "  planning  (watching 0s)",
			"planning the export windows: 0 count(s) made, 1 range(s) pending",
		},
		{ // 10:15:06 planning, a count throttled: the line is longer than the terminal, cut before its last column
			id + "  planning  (watching 6s)",
			"planning the export windows: 6 count(s) made, 1 range(s) pending; failed 1 time(s) in a row: count ",
		},
		{ // 10:15:20 the SearchParameter window (4 resources) exported 4 s after the exports started: the service's
			// rate, 0.8/s, would put the end 71 h away
			id + "  exporting  (watching 20s)",
			"exports  [------------------------]   0%  1/6 windows  4/206991 resources  measuring",
			"imports  [------------------------]   0%  0/0 jobs  0/206991 resources  measuring",
			"         1 of 6 windows exported, 0 of 206991 resources imported",
		},
		{ // 10:15:30 19% exported, but in the exports' first 15 s; of the imports only the SearchParameter copy
			// has moved (4 of 206,991 in 3 s: the service's 1/s would end in 57h29m47s)
			id + "  exporting  (watching 30s)",
			"exports  [####--------------------]  19%  2/6 windows  40004/206991 resources  measuring",
			"imports  [------------------------]   0%  0/1 jobs  4/206991 resources  measuring",
			"         2 of 6 windows exported, 4 of 206991 resources imported",
		},
		{ // 10:15:50 the exports are measured (35 s, 64%): 131,991 in 35 s, the 75,000 left in 19.9 s; the imports
			// have moved 20% in 21 s only
			id + "  exporting  (watching 50s)",
			"exports  [###############---------]  64%  5/6 windows  131991/206991 resources  3771/s  ETA 20s",
			"imports  [####--------------------]  20%  2/4 jobs  42004/206991 resources  measuring",
			"         5 of 6 windows exported, 42004 of 206991 resources imported",
		},
		{ // 10:16:10 both measured, each with its own end: exports 75,000 left at 2,399.8/s (31.25 s), imports
			// 150,000 left at 1,295.25/s (115.8 s)
			id + "  exporting  (watching 1m10s)",
			"exports  [###############---------]  64%  5/6 windows  131991/206991 resources  2400/s  ETA 31s",
			"imports  [######------------------]  28%  3/4 jobs  56991/206991 resources  1295/s  ETA 1m56s",
			"         5 of 6 windows exported, 56991 of 206991 resources imported",
		},
		{ // 10:16:40 every window exported (at 10:16:20): the exports are done; imports 75,000 left at 1,783.7/s
			id + "  importing  (watching 1m40s)",
			"exports  [########################] 100%  6/6 windows  206991/206991 resources  done",
			"imports  [###############---------]  64%  4/5 jobs  131991/206991 resources  1784/s  ETA 42s",
			"         6 of 6 windows exported, 131991 of 206991 resources imported",
		},
		{ // 10:17:05 verifying: no estimate any more, full lines all the same
			id + "  verifying  (watching 2m5s)",
			"exports  [########################] 100%  6/6 windows  206991 resources  done",
			"imports  [########################] 100%  5/5 jobs  206991/206991 resources  done",
		},
		{ // 10:17:11 completed
			id + "  completed  (watching 2m11s)",
			"exports  [########################] 100%  6/6 windows  206991 resources  done",
			"imports  [########################] 100%  5/5 jobs  206991/206991 resources  done",
		},
	}
	require.Len(t, rec, len(want), "a frame per recorded document")
	before, got, report := frames(t, out, len(want[len(want)-1]))
	require.Equal(t, "started migration "+id+" (http://127.0.0.1:8081 -> http://127.0.0.1:8082): planning the export windows\n", before)
	require.Len(t, got, len(want), "a frame per document:\n%s", out)
	for i := range want {
		require.Equal(t, want[i], got[i], "frame %d (%s): %s", i, rec[i].At.Format(time.TimeOnly), rec[i].Note)
		for _, l := range got[i] {
			require.Less(t, utf8.RuneCountInString(l), width, "frame %d: no line reaches the last column: %q", i, l)
			require.NotContains(t, l, "\x1b", "frame %d", i)
		}
	}
	require.Contains(t, report, "migration "+id+": completed")
	require.Regexp(t, `Observation\s+150000\s+150000\s+150000\s+0\s+0\s+150000\s+150000\s+150000\s+0\s+ok`, report)
	require.Contains(t, report, "cleanup: done, 11 staged file(s), 187654321 bytes in container migration-"+id)

	// Not a terminal: plain lines, no escape codes, a line whenever the progress changes.
	url, clock = replay(t, rec)
	var plain bytes.Buffer
	require.False(t, isTerminal(&plain))
	code, err = runAt(context.Background(), []string{"--url", url, "--interval", "1ms", "watch", id}, &plain, clock)
	require.NoError(t, err)
	require.Equal(t, 0, code)
	require.NotContains(t, plain.String(), "\x1b[")
	require.Contains(t, plain.String(), "[  30s] exporting   exports 2/6 done (4 running, 40004 resources)  imports 0/1 done (1 running, 0 resources)  copies 1/1 done (0 running, 4 resources)\n")
	require.Contains(t, plain.String(), "[ 131s] completed   exports 6/6 done (0 running, 206991 resources)  imports 5/5 done (0 running, 206987 resources)  copies 1/1 done (0 running, 4 resources)\n")
}

// A recording is what the service served: each document's estimate is the service's at the time it was recorded.
func TestRecordingIsConsistent(t *testing.T) {
	t.Parallel()
	for _, r := range loadRecording(t, "watch-2000-patients.json") {
		var m migrationDoc
		require.NoError(t, json.NewDecoder(bytes.NewReader(r.Document)).Decode(&m))
		if m.Progress == nil || m.Progress.Estimate == nil {
			continue
		}
		e := m.Progress.Estimate
		var exported, imported int64
		for _, j := range m.Jobs {
			if j.State != "done" {
				continue
			}
			for _, n := range j.Counts {
				if j.Kind == "export" {
					exported += n
				} else {
					imported += n
				}
			}
		}
		require.Equal(t, exported, e.Exported, r.Note)
		require.Equal(t, imported, e.Imported, r.Note)
		require.Equal(t, int64(206991), e.Expected, r.Note)
		if e.ExportEnd != nil && e.ExportRate > 0 && e.Exported < e.Expected {
			left := time.Duration(float64(e.Expected-e.Exported) / e.ExportRate * float64(time.Second))
			require.WithinDuration(t, r.At.Add(left), *e.ExportEnd, time.Millisecond, r.Note)
		}
	}
}
