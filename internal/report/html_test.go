package report

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/migration"
)

func TestPageFiguresTimelineAndEscaping(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	m := &migration.Migration{ID: "m-1", Status: migration.StatusImporting, CreatedAt: t0, UpdatedAt: t0,
		Request: migration.Request{Source: "https://src", Destination: "https://dst"},
		Notes:   []string{`<script>alert("x")</script> run $reindex`}}
	for i := range maxTimelineJobs + 5 {
		start := t0.Add(time.Duration(i) * time.Second)
		m.Jobs = append(m.Jobs, &migration.Job{ID: fmt.Sprintf("export-%d", i), Kind: migration.KindExport, State: migration.JobDone,
			StartedAt: &start, FinishedAt: &start, Counts: map[string]int64{"Patient": 2}})
	}
	m.Jobs = append(m.Jobs, &migration.Job{ID: "import-1", Kind: migration.KindImport, State: migration.JobDone,
		Counts: map[string]int64{"Patient": 3}, ErrorSummary: &migration.ErrorSummary{ByType: map[string]int64{"Patient": 1}}})
	page, err := HTML(m, t0.Add(time.Hour))
	require.NoError(t, err)
	html := string(page)
	require.Contains(t, html, fmt.Sprintf(`data-figure="Patient.exported">%d<`, 2*(maxTimelineJobs+5)), "exported from the finished exports")
	require.Contains(t, html, `data-figure="Patient.imported">3<`)
	require.Contains(t, html, `data-figure="Patient.importErrors">1<`)
	require.Contains(t, html, "(5 earlier ones not drawn)")
	require.NotContains(t, html, `data-job="export-4"`, "the earliest are left out")
	require.Contains(t, html, fmt.Sprintf(`data-job="export-%d"`, maxTimelineJobs+4))
	require.Equal(t, maxTimelineJobs, strings.Count(html, "<g data-job="))
	require.NotContains(t, html, "<script>", "notes are text, never markup")
	require.Contains(t, html, "&lt;script&gt;")
	require.Contains(t, html, "running: importing")
}
