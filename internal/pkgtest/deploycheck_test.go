package pkgtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// fakeAZD writes an azd on a PATH of its own that answers `azd version --output json` with version and
// `azd config get alpha.language.custom` with alpha (empty: unset, exit 1 as azd does).
func fakeAZD(t *testing.T, version, alpha string) string {
	t.Helper()
	dir := t.TempDir()
	script := `#!/bin/sh
case "$1 $2" in
"version --output") printf '{\n  "azd": {\n    "version": "` + version + `",\n    "commit": "abc"\n  }\n}\n' ;;
"config get") if [ -z "` + alpha + `" ]; then echo "ERROR: no value stored at path" >&2; exit 1; fi; echo '"` + alpha + `"' ;;
*) exit 2 ;;
esac
`
	require.NoError(t, os.WriteFile(filepath.Join(dir, "azd"), []byte(script), 0o755))
	goBin, err := exec.LookPath(goTool())
	require.NoError(t, err)
	require.NoError(t, os.Symlink(goBin, filepath.Join(dir, "go")))
	return dir
}

func runDeployCheck(t *testing.T, path string, env ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("bash", filepath.Join(repoRoot(t), "scripts", "deploy-check.sh"))
	cmd.Env = append([]string{"PATH=" + path + ":/usr/bin:/bin"}, env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestDeployCheck(t *testing.T) {
	t.Parallel()
	out, err := runDeployCheck(t, fakeAZD(t, "1.26.0", "on"))
	require.NoError(t, err, out)
	require.Contains(t, out, "ready for azd up")

	out, err = runDeployCheck(t, fakeAZD(t, "1.27.3-beta.1", ""), "AZD_ALPHA_ENABLE_LANGUAGE_CUSTOM=true")
	require.NoError(t, err, out)

	out, err = runDeployCheck(t, fakeAZD(t, "1.25.6", "on"))
	require.Error(t, err)
	require.Contains(t, out, "azd 1.25.6 is older than 1.26.0")

	out, err = runDeployCheck(t, fakeAZD(t, "1.26.0", ""))
	require.Error(t, err)
	require.Contains(t, out, "azd config set alpha.language.custom on")

	out, err = runDeployCheck(t, fakeAZD(t, "0.9.0", "off"))
	require.Error(t, err)
	require.Contains(t, out, "2 problem(s)", "every gap is named in one run")

	// No azd at all.
	empty := t.TempDir()
	out, err = runDeployCheck(t, empty)
	require.Error(t, err)
	require.True(t, strings.Contains(out, "azd not found"), out)
}
