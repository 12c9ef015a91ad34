package assess

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// docs/assessment.md describes every item code and every checklist code, in a table row or the checklist's list.
func TestEveryCodeIsDocumented(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../../docs/assessment.md")
	require.NoError(t, err)
	doc := string(raw)
	for _, c := range Codes() {
		require.Contains(t, doc, "| `"+c.Code+"` |", "docs/assessment.md has a row for %s", c.Code)
	}
	for _, code := range []string{TaskRBAC, TaskClients, TaskNetwork, TaskReindex, TaskInitial, TaskProfiles, TaskExport, TaskStaging, TaskCutover, TaskAuditLogs} {
		require.True(t, strings.Contains(doc, "`"+code+"`"), "docs/assessment.md names the checklist code %s", code)
	}
}
