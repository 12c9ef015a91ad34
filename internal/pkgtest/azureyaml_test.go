package pkgtest

// azure.yaml's provision hooks, read and run as azd reads and runs them (Azure/azure-dev: the hook's keys in
// schemas/v1.0/azure.yaml.json #/definitions/hook and cli/azd/pkg/ext/models.go HookConfig; the choice of the
// posix or windows variant, which then stands alone, in pkg/ext/hooks_manager.go; a shell hook's file run from the
// project folder as `/bin/sh -c PATH`, so by its shebang and exec bit, in pkg/ext/models.go resolvePaths,
// pkg/tools/bash/bash.go and pkg/exec/command_runner.go newCmdTree; a failure stopping the command unless
// continueOnError, with the script's stdout and stderr in azd's error when not interactive, in
// pkg/ext/hooks_runner.go and pkg/exec/runresult.go).

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// azdHook is azd's hook configuration: every key the schema allows in a hook (which allows no other), so that a
// key azd would not read fails the decoding.
type azdHook struct {
	Shell           string            `yaml:"shell"`
	Kind            string            `yaml:"kind"`
	Dir             string            `yaml:"dir"`
	Run             string            `yaml:"run"`
	ContinueOnError bool              `yaml:"continueOnError"`
	Interactive     bool              `yaml:"interactive"`
	Windows         *azdHook          `yaml:"windows"`
	Posix           *azdHook          `yaml:"posix"`
	Secrets         map[string]string `yaml:"secrets"`
	Config          map[string]any    `yaml:"config"`
}

// azureYAMLHooks is azure.yaml's top-level hooks, each one hook (azd also takes a list; this project uses none).
func azureYAMLHooks(t *testing.T) map[string]azdHook {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "azure.yaml"))
	require.NoError(t, err)
	var doc struct {
		Hooks yaml.Node `yaml:"hooks"`
	}
	require.NoError(t, yaml.Unmarshal(data, &doc), "azure.yaml")
	require.Equal(t, yaml.MappingNode, doc.Hooks.Kind, "azure.yaml has no hooks mapping")
	// A yaml.Node decodes without KnownFields: write the hooks out and decode them again, strictly.
	hooksYAML, err := yaml.Marshal(&doc.Hooks)
	require.NoError(t, err)
	dec := yaml.NewDecoder(bytes.NewReader(hooksYAML))
	dec.KnownFields(true)
	var hooks map[string]azdHook
	require.NoError(t, dec.Decode(&hooks), "azure.yaml hooks, as azd's schema allows them:\n%s", hooksYAML)
	return hooks
}

// The provision hooks are the deploy check before and the after-provision record after, each a posix (sh) and a
// windows (pwsh) variant with nothing else set. Each variant replaces the hook entirely, so what it leaves unset
// is azd's default: continueOnError false (a failed check stops `azd provision`, rather than a warning and a
// provision that fails half-way; a failed record leaves the wiring on, which must not pass unseen), interactive
// false (neither reads stdin, and azd then puts the script's stdout and stderr, the fix for each gap, in its
// error), no dir (a shell hook runs from the project folder, where after-provision writes .azure/<env>/) and no
// kind (shell decides: sh runs the file by its shebang, pwsh with PowerShell).
func TestAzureYAMLProvisionHooks(t *testing.T) {
	t.Parallel()
	hooks := azureYAMLHooks(t)
	for name, script := range map[string]string{"preprovision": "deploy-check", "postprovision": "after-provision"} {
		require.Contains(t, hooks, name, "azure.yaml hooks")
		require.Equal(t, azdHook{
			Posix:   &azdHook{Shell: "sh", Run: "./scripts/" + script + ".sh"},
			Windows: &azdHook{Shell: "pwsh", Run: "./scripts/" + script + ".ps1"},
		}, hooks[name], "azure.yaml hooks.%s", name)
	}

	// Every provision hook's file is in the project; the posix ones run by their shebang, so they are executable
	// and start with #!/bin/sh; and they are the scripts this package's tests run (hookTools).
	root := repoRoot(t)
	for _, name := range []string{"preprovision", "postprovision"} {
		for _, v := range []struct {
			os   string
			hook *azdHook
		}{{"posix", hooks[name].Posix}, {"windows", hooks[name].Windows}} {
			require.NotNil(t, v.hook, "azure.yaml hooks.%s.%s", name, v.os)
			rel := filepath.Clean(filepath.FromSlash(v.hook.Run))
			require.False(t, filepath.IsAbs(rel) || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)),
				"hooks.%s.%s.run %q must be a path inside the project", name, v.os, v.hook.Run)
			info, err := os.Stat(filepath.Join(root, rel))
			require.NoError(t, err, "hooks.%s.%s.run: azd runs a run value naming no file as an inline script", name, v.os)
			require.True(t, info.Mode().IsRegular(), "hooks.%s.%s.run %q", name, v.os, v.hook.Run)
			if v.os != "posix" {
				continue
			}
			require.NotZero(t, info.Mode().Perm()&0o100, "%s must be executable: azd runs it as /bin/sh -c %s", v.hook.Run, v.hook.Run)
			data, err := os.ReadFile(filepath.Join(root, rel))
			require.NoError(t, err)
			first, _, _ := strings.Cut(string(data), "\n")
			require.Equal(t, "#!/bin/sh", first, "%s: its shebang picks the shell azd runs it with", v.hook.Run)
			require.Contains(t, hookTools, filepath.Base(rel), "the tests run %s on a PATH of its own", v.hook.Run)
		}
	}
}

// azdEnv is an azd environment's values (.azure/<env>/.env, which azd adds to the hook's environment).
var azdEnv = []string{"AZURE_ENV_NAME=dev", "AZURE_LOCATION=westeurope",
	"AZURE_SUBSCRIPTION_ID=00000000-0000-0000-0000-000000000001", "AZURE_RESOURCE_GROUP=rg-fhir-migrator-dev",
	"SOURCE_FHIR_SERVICE_NAME=apiforfhir", "DESTINATION_WORKSPACE_NAME=ws", "DESTINATION_FHIR_SERVICE_NAME=fhir",
	"AUTH_MODE=entra", "AUTH_CLIENT_ID=" + testClientID,
}

// runAsAzd runs a posix hook's run line as azd does: /bin/sh -c RUN from the project folder dir, here on the
// script's own PATH (hookPATH) and env alone. It returns the output and the exit status.
func runAsAzd(t *testing.T, dir string, hook *azdHook, f fakes, env ...string) (string, int) {
	t.Helper()
	require.NotNil(t, hook)
	script := filepath.Base(hook.Run)
	require.FileExists(t, filepath.Join(dir, filepath.FromSlash(hook.Run)), "the hook's run line names no file")
	cmd := exec.Command("/bin/sh", "-c", hook.Run)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + hookPATH(t, script, f)}, env...)
	out, err := cmd.CombinedOutput()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		require.NoError(t, err, "/bin/sh did not run")
	}
	requireOnlyListedTools(t, script, string(out))
	return string(out), cmd.ProcessState.ExitCode()
}

// The preprovision hook as azd runs it, from the repository's root: it passes when azd and go are ready and
// stops the provision (exit status 1, the fix in its output) when they are not.
func TestPreprovisionHookAsAzdRunsIt(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	hook := azureYAMLHooks(t)["preprovision"].Posix
	on := map[string]string{"alpha.language.custom": "on"}

	env := append([]string{"WIRE_STAGING_STORAGE=false"}, azdEnv...)
	out, status := runAsAzd(t, root, hook, newFakes(t, ready("1.26.0", on)), env...)
	require.Equal(t, 0, status, out)
	require.Contains(t, out, "deploy-check: azd 1.26.0 with language 'custom' enabled, and go: ready for azd up")

	out, status = runAsAzd(t, root, hook, newFakes(t, ready("1.25.9", on)), env...)
	require.Equal(t, 1, status, out)
	require.Contains(t, out, "deploy-check: azd 1.25.9 is older than 1.26.0")
	require.Contains(t, out, "deploy-check: 1 problem(s); fix them and run again")
	require.NotContains(t, out, "ready for azd up")
}

// The postprovision hook as azd runs it, from a project folder of its own (its scripts are the repository's):
// the record lands in azd's folder for the environment, and the wiring is turned off.
func TestPostprovisionHookAsAzdRunsIt(t *testing.T) {
	t.Parallel()
	project := t.TempDir()
	require.NoError(t, os.Symlink(filepath.Join(repoRoot(t), "scripts"), filepath.Join(project, "scripts")))
	hook := azureYAMLHooks(t)["postprovision"].Posix
	f := newFakes(t, ready("1.26.0", nil))
	env := append([]string{"WIRE_STAGING_STORAGE=true", "PREVIOUS_SOURCE_EXPORT_STORAGE=oldexport"}, azdEnv...)
	out, status := runAsAzd(t, project, hook, f, env...)
	require.Equal(t, 0, status, out)
	require.Contains(t, f.recorded(t), "azd env set WIRE_STAGING_STORAGE false")
	records, err := filepath.Glob(filepath.Join(project, ".azure", "dev", "storage-wiring-*.json"))
	require.NoError(t, err)
	require.Len(t, records, 1, out)
}
