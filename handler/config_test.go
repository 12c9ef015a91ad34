package main

import (
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/migration"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestLoadConfigDefaultsAndLocal(t *testing.T) {
	t.Parallel()
	c, err := LoadConfig(env(map[string]string{
		"FUNCTIONS_CUSTOMHANDLER_PORT": "4711",
		"AzureWebJobsStorage":          "UseDevelopmentStorage=false",
		"StagingStorage":               "x",
		"DEVHOST_URL":                  "http://127.0.0.1:7071",
	}))
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:4711", c.ListenAddr)
	require.Equal(t, "*.azurehealthcareapis.com", c.AllowedHosts)
	require.Equal(t, "azure", c.FHIRCredential)
	require.Equal(t, "fhir-migrations", c.DocumentContainer)
	require.Equal(t, migration.DefaultTuning(), c.Tuning, "every knob at its default")
	require.Equal(t, 5*time.Second, c.Tuning.PollInitial)
}

func TestLoadConfigAzureIdentitySettings(t *testing.T) {
	t.Parallel()
	c, err := LoadConfig(env(map[string]string{
		"FUNCTIONS_CUSTOMHANDLER_PORT":                  "4711",
		"AzureWebJobsStorage__accountName":              "hoststore",
		"StagingStorage__blobServiceUri":                "https://staging.blob.core.windows.net/",
		"ServiceBusConnection__fullyQualifiedNamespace": "ns.servicebus.windows.net",
	}))
	require.NoError(t, err)
	require.Equal(t, "https://hoststore.blob.core.windows.net/", c.DocumentStorage.ServiceURL)
	require.Equal(t, "https://staging.blob.core.windows.net/", c.StagingStorage.ServiceURL)
	require.Equal(t, "ns.servicebus.windows.net", c.ServiceBusNamespace)
}

func TestLoadConfigNamesEveryProblem(t *testing.T) {
	t.Parallel()
	_, err := LoadConfig(env(map[string]string{
		"FhirCredential":                 "password",
		"StagingStorage__blobServiceUri": "https://staging.blob.core.windows.net/?sv=secret",
		"MaxExportsPerSource":            "0",
		"PollInitial":                    "soon",
		"LogLevel":                       "loud",
		"LogFormat":                      "xml",
	}))
	require.Error(t, err)
	for _, name := range []string{"FUNCTIONS_CUSTOMHANDLER_PORT", "FhirCredential", "AzureWebJobsStorage",
		"StagingStorage__blobServiceUri", "ServiceBusConnection__fullyQualifiedNamespace", "MaxExportsPerSource",
		"PollInitial", "LogLevel", "LogFormat"} {
		require.ErrorContains(t, err, name)
	}
	require.NotContains(t, err.Error(), "sv=secret", "a SAS must never be echoed")
}

// TestTuningSettingsAreReadAndDocumented: every tuning knob is read from its setting, and the settings
// table names it with its default.
func TestTuningSettingsAreReadAndDocumented(t *testing.T) {
	t.Parallel()
	settings := map[string]string{"FUNCTIONS_CUSTOMHANDLER_PORT": "4711", "AzureWebJobsStorage": "x", "StagingStorage": "x",
		"DEVHOST_URL": "http://127.0.0.1:7071"}
	var probe migration.Tuning
	for _, st := range probe.Settings() {
		if st.Int != nil {
			settings[st.Name] = "7"
		} else {
			settings[st.Name] = "7m"
		}
	}
	settings["PollMax"] = "8m"
	c, err := LoadConfig(env(settings))
	require.NoError(t, err)
	readme := readRepoFile(t, "docs/operations.md")
	for _, st := range c.Tuning.Settings() {
		if st.Int != nil {
			require.Equal(t, 7, *st.Int, st.Name)
		} else if st.Name != "PollMax" {
			require.Equal(t, 7*time.Minute, *st.Duration, st.Name)
		}
		row := ""
		for _, line := range strings.Split(readme, "\n") {
			// The settings table's rows name their settings in the first cell.
			if cells := strings.Split(line, "|"); strings.HasPrefix(line, "| ") && len(cells) > 2 && strings.Contains(cells[1], "`"+st.Name+"`") {
				row = line
				break
			}
		}
		require.NotEmpty(t, row, "docs/operations.md's settings table has no row for %s", st.Name)
		require.Contains(t, row, "`"+st.Default+"`", "docs/operations.md's default of %s", st.Name)
	}
	_, err = LoadConfig(env(map[string]string{"FUNCTIONS_CUSTOMHANDLER_PORT": "4711", "AzureWebJobsStorage": "x",
		"StagingStorage": "x", "DEVHOST_URL": "http://127.0.0.1:7071", "PollInitial": "5m", "PollMax": "1m"}))
	require.ErrorContains(t, err, "PollMax (1m0s) must not be below PollInitial (5m0s)")
}

func TestLogFormat(t *testing.T) {
	t.Parallel()
	base := map[string]string{"FUNCTIONS_CUSTOMHANDLER_PORT": "4711", "AzureWebJobsStorage": "x", "StagingStorage": "x",
		"DEVHOST_URL": "http://127.0.0.1:7071"}
	for format, want := range map[string]string{"": "level=INFO msg=hello migration=m-1\n", "text": "level=INFO msg=hello migration=m-1\n",
		"json": `"level":"INFO","msg":"hello","migration":"m-1"}` + "\n"} {
		settings := maps.Clone(base)
		if format != "" {
			settings["LogFormat"] = format
		}
		c, err := LoadConfig(env(settings))
		require.NoError(t, err, format)
		var out strings.Builder
		c.NewLogger(&out).Info("hello", "migration", "m-1")
		require.True(t, strings.HasSuffix(out.String(), want), "%s: %s", format, out.String())
	}
}

func TestLoadConfigSMART(t *testing.T) {
	t.Parallel()
	base := map[string]string{
		"FUNCTIONS_CUSTOMHANDLER_PORT": "4711",
		"AzureWebJobsStorage":          "UseDevelopmentStorage=false",
		"StagingStorage":               "x",
		"DEVHOST_URL":                  "http://127.0.0.1:7071",
	}
	with := func(kv ...string) map[string]string {
		m := maps.Clone(base)
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	c, err := LoadConfig(env(base))
	require.NoError(t, err)
	require.False(t, c.SMART.Enabled())

	c, err = LoadConfig(env(with("SmartClientId", "migrator", "SmartSigningKey", "https://kv1.vault.azure.net/keys/smart/0123",
		"SmartSigningAlg", "ES384", "SmartScope", "system/*.read", "SmartKeyId", "k1")))
	require.NoError(t, err)
	require.Equal(t, SMARTConfig{ClientID: "migrator", SigningKey: "https://kv1.vault.azure.net/keys/smart/0123",
		SigningAlg: "ES384", Scope: "system/*.read", KeyID: "k1"}, c.SMART)

	_, err = LoadConfig(env(with("FhirCredential", "dev", "SmartClientId", "local", "SmartSigningKey", "file:/tmp/k.pem")))
	require.NoError(t, err, "a key file with the local credential")

	for name, m := range map[string]map[string]string{
		"SmartSigningKey: a key file is for the local stack only": with("SmartClientId", "c", "SmartSigningKey", "file:/tmp/k.pem"),
		"SmartSigningKey: set the Key Vault":                      with("SmartClientId", "c"),
		"SmartSigningKey: want a Key Vault":                       with("SmartClientId", "c", "SmartSigningKey", "https://evil.example.com/keys/k", "SmartSigningAlg", "RS384"),
		"SmartSigningAlg":                                         with("SmartClientId", "c", "SmartSigningKey", "https://kv1.vault.azure.net/keys/smart", "SmartSigningAlg", "RS256"),
		"SmartScope":                                              with("SmartClientId", "c", "SmartSigningKey", "https://kv1.vault.azure.net/keys/smart", "SmartSigningAlg", "RS384", "SmartScope", "system/*.*"),
		"SmartClientId: set it with":                              with("SmartSigningKey", "https://kv1.vault.azure.net/keys/smart"),
	} {
		_, err := LoadConfig(env(m))
		require.ErrorContains(t, err, name)
	}
}
