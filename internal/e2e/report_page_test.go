package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/fhirsim"
	"github.com/fhir-migrator/fhir-migrator/internal/report"
)

// ScreenshotDir is where the report page tests leave their screenshots (README "Report page").
const screenshotDir = "test-output/report"

// pageDoc is the part of a migration document the report page shows as figures.
type pageDoc struct {
	ID           string    `json:"id"`
	Status       string    `json:"status"`
	Jobs         []pageJob `json:"jobs"`
	Verification *struct {
		Rows []struct {
			Type         string `json:"type"`
			Source       int64  `json:"source"`
			Exported     int64  `json:"exported"`
			Imported     int64  `json:"imported"`
			ImportErrors int64  `json:"importErrors"`
			Destination  int64  `json:"destination"`
		} `json:"rows"`
	} `json:"verification"`
	Error *struct {
		Code string `json:"code"`
	} `json:"error"`
}

type pageJob struct {
	ID     string           `json:"id"`
	Kind   string           `json:"kind"`
	State  string           `json:"state"`
	Counts map[string]int64 `json:"counts"`
}

// figures are what the page must show, by data-figure name, computed from the document as served.
func (d pageDoc) figures() map[string]string {
	f := map[string]string{"id": d.ID, "status": d.Status}
	if d.Error != nil {
		f["error.code"] = d.Error.Code
	}
	n := func(v int64) string { return strconv.FormatInt(v, 10) }
	if d.Verification != nil && len(d.Verification.Rows) > 0 {
		for _, r := range d.Verification.Rows {
			f[r.Type+".source"], f[r.Type+".exported"], f[r.Type+".imported"] = n(r.Source), n(r.Exported), n(r.Imported)
			f[r.Type+".importErrors"], f[r.Type+".destination"] = n(r.ImportErrors), n(r.Destination)
		}
		return f
	}
	sums := map[string]int64{}
	for _, j := range d.Jobs {
		f["job."+j.ID+".state"] = j.State
		if j.State != "done" {
			continue
		}
		for t, c := range j.Counts {
			key := t + ".imported"
			if j.Kind == "export" {
				key = t + ".exported"
			}
			sums[key] += c
		}
	}
	for k, v := range sums {
		f[k] = n(v)
	}
	return f
}

// browser is one headless Chromium (Debian's, installed by scripts/install-tools.sh) driven by chromedp.
func browser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	require.NoError(t, err, "chromium is installed by scripts/install-tools.sh")
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(1100, 900))
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	// Start the browser and its tab on this context, so that contexts derived from it share them.
	require.NoError(t, chromedp.Do(ctx))
	return ctx
}

// showReport opens the report page of migration id in the browser and checks it: the strict policy header, no
// console message of warning or error level, every figure equal to the document's; it leaves a screenshot named
// name and returns the page's text.
func (s *stack) showReport(ctx context.Context, id, name string) string {
	t := s.t
	t.Helper()
	url := s.host.URL() + "/api/migrations/" + id + "/report"
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	req.Header.Set("Accept", "text/html,application/xhtml+xml,*/*;q=0.8")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, report.ContentSecurityPolicy, resp.Header.Get("Content-Security-Policy"))
	require.True(t, strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html"))

	status, raw := s.api(http.MethodGet, "/api/migrations/"+id, nil)
	require.Equal(t, http.StatusOK, status)
	var d pageDoc
	require.NoError(t, json.Unmarshal(raw, &d))

	listen, stop := context.WithCancel(ctx)
	messages := chromedp.Console(listen)
	var problems []string
	collected := make(chan struct{})
	go func() {
		defer close(collected)
		for m, err := range messages {
			if err != nil {
				return
			}
			switch m.Type {
			case chromedp.ConsoleError, chromedp.ConsoleWarning, chromedp.ConsoleException:
				problems = append(problems, m.String())
			}
		}
	}()
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS("h1"))))
	shown, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]string](`Object.fromEntries([...document.querySelectorAll('[data-figure]')]
		.filter(e => !['note', 'estimate'].includes(e.getAttribute('data-figure')))
		.map(e => [e.getAttribute('data-figure'), e.textContent.trim()]))`))
	require.NoError(t, err)
	text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body")))
	require.NoError(t, err)
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	require.NoError(t, err)
	time.Sleep(300 * time.Millisecond) // late messages of the load, if any
	stop()
	<-collected
	require.Empty(t, problems, "the page renders without a console error or warning")
	for k, v := range d.figures() {
		require.Equal(t, v, shown[k], "figure %s of %s", k, name)
	}
	dir := filepath.Join(repoRoot, screenshotDir)
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, name+".png"), shot, 0o644))
	return text
}

// TestReportPageInABrowser renders the report page of a completed, a failed (ids missing in the destination) and
// a running migration in a real headless Chromium.
func TestReportPageInABrowser(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("stack-level test; run without -short")
	}
	ctx := browser(t)

	done := newStack(t, stackOptions{patients: 4})
	id := done.start(map[string]any{"source": done.source.URL, "destination": done.dest.URL, "verify": "ids"})
	final, raw := done.await(id, nil)
	require.Equal(t, "completed", final.Status, string(raw))
	text := done.showReport(ctx, id, "completed")
	require.Contains(t, text, "PASSED")

	faults, err := fhirsim.ParseFaults("import-drop=0.05")
	require.NoError(t, err)
	lost := newStack(t, stackOptions{patients: 8, destOptions: []fhirsim.Option{fhirsim.WithFaults(faults), fhirsim.WithFaultSeed(3)}})
	id = lost.start(map[string]any{"source": lost.source.URL, "destination": lost.dest.URL, "verify": "ids"})
	final, raw = lost.await(id, nil)
	require.Equal(t, "failed", final.Status, string(raw))
	text = lost.showReport(ctx, id, "failed")
	require.Contains(t, text, "FAILED: verification_mismatch")
	require.Contains(t, text, "Missing in the destination")

	running := newStack(t, stackOptions{patients: 4, sourceOptions: []fhirsim.Option{fhirsim.WithJobDelay(time.Minute)}})
	id = running.start(map[string]any{"source": running.source.URL, "destination": running.dest.URL, "types": []string{"Patient", "Observation"}})
	running.until(id, "an export running", func(d syncDoc) bool { return d.Status == "exporting" })
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, raw := running.api(http.MethodGet, "/api/migrations/"+id, nil)
		var d pageDoc
		require.NoError(t, json.Unmarshal(raw, &d))
		if slices.ContainsFunc(d.Jobs, func(j pageJob) bool { return j.State == "running" }) {
			break
		}
		require.True(t, time.Now().Before(deadline), "no export running after 30 s: %s", raw)
		time.Sleep(200 * time.Millisecond)
	}
	text = running.showReport(ctx, id, "running")
	require.Contains(t, text, "running: exporting")
	require.Contains(t, text, "Not verified yet")
}
