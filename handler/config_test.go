package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
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
	require.Equal(t, 4, c.MaxExportsPerSource)
	require.Equal(t, 5, c.MaxImportsPerDestination)
	require.Equal(t, 5*time.Second, c.PollInitial)
	require.Equal(t, 2*time.Minute, c.PollMax)
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
	}))
	require.Error(t, err)
	for _, name := range []string{"FUNCTIONS_CUSTOMHANDLER_PORT", "FhirCredential", "AzureWebJobsStorage",
		"StagingStorage__blobServiceUri", "ServiceBusConnection__fullyQualifiedNamespace", "MaxExportsPerSource",
		"PollInitial", "LogLevel"} {
		require.ErrorContains(t, err, name)
	}
	require.NotContains(t, err.Error(), "sv=secret", "a SAS must never be echoed")
}
