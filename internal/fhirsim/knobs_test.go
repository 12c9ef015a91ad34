package fhirsim_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/fhirsim"
)

func bodyOf(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

// importProbe is the body an assessment sends: one SearchParameter input at url.
func importProbe(url string) string {
	return `{"resourceType":"Parameters","parameter":[{"name":"inputFormat","valueString":"application/fhir+ndjson"},` +
		`{"name":"input","part":[{"name":"type","valueString":"SearchParameter"},{"name":"url","valueUri":"` + url + `"}]}]}`
}

// The $import checks in fhir-server's order (ImportController.Import: enabled first; then
// ValidateImportRequestConfiguration: a storage account, each input's url on it, and the SearchParameter type last):
// each probe answer tells one configuration, and none creates a job.
func TestImportProbeAnswersInTheServicesOrder(t *testing.T) {
	t.Parallel()
	account := strings.TrimSuffix(azurite.BlobEndpoint, "/")
	for _, c := range []struct {
		name string
		opts []fhirsim.Option
		url  string
		want string
	}{
		{"disabled", []fhirsim.Option{fhirsim.WithStorage(azurite.ConnectionString), fhirsim.WithImportDisabled(true)}, account + "/c/x.ndjson", `The requested "import" operation is not enabled`},
		{"no storage account", nil, account + "/c/x.ndjson", "The import storage account is not configured correctly on the server"},
		{"another account", []fhirsim.Option{fhirsim.WithStorage(azurite.ConnectionString)}, "https://elsewhere.blob.core.windows.net/c/x.ndjson", "input.url must match the configured integration storage account endpoint"},
		{"ready", []fhirsim.Option{fhirsim.WithStorage(azurite.ConnectionString)}, account + "/c/x.ndjson", "Requested operation does not support resource type: SearchParameter"},
	} {
		s := startSim(t, append([]fhirsim.Option{fhirsim.WithFlavor(fhirsim.FlavorAHDS)}, c.opts...)...)
		resp := s.do(t, request{method: http.MethodPost, path: "/$import", headers: importHeaders(), body: importProbe(c.url)})
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, c.name)
		var oo struct {
			Issue []struct{ Diagnostics string } `json:"issue"`
		}
		require.NoError(t, json.Unmarshal([]byte(bodyOf(t, resp)), &oo), c.name)
		require.Len(t, oo.Issue, 1, c.name)
		require.Contains(t, oo.Issue[0].Diagnostics, c.want, c.name)
		st := s.Stats()
		require.Zero(t, st.ImportJobs, c.name)
		require.Zero(t, st.Writes, c.name)
	}
}

// Initial import mode locks every request but GETs, POST $import and job cancelations with 423 and the service's
// fixed body (InitialImportLockMiddleware), a path no route takes included; without it, or with import disabled,
// the same POST to /metadata is refused by the route (405).
func TestInitialImportLockAsTheMiddlewareDoes(t *testing.T) {
	t.Parallel()
	locked := startSim(t, fhirsim.WithFlavor(fhirsim.FlavorAHDS), fhirsim.WithStorage(azurite.ConnectionString), fhirsim.WithInitialImportMode(true))
	resp := locked.do(t, request{method: http.MethodPost, path: "/metadata"})
	require.Equal(t, http.StatusLocked, resp.StatusCode)
	require.JSONEq(t, `{"severity":"Error","code":"Locked","diagnostics":"Service is locked for initial import mode."}`, bodyOf(t, resp))
	resp = locked.do(t, request{method: http.MethodPut, path: "/Patient/p1", headers: map[string]string{"Content-Type": "application/fhir+json"},
		body: `{"resourceType":"Patient","id":"p1"}`})
	require.Equal(t, http.StatusLocked, resp.StatusCode)
	require.Equal(t, http.StatusOK, locked.do(t, request{path: "/metadata"}).StatusCode, "a GET passes")
	resp = locked.do(t, request{method: http.MethodPost, path: "/$import", headers: importHeaders(), body: importProbe("https://elsewhere.blob.core.windows.net/c/x")})
	require.Equal(t, http.StatusBadRequest, resp.StatusCode, "$import passes the lock")
	require.Zero(t, locked.Stats().Writes)

	for name, s := range map[string]*sim{
		"not in initial import mode": startSim(t, fhirsim.WithFlavor(fhirsim.FlavorAHDS)),
		"import disabled":            startSim(t, fhirsim.WithFlavor(fhirsim.FlavorAHDS), fhirsim.WithInitialImportMode(true), fhirsim.WithImportDisabled(true)),
	} {
		require.Equal(t, http.StatusMethodNotAllowed, s.do(t, request{method: http.MethodPost, path: "/metadata"}).StatusCode, name)
	}
}

// The CapabilityStatement's fhirVersion is the simulator's (an STU3 service), and Writes counts the writes that
// succeeded, nothing else.
func TestFHIRVersionAndWriteCount(t *testing.T) {
	t.Parallel()
	var cs struct {
		FHIRVersion string `json:"fhirVersion"`
	}
	startSim(t, fhirsim.WithFHIRVersion("3.0.2")).getJSON(t, "/metadata", &cs)
	require.Equal(t, "3.0.2", cs.FHIRVersion)
	s := startSim(t)
	s.getJSON(t, "/metadata", &cs)
	require.Equal(t, fhirsim.DefaultFHIRVersion, cs.FHIRVersion)

	put := func(body string) int {
		return s.do(t, request{method: http.MethodPut, path: "/Patient/p1", headers: map[string]string{"Content-Type": "application/fhir+json"}, body: body}).StatusCode
	}
	require.Equal(t, http.StatusCreated, put(`{"resourceType":"Patient","id":"p1"}`))
	require.Equal(t, http.StatusOK, put(`{"resourceType":"Patient","id":"p1","active":true}`))
	require.Equal(t, http.StatusBadRequest, put(`{"resourceType":"Patient","id":"other"}`), "refused: not counted")
	require.Equal(t, http.StatusOK, s.do(t, request{path: "/Patient/p1"}).StatusCode)
	require.Equal(t, 2, s.Stats().Writes)
}
