package report

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/assess"
	"github.com/fhir-migrator/fhir-migrator/internal/migration"
)

// The assessment's page shows every item with its status and the verdict, escapes what the servers said, and
// names each figure.
func TestAssessmentHTML(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	a := &assess.Assessment{ID: "a-1", Status: assess.StatusCompleted, Verdict: assess.Blocking, CreatedAt: now, UpdatedAt: now,
		Request: migration.Request{Source: "https://s", Destination: "https://d"},
		Items: []assess.Item{
			{Code: assess.CodeSourceReachable, Status: assess.OK, Title: "The source answers", Detail: "ok"},
			{Code: assess.CodeImportEnabled, Status: assess.Blocking, Title: "The destination imports",
				Detail: `HTTP 400: <script>alert(1)</script>`, Action: "enable import"},
			{Code: assess.CodeOverlap, Status: assess.Warning, Title: "Overlap", Detail: "Patient: 3"},
		},
		Types:     []assess.TypeFacts{{Type: "Patient", Live: 12, Destination: 3, DestinationSupported: true, DestinationCounted: true}},
		Checklist: []assess.Task{{Code: assess.TaskRBAC, Title: "Roles", Detail: "assign them"}},
	}
	page, err := AssessmentHTML(a, now)
	require.NoError(t, err)
	html := string(page)
	require.Contains(t, html, `<title>Assessment a-1: BLOCKING: the migration would fail as requested</title>`)
	require.Contains(t, html, `class="verdict bad"`)
	require.Contains(t, html, `data-figure="item.import.enabled.status">BLOCKING</span>`)
	require.Contains(t, html, `data-figure="item.source.reachable.status">OK</span>`)
	require.Contains(t, html, `data-figure="items.warning">1</b>`)
	require.Contains(t, html, `data-figure="type.Patient.destination">3</td>`)
	require.Contains(t, html, `data-task="rbac"`)
	require.NotContains(t, html, "<script>", "what a server said is escaped")
	require.Contains(t, html, "&lt;script&gt;")
	require.NotContains(t, html, "<script", "no script of its own either")

	a.Status, a.Verdict, a.Items, a.Checklist = assess.StatusRunning, "", nil, nil
	page, err = AssessmentHTML(a, now)
	require.NoError(t, err)
	require.Contains(t, string(page), `class="verdict run"`)
	require.Contains(t, string(page), "Listed once the assessment completes.")
}
