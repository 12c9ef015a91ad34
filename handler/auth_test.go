package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/assess"
	"github.com/fhir-migrator/fhir-migrator/internal/bus"
	"github.com/fhir-migrator/fhir-migrator/internal/fhirsim"
	"github.com/fhir-migrator/fhir-migrator/internal/migration"
	"github.com/fhir-migrator/fhir-migrator/internal/staging"
	"github.com/fhir-migrator/fhir-migrator/internal/store"
)

const testClientID = "0b9e6c3a-1d2f-4e5a-8b7c-6d5e4f3a2b1c"

// principalHeader is X-MS-CLIENT-PRINCIPAL as App Service authentication writes it for a Microsoft Entra token
// (configure-authentication-user-identities.md: Base64 JSON of auth_typ, claims [{typ, val}], name_typ, role_typ).
func principalHeader(oid, name string, roles ...string) string {
	claims := []map[string]string{
		{"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": oid},
		{"typ": "name", "val": name},
		{"typ": "aud", "val": "api://" + testClientID},
	}
	for _, r := range roles {
		claims = append(claims, map[string]string{"typ": "roles", "val": r})
	}
	raw, err := json.Marshal(map[string]any{"auth_typ": "aad", "name_typ": "name", "role_typ": "roles", "claims": claims})
	if err != nil {
		panic(err)
	}
	return base64.StdEncoding.EncodeToString(raw)
}

// syncBuffer is a log sink safe for the handler's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// lines are the JSON log lines with msg.
func (s *syncBuffer) lines(msg string) []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(s.b.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// workingStaging is a staging account whose containers are claimed, listed and deleted (holding nothing).
type workingStaging struct{ noStaging }

func (workingStaging) ClaimContainer(context.Context, string, string) error   { return nil }
func (workingStaging) ReleaseContainer(context.Context, string, string) error { return nil }
func (workingStaging) ListContainer(context.Context, string, string) ([]staging.BlobInfo, error) {
	return []staging.BlobInfo{{Name: "Patient-1.ndjson", Size: 10}}, nil
}
func (workingStaging) DeleteContainer(context.Context, string, string) error { return nil }

// authApp is the handler in the given auth mode over real FHIR simulators, an in-memory store holding a migration
// in each state a state change needs, and a JSON log; it returns the app, its log and the simulators' URLs.
func authApp(t *testing.T, mode string) (*app, *syncBuffer, string, string) {
	t.Helper()
	src := httptest.NewServer(fhirsim.New(fhirsim.WithAuth(false)))
	t.Cleanup(src.Close)
	dst := httptest.NewServer(fhirsim.New(fhirsim.WithFlavor(fhirsim.FlavorAHDS), fhirsim.WithAuth(false)))
	t.Cleanup(dst.Close)
	clients, policy, _, err := fhirClients(&Config{AllowedHosts: "127.0.0.1", FHIRCredential: "dev"}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	docs := store.NewMemory()
	svc, err := migration.NewService(migration.Config{Tuning: migration.DefaultTuning(), Store: docs, Bus: &bus.Memory{},
		Policy: policy, Staging: workingStaging{}, FHIR: clients})
	require.NoError(t, err)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	verified := &migration.Verification{Generation: 1, CheckedAt: &now, Passed: true, Report: "reports/m-done.md"}
	for _, m := range []migration.Migration{
		{ID: "m-done", Status: migration.StatusCompleted, Verification: verified},
		{ID: "m-running", Status: migration.StatusExporting},
		{ID: "m-syncing", Status: migration.StatusSyncing, Request: migration.Request{Sync: true},
			Sync: &migration.Sync{HighWater: now, Rounds: 1, NextAt: &now}},
		{ID: "m-stale", Status: migration.StatusFailed, Error: &migration.Failure{Code: "verification_mismatch"},
			Verification: &migration.Verification{Generation: 1, CheckedAt: &now, Report: "reports/m-stale.md",
				Refused: &migration.RefusedSummary{Versions: 1, Stale: 1, Report: "reports/m-stale-refused.json"}}},
	} {
		m.CreatedAt, m.UpdatedAt = now, now
		m.Request.Source, m.Request.Destination, m.Request.Container, m.Request.Verify = src.URL, dst.URL, m.ID, "counts"
		data, err := json.Marshal(m)
		require.NoError(t, err)
		_, err = docs.Put(context.Background(), "migrations/"+m.ID+".json", data, "", nil)
		require.NoError(t, err)
	}
	_, err = docs.Put(context.Background(), "reports/m-done.md", []byte("# Verification of migration m-done\n"), "", nil)
	require.NoError(t, err)
	logs := &syncBuffer{}
	a := &app{svc: svc, assess: testAssess(t, docs, svc), logger: slog.New(slog.NewJSONHandler(logs, nil)), auth: AuthConfig{Mode: mode, ClientID: testClientID}}
	return a, logs, src.URL, dst.URL
}

type authAnswer struct {
	status int
	code   string
	msg    string
	raw    string
	header http.Header
}

func callAPI(t *testing.T, h http.Handler, method, path, body string, header map[string]string) authAnswer {
	t.Helper()
	var rd io.Reader = http.NoBody
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rd)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var e struct {
		Error struct{ Code, Message string }
	}
	_ = json.Unmarshal(rec.Body.Bytes(), &e)
	return authAnswer{status: rec.Code, code: e.Error.Code, msg: e.Error.Message, raw: rec.Body.String(), header: rec.Header()}
}

// describedRequests is one request per operation of the description, on migration id.
func describedRequests(id string) []apiOperation {
	var out []apiOperation
	for _, op := range apiOperations() {
		op.path = strings.ReplaceAll(op.path, "{id}", id)
		out = append(out, op)
	}
	return out
}

// In entra mode a request that reached the handler without the principal the platform signs in is refused 401,
// whatever it asks for: a platform with authentication off cannot open the API. So is a principal that cannot be
// read, or one signed in for another app.
func TestEntraModeRefusesARequestWithoutAPrincipal(t *testing.T) {
	t.Parallel()
	a, logs, _, _ := authApp(t, AuthEntra)
	h := a.Routes()
	other := base64.StdEncoding.EncodeToString([]byte(`{"auth_typ":"aad","role_typ":"roles","claims":[` +
		`{"typ":"roles","val":"Migration.Operate"},{"typ":"aud","val":"api://11111111-2222-3333-4444-555555555555"}]}`))
	for _, op := range describedRequests("m-done") {
		for name, hdr := range map[string]map[string]string{
			"no principal":            nil,
			"only the name header":    {headerPrincipalName: "alice@contoso.com", headerPrincipalID: "oid-alice"},
			"not Base64":              {headerPrincipal: "not base64!"},
			"not a principal":         {headerPrincipal: base64.StdEncoding.EncodeToString([]byte("[1,2]"))},
			"a token for another app": {headerPrincipal: other},
		} {
			got := callAPI(t, h, op.method, op.path, "", hdr)
			require.Equal(t, http.StatusUnauthorized, got.status, "%s %s (%s): %s", op.method, op.path, name, got.raw)
			require.Equal(t, "unauthenticated", got.code, "%s %s (%s)", op.method, op.path, name)
			require.Equal(t, "Bearer", got.header.Get("WWW-Authenticate"))
		}
	}
	for _, path := range []string{"/api/nothing", "/api/migrations/m-done/report/nothing"} {
		got := callAPI(t, h, http.MethodGet, path, "", nil)
		require.Equal(t, http.StatusUnauthorized, got.status, "%s: authenticated before routing", path)
	}
	doc, err := a.svc.Get(context.Background(), "m-running")
	require.NoError(t, err)
	require.Equal(t, migration.StatusExporting, doc.Status, "nothing was done")
	require.NotEmpty(t, logs.lines("unauthenticated request refused"))
}

// Every operation of the description is served by a route with an app role: the reads Migration.Read, every state
// change Migration.Operate. The description names the role (x-required-role) and answers 401 and 403; the handler
// refuses a principal without the role 403 forbidden, naming the role, and lets one with it through (Operate
// implies Read).
func TestEveryOperationHasItsRole(t *testing.T) {
	t.Parallel()
	for _, rt := range (&app{}).apiRoutes() {
		method, _, _ := strings.Cut(rt.pattern, " ")
		want := roleOperate
		if method == http.MethodGet {
			want = roleRead
		}
		require.Equal(t, want, rt.role, "%s: a read needs %s, a change %s", rt.pattern, roleRead, roleOperate)
		require.False(t, rt.auditRead && rt.role != roleRead, rt.pattern)
	}
	var doc struct {
		Paths map[string]map[string]struct {
			Role      string `json:"x-required-role"`
			Responses map[string]struct {
				Description string   `json:"description"`
				Codes       []string `json:"x-error-codes"`
			} `json:"responses"`
		} `json:"paths"`
	}
	raw, _ := readOpenAPI(t)
	require.NoError(t, json.Unmarshal(raw, &doc))
	roles := map[string]appRole{}
	for _, op := range apiOperations() {
		role, ok := routeRole(op.method, op.path)
		require.True(t, ok, "%s: no route", op.id)
		roles[op.id] = role
		described := doc.Paths[op.path][strings.ToLower(op.method)]
		require.Equal(t, string(role), described.Role, "%s: x-required-role", op.id)
		require.Equal(t, []string{"unauthenticated"}, described.Responses["401"].Codes, op.id)
		require.Equal(t, []string{"forbidden"}, described.Responses["403"].Codes, op.id)
		require.Contains(t, described.Responses["403"].Description, "this operation needs `"+string(role)+"`", op.id)
	}

	a, _, _, _ := authApp(t, AuthEntra)
	h := a.Routes()
	for _, op := range describedRequests("m-nobody") {
		role := roles[op.id]
		for _, tc := range []struct {
			name    string
			roles   []string
			allowed bool
		}{
			{"no role", nil, false},
			{"another app's role", []string{"Reader"}, false},
			{"Migration.Read", []string{string(roleRead)}, role == roleRead},
			{"Migration.Operate", []string{string(roleOperate)}, true},
			{"both", []string{string(roleRead), string(roleOperate)}, true},
		} {
			got := callAPI(t, h, op.method, op.path, "", map[string]string{headerPrincipal: principalHeader("oid-1", "pat", tc.roles...)})
			if tc.allowed {
				require.NotContains(t, []int{http.StatusUnauthorized, http.StatusForbidden}, got.status, "%s with %s: %s", op.id, tc.name, got.raw)
				continue
			}
			require.Equal(t, http.StatusForbidden, got.status, "%s with %s: %s", op.id, tc.name, got.raw)
			require.Equal(t, "forbidden", got.code, "%s with %s", op.id, tc.name)
			require.Contains(t, got.msg, "needs the app role "+string(role), "%s: the message names the role", op.id)
			require.Contains(t, got.msg, "pat")
		}
	}
}

// A reader reads (the document, the list, the report, the missing ids, the description) and cannot start, cancel
// or change anything: each change is refused 403 naming Migration.Operate, before the engine is asked.
func TestReadRoleCanReadAndNotChange(t *testing.T) {
	t.Parallel()
	a, logs, src, dst := authApp(t, AuthEntra)
	h := a.Routes()
	reader := map[string]string{headerPrincipal: principalHeader("oid-rita", "rita@contoso.com", string(roleRead))}
	for _, path := range []string{"/api/migrations", "/api/migrations/m-done", "/api/migrations/m-done/report", "/api/openapi.json"} {
		got := callAPI(t, h, http.MethodGet, path, "", reader)
		require.Equal(t, http.StatusOK, got.status, "%s: %s", path, got.raw)
	}
	for _, c := range []struct{ method, path, body string }{
		{http.MethodPost, "/api/migrations", `{"source":"` + src + `","destination":"` + dst + `","types":["Patient"]}`},
		{http.MethodDelete, "/api/migrations/m-running", ""},
		{http.MethodPost, "/api/migrations/m-done/verify", `{"verify":"counts"}`},
		{http.MethodPost, "/api/migrations/m-done/cleanup", `{}`},
		{http.MethodPost, "/api/migrations/m-syncing/cutover", ""},
		{http.MethodPost, "/api/migrations/m-stale/repair", ""},
	} {
		got := callAPI(t, h, c.method, c.path, c.body, reader)
		require.Equal(t, http.StatusForbidden, got.status, "%s %s: %s", c.method, c.path, got.raw)
		require.Equal(t, "forbidden", got.code)
		require.Contains(t, got.msg, "Migration.Operate")
	}
	list, err := a.svc.List(context.Background(), migration.ListRequest{})
	require.NoError(t, err)
	require.Len(t, list.Migrations, 4, "nothing was started")
	for _, id := range []string{"m-done", "m-running", "m-syncing", "m-stale"} {
		m, err := a.svc.Get(context.Background(), id)
		require.NoError(t, err)
		require.Empty(t, m.Audit, "%s: nothing changed, nothing recorded", id)
	}
	refused := logs.lines("audit")
	require.Len(t, refused, 7, "each refused change logged (6), and the report read (1)")
	forbidden := 0
	for _, l := range refused {
		if l["code"] == "forbidden" {
			forbidden++
			require.Equal(t, "rita@contoso.com", l["name"])
		}
	}
	require.Equal(t, 6, forbidden)
}

// Every state change of the API writes an audit entry in its migration's document, with the signed-in principal
// (object id and name), the operation, when, the client's address and the request's fields, and a JSON log line
// with msg audit and the migration's id; reads of the report, the report page and the missing ids log a line too.
func TestEveryStateChangeIsAudited(t *testing.T) {
	t.Parallel()
	a, logs, src, dst := authApp(t, AuthEntra)
	h := a.Routes()
	operator := map[string]string{headerPrincipal: principalHeader("oid-olga", "olga@contoso.com", string(roleOperate)),
		"X-Forwarded-For": "203.0.113.7:51234, 10.0.0.4", "X-Azure-Functions-InvocationId": "inv-1"}
	start := callAPI(t, h, http.MethodPost, "/api/migrations",
		`{"source":"`+src+`","destination":"`+dst+`","types":["Patient"]}`, operator)
	require.Equal(t, http.StatusAccepted, start.status, start.raw)
	var started migration.Migration
	require.NoError(t, json.Unmarshal([]byte(start.raw), &started))
	assessBody := `{"source":"` + src + `","destination":"` + dst + `","types":["Patient"]}`
	assessed := callAPI(t, h, http.MethodPost, "/api/assessments", assessBody, operator)
	require.Equal(t, http.StatusAccepted, assessed.status, assessed.raw)
	var assessment assess.Assessment
	require.NoError(t, json.Unmarshal([]byte(assessed.raw), &assessment))

	changes := []struct {
		op, method, path, body, id string
		status                     int
		fields                     map[string]any
	}{
		{"startMigration", "", "", "", started.ID, http.StatusAccepted, map[string]any{"source": src, "destination": dst, "types": []any{"Patient"}}},
		{"cancelMigration", http.MethodDelete, "/api/migrations/m-running", "", "m-running", http.StatusOK, nil},
		{"verifyAgain", http.MethodPost, "/api/migrations/m-done/verify", `{"verify":"counts"}`, "m-done", http.StatusAccepted, map[string]any{"verify": "counts"}},
		{"cutOver", http.MethodPost, "/api/migrations/m-syncing/cutover", `{"accept":["refused-versions"]}`, "m-syncing", http.StatusAccepted, map[string]any{"accept": []any{"refused-versions"}}},
		{"repair", http.MethodPost, "/api/migrations/m-stale/repair", "", "m-stale", http.StatusAccepted, nil},
		{"cleanUp", http.MethodPost, "/api/migrations/m-running/cleanup", `{"force":true}`, "m-running", http.StatusOK, map[string]any{"force": true}},
		{"startAssessment", "", "", "", assessment.ID, http.StatusAccepted, map[string]any{"source": src, "destination": dst, "types": []any{"Patient"}}},
	}
	for _, c := range changes[1 : len(changes)-1] {
		got := callAPI(t, h, c.method, c.path, c.body, operator)
		require.Equal(t, c.status, got.status, "%s: %s", c.op, got.raw)
	}
	// Every operation that needs Migration.Operate is among them.
	var operate []string
	for _, op := range apiOperations() {
		if role, _ := routeRole(op.method, op.path); role == roleOperate {
			operate = append(operate, op.id)
		}
	}
	var walked []string
	for _, c := range changes {
		walked = append(walked, c.op)
	}
	require.ElementsMatch(t, operate, walked, "every state change is tested")

	lines := logs.lines("audit")
	for _, c := range changes {
		var trail []migration.AuditEntry
		if c.op == "startAssessment" { // the assessment's own document
			as, err := a.assess.Get(context.Background(), c.id)
			require.NoError(t, err)
			trail = as.Audit
		} else {
			m, err := a.svc.Get(context.Background(), c.id)
			require.NoError(t, err)
			trail = m.Audit
		}
		i := slices.IndexFunc(trail, func(e migration.AuditEntry) bool { return e.Operation == c.op })
		require.GreaterOrEqual(t, i, 0, "%s: no audit entry in %s: %+v", c.op, c.id, trail)
		e := trail[i]
		require.Equal(t, "olga@contoso.com", e.Who, c.op)
		require.Equal(t, "oid-olga", e.ObjectID, c.op)
		require.Equal(t, "olga@contoso.com", e.Name, c.op)
		require.True(t, e.Verified, c.op)
		require.Equal(t, "203.0.113.7", e.Client, c.op)
		require.Equal(t, "203.0.113.7:51234, 10.0.0.4", e.ForwardedFor, c.op)
		require.Equal(t, "inv-1", e.InvocationID, c.op)
		require.WithinDuration(t, time.Now(), e.At, time.Minute, c.op)
		require.Equal(t, c.fields, e.Fields, c.op)
		j := slices.IndexFunc(lines, func(l map[string]any) bool { return l["operation"] == c.op })
		require.GreaterOrEqual(t, j, 0, "%s: no audit log line", c.op)
		require.Equal(t, c.id, lines[j]["migration"], c.op)
		require.Equal(t, "olga@contoso.com", lines[j]["who"], c.op)
		require.Equal(t, "oid-olga", lines[j]["objectId"], c.op)
		require.Equal(t, "203.0.113.7", lines[j]["client"], c.op)
		require.Equal(t, float64(c.status), lines[j]["status"], c.op)
	}
	require.Len(t, lines, len(changes), "one line per change")

	// A refused change is logged (with its code), not recorded.
	got := callAPI(t, h, http.MethodDelete, "/api/migrations/m-running", "", operator)
	require.Equal(t, "already_finished", got.code)
	m, err := a.svc.Get(context.Background(), "m-running")
	require.NoError(t, err)
	require.Len(t, m.Audit, 2, "cancel and cleanup; the refused cancel is not recorded")
	last := logs.lines("audit")[len(changes)]
	require.Equal(t, "already_finished", last["code"])
	require.Equal(t, float64(http.StatusConflict), last["status"])

	// Reads of the report, the report page and the missing ids are logged, not recorded; a read of the document is
	// neither.
	reader := map[string]string{headerPrincipal: principalHeader("oid-rita", "rita@contoso.com", string(roleRead))}
	for _, c := range []struct{ path, accept, op string }{
		{"/api/migrations/m-done/report", "", "getReport"},
		{"/api/migrations/m-done/report", "text/html", "getReport"},
		{"/api/migrations/m-done/report/missing", "", "getMissingIDs"},
		{"/api/migrations/m-done", "", ""},
	} {
		before := len(logs.lines("audit"))
		hdr := map[string]string{headerPrincipal: reader[headerPrincipal], "Accept": c.accept}
		callAPI(t, h, http.MethodGet, c.path, "", hdr)
		after := logs.lines("audit")
		if c.op == "" {
			require.Len(t, after, before, c.path)
			continue
		}
		require.Len(t, after, before+1, c.path)
		require.Equal(t, c.op, after[before]["operation"])
		require.Equal(t, "m-done", after[before]["migration"])
		require.Equal(t, "rita@contoso.com", after[before]["who"])
		if c.accept == "text/html" {
			require.Equal(t, "html", after[before]["page"])
		}
	}
	m, err = a.svc.Get(context.Background(), "m-done")
	require.NoError(t, err)
	require.Len(t, m.Audit, 1, "reads are not recorded in the document")

	// What these audit lines carried is what the dashboard's audit tile may read (infra_deploy_test.go).
	checkAuditLines(t, logs.lines("audit"))
}

var updateAuditLines = flag.Bool("update-audit-lines", false,
	"rewrite testdata/audit-lines.json from the audit lines TestEveryStateChangeIsAudited logs")

// auditLinesFile holds the fields the handler's audit lines carried in TestEveryStateChangeIsAudited (changes,
// a refused change, reads), and the values seen of operation and code, in the shape of
// internal/migration/testdata/change-lines.json, so that the dashboard's queries are checked against both.
const auditLinesFile = "testdata/audit-lines.json"

func checkAuditLines(t *testing.T, lines []map[string]any) {
	t.Helper()
	type line struct {
		Fields []string            `json:"fields"`
		Values map[string][]string `json:"values"`
	}
	l := line{Values: map[string][]string{}}
	for _, m := range lines {
		for f, v := range m {
			if !slices.Contains(l.Fields, f) {
				l.Fields = append(l.Fields, f)
			}
			if s, ok := v.(string); ok && (f == "operation" || f == "code") && !slices.Contains(l.Values[f], s) {
				l.Values[f] = append(l.Values[f], s)
			}
		}
	}
	slices.Sort(l.Fields)
	for _, vs := range l.Values {
		slices.Sort(vs)
	}
	got, err := json.MarshalIndent(map[string]any{"lines": map[string]line{"audit": l}}, "", "  ")
	require.NoError(t, err)
	got = append(got, '\n')
	if *updateAuditLines {
		require.NoError(t, os.MkdirAll("testdata", 0o755))
		require.NoError(t, os.WriteFile(auditLinesFile, got, 0o644))
	}
	want, err := os.ReadFile(auditLinesFile)
	require.NoError(t, err)
	require.Equal(t, string(want), string(got),
		"the audit lines differ from %s: run go test ./handler -run TestEveryStateChangeIsAudited -update-audit-lines", auditLinesFile)
}

// In keys mode (the default) nothing changes for callers: no principal is needed or checked, a principal without
// any role is not refused, and the audit records "function key", with any principal the headers claim marked
// unverified.
func TestKeysModeIsUnchanged(t *testing.T) {
	t.Parallel()
	require.Equal(t, AuthConfig{}, (&app{}).auth, "an app made without settings is keys mode")
	a, logs, _, _ := authApp(t, AuthKeys)
	h := a.Routes()
	for _, op := range describedRequests("m-nobody") {
		for _, hdr := range []map[string]string{nil, {headerPrincipal: principalHeader("oid-x", "x")}, {headerPrincipal: "garbage"}} {
			got := callAPI(t, h, op.method, op.path, "", hdr)
			require.NotContains(t, []int{http.StatusUnauthorized, http.StatusForbidden}, got.status, "%s %s: %s", op.method, op.path, got.raw)
		}
	}
	got := callAPI(t, h, http.MethodDelete, "/api/migrations/m-running", "", nil)
	require.Equal(t, http.StatusOK, got.status, got.raw)
	got = callAPI(t, h, http.MethodPost, "/api/migrations/m-done/verify", "",
		map[string]string{headerPrincipal: principalHeader("oid-mallory", "mallory", string(roleOperate)), "X-Forwarded-For": "198.51.100.9"})
	require.Equal(t, http.StatusAccepted, got.status, got.raw)

	m, err := a.svc.Get(context.Background(), "m-running")
	require.NoError(t, err)
	require.Len(t, m.Audit, 1)
	require.Equal(t, migration.AuditEntry{At: m.Audit[0].At, Operation: "cancelMigration", Who: "function key"}, m.Audit[0])
	m, err = a.svc.Get(context.Background(), "m-done")
	require.NoError(t, err)
	require.Len(t, m.Audit, 1)
	e := m.Audit[0]
	require.Equal(t, "function key", e.Who, "a claimed principal is not who did it")
	require.Equal(t, "mallory", e.Name, "it is kept as a claim")
	require.Equal(t, "oid-mallory", e.ObjectID)
	require.False(t, e.Verified, "and marked unverified")
	require.Equal(t, "198.51.100.9", e.Client)
	line := logs.lines("audit")[1]
	require.Equal(t, "function key", line["who"])
	require.Equal(t, false, line["verified"])
}

func TestReadPrincipal(t *testing.T) {
	t.Parallel()
	enc := func(s string) http.Header {
		h := http.Header{}
		h.Set(headerPrincipal, base64.StdEncoding.EncodeToString([]byte(s)))
		return h
	}
	// Claims mapped to their long names, a custom role type, no name claim: the headers fill in.
	h := enc(`{"auth_typ":"aad","name_typ":"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn","role_typ":"http://schemas.microsoft.com/ws/2008/06/identity/claims/role","claims":[` +
		`{"typ":"http://schemas.microsoft.com/identity/claims/objectidentifier","val":"oid-1"},` +
		`{"typ":"http://schemas.microsoft.com/ws/2008/06/identity/claims/role","val":"Migration.Read"},` +
		`{"typ":"roles","val":"Migration.Operate"},{"typ":"groups","val":"Migration.Admin"}]}`)
	h.Set(headerPrincipalName, "sam@contoso.com")
	h.Set(headerPrincipalID, "oid-from-header")
	p, err := readPrincipal(h)
	require.NoError(t, err)
	require.Equal(t, "oid-1", p.objectID, "the claim before the header")
	require.Equal(t, "sam@contoso.com", p.name)
	require.Equal(t, []string{"Migration.Read", "Migration.Operate"}, p.roles, "groups are no roles")
	require.True(t, p.has(roleRead))
	require.True(t, p.has(roleOperate))

	// A service principal (client credentials): its application id names it; Operate implies Read.
	p, err = readPrincipal(enc(`{"auth_typ":"aad","claims":[{"typ":"oid","val":"oid-2"},{"typ":"appid","val":"app-2"},{"typ":"roles","val":"Migration.Operate"}]}`))
	require.NoError(t, err)
	require.Equal(t, "app-2", p.name)
	require.True(t, p.has(roleRead))
	p, err = readPrincipal(enc(`{"auth_typ":"aad","claims":[{"typ":"roles","val":"Migration.Read"}]}`))
	require.NoError(t, err)
	require.False(t, p.has(roleOperate), "Read does not imply Operate")

	p, err = readPrincipal(http.Header{})
	require.NoError(t, err)
	require.Nil(t, p)
	require.False(t, p.has(roleRead))
}

func TestAuditFieldsKeepNoSecret(t *testing.T) {
	t.Parallel()
	src, dst := "https://user:pw@src.azurehealthcareapis.com/?sv=2024&sig=abc#frag", "https://dst.example.com/fhir"
	types := make([]string, maxAuditItems+5)
	for i := range types {
		types[i] = "Patient"
	}
	got := fieldsOf(migration.StartRequest{Source: &src, Destination: &dst, Types: types, TypeFilter: []string{"Observation?status=final"}, Sync: true})
	require.Equal(t, "https://src.azurehealthcareapis.com/", got["source"])
	require.Equal(t, dst, got["destination"])
	require.Len(t, got["types"], maxAuditItems)
	require.Equal(t, maxAuditItems+5, got["typesCount"])
	require.Equal(t, []any{"Observation?status=final"}, got["typeFilter"], "a search is no URL")
	require.Equal(t, true, got["sync"])
	require.NotContains(t, got, "dryRun", "fields left unset are not recorded")
	require.Nil(t, fieldsOf(migration.CleanupRequest{}))

	first, chain := clientAddress(http.Header{"X-Forwarded-For": {"[2001:db8::1]:443", "10.0.0.4"}})
	require.Equal(t, "2001:db8::1", first)
	require.Equal(t, "[2001:db8::1]:443, 10.0.0.4", chain)
	first, chain = clientAddress(http.Header{})
	require.Empty(t, first+chain)
}

func TestLoadConfigAuthMode(t *testing.T) {
	t.Parallel()
	base := map[string]string{"FUNCTIONS_CUSTOMHANDLER_PORT": "4711", "AzureWebJobsStorage": "x", "StagingStorage": "x",
		"DEVHOST_URL": "http://127.0.0.1:7071"}
	c, err := LoadConfig(env(base))
	require.NoError(t, err)
	require.Equal(t, AuthConfig{Mode: AuthKeys}, c.Auth, "keys by default: the local stack needs no sign-in")
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	c, err = LoadConfig(env(with("AUTH_MODE", "entra", "AUTH_CLIENT_ID", testClientID)))
	require.NoError(t, err)
	require.Equal(t, AuthConfig{Mode: AuthEntra, ClientID: testClientID}, c.Auth)
	_, err = LoadConfig(env(with("AUTH_MODE", "entra")))
	require.ErrorContains(t, err, "AUTH_CLIENT_ID")
	_, err = LoadConfig(env(with("AUTH_MODE", "aad")))
	require.ErrorContains(t, err, `AUTH_MODE: want "keys" or "entra", got "aad"`)

	// The settings table of docs/operations.md names both, keys as the default.
	doc := readRepoFile(t, "docs/operations.md")
	for name, def := range map[string]string{"AUTH_MODE": "`keys`", "AUTH_CLIENT_ID": ""} {
		row := ""
		for _, line := range strings.Split(doc, "\n") {
			if cells := strings.Split(line, "|"); strings.HasPrefix(line, "| ") && len(cells) > 2 && strings.Contains(cells[1], "`"+name+"`") {
				row = line
			}
		}
		require.NotEmpty(t, row, "docs/operations.md's settings table has no row for %s", name)
		require.Contains(t, row, def)
	}
}

// On App Service with AUTH_MODE entra, the handler warns at start when the platform's authentication looks off.
func TestPlatformAuthWarning(t *testing.T) {
	t.Parallel()
	entra := AuthConfig{Mode: AuthEntra, ClientID: testClientID}
	for _, c := range []struct {
		auth AuthConfig
		env  map[string]string
		warn bool
	}{
		{entra, map[string]string{"WEBSITE_SITE_NAME": "func-x"}, true},
		{entra, map[string]string{"WEBSITE_SITE_NAME": "func-x", "WEBSITE_AUTH_ENABLED": "False"}, true},
		{entra, map[string]string{"WEBSITE_SITE_NAME": "func-x", "WEBSITE_AUTH_ENABLED": "True"}, false},
		{entra, map[string]string{}, false}, // the local host
		{AuthConfig{Mode: AuthKeys}, map[string]string{"WEBSITE_SITE_NAME": "func-x"}, false},
	} {
		got := platformAuthWarning(c.auth, env(c.env))
		require.Equal(t, c.warn, got != "", "%+v %v", c.auth, c.env)
	}
}
