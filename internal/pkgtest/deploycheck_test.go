package pkgtest

// azd's hooks, run as azd runs them on Linux and macOS: by their shebang, here with the strictest POSIX shell at
// hand, dash (Debian's /bin/sh), so that nothing bash-only (macOS ships bash 3.2) slips in. Every run has a PATH
// of its own: azd, az and go are fakes that record what they were asked (or are absent, whatever the machine
// has), and the system tools are links to exactly those hookTools lists for the script.

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// fakes is a PATH of fake azd, az and go; calls.txt records their arguments.
type fakes struct {
	dir   string
	calls string
}

type fakeSetup struct {
	azdVersion string            // "" : azd absent
	config     map[string]string // azd config get KEY; absent: unset (exit 1, as azd)
	goVersion  string            // "" : go absent
	az         bool              // az present
	principals map[string]string // az resource show --ids ID (suffix match) -> principal id
	holders    []string          // principals holding Blob Data Contributor on the staging account
}

func newFakes(t *testing.T, s fakeSetup) fakes {
	t.Helper()
	dir := t.TempDir()
	f := fakes{dir: dir, calls: filepath.Join(dir, "calls.txt")}
	write := func(name, script string) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\necho \""+name+" $*\" >>"+f.calls+"\n"+script), 0o755))
	}
	if s.azdVersion != "" {
		var cfg strings.Builder
		for k, v := range s.config {
			cfg.WriteString(`"config get ` + k + `") echo '"` + v + `"'; exit 0 ;;` + "\n")
		}
		write("azd", `case "$1 $2 $3" in
"version --output json") printf '{\n  "azd": {\n    "version": "`+s.azdVersion+`",\n    "commit": "abc"\n  }\n}\n' ;;
`+cfg.String()+`"config get "*) echo "ERROR: no value at path '$3': config key not found" >&2; exit 1 ;;
"env set "*) ;;
*) exit 2 ;;
esac
`)
	}
	if s.goVersion != "" {
		write("go", `[ "$1 $2" = "env GOVERSION" ] && { echo go`+s.goVersion+`; exit 0; }; exit 2`+"\n")
	}
	if s.az {
		var show, list strings.Builder
		for suffix, p := range s.principals {
			show.WriteString(`*` + suffix + `) echo ` + p + ` ;;` + "\n")
		}
		for _, p := range s.holders {
			list.WriteString(`*"'` + p + `'"*) echo 1; exit 0 ;;` + "\n")
		}
		write("az", `case "$1 $2" in
"resource show") case "$4" in
`+show.String()+`*) echo "ERROR: ResourceNotFound" >&2; exit 3 ;;
esac ;;
"role assignment") case "$*" in
`+list.String()+`*) echo 0 ;;
esac ;;
*) exit 2 ;;
esac
`)
	}
	return f
}

func (f fakes) recorded(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(f.calls)
	if os.IsNotExist(err) {
		return ""
	}
	require.NoError(t, err)
	return string(data)
}

// hookTools is, for each hook script, every program it runs besides the shell's builtins and the fakes (azd, az,
// go): its real dependencies on the machine. A script runs on a PATH holding exactly these and the fakes
// (hookPATH), so one that runs anything else fails its test (requireOnlyListedTools).
var hookTools = map[string][]string{
	"deploy-check.sh":    {"tr", "sed"},
	"after-provision.sh": {"mkdir", "date"},
}

// hookPATH is the PATH a hook script runs on: the fakes' folder, then a folder of links to the tools hookTools
// lists for the script, each found on this machine first. Nothing else: no real azd, az or go answers in place
// of a fake, or of an absent one.
func hookPATH(t *testing.T, script string, f fakes) string {
	t.Helper()
	tools, ok := hookTools[script]
	require.True(t, ok, "hookTools lists no tools for %s", script)
	bin := t.TempDir()
	for _, tool := range tools {
		p, err := exec.LookPath(tool)
		require.NoError(t, err, "%s runs %s, which this machine lacks", script, tool)
		p, err = filepath.Abs(p)
		require.NoError(t, err)
		require.NoError(t, os.Symlink(p, filepath.Join(bin, tool)))
	}
	return f.dir + string(os.PathListSeparator) + bin
}

// notFound is the shell's report of a command it found nowhere: dash's "SCRIPT: 12: NAME: not found", bash's
// "SCRIPT: line 12: NAME: command not found".
var notFound = regexp.MustCompile(`(?m)^[^\n]*?: (?:line )?\d+: ([^:\n]+): (?:command )?not found$`)

// requireOnlyListedTools fails the test when the script's output shows it ran a command its PATH does not hold.
func requireOnlyListedTools(t *testing.T, script, out string) {
	t.Helper()
	for _, m := range notFound.FindAllStringSubmatch(out, -1) {
		t.Fatalf("%s ran %q, which is not on the PATH its tests give it: if the script needs it, add it to "+
			"hookTools[%q] (that list is the script's dependencies on the machine)\n%s", script, m[1], script, out)
	}
}

// runHook runs a hook script with dash from an empty folder, on hookPATH and env alone.
func runHook(t *testing.T, script string, f fakes, env ...string) (string, error) {
	t.Helper()
	return runHookIn(t, t.TempDir(), script, f, env...)
}

// runHookIn runs a hook script with dash from dir, on hookPATH and env alone.
func runHookIn(t *testing.T, dir, script string, f fakes, env ...string) (string, error) {
	t.Helper()
	dash, err := exec.LookPath("dash")
	require.NoError(t, err, "dash (Debian's /bin/sh) runs the hooks as a strict POSIX shell")
	cmd := exec.Command(dash, filepath.Join(repoRoot(t), "scripts", script))
	// A client id for the default sign-in mode (entra), unless the case sets its own (the last value wins).
	cmd.Env = append([]string{"PATH=" + hookPATH(t, script, f), "AUTH_CLIENT_ID=" + testClientID}, env...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	requireOnlyListedTools(t, script, string(out))
	return string(out), err
}

// testClientID is an app registration's client id as the sign-in check wants one.
const testClientID = "0b8a1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d"

func ready(version string, config map[string]string) fakeSetup {
	return fakeSetup{azdVersion: version, config: config, goVersion: "1.26.8"}
}

func TestDeployCheckUnderDash(t *testing.T) {
	t.Parallel()
	on := map[string]string{"alpha.language.custom": "on"}
	for _, c := range []struct {
		name  string
		setup fakeSetup
		env   []string
		want  string // "" : passes
	}{
		{"ready", ready("1.26.0", on), nil, ""},
		{"pre-release newer", ready("1.27.3-beta.1", nil), []string{"AZD_ALPHA_ENABLE_LANGUAGE_CUSTOM=true"}, ""},
		// azd reads the variable with strconv.ParseBool: 1, t, T, TRUE, true, True.
		{"env 1", ready("1.26.0", nil), []string{"AZD_ALPHA_ENABLE_LANGUAGE_CUSTOM=1"}, ""},
		{"env T", ready("1.26.0", nil), []string{"AZD_ALPHA_ENABLE_LANGUAGE_CUSTOM=T"}, ""},
		// A variable that parses decides, even against the config; one that does not is ignored.
		{"env false wins", ready("1.26.0", on), []string{"AZD_ALPHA_ENABLE_LANGUAGE_CUSTOM=false"}, "turns azd's alpha feature for 'language: custom' off"},
		{"env unparsable ignored", ready("1.26.0", on), []string{"AZD_ALPHA_ENABLE_LANGUAGE_CUSTOM=yes"}, ""},
		{"alpha.all", ready("1.26.0", map[string]string{"alpha.all": "on"}), nil, ""},
		{"alpha.all off, feature on", ready("1.26.0", map[string]string{"alpha.all": "off", "alpha.language.custom": "on"}), nil, ""},
		{"config case", ready("1.26.0", map[string]string{"alpha.language.custom": "On"}), nil, ""},
		{"config invalid", ready("1.26.0", map[string]string{"alpha.language.custom": "yes"}), nil, `alpha.language.custom is "yes": azd accepts only on or off`},
		{"feature off", ready("1.26.0", nil), nil, "azd config set alpha.language.custom on"},
		{"azd too old", ready("1.25.6", on), nil, "azd 1.25.6 is older than 1.26.0"},
		{"azd 1.26 is 1.26.0", ready("1.26", on), nil, ""},
		{"azd absent", fakeSetup{goVersion: "1.26.0"}, nil, "azd not found"},
		{"go too old", fakeSetup{azdVersion: "1.30.0", config: on, goVersion: "1.25.3"}, nil, "go 1.25.3 is older than 1.26"},
		{"go absent", fakeSetup{azdVersion: "1.30.0", config: on}, nil, "go not found"},
		{"every gap at once", fakeSetup{azdVersion: "0.9.0", config: map[string]string{"alpha.language.custom": "off"}}, nil, "3 problem(s)"},
		// Sign-in: entra is the Bicep's default and needs the app registration's client id; keys needs nothing.
		{"entra by default, no client id", ready("1.26.0", on), []string{"AUTH_CLIENT_ID="}, "AUTH_MODE is entra (the default) and AUTH_CLIENT_ID is not set"},
		{"entra, no client id", ready("1.26.0", on), []string{"AUTH_MODE=entra", "AUTH_CLIENT_ID="}, "azd env set AUTH_CLIENT_ID <client id>"},
		{"entra, not a GUID", ready("1.26.0", on), []string{"AUTH_CLIENT_ID=my-app"}, `AUTH_CLIENT_ID "my-app" is not an application (client) id`},
		{"entra, a GUID", ready("1.26.0", on), []string{"AUTH_MODE=entra", "AUTH_CLIENT_ID=" + testClientID}, ""},
		{"keys, no client id", ready("1.26.0", on), []string{"AUTH_MODE=keys", "AUTH_CLIENT_ID="}, ""},
		{"unknown mode", ready("1.26.0", on), []string{"AUTH_MODE=Entra"}, `AUTH_MODE is "Entra": it takes entra or keys`},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			out, err := runHook(t, "deploy-check.sh", newFakes(t, c.setup), c.env...)
			if c.want == "" {
				require.NoError(t, err, out)
				require.Contains(t, out, "ready for azd up")
				return
			}
			require.Error(t, err, out)
			require.Contains(t, out, c.want)
		})
	}
}

// With the storage wiring asked for and an existing staging account, the check finds the Blob Data Contributor
// assignments the services' identities already hold there and tells the Bicep through azd's environment.
func TestDeployCheckFindsExistingStagingAssignments(t *testing.T) {
	t.Parallel()
	env := []string{"WIRE_STAGING_STORAGE=true", "STAGING_STORAGE_ACCOUNT_NAME=stgexisting",
		"STAGING_STORAGE_RESOURCE_GROUP=rg-staging", "AZURE_SUBSCRIPTION_ID=sub-1", "AZURE_RESOURCE_GROUP=rg-app",
		"SOURCE_FHIR_SERVICE_NAME=apiforfhir", "SOURCE_FHIR_RESOURCE_GROUP=rg-src",
		"DESTINATION_WORKSPACE_NAME=ws", "DESTINATION_FHIR_SERVICE_NAME=fhir"}
	setup := ready("1.26.0", map[string]string{"alpha.language.custom": "on"})
	setup.az = true
	setup.principals = map[string]string{
		"/resourceGroups/rg-src/providers/Microsoft.HealthcareApis/services/apiforfhir":             "11111111-aaaa",
		"/resourceGroups/rg-app/providers/Microsoft.HealthcareApis/workspaces/ws/fhirservices/fhir": "22222222-bbbb",
	}
	setup.holders = []string{"11111111-aaaa"}
	f := newFakes(t, setup)
	out, err := runHook(t, "deploy-check.sh", f, env...)
	require.NoError(t, err, out)
	require.Contains(t, out, "the source service's identity already holds Storage Blob Data Contributor")
	calls := f.recorded(t)
	require.Contains(t, calls, "azd env set SOURCE_STAGING_ACCESS_EXISTS true")
	require.Contains(t, calls, "azd env set DESTINATION_STAGING_ACCESS_EXISTS false")
	require.Contains(t, calls, "az role assignment list --scope /subscriptions/sub-1/resourceGroups/rg-staging/providers/Microsoft.Storage/storageAccounts/stgexisting")

	// Without az the check cannot tell, and says so rather than letting ARM fail half-way.
	setup.az = false
	out, err = runHook(t, "deploy-check.sh", newFakes(t, setup), env...)
	require.Error(t, err)
	require.Contains(t, out, "az not found")

	// A service az cannot read is named.
	setup.az = true
	setup.principals = nil
	out, err = runHook(t, "deploy-check.sh", newFakes(t, setup), env...)
	require.Error(t, err)
	require.Contains(t, out, "could not read the source FHIR service")

	// Nothing is asked of az when the wiring is off, or the staging account is new.
	setup.principals = map[string]string{}
	f = newFakes(t, setup)
	out, err = runHook(t, "deploy-check.sh", f, "AZURE_SUBSCRIPTION_ID=sub-1", "WIRE_STAGING_STORAGE=true")
	require.NoError(t, err, out)
	require.NotContains(t, f.recorded(t), "az ")
}

// After a provision that wired the storage, the hook records what was replaced and turns the wiring off.
func TestAfterProvisionRecordsAndTurnsTheWiringOff(t *testing.T) {
	t.Parallel()
	f := newFakes(t, ready("1.26.0", nil))
	dir := t.TempDir()
	out, err := runHookIn(t, dir, "after-provision.sh", f, "AZURE_ENV_NAME=prod", "WIRE_STAGING_STORAGE=true",
		"PREVIOUS_SOURCE_EXPORT_STORAGE=oldexport",
		`PREVIOUS_DESTINATION_IMPORT_CONFIGURATION={"enabled":true,"initialImportMode":false,"integrationDataStore":"oldimport"}`)
	require.NoError(t, err, out)
	require.Contains(t, f.recorded(t), "azd env set WIRE_STAGING_STORAGE false")
	records, err := filepath.Glob(filepath.Join(dir, ".azure", "prod", "storage-wiring-*.json"))
	require.NoError(t, err)
	require.Len(t, records, 1)
	data, err := os.ReadFile(records[0])
	require.NoError(t, err)
	require.JSONEq(t, `{"previousSourceExportStorage": "oldexport", "previousDestinationImportConfiguration": {"enabled":true,"initialImportMode":false,"integrationDataStore":"oldimport"}}`, string(data))

	// Not wired: nothing recorded, nothing set.
	f = newFakes(t, ready("1.26.0", nil))
	out, err = runHook(t, "after-provision.sh", f, "WIRE_STAGING_STORAGE=false")
	require.NoError(t, err, out)
	require.Empty(t, f.recorded(t))
}

// The Windows variants check the same things with the same messages and set the same environment values; no
// PowerShell runs here (Debian has no package for it), so this holds them to the POSIX scripts' text.
func TestWindowsHooksMatchThePOSIXOnes(t *testing.T) {
	t.Parallel()
	read := func(name string) string {
		data, err := os.ReadFile(filepath.Join(repoRoot(t), "scripts", name))
		require.NoError(t, err)
		return string(data)
	}
	sh, ps := read("deploy-check.sh"), read("deploy-check.ps1")
	for _, shared := range []string{"1.26.0", "ba92f5b4-2d11-453d-a403-e96b0029c9fe", "AZD_ALPHA_ENABLE_LANGUAGE_CUSTOM",
		"alpha.all", "alpha.language.custom", "SOURCE_STAGING_ACCESS_EXISTS", "DESTINATION_STAGING_ACCESS_EXISTS",
		"is older than", "azd accepts only on or off there", "azd config set alpha.language.custom on",
		"ready for azd up", "problem(s); fix them and run again", "az not found", "could not read the",
		"already holds Storage Blob Data Contributor on the staging account", "AUTH_MODE", "AUTH_CLIENT_ID",
		"AUTH_MODE is entra (the default) and AUTH_CLIENT_ID is not set", "is not an application (client) id: a GUID of 36 characters",
		"it takes entra or keys"} {
		require.Contains(t, sh, shared)
		require.Contains(t, ps, shared)
	}
	for _, name := range []string{"after-provision.ps1", "package.ps1"} {
		require.FileExists(t, filepath.Join(repoRoot(t), "scripts", name))
	}
	require.Contains(t, read("after-provision.ps1"), "azd env set WIRE_STAGING_STORAGE false")
	require.Contains(t, read("package.ps1"), "internal/pkgtest/cmd/funcpack")
	yaml := read("../azure.yaml")
	for _, hook := range []string{"deploy-check", "after-provision", "package"} {
		require.Contains(t, yaml, "run: ./scripts/"+hook+".sh")
		require.Contains(t, yaml, "run: ./scripts/"+hook+".ps1")
	}
	require.Equal(t, 3, strings.Count(yaml, "shell: pwsh"))
}

// The tool lists are the scripts' own: each listed tool is run by its script, and a tool a script runs but the
// list leaves out is caught by the shell's own report, as dash words it.
func TestHookToolsAreTheScriptsOwn(t *testing.T) {
	t.Parallel()
	for script, tools := range hookTools {
		data, err := os.ReadFile(filepath.Join(repoRoot(t), "scripts", script))
		require.NoError(t, err)
		var code strings.Builder
		for _, line := range strings.Split(string(data), "\n") {
			if !strings.HasPrefix(strings.TrimSpace(line), "#") {
				code.WriteString(line + "\n")
			}
		}
		for _, tool := range tools {
			require.Regexp(t, `(^|[\s|;&(])`+regexp.QuoteMeta(tool)+`\s`, code.String(),
				"hookTools lists %s for %s, which no longer runs it: take it off the list", tool, script)
		}
	}

	dash, err := exec.LookPath("dash")
	require.NoError(t, err)
	script := filepath.Join(t.TempDir(), "unlisted.sh")
	require.NoError(t, os.WriteFile(script, []byte("#!/bin/sh\nset -eu\necho fine | tr f F\necho fine | cat\n"), 0o755))
	cmd := exec.Command(dash, script)
	cmd.Env = []string{"PATH=" + hookPATH(t, "deploy-check.sh", newFakes(t, fakeSetup{}))}
	out, err := cmd.CombinedOutput()
	require.Error(t, err, "cat must not be on the PATH of deploy-check.sh's tests")
	found := notFound.FindAllStringSubmatch(string(out), -1)
	require.Len(t, found, 1, "%s", out)
	require.Equal(t, "cat", found[0][1], "%s", out)
	require.Regexp(t, notFound, "./scripts/x.sh: line 3: cat: command not found", "bash's wording")
	require.NotRegexp(t, notFound, "deploy-check: azd not found: install the Azure Developer CLI", "the scripts' own words")
}
