package main

import (
	"io"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// assess --watch posts the request, polls until the assessment ends, prints its Markdown report, and exits 1 when
// it is blocking (0 when ready); without --watch it prints the id and the command for the report.
func TestAssessWatchesAndExitsByTheVerdict(t *testing.T) {
	t.Parallel()
	for _, verdict := range []string{"ok", "warning", "blocking"} {
		t.Run(verdict, func(t *testing.T) {
			t.Parallel()
			var polls atomic.Int32
			srv, got := recorder(t, func(w http.ResponseWriter, r *http.Request) {
				switch {
				case r.Method == http.MethodPost && r.URL.Path == "/api/assessments":
					w.WriteHeader(http.StatusAccepted)
					_, _ = io.WriteString(w, `{"id":"a-1","status":"running","request":{"source":"http://s","destination":"http://d"}}`)
				case r.URL.Path == "/api/assessments/a-1" && polls.Add(1) < 3:
					_, _ = io.WriteString(w, `{"id":"a-1","status":"running"}`)
				case r.URL.Path == "/api/assessments/a-1":
					_, _ = io.WriteString(w, `{"id":"a-1","status":"completed","verdict":"`+verdict+`"}`)
				case r.URL.Path == "/api/assessments/a-1/report":
					_, _ = io.WriteString(w, "# Assessment a-1\n")
				default:
					w.WriteHeader(http.StatusNotFound)
				}
			})
			code, out, _, err := runCLI(t, "--url", srv.URL, "--interval", "1ms", "assess", "--source", "http://s", "--destination", "http://d", "--watch")
			require.NoError(t, err)
			want := 0
			if verdict == "blocking" {
				want = 1
			}
			require.Equal(t, want, code)
			require.Equal(t, "# Assessment a-1\n", out)
			reqs := got()
			require.JSONEq(t, `{"source":"http://s","destination":"http://d"}`, reqs[0].body)
			require.Equal(t, "text/markdown", reqs[len(reqs)-1].accept)
			require.Equal(t, int32(3), polls.Load())
		})
	}
	srv, _ := recorder(t, func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, `{"id":"a-2","status":"running","request":{"source":"http://s","destination":"http://d"}}`)
	})
	code, out, _, err := runCLI(t, "--url", srv.URL, "assess", "--source", "http://s", "--destination", "http://d")
	require.NoError(t, err)
	require.Equal(t, 0, code)
	require.Contains(t, out, "started assessment a-2 (http://s -> http://d)")
	require.Contains(t, out, "assessment a-2")
}
