package migration

import (
	"flag"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

var updateRunbook = flag.Bool("update-runbook", false, "rewrite the runbook's table in docs/operations.md from FailureCodes")

// Every code a failed migration can carry is in the runbook, once: the job kinds' <kind>_failed, the planning and
// kick-off count code, and every code a verification round ends with.
func TestEveryFailureCodeHasARunbookEntry(t *testing.T) {
	t.Parallel()
	var listed []string
	for _, c := range FailureCodes() {
		require.NotContains(t, listed, c.Code, "listed twice")
		require.NotEmpty(t, c.When, c.Code)
		require.NotEmpty(t, c.Action, c.Code)
		listed = append(listed, c.Code)
	}
	want := []string{codeSourceCountUnavailable}
	for _, k := range []JobKind{KindExport, KindImport, KindCopy} {
		want = append(want, string(k)+"_failed")
	}
	want = append(want, verificationCodes...)
	slices.Sort(want)
	slices.Sort(listed)
	require.Equal(t, want, listed)
}

// docs/operations.md holds the runbook's table as FailureCodesTable writes it (go test ./internal/migration -run
// Runbook -update-runbook rewrites it).
func TestRunbookTableIsCurrent(t *testing.T) {
	const path = "../../docs/operations.md"
	const begin, end = "<!-- failure-codes:begin -->\n", "<!-- failure-codes:end -->"
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	text := string(raw)
	i, j := strings.Index(text, begin), strings.Index(text, end)
	require.True(t, i >= 0 && j > i, "docs/operations.md has no failure-codes markers")
	if *updateRunbook {
		text = text[:i+len(begin)] + FailureCodesTable() + text[j:]
		require.NoError(t, os.WriteFile(path, []byte(text), 0o644))
		return
	}
	require.Equal(t, FailureCodesTable(), text[i+len(begin):j], "run go test ./internal/migration -run Runbook -update-runbook")
}
