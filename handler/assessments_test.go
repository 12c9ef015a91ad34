package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/assess"
	"github.com/fhir-migrator/fhir-migrator/internal/bus"
	"github.com/fhir-migrator/fhir-migrator/internal/fhir"
	"github.com/fhir-migrator/fhir-migrator/internal/migration"
	"github.com/fhir-migrator/fhir-migrator/internal/store"
)

// assessStaging is noStaging with what an assessment needs besides: none of it works.
type assessStaging struct{ noStaging }

func (assessStaging) Endpoint() string { return "http://127.0.0.1:10000/devstoreaccount1" }
func (assessStaging) ContainerExists(context.Context, string) (bool, error) {
	return false, errNoStaging
}
func (assessStaging) PutBlob(context.Context, string, string, string, []byte) (string, error) {
	return "", errNoStaging
}

// testAssess is the assessment service of a test app: its documents in docs, requests validated by svc, FHIR
// clients as the handler makes them (loopback allowed).
func testAssess(t testing.TB, docs store.Store, svc *migration.Service) *assess.Service {
	t.Helper()
	newClient, _, _, err := fhirClientFactory(&Config{AllowedHosts: "127.0.0.1", FHIRCredential: "dev"}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	a, err := assess.NewService(assess.Config{Store: docs, Staging: assessStaging{}, Validator: svc,
		FHIR: func(base string) (assess.Client, error) { return newClient(base) }})
	require.NoError(t, err)
	return a
}

// testApp is the handler over an empty store, loopback servers allowed.
func testApp(t *testing.T) *app {
	t.Helper()
	docs := store.NewMemory()
	policy, err := fhir.ParseHostPolicy("127.0.0.1")
	require.NoError(t, err)
	svc, err := migration.NewService(migration.Config{Tuning: migration.DefaultTuning(), Store: docs, Bus: &bus.Memory{}, Policy: policy,
		Staging: noStaging{}, FHIR: func(string) (migration.FHIRClient, error) { return nil, errNoStaging }})
	require.NoError(t, err)
	return &app{svc: svc, assess: testAssess(t, docs, svc), logger: slog.New(slog.DiscardHandler)}
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

// TestAssessmentRoutes: a start is answered 202 with its Location and status running, stored, read back as JSON,
// and its report served as Markdown or, to a browser, as the page under the report's Content-Security-Policy; an
// invalid request is refused as a migration's start refuses it, an unknown id 404.
func TestAssessmentRoutes(t *testing.T) {
	t.Parallel()
	a := testApp(t)
	srv := httptest.NewServer(a.Routes())
	defer srv.Close()

	resp, err := http.Post(srv.URL+"/api/assessments", "application/json",
		strings.NewReader(`{"source":"http://127.0.0.1:1","destination":"http://127.0.0.1:2","types":["Patient"]}`))
	require.NoError(t, err)
	body := readAll(t, resp)
	require.Equal(t, http.StatusAccepted, resp.StatusCode, body)
	loc := resp.Header.Get("Location")
	require.True(t, strings.HasPrefix(loc, "/api/assessments/a-"), loc)
	var started assess.Assessment
	require.NoError(t, json.Unmarshal([]byte(body), &started))
	require.Equal(t, assess.StatusRunning, started.Status)
	require.Equal(t, "/api/assessments/"+started.ID, loc)

	resp, err = http.Get(srv.URL + loc)
	require.NoError(t, err)
	body = readAll(t, resp)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	var got assess.Assessment
	require.NoError(t, json.Unmarshal([]byte(body), &got))
	require.Equal(t, started.ID, got.ID)
	require.Equal(t, "http://127.0.0.1:1", got.Request.Source)

	resp, err = http.Get(srv.URL + loc + "/report")
	require.NoError(t, err)
	body = readAll(t, resp)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.Equal(t, "text/markdown; charset=utf-8", resp.Header.Get("Content-Type"))
	require.Contains(t, body, "# Assessment ")

	req, _ := http.NewRequest(http.MethodGet, srv.URL+loc+"/report", nil)
	req.Header.Set("Accept", "text/html,application/xhtml+xml")
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	body = readAll(t, resp)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.Equal(t, "text/html; charset=utf-8", resp.Header.Get("Content-Type"))
	require.NotEmpty(t, resp.Header.Get("Content-Security-Policy"))
	require.Contains(t, body, "<!DOCTYPE html>")

	resp, err = http.Post(srv.URL+"/api/assessments", "application/json", strings.NewReader(`{"destination":"http://127.0.0.1:2"}`))
	require.NoError(t, err)
	body = readAll(t, resp)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode, body)
	require.Contains(t, body, `"missing_field"`)
	require.Contains(t, body, `"source"`)

	resp, err = http.Get(srv.URL + "/api/assessments/a-none")
	require.NoError(t, err)
	body = readAll(t, resp)
	require.Equal(t, http.StatusNotFound, resp.StatusCode, body)
	require.Contains(t, body, `"not_found"`)
}
