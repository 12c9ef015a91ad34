package migration

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestEveryRefusalIsInTheCodeTable reads the engine's source: every code a refusal is built with is in Codes()
// with the same kind, and every code in Codes() is used, so the API's table (built from it) is complete.
func TestEveryRefusalIsInTheCodeTable(t *testing.T) {
	t.Parallel()
	kinds := map[string]ErrorKind{"invalid": Invalid, "conflict": Conflict, "unavailable": Unavailable,
		"Invalid": Invalid, "Conflict": Conflict, "Unavailable": Unavailable, "NotFound": NotFound}
	table := map[string]ErrorKind{}
	for _, c := range Codes() {
		_, dup := table[c.Code]
		require.False(t, dup, "%s is listed twice", c.Code)
		require.NotEmpty(t, c.When, c.Code)
		table[c.Code] = c.Kind
	}
	used := map[string]bool{"not_found": true, "report_not_ready": true} // notFound and notReady
	calls := regexp.MustCompile(`\b(invalid|conflict|unavailable)\("([a-z_]+)"|refuse\((Invalid|Conflict|Unavailable|NotFound), "([a-z_]+)"`)
	files, err := filepath.Glob("*.go")
	require.NoError(t, err)
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		require.NoError(t, err)
		for _, m := range calls.FindAllStringSubmatch(string(src), -1) {
			kind, code := m[1]+m[3], m[2]+m[4]
			want, listed := table[code]
			require.True(t, listed, "%s: code %q is not in Codes()", f, code)
			require.Equal(t, want, kinds[kind], "%s: code %q", f, code)
			used[code] = true
		}
	}
	for code := range table {
		require.True(t, used[code], "Codes() lists %q, which no refusal uses", code)
	}
}
