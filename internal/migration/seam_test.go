package migration

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The source's client comes from its kind (sourceClient: a bulk-data source may sign in with SMART), never from
// the Entra factory directly: no engine file outside sourcekind.go asks cfg.FHIR for the request's source.
func TestSourceClientsComeFromTheKind(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("*.go")
	require.NoError(t, err)
	direct := regexp.MustCompile(`cfg\.FHIR\([^)]*Source\)`)
	checked := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") || f == "sourcekind.go" {
			continue
		}
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		checked++
		for i, line := range strings.Split(string(data), "\n") {
			require.False(t, direct.MatchString(line), "%s:%d asks cfg.FHIR for the source: use s.sourceClient (the kind's client)", f, i+1)
		}
	}
	require.Greater(t, checked, 20)
}
