package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/api"
	"github.com/fhir-migrator/fhir-migrator/internal/bus"
	"github.com/fhir-migrator/fhir-migrator/internal/fhir"
	"github.com/fhir-migrator/fhir-migrator/internal/migration"
	"github.com/fhir-migrator/fhir-migrator/internal/staging"
	"github.com/fhir-migrator/fhir-migrator/internal/store"
)

// noStaging is a staging account these tests never reach.
type noStaging struct{}

var errNoStaging = errors.New("no staging in this test")

func (noStaging) ClaimContainer(context.Context, string, string) error   { return errNoStaging }
func (noStaging) ReleaseContainer(context.Context, string, string) error { return errNoStaging }
func (noStaging) Open(context.Context, string) (io.ReadCloser, error)    { return nil, errNoStaging }
func (noStaging) ListContainer(context.Context, string, string) ([]staging.BlobInfo, error) {
	return nil, errNoStaging
}
func (noStaging) DeleteContainer(context.Context, string, string) error { return errNoStaging }
func (noStaging) BlobSize(context.Context, string) (int64, error)       { return 0, errNoStaging }
func (noStaging) DeleteBlob(context.Context, string) error              { return errNoStaging }

// actionsServer serves the routes over an engine whose store holds one verified migration, m-1.
func actionsServer(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(actionsApp(t).Routes())
	t.Cleanup(srv.Close)
	return srv
}

// actionsApp is the handler over an engine whose store holds one verified migration, m-1.
func actionsApp(t testing.TB) *app {
	t.Helper()
	ctx := context.Background()
	docs := store.NewMemory()
	policy, err := fhir.ParseHostPolicy("")
	require.NoError(t, err)
	svc, err := migration.NewService(migration.Config{Tuning: migration.DefaultTuning(), Store: docs, Bus: &bus.Memory{}, Policy: policy, Staging: noStaging{},
		FHIR: func(string) (migration.FHIRClient, error) { return nil, errors.New("no FHIR server in this test") }})
	require.NoError(t, err)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	m := migration.Migration{ID: "m-1", Status: migration.StatusFailed, CreatedAt: now, UpdatedAt: now,
		Request: migration.Request{Container: "m-1", Verify: "ids"},
		Error:   &migration.Failure{Code: "verification_mismatch", Message: "Patient: 2 missing"},
		Verification: &migration.Verification{Generation: 1, CheckedAt: &now, Report: "reports/m-1.md",
			IDs: &migration.IDCheck{NextFile: 2, Files: 2}, MissingReport: "reports/m-1-missing/1/", MissingCount: 3}}
	data, err := json.Marshal(m)
	require.NoError(t, err)
	for name, body := range map[string]string{
		"migrations/m-1.json":              string(data),
		"reports/m-1.md":                   "# Verification of migration m-1\n",
		"reports/m-1-missing/1/000000.txt": "Patient/a\nPatient/b\n",
		"reports/m-1-missing/1/000001.txt": "Observation/c\n",
		"reports/m-1-missing/0/000000.txt": "Patient/from-an-older-round\n",
		"migrations/m-2.json":              `{"id":"m-2","status":"exporting","request":{"container":"m-2"}}`,
	} {
		_, err := docs.Put(ctx, name, []byte(body), "", nil)
		require.NoError(t, err)
	}
	return &app{svc: svc, assess: testAssess(t, docs, svc), logger: slog.New(slog.DiscardHandler)}
}

func TestReportAndActionRoutes(t *testing.T) {
	t.Parallel()
	srv := actionsServer(t)
	cases := []struct {
		name, method, path, body string
		status                   int
		contentType, contains    string
	}{
		{"report", "GET", "/api/migrations/m-1/report", "", 200, "text/markdown", "# Verification of migration m-1"},
		{"every missing id", "GET", "/api/migrations/m-1/report/missing", "", 200, "text/plain", "Patient/a\nPatient/b\nObservation/c\n"},
		{"report of an unknown migration", "GET", "/api/migrations/m-9/report", "", 404, "application/json", `"not_found"`},
		{"report not ready", "GET", "/api/migrations/m-2/report", "", 404, "application/json", `"report_not_ready"`},
		{"missing not ready", "GET", "/api/migrations/m-2/report/missing", "", 404, "application/json", `"report_not_ready"`},
		{"unknown report part", "GET", "/api/migrations/m-1/report/other", "", 404, "application/json", `"no_route"`},
		{"unknown endpoint", "GET", "/api/elsewhere", "", 404, "application/json", `"no_route"`},
		{"unknown action", "POST", "/api/migrations/m-1/explode", "", 404, "application/json", `"unknown_action"`},
		{"verify unknown migration", "POST", "/api/migrations/m-9/verify", "", 404, "application/json", `"not_found"`},
		{"verify bad mode", "POST", "/api/migrations/m-1/verify", `{"verify":"all"}`, 400, "application/json", `"invalid_verify"`},
		{"verify bad body", "POST", "/api/migrations/m-1/verify", `{"verify":`, 400, "application/json", `"invalid_json"`},
		{"verify running", "POST", "/api/migrations/m-2/verify", "", 409, "application/json", `"not_verifiable"`},
		{"cleanup unknown field", "POST", "/api/migrations/m-1/cleanup", `{"forse":true}`, 400, "application/json", `"unknown_field"`},
		{"cleanup running", "POST", "/api/migrations/m-2/cleanup", `{"force":true}`, 409, "application/json", `"migration_running"`},
		{"cleanup when the staging account fails", "POST", "/api/migrations/m-1/cleanup", `{"force":true}`, 500, "application/json", `"internal_error"`},
		{"re-verify", "POST", "/api/migrations/m-1/verify", `{"verify":"counts"}`, 202, "application/json", `"status": "verifying"`},
	}
	for _, tc := range cases {
		req, err := http.NewRequest(tc.method, srv.URL+tc.path, strings.NewReader(tc.body))
		require.NoError(t, err)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		require.Equal(t, tc.status, resp.StatusCode, "%s: %s", tc.name, body)
		require.Contains(t, resp.Header.Get("Content-Type"), tc.contentType, tc.name)
		require.Contains(t, string(body), tc.contains, tc.name)
	}
}

// TestEveryBodyIsReadTheSameWay walks every route that takes a body: an unknown field, a body over the route's
// limit and a known field of the wrong JSON type get the same code, field and shape from each.
func TestEveryBodyIsReadTheSameWay(t *testing.T) {
	t.Parallel()
	srv := actionsServer(t)
	routes := []struct {
		path      string
		limit     int
		typeField string
		typeBody  string
	}{
		{"/api/migrations", api.MaxStartBody, "types", `{"types":"Patient"}`},
		{"/api/migrations/m-1/verify", api.MaxActionBody, "verifySample", `{"verifySample":"ten"}`},
		{"/api/migrations/m-1/cleanup", api.MaxActionBody, "force", `{"force":"yes"}`},
	}
	for _, rt := range routes {
		for _, tc := range []struct {
			name, body, code, field string
		}{
			{"unknown field", `{"typo":1}`, "unknown_field", "typo"},
			{"over the limit", `{"x":"` + strings.Repeat("a", rt.limit) + `"}`, "body_too_large", ""},
			{"wrong JSON type", rt.typeBody, "invalid_json", rt.typeField},
			{"not an object", `[1]`, "invalid_json", ""},
			{"trailing data", `{} {}`, "invalid_json", ""},
		} {
			resp, err := http.Post(srv.URL+rt.path, "application/json", strings.NewReader(tc.body))
			require.NoError(t, err)
			raw, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			require.NoError(t, resp.Body.Close())
			require.Equal(t, http.StatusBadRequest, resp.StatusCode, "%s %s: %s", rt.path, tc.name, raw)
			require.Equal(t, "application/json; charset=utf-8", resp.Header.Get("Content-Type"))
			var answer map[string]map[string]string
			require.NoError(t, json.Unmarshal(raw, &answer), "%s %s", rt.path, tc.name)
			require.Len(t, answer, 1, "one error object")
			e := answer["error"]
			require.Equal(t, tc.code, e["code"], "%s %s", rt.path, tc.name)
			require.Equal(t, tc.field, e["field"], "%s %s", rt.path, tc.name)
			require.NotEmpty(t, e["message"])
		}
	}
}

func TestReportAnswersHTMLOnlyToWhoPrefersIt(t *testing.T) {
	t.Parallel()
	for accept, want := range map[string]bool{
		"":              false,
		"*/*":           false,
		"text/markdown": false,
		"text/html":     true,
		"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8": true,
		"text/markdown, text/html;q=0.5":                                  false,
		"text/html;q=0.9, text/markdown;q=0.3":                            true,
		"text/html;q=0":                                                   false,
	} {
		require.Equal(t, want, wantsHTML(accept), accept)
	}
	srv := actionsServer(t)
	req, err := http.NewRequest(http.MethodGet, srv.URL+"/api/migrations/m-1/report", nil)
	require.NoError(t, err)
	req.Header.Set("Accept", "text/html")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "text/html; charset=utf-8", resp.Header.Get("Content-Type"))
	require.Contains(t, resp.Header.Get("Content-Security-Policy"), "default-src 'none'")
	require.Contains(t, string(body), `data-figure="status">failed<`)
	require.NotContains(t, string(body), "<script")
	for _, attr := range []string{" src=", " href=", "@import", "url("} {
		require.NotContains(t, string(body), attr, "nothing is fetched from elsewhere")
	}
}
