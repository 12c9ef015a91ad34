package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/stretchr/testify/require"
)

// On a terminal, watch draws a bar per phase with its rate and expected end, redrawn in place as they move.
func TestWatchDrawsBarsOnATerminal(t *testing.T) {
	t.Parallel()
	var gets atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := gets.Add(1)
		if n > 3 {
			_, _ = io.WriteString(w, `{"id":"m-1","status":"completed","progress":{"exports":{"done":4,"total":4},"imports":{"done":4,"total":4}}}`)
			return
		}
		end := time.Now().Add(time.Duration(400-100*n) * time.Second).UTC().Format(time.RFC3339)
		_, _ = fmt.Fprintf(w, `{"id":"m-1","status":"exporting","progress":{"exports":{"done":%d,"total":4},"imports":{"done":%d,"total":4},
			"estimate":{"expected":400,"exported":%d,"imported":%d,"exportRate":%d,"importRate":%d,"exportEnd":%q,"importEnd":%q,"basis":"%d of 4 windows exported"}}}`,
			n, n-1, 100*n, 100*(n-1), 10*n, 5*n, end, end, n)
	}))
	t.Cleanup(srv.Close)

	ptmx, tty, err := pty.Open()
	require.NoError(t, err)
	t.Cleanup(func() { _ = ptmx.Close() })
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
	code, err := run(context.Background(), []string{"--url", srv.URL, "--interval", "1ms", "watch", "m-1"}, tty)
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

	bars := regexp.MustCompile(`exports  \[(#*)(-*)\]\s+(\d+)%.*? (\d+)/s  ETA (\S+)`).FindAllStringSubmatch(out, -1)
	require.GreaterOrEqual(t, len(bars), 3, "a frame per poll:\n%s", out)
	require.Equal(t, "25", bars[0][3])
	require.Equal(t, "50", bars[1][3])
	require.Equal(t, "75", bars[2][3])
	require.Less(t, len(bars[0][1]), len(bars[2][1]), "the bar grows")
	require.NotEqual(t, bars[0][4], bars[2][4], "the rate moves")
	require.NotEqual(t, bars[0][5], bars[2][5], "the ETA moves")
	require.Contains(t, out, "\x1b[", "frames are redrawn in place")
	require.Contains(t, out, "imports  [")

	// Not a terminal: plain lines, no escape codes.
	gets.Store(0)
	var plain bytes.Buffer
	require.False(t, isTerminal(&plain))
	_, err = run(context.Background(), []string{"--url", srv.URL, "--interval", "1ms", "watch", "m-1"}, &plain)
	require.NoError(t, err)
	require.NotContains(t, plain.String(), "\x1b[")
}
