package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/api"
	"github.com/fhir-migrator/fhir-migrator/internal/devhost"
	"github.com/fhir-migrator/fhir-migrator/internal/fhirsim"
)

// producedElsewhere are the described codes a request through the host cannot produce; a handler test produces
// each (handler/codes_test.go).
var producedElsewhere = map[string]string{
	"invalid_body":   "the host reads a request's body before the handler: a body it cannot read never arrives",
	"internal_error": "needs a failing store",
}

// describedCodes reads the served OpenAPI description: every operation's error codes, as "operationId code", with
// the status it answers them with, and each operation's method and path.
func (s *stack) describedCodes() (map[string]int, map[string][2]string) {
	s.t.Helper()
	status, raw := s.api(http.MethodGet, "/api/openapi.json", nil)
	require.Equal(s.t, http.StatusOK, status)
	var doc struct {
		Paths map[string]map[string]struct {
			OperationID string `json:"operationId"`
			Responses   map[string]struct {
				Codes []string `json:"x-error-codes"`
			} `json:"responses"`
		} `json:"paths"`
		RouteCodes struct {
			Codes []string `json:"codes"`
		} `json:"x-route-codes"`
	}
	require.NoError(s.t, json.Unmarshal(raw, &doc))
	pairs := map[string]int{}
	ops := map[string][2]string{}
	for path, methods := range doc.Paths {
		for method, op := range methods {
			ops[op.OperationID] = [2]string{strings.ToUpper(method), path}
			for status, r := range op.Responses {
				for _, c := range r.Codes {
					n, err := strconv.Atoi(status)
					require.NoError(s.t, err)
					pairs[op.OperationID+" "+c] = n
				}
			}
		}
	}
	// A request to no operation is answered with the code's status in the error table (404, or 405 for a method
	// the path's operations do not take).
	tableStatus := map[string]int{}
	for _, c := range api.Codes() {
		tableStatus[c.Code] = c.Status
	}
	for _, c := range doc.RouteCodes.Codes {
		require.NotZero(s.t, tableStatus[c], "route code %s is not in the error table", c)
		pairs["route "+c] = tableStatus[c]
	}
	return pairs, ops
}

// TestEveryDescribedErrorCodeIsAnswered: each error code the OpenAPI description gives an operation is answered
// by a request to that operation here, with the code and status the description says; a code described and never
// produced fails, as does a request answered otherwise.
func TestEveryDescribedErrorCodeIsAnswered(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{patients: 1})
	src, dst := s.source.URL, s.dest.URL
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close() // a loopback port nothing listens on: allowed, unreachable

	// A source of another FHIR version (STU3).
	stu3Sim := fhirsim.New(fhirsim.WithFHIRVersion("3.0.2"))
	t.Cleanup(stu3Sim.Close)
	stu3 := serveLoopback(t, stu3Sim)
	// A Bulk Data server holding no Group.
	bulkSim := fhirsim.New(fhirsim.WithFlavor(fhirsim.FlavorBulkData), fhirsim.WithAuth(false))
	t.Cleanup(bulkSim.Close)
	bulk := serveLoopback(t, bulkSim)

	// The states the codes need: finished migrations (one to clean up), one failed by its verification, one held
	// before its exports, one being verified, and one naming a container another migration owns.
	start := func(extra map[string]any) string {
		req := map[string]any{"source": src, "destination": dst, "types": []string{"Patient"}, "verify": "ids"}
		for k, v := range extra {
			req[k] = v
		}
		return s.start(req)
	}
	require.NoError(t, s.destSim.SetFault(fhirsim.FaultImportDrop, 1))
	failed := start(nil)
	final, raw := s.await(failed, nil)
	require.Equal(t, "failed", final.Status, string(raw))
	require.NoError(t, s.destSim.SetFault(fhirsim.FaultImportDrop, 0))
	done, cleaned, verifying, foreign, cutting := start(nil), start(nil), start(nil), start(nil), start(nil)
	for _, id := range []string{done, cleaned, verifying, foreign, cutting} {
		final, raw := s.await(id, nil)
		require.Equal(t, "completed", final.Status, string(raw))
	}
	status, raw := s.api(http.MethodPost, "/api/migrations/"+cleaned+"/cleanup", nil)
	require.Equal(t, http.StatusOK, status, string(raw))
	s.editDoc(verifying, func(d map[string]any) {
		d["status"] = "verifying"
		v := d["verification"].(map[string]any)
		v["generation"] = v["generation"].(float64) + 1
		v["dispatchAt"] = time.Now().Add(time.Hour).Format(time.RFC3339Nano) // no re-drive while the test runs
		delete(v, "checkedAt")
	})
	s.editDoc(cutting, func(d map[string]any) { // a cutover requested, its final round an hour away
		now := time.Now().UTC()
		d["status"] = "syncing"
		d["request"].(map[string]any)["sync"] = true
		d["sync"] = map[string]any{"highWater": now.Format(time.RFC3339Nano), "rounds": 1,
			"nextAt": now.Add(time.Hour).Format(time.RFC3339Nano), "cutoverRequestedAt": now.Format(time.RFC3339Nano)}
	})
	s.editDoc(foreign, func(d map[string]any) { d["request"].(map[string]any)["container"] = done })
	require.NoError(t, s.srcSim.SetFault(fhirsim.FaultKickoff429, 1))
	held := start(nil)
	t.Cleanup(func() { _ = s.srcSim.SetFault(fhirsim.FaultKickoff429, 0) })

	huge := `{"source":"` + strings.Repeat("x", 2<<20) + `"}`
	action := func(id, name string) string { return "/api/migrations/" + id + "/" + name }
	bodyCases := func(op, method, path string) []codeCase {
		return []codeCase{
			{op, "invalid_json", method, path, `{"verify":`},
			{op, "unknown_field", method, path, `{"nope":1}`},
			{op, "body_too_large", method, path, huge},
		}
	}
	startBody := func(extra string) string {
		return fmt.Sprintf(`{"source":%q,"destination":%q%s}`, src, dst, extra)
	}
	cases := []codeCase{
		{"startMigration", "missing_field", "POST", "/api/migrations", `{"destination":"` + dst + `"}`},
		{"startMigration", "invalid_url", "POST", "/api/migrations", `{"source":"::not a url","destination":"` + dst + `"}`},
		{"startMigration", "host_not_allowed", "POST", "/api/migrations", `{"source":"https://example.com","destination":"` + dst + `"}`},
		{"startMigration", "same_server", "POST", "/api/migrations", fmt.Sprintf(`{"source":%q,"destination":%q}`, src, src)},
		{"startMigration", "invalid_source_kind", "POST", "/api/migrations", startBody(`,"sourceKind":"cosmos"`)},
		{"startMigration", "fhir_version_mismatch", "POST", "/api/migrations", fmt.Sprintf(`{"source":%q,"destination":%q}`, stu3.URL, dst)},
		{"startMigration", "invalid_group", "POST", "/api/migrations", startBody(`,"group":"no group"`)},
		{"startMigration", "unsupported_by_source_kind", "POST", "/api/migrations", startBody(`,"group":"cohort"`)},
		{"startMigration", "export_not_declared", "POST", "/api/migrations", startBody(`,"sourceKind":"bulk-data","group":"cohort"`)},
		{"startMigration", "group_not_found", "POST", "/api/migrations", fmt.Sprintf(`{"source":%q,"destination":%q,"sourceKind":"bulk-data","group":"cohort"}`, bulk.URL, dst)},
		{"startMigration", "invalid_type", "POST", "/api/migrations", startBody(`,"types":["patient!"]`)},
		{"startMigration", "unknown_type", "POST", "/api/migrations", startBody(`,"types":["Spaceship"]`)},
		{"startMigration", "invalid_time", "POST", "/api/migrations", startBody(`,"since":"yesterday"`)},
		{"startMigration", "invalid_window", "POST", "/api/migrations", startBody(`,"since":"2099-01-01T00:00:00Z"`)},
		{"startMigration", "invalid_type_filter", "POST", "/api/migrations", startBody(`,"types":["Patient"],"typeFilter":["Patient?gender=female,male"]`)},
		{"startMigration", "invalid_export_strategy", "POST", "/api/migrations", startBody(`,"exportStrategy":"sideways"`)},
		{"startMigration", "invalid_import_mode", "POST", "/api/migrations", startBody(`,"importMode":"Overwrite"`)},
		{"startMigration", "invalid_container", "POST", "/api/migrations", startBody(`,"container":"UPPER_case"`)},
		{"startMigration", "invalid_verify", "POST", "/api/migrations", startBody(`,"verify":"everything"`)},
		{"startMigration", "invalid_verify_sample", "POST", "/api/migrations", startBody(`,"verifySample":-1`)},
		{"startMigration", "invalid_cleanup", "POST", "/api/migrations", startBody(`,"cleanup":"now"`)},
		{"startMigration", "invalid_window_target", "POST", "/api/migrations", startBody(`,"windowTarget":0`)},
		{"startMigration", "history_not_combinable", "POST", "/api/migrations", startBody(`,"history":true,"importMode":"InitialLoad"`)},
		{"startMigration", "invalid_sync", "POST", "/api/migrations", startBody(`,"syncInterval":"1m"`)},
		{"startMigration", "invalid_reconcile", "POST", "/api/migrations", startBody(`,"reconcile":"delete"`)},
		{"startMigration", "invalid_cutover_verify", "POST", "/api/migrations", startBody(`,"sync":true,"cutoverVerify":"quick"`)},
		{"startMigration", "container_in_use", "POST", "/api/migrations", startBody(`,"container":"` + done + `"`)},
		{"startMigration", "source_unreachable", "POST", "/api/migrations", fmt.Sprintf(`{"source":%q,"destination":%q}`, closedURL, dst)},
		{"startMigration", "destination_unreachable", "POST", "/api/migrations", fmt.Sprintf(`{"source":%q,"destination":%q}`, src, closedURL)},
		{"listMigrations", "invalid_top", "GET", "/api/migrations?top=0", ""},
		{"listMigrations", "invalid_continuation_token", "GET", "/api/migrations?continuationToken=not-one-we-gave", ""},
		{"getMigration", "not_found", "GET", "/api/migrations/m-nobody", ""},
		{"cancelMigration", "not_found", "DELETE", "/api/migrations/m-nobody", ""},
		{"cancelMigration", "already_finished", "DELETE", "/api/migrations/" + done, ""},
		{"getReport", "not_found", "GET", "/api/migrations/m-nobody/report", ""},
		{"getReport", "report_not_ready", "GET", "/api/migrations/" + held + "/report", ""},
		{"getMissingIDs", "not_found", "GET", "/api/migrations/m-nobody/report/missing", ""},
		{"getMissingIDs", "report_not_ready", "GET", "/api/migrations/" + held + "/report/missing", ""},
		{"getSearchParameterBundle", "not_found", "GET", "/api/migrations/" + done + "/report/search-parameters", ""},
		{"verifyAgain", "invalid_verify", "POST", action(done, "verify"), `{"verify":"none"}`},
		{"verifyAgain", "invalid_verify_sample", "POST", action(done, "verify"), `{"verifySample":-2}`},
		{"verifyAgain", "invalid_accept", "POST", action(done, "verify"), `{"accept":["everything"]}`},
		{"verifyAgain", "not_found", "POST", action("m-nobody", "verify"), ""},
		{"verifyAgain", "verification_running", "POST", action(verifying, "verify"), ""},
		{"verifyAgain", "not_verifiable", "POST", action(held, "verify"), ""},
		{"verifyAgain", "staged_files_deleted", "POST", action(cleaned, "verify"), `{"verify":"ids"}`},
		{"cleanUp", "not_found", "POST", action("m-nobody", "cleanup"), ""},
		{"cleanUp", "migration_running", "POST", action(held, "cleanup"), ""},
		{"cleanUp", "verification_not_passed", "POST", action(failed, "cleanup"), ""},
		{"cleanUp", "container_not_owned", "POST", action(foreign, "cleanup"), ""},
		{"cutOver", "invalid_accept", "POST", action(done, "cutover"), `{"accept":["all"]}`},
		{"cutOver", "not_found", "POST", action("m-nobody", "cutover"), ""},
		{"cutOver", "not_syncing", "POST", action(done, "cutover"), ""},
		{"cutOver", "cutover_requested", "POST", action(cutting, "cutover"), `{"accept":["refused-versions"]}`},
		{"repair", "not_found", "POST", action("m-nobody", "repair"), ""},
		{"repair", "verification_running", "POST", action(verifying, "repair"), ""},
		{"repair", "nothing_to_repair", "POST", action(done, "repair"), ""},
		{"route", "unknown_action", "POST", action(done, "frobnicate"), ""},
		{"route", "no_route", "GET", "/api/migrations/" + done + "/report/nothing-here", ""},
		// Through the catch-all function (ZzFallback): a path no function's route takes, and a method the path's
		// function does not take.
		{"route", "no_route", "GET", "/api/nothing-here", ""},
		{"route", "no_route", "POST", "/api/migrations/" + done + "/verify/again", ""},
		{"route", "method_not_allowed", "PUT", "/api/migrations/" + done, ""},
		{"route", "method_not_allowed", "GET", action(done, "verify"), ""},
	}
	cases = append(cases, bodyCases("startMigration", "POST", "/api/migrations")...)
	// An assessment's start validates the body as a migration's does, except what only a start checks (the servers and
	// their FHIR versions, the container) and the combination it assesses as an item (handler/openapi.go assessmentCodes).
	for _, c := range slices.Clone(cases) {
		if c.op != "startMigration" || slices.Contains([]string{"unknown_type", "container_in_use", "source_unreachable",
			"destination_unreachable", "fhir_version_mismatch", "history_not_combinable", "export_not_declared", "group_not_found"}, c.code) {
			continue
		}
		c.op, c.path = "startAssessment", "/api/assessments"
		cases = append(cases, c)
	}
	cases = append(cases, []codeCase{
		// A bulk-data source is not assessed (its refusals come from its CapabilityStatement, which an assessment
		// does not read).
		{"startAssessment", "unsupported_by_source_kind", "POST", "/api/assessments", startBody(`,"sourceKind":"bulk-data"`)},
		{"getAssessment", "not_found", "GET", "/api/assessments/a-nobody", ""},
		{"getAssessmentReport", "not_found", "GET", "/api/assessments/a-nobody/report", ""},
	}...)
	for _, a := range []struct{ op, name string }{{"verifyAgain", "verify"}, {"cleanUp", "cleanup"}, {"cutOver", "cutover"}, {"repair", "repair"}} {
		cases = append(cases, bodyCases(a.op, "POST", action(done, a.name))...)
	}

	pairs, ops := s.describedCodes()
	covered := map[string]bool{}

	// unauthenticated and forbidden, which every operation answers in AUTH_MODE entra: through a local host that
	// signs no one in (401), then one that signs in a principal holding no app role (403; a reader refused a
	// change is TestAuditTrailThroughTheLocalHost's).
	es := newStack(t, stackOptions{patients: 1, settings: entraSettings()})
	for op, where := range ops {
		path := strings.ReplaceAll(where[1], "{id}", done)
		for _, c := range []struct {
			code      string
			principal *devhost.Principal
		}{{"unauthenticated", nil}, {"forbidden", mustPrincipal(t, "nobody@contoso.com")}} {
			es.host.SetPrincipal(c.principal)
			status, raw := es.api(where[0], path, nil)
			var e struct{ Error struct{ Code string } }
			require.NoError(t, json.Unmarshal(raw, &e), "%s %s: %s", where[0], path, raw)
			require.Equal(t, c.code, e.Error.Code, "%s %s: %s", where[0], path, raw)
			require.Equal(t, pairs[op+" "+c.code], status, "%s %s: the status the description says", op, c.code)
			covered[op+" "+c.code] = true
		}
	}
	for _, c := range cases {
		key := c.op + " " + c.code
		want, described := pairs[key]
		require.True(t, described, "%s: the description does not give %s this code", c.op, c.code)
		if c.op != "route" {
			op := ops[c.op]
			require.Equal(t, op[0], c.method, "%s is %s %s", c.op, op[0], op[1])
		}
		var body any
		if c.body != "" {
			body = c.body
		}
		status, raw := s.api(c.method, c.path, body)
		var e struct {
			Error struct{ Code, Field string }
		}
		require.NoError(t, json.Unmarshal(raw, &e), "%s %s: %s", c.method, c.path, raw)
		require.Equal(t, c.code, e.Error.Code, "%s %s %s: %s", c.method, c.path, excerpt(c.body), raw)
		require.Equal(t, want, status, "%s: the status the description says", key)
		covered[key] = true
	}
	// The 405 names the methods the path takes.
	req, err := http.NewRequest(http.MethodPut, s.host.URL()+"/api/migrations/"+done, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
	require.Equal(t, "DELETE, GET", resp.Header.Get("Allow"))
	require.Equal(t, "application/json; charset=utf-8", resp.Header.Get("Content-Type"))

	for pair := range pairs {
		code := pair[strings.Index(pair, " ")+1:]
		if _, ok := producedElsewhere[code]; ok {
			continue
		}
		require.True(t, covered[pair], "described and never produced here: %s", pair)
	}
}

type codeCase struct {
	op, code, method, path, body string
}

func excerpt(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
