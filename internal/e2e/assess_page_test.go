package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/assess"
	"github.com/fhir-migrator/fhir-migrator/internal/fhirsim"
	"github.com/fhir-migrator/fhir-migrator/internal/report"
)

// assessmentFigures are what the assessment's page must show, by data-figure name, computed from the document as
// served: each item's status, the counts of each status, each type's figures.
func assessmentFigures(a *assess.Assessment) map[string]string {
	f := map[string]string{"id": a.ID, "status": string(a.Status), "verdict": assess.VerdictText(a),
		"source": a.Request.Source, "destination": a.Request.Destination}
	n := map[assess.Level]int{}
	for _, it := range a.Items {
		f["item."+it.Code+".status"] = strings.ToUpper(string(it.Status))
		f["item."+it.Code+".detail"] = it.Detail
		n[it.Status]++
	}
	f["items.ok"], f["items.warning"], f["items.blocking"] = fmt.Sprint(n[assess.OK]), fmt.Sprint(n[assess.Warning]), fmt.Sprint(n[assess.Blocking])
	for _, t := range a.Types {
		f["type."+t.Type+".live"] = fmt.Sprint(t.Live)
		f["type."+t.Type+".versions"] = "—"
		if t.Versions != nil {
			f["type."+t.Type+".versions"] = fmt.Sprint(*t.Versions)
		}
		if t.DestinationCounted {
			f["type."+t.Type+".destination"] = fmt.Sprint(t.Destination)
		}
	}
	if a.Plan != nil {
		for _, w := range a.Plan.Windows {
			f["window."+w.ID] = fmt.Sprint(w.Planned)
		}
	}
	if e := a.Estimate; e != nil {
		f["estimate.total"] = assess.DurationText(e.TotalSeconds)
		f["estimate.copy"] = assess.DurationText(e.CopySeconds)
		f["estimate.staging"] = assess.SizeText(e.StagingBytes)
	}
	return f
}

// showAssessment opens the page of assessment id in the browser and checks it as showReport checks the migration's:
// the strict policy header, no console message of warning or error level, every figure equal to the document's
// (each item's status among them); it leaves a screenshot named name and returns the page's text.
func (s *stack) showAssessment(ctx context.Context, id, name string) string {
	t := s.t
	t.Helper()
	url := s.host.URL() + "/api/assessments/" + id + "/report"
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	req.Header.Set("Accept", "text/html,application/xhtml+xml,*/*;q=0.8")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, report.ContentSecurityPolicy, resp.Header.Get("Content-Security-Policy"))
	require.True(t, strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html"))

	status, raw := s.api(http.MethodGet, "/api/assessments/"+id, nil)
	require.Equal(t, http.StatusOK, status)
	var a assess.Assessment
	require.NoError(t, json.Unmarshal(raw, &a))

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
		.filter(e => !['estimate', 'searchParameter', 'profile'].includes(e.getAttribute('data-figure')))
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
	want := assessmentFigures(&a)
	for k, v := range want {
		require.Equal(t, v, shown[k], "figure %s of %s", k, name)
	}
	for k := range shown {
		_, ok := want[k]
		require.True(t, ok, "figure %s of %s is one the test knows", k, name)
	}
	dir := filepath.Join(repoRoot, screenshotDir)
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, name+".png"), shot, 0o644))
	return text
}

// TestAssessmentPageInABrowser renders the page of a ready assessment and of a blocking one (import disabled on
// the destination) in a real headless Chromium, as the migration's report page is tested.
func TestAssessmentPageInABrowser(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("stack-level test; run without -short")
	}
	ctx := browser(t)
	s := newStack(t, stackOptions{patients: 3})
	off := serveLoopback(t, fhirsim.New(fhirsim.WithFlavor(fhirsim.FlavorAHDS), fhirsim.WithStorage(azurite.ConnectionString),
		fhirsim.WithImportDisabled(true)))
	types := []string{"Patient", "Observation", "SearchParameter"}
	ready := s.assessNow(map[string]any{"source": s.source.URL, "destination": s.dest.URL, "types": types})
	blocked := s.assessNow(map[string]any{"source": s.source.URL, "destination": off.URL, "types": types})
	require.Equal(t, assess.StatusCompleted, s.awaitAssessment(ready).Status)
	require.Equal(t, assess.StatusCompleted, s.awaitAssessment(blocked).Status)

	text := s.showAssessment(ctx, ready, "assessment-ready")
	require.Contains(t, text, "READY")
	require.Contains(t, text, "Custom SearchParameters on the source")
	require.Contains(t, text, "By hand, once the migration is done")

	text = s.showAssessment(ctx, blocked, "assessment-blocking")
	require.Contains(t, text, "BLOCKING")
	require.Contains(t, text, assess.CodeImportEnabled)
}
