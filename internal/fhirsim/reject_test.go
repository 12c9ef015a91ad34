package fhirsim_test

import (
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/fhirsim"
)

// TestRejectsWhatTheRealServicesReject sends requests the real services refuse and expects their 4xx OperationOutcome.
func TestRejectsWhatTheRealServicesReject(t *testing.T) {
	t.Parallel()
	source := startSim(t, fhirsim.WithFlavor(fhirsim.FlavorAPIForFHIR), fhirsim.WithStorage(azurite.ConnectionString))
	dest := startSim(t, fhirsim.WithFlavor(fhirsim.FlavorAHDS), fhirsim.WithStorage(azurite.ConnectionString))
	inAccount := azurite.BlobEndpoint + "/staging/job/Patient-1.ndjson"
	other := azurite.BlobEndpoint + "/staging/job/Observation-1.ndjson"

	cases := []struct {
		name     string
		target   *sim
		req      request
		status   int
		contains string
	}{
		{"export wrong Accept", source, request{path: "/$export", headers: map[string]string{"Accept": "application/json", "Prefer": "respond-async"}}, 400, "Accept"},
		{"export Accept with parameters", source, request{path: "/$export", headers: map[string]string{"Accept": "application/fhir+json; charset=utf-8", "Prefer": "respond-async"}}, 400, "Accept"},
		{"export missing Prefer", source, request{path: "/$export", headers: map[string]string{"Accept": "application/fhir+json"}}, 400, "Prefer"},
		{"export Prefer with another value", source, request{path: "/$export", headers: map[string]string{"Accept": "application/fhir+json", "Prefer": "respond-async, return=minimal"}}, 400, "return=minimal"},
		{"export Prefer handling other than strict or lenient", source, request{path: "/$export", headers: map[string]string{"Accept": "application/fhir+json", "Prefer": "respond-async, handling=loose"}}, 400, "handling=loose"},
		{"export _since with 8 digits", source, request{path: "/$export?_since=2024-01-01T00:00:00.12345678Z", headers: exportHeaders()}, 400, "_since"},
		{"export _till with 9 digits", source, request{path: "/$export?_till=2024-01-01T00:00:00.123456789Z", headers: exportHeaders()}, 400, "_till"},
		{"export _typeFilter parameter without =", source, request{path: "/$export?_type=Observation&_typeFilter=Observation%3Fstatus", headers: exportHeaders()}, 400, "not name=value"},
		{"export _typeFilter parameter with two =", source, request{path: "/$export?_type=Observation&_typeFilter=Observation%3Fstatus%3Dfinal%3Dx", headers: exportHeaders()}, 400, "not name=value"},
		{"search _lastUpdated with 8 digits", source, request{path: "/Patient?_lastUpdated=ge2020-01-01T00:00:00.12345678Z"}, 400, "_lastUpdated"},
		{"strict search with an unknown parameter", source, request{path: "/Observation?subject=Patient/1&_summary=count", headers: map[string]string{"Prefer": "handling=strict"}}, 400, "subject"},
		{"search with an unknown handling", source, request{path: "/Observation", headers: map[string]string{"Prefer": "handling=maybe"}}, 400, "handling"},
		{"export _until", source, request{path: "/$export?_until=2024-01-01", headers: exportHeaders()}, 400, "_until"},
		{"export _elements", source, request{path: "/$export?_elements=id", headers: exportHeaders()}, 400, "_elements"},
		{"export _foo", source, request{path: "/$export?_foo=1", headers: exportHeaders()}, 400, "_foo"},
		{"export _typeFilter without _type", source, request{path: "/$export?_typeFilter=Observation%3Fstatus%3Dfinal", headers: exportHeaders()}, 400, "_typeFilter requires _type"},
		{"export includeAssociatedData with _typeFilter", source, request{path: "/$export?_type=Observation&_typeFilter=Observation%3Fstatus%3Dfinal&includeAssociatedData=_history", headers: exportHeaders()}, 400, `"_typeFilter" cannot be used with an export request with historical or soft deleted resources`},
		{"export unknown _type", source, request{path: "/$export?_type=Patient,Spaceship", headers: exportHeaders()}, 400, "Spaceship"},
		{"export bad _since", source, request{path: "/$export?_since=yesterday", headers: exportHeaders()}, 400, "_since"},
		{"export bad _till", source, request{path: "/$export?_till=2024-13-01", headers: exportHeaders()}, 400, "_till"},
		{"export bad _container", source, request{path: "/$export?_container=Bad_Name", headers: exportHeaders()}, 400, "_container"},
		{"import on api-for-fhir", source, request{method: "POST", path: "/$import", headers: importHeaders(), body: importBody("", importInput{URL: inAccount})}, 400, "$import"},
		{"import Prefer with handling", dest, request{method: "POST", path: "/$import", headers: map[string]string{"Content-Type": "application/fhir+json", "Prefer": "respond-async, handling=lenient"}, body: importBody("", importInput{URL: inAccount})}, 400, "Prefer"},
		{"import Prefer missing", dest, request{method: "POST", path: "/$import", headers: map[string]string{"Content-Type": "application/fhir+json"}, body: importBody("", importInput{URL: inAccount})}, 400, "Prefer"},
		{"import wrong Content-Type", dest, request{method: "POST", path: "/$import", headers: map[string]string{"Content-Type": "application/json", "Prefer": "respond-async"}, body: importBody("", importInput{URL: inAccount})}, 400, "Content-Type"},
		{"import body not Parameters", dest, request{method: "POST", path: "/$import", headers: importHeaders(), body: `{"resourceType":"Bundle"}`}, 400, "Parameters"},
		{"import url with query string", dest, request{method: "POST", path: "/$import", headers: importHeaders(), body: importBody("", importInput{URL: inAccount + "?sv=2024&sig=abc"})}, 400, "query string"},
		{"import url off the account", dest, request{method: "POST", path: "/$import", headers: importHeaders(), body: importBody("", importInput{URL: "https://other.blob.core.windows.net/staging/Patient-1.ndjson"})}, 400, "storage account"},
		{"import duplicate url", dest, request{method: "POST", path: "/$import", headers: importHeaders(), body: importBody("", importInput{URL: inAccount}, importInput{URL: other}, importInput{URL: inAccount})}, 400, "more than once"},
		{"import SearchParameter input", dest, request{method: "POST", path: "/$import", headers: importHeaders(), body: importBody("", importInput{Type: "SearchParameter", URL: inAccount})}, 400, "SearchParameter"},
		{"import unknown mode", dest, request{method: "POST", path: "/$import", headers: importHeaders(), body: importBody("FastLoad", importInput{URL: inAccount})}, 400, "FastLoad"},
		{"import InitialLoad when not enabled", dest, request{method: "POST", path: "/$import", headers: importHeaders(), body: importBody("InitialLoad", importInput{URL: inAccount})}, 400, "initial import mode"},
		{"import no input", dest, request{method: "POST", path: "/$import", headers: importHeaders(), body: importBody("")}, 400, "no input"},
		{"import wrong inputFormat", dest, request{method: "POST", path: "/$import", headers: importHeaders(), body: `{"resourceType":"Parameters","parameter":[{"name":"inputFormat","valueString":"text/csv"},{"name":"input","part":[{"name":"url","valueUri":"` + inAccount + `"}]}]}`}, 400, "inputFormat"},
		{"search malformed _lastUpdated", source, request{path: "/Patient?_lastUpdated=ge2020-02-30"}, 400, "_lastUpdated"},
		{"search malformed _count", source, request{path: "/Patient?_count=ten"}, 400, "_count"},
		{"read absent resource", source, request{path: "/Patient/nobody"}, 404, "nobody"},
		{"unknown type", source, request{path: "/Spaceship"}, 404, "Spaceship"},
		{"unknown export job", source, request{path: "/_operations/export/nope"}, 404, "nope"},
		{"unknown import job", dest, request{method: "DELETE", path: "/_operations/import/nope"}, 404, "nope"},
		{"batch wrong Content-Type", source, request{method: "POST", path: "/", headers: map[string]string{"Content-Type": "text/plain"}, body: `{}`}, 415, "Content-Type"},
		{"token for another audience", source, request{path: "/Patient", noAuth: true, headers: map[string]string{"Authorization": "Bearer " + fhirsim.DevToken("http://127.0.0.1:1")}}, 401, "audience"},
		{"token for the other simulator", source, request{path: "/Patient", noAuth: true, headers: map[string]string{"Authorization": "Bearer " + fhirsim.DevToken(dest.URL)}}, 401, "audience"},
		{"no token", source, request{path: "/Patient", noAuth: true}, 401, "no bearer token"},
		{"no token on export", source, request{path: "/$export", noAuth: true, headers: exportHeaders()}, 401, "no bearer token"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			resp := tc.target.do(t, tc.req)
			body, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			require.Equal(t, tc.status, resp.StatusCode, "body: %s", body)
			require.Contains(t, resp.Header.Get("Content-Type"), "application/fhir+json")
			var oo struct {
				ResourceType string `json:"resourceType"`
				Issue        []struct {
					Diagnostics string `json:"diagnostics"`
				} `json:"issue"`
			}
			require.NoError(t, json.Unmarshal(body, &oo))
			require.Equal(t, "OperationOutcome", oo.ResourceType)
			require.NotEmpty(t, oo.Issue)
			require.Contains(t, oo.Issue[0].Diagnostics, tc.contains)
		})
	}

	t.Run("export accepts handling with respond-async", func(t *testing.T) {
		t.Parallel()
		for _, prefer := range []string{"respond-async, handling=strict", "handling=lenient,respond-async"} {
			resp := source.do(t, request{path: "/$export?_type=Patient", headers: map[string]string{"Accept": "application/fhir+json", "Prefer": prefer}})
			require.Equal(t, http.StatusAccepted, resp.StatusCode, prefer)
		}
	})

	t.Run("lenient search ignores an unknown parameter, strict search knows the result parameters", func(t *testing.T) {
		t.Parallel()
		resp := source.do(t, request{path: "/Observation?subject=Patient/1&_summary=count"})
		require.Equal(t, http.StatusOK, resp.StatusCode)
		resp = source.do(t, request{path: "/Observation?status=final&_lastUpdated=ge2020-01-01T00:00:00.1234567Z&_summary=count&_count=5&_elements=id",
			headers: map[string]string{"Prefer": "handling=strict"}})
		body, _ := io.ReadAll(resp.Body)
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	})

	t.Run("metadata needs no token", func(t *testing.T) {
		t.Parallel()
		resp := source.do(t, request{path: "/metadata", noAuth: true})
		require.Equal(t, http.StatusOK, resp.StatusCode)
	})
}
