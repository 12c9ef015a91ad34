package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/fhir-migrator/fhir-migrator/internal/assess"
	"github.com/fhir-migrator/fhir-migrator/internal/migration"
)

// The walkthrough is every operation of the API in an order that runs top to bottom against a real deployment or
// the local stack: the description, a dry run, a refused request, a migration started, waited for, reported on,
// verified again and repaired; a syncing migration started, listed a page at a time with the first, cut over
// and waited for; the first one's staged files cleaned up; and a third migration started and canceled, last.
// requests.http and the Postman collection are both generated from it and from the OpenAPI description (each
// request's method, path, parameters, body example, answers and error codes are the description's; a step naming
// anything the description lacks fails the generation). In the Postman collection each request's test script
// asserts its status, content type and key fields, and takes the values later requests need (collection
// variables); a wait re-runs its request until the migration reaches the state awaited, bounded by maxPolls.

// Where the generated files are checked in (a test fails when either is stale; -update-postman rewrites both).
const (
	postmanCollectionPath = "postman/fhir-migrator.postman_collection.json"
	requestsHTTPPath      = "requests.http"
)

// walkStep is one request of the walkthrough.
type walkStep struct {
	// name is unique: the Postman request's name (a wait re-runs itself by it) and the title in requests.http.
	name string
	// ref names the request in requests.http (# @name) when later requests take a value from its answer.
	ref string
	op  string // operationId
	// id is the variable that fills the path's {id}.
	id string
	// example names the operation's request body example the step sends; refused is instead a body the
	// description refuses (a request answered 400).
	example, refused string
	query            [][2]string
	accept           string // the Accept header
	status           int    // the answer's status
	code             string // with an error status: the error code (one the description lists for it)
	note             string // what the request shows
	// tests are JavaScript statements run on the answer (d: its JSON body; text: its text).
	tests []string
	// set are the collection variables taken from the answer.
	set []walkCapture
	// until makes the step a wait: its request is sent again, bounded, until this JavaScript condition holds.
	until, awaited string
}

// walkCapture sets a collection variable from the answer: js in Postman, http (a REST Client reference to the
// step's ref) in requests.http.
type walkCapture struct{ variable, js, http, by string } // by: the step's name (filled in)

// walkVariables are the collection variables a user sets (their defaults target the local stack), and the
// bounds of a wait: at most maxPolls requests, pollMillis apart.
var walkVariables = [][3]string{
	{"baseUrl", "http://127.0.0.1:7071", "the Function App's URL (https://<app>.azurewebsites.net)"},
	{"functionKey", "", "a function key of the app (any value on the local host)"},
	{"sourceUrl", "http://127.0.0.1:8081", "the source FHIR server (Azure API for FHIR)"},
	{"destinationUrl", "http://127.0.0.1:8082", "the destination FHIR server (Azure Health Data Services)"},
	{"maxPolls", "600", "the most requests a wait sends"},
	{"pollMillis", "1000", "the time between them, in milliseconds"},
}

// entraVariables are the Postman collection's sign-in with Microsoft Entra ID (AUTH_MODE entra), off while
// entraAccessToken and entraClientSecret are empty: the collection's OAuth 2.0 authorization sends entraAccessToken
// as Authorization: Bearer (postman-runtime's oauth2 authorizer signs nothing without a token), and the
// collection's pre-request script fills it by the client credentials grant once entraClientSecret is set.
var entraVariables = [][3]string{
	{"entraAuthority", "https://login.microsoftonline.com", "AUTH_MODE entra: the Microsoft Entra authority (another cloud's: https://login.microsoftonline.us, https://login.chinacloudapi.cn)"},
	{"entraTenantId", "", "AUTH_MODE entra: the Microsoft Entra tenant (id or domain) of the app registration"},
	{"entraClientId", "", "AUTH_MODE entra, client credentials: the application (client) id of the calling app (a confidential client holding the app role Migration.Operate or Migration.Read)"},
	{"entraClientSecret", "", "AUTH_MODE entra, client credentials: the calling app's client secret; set it as a current value or with newman --env-var, never saved in the collection. Empty: no token is fetched"},
	{"entraScope", "", "AUTH_MODE entra: the migrator's scope, api://<AUTH_CLIENT_ID>/.default"},
	{"entraAccessToken", "", "AUTH_MODE entra: the bearer token sent (empty: none). Filled by the pre-request script, or set by hand: az account get-access-token --scope api://<AUTH_CLIENT_ID>/.default --query accessToken -o tsv"},
	{"entraTokenExpires", "0", "when entraAccessToken expires (ms since 1970), set by the pre-request script"},
}

// entraPrerequest is the collection's pre-request script: the client credentials grant, when entraClientSecret is
// set and entraAccessToken is empty or about to expire.
var entraPrerequest = []string{
	"// Sign-in with Microsoft Entra ID (AUTH_MODE entra), off unless entraClientSecret is set: a token for entraScope",
	"// by the client credentials grant of the app entraClientId in entraTenantId, kept in entraAccessToken until two",
	"// minutes before it expires. The collection's OAuth 2.0 authorization sends entraAccessToken (nothing while empty).",
	`var secret = pm.variables.get("entraClientSecret");`,
	`if (secret && (!pm.variables.get("entraAccessToken") || Date.now() > Number(pm.collectionVariables.get("entraTokenExpires") || 0) - 120000)) {`,
	"  pm.sendRequest({",
	`    url: pm.variables.get("entraAuthority") + "/" + pm.variables.get("entraTenantId") + "/oauth2/v2.0/token",`,
	`    method: "POST",`,
	`    header: { "Content-Type": "application/x-www-form-urlencoded" },`,
	`    body: { mode: "urlencoded", urlencoded: [`,
	`      { key: "grant_type", value: "client_credentials" },`,
	`      { key: "client_id", value: pm.variables.get("entraClientId") },`,
	`      { key: "client_secret", value: secret },`,
	`      { key: "scope", value: pm.variables.get("entraScope") }`,
	"    ] }",
	"  }, function (err, res) {",
	`    pm.test("signed in with Microsoft Entra ID", function () {`,
	"      pm.expect(err).to.eql(null);",
	"      pm.expect(res.code).to.eql(200);",
	"    });",
	"    if (!err && res.code === 200) {",
	"      var t = res.json();",
	`      pm.collectionVariables.set("entraAccessToken", t.access_token);`,
	`      pm.collectionVariables.set("entraTokenExpires", String(Date.now() + Number(t.expires_in) * 1000));`,
	"    }",
	"  });",
	"}",
}

// js quotes a Go value as a JavaScript literal.
func js(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// expectEq is a test that a JavaScript expression equals a value.
func expectEq(expr string, v any) string {
	return fmt.Sprintf("pm.test(%s, function () { pm.expect(%s).to.eql(%s); });", js(expr+" is "+js(v)), expr, js(v))
}

// expectJS is a test made of one chai assertion.
func expectJS(name, assertion string) string {
	return fmt.Sprintf("pm.test(%s, function () { %s; });", js(name), assertion)
}

// terminal is the JavaScript condition that the migration d has ended.
func terminal() string { return js(terminalStatuses()) + ".indexOf(d.status) >= 0" }

// terminalText names the final statuses: "status completed, failed or canceled".
func terminalText() string {
	s := terminalStatuses()
	return "status " + strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}

func terminalStatuses() []string {
	var ends []string
	for _, s := range migration.Statuses() {
		if s.Terminal() {
			ends = append(ends, string(s))
		}
	}
	return ends
}

// describedPaths stands, in a step's tests, for the description's paths (sorted, as a JavaScript list).
const describedPaths = "$describedPaths"

// walkthrough is the walkthrough's steps, in order.
func walkthrough() []walkStep {
	idFromLocation := `pm.response.headers.get("Location").split("/").pop()`
	started := func() []string {
		return []string{
			expectJS("Location names the new migration", `pm.expect(pm.response.headers.get("Location")).to.eql("/api/migrations/" + d.id)`),
			expectEq("d.status", string(migration.StatusPlanning)),
		}
	}
	capture := func(ref, variable string) []walkCapture {
		return []walkCapture{{variable: variable, js: idFromLocation, http: ref + ".response.body.$.id"}}
	}
	completed := []string{
		expectEq("d.status", string(migration.StatusCompleted)),
		expectEq("d.verification.passed", true),
		expectEq("d.verification.mode", migration.VerifyModeIDs),
	}
	return []walkStep{
		{name: "The OpenAPI description", op: "getOpenAPI", status: http.StatusOK,
			note: "the description this collection and requests.http are generated from",
			tests: []string{expectEq("d.openapi", "3.1.0"),
				expectJS("the paths this collection was generated from", `pm.expect(Object.keys(d.paths).sort()).to.eql(`+describedPaths+`)`)}},
		{name: "Plan a migration (dry run)", op: "startMigration", example: "dryRun", status: http.StatusOK,
			note: "the export windows a migration would start with; nothing is stored",
			tests: []string{expectEq("d.dryRun", true),
				expectEq("d.request.exportStrategy", migration.StrategyPerType),
				expectEq("d.request.importMode", migration.DefaultImportMode),
				expectEq("d.request.typeFilter", []string{"Observation?status=final"}),
				expectJS("planned export windows", `pm.expect(d.jobs).to.be.an("array").that.is.not.empty`),
				expectJS("every planned job is an export", `d.jobs.forEach(function (j) { pm.expect(j.kind).to.eql("export"); })`)}},
		{name: "A refused request", op: "startMigration", status: http.StatusBadRequest, code: "invalid_import_mode",
			refused: `{"source": "{{sourceUrl}}", "destination": "{{destinationUrl}}", "importMode": "Overwrite"}`,
			note:    "400 with a stable code and the field to blame",
			tests:   []string{expectEq("d.error.field", "importMode")}},
		{name: "Assess a migration", ref: "assess", op: "startAssessment", example: "assess", status: http.StatusAccepted,
			note: "the same body as a start; the PollJob timer runs the checks, writing nothing to either FHIR server",
			tests: []string{
				expectJS("Location names the new assessment", `pm.expect(pm.response.headers.get("Location")).to.eql("/api/assessments/" + d.id)`),
				expectEq("d.status", string(assess.StatusRunning))},
			set: capture("assess", "assessmentId")},
		{name: "Wait for the assessment", op: "getAssessment", id: "assessmentId", status: http.StatusOK,
			note:  "its items: each a stable code, a status (ok, warning, blocking), what to do, the fact's source",
			until: `d.status !== "running"`, awaited: "the assessment ends (status completed or failed)",
			tests: []string{expectEq("d.status", string(assess.StatusCompleted)),
				expectJS("every item has a code and a status", `d.items.forEach(function (it) { pm.expect(it.code).to.be.a("string"); pm.expect(["ok", "warning", "blocking"]).to.include(it.status); })`),
				expectJS("an estimate", `pm.expect(d.estimate.totalSeconds).to.be.a("number")`)}},
		{name: "The assessment report (Markdown)", op: "getAssessmentReport", id: "assessmentId", accept: "text/markdown", status: http.StatusOK,
			tests: []string{expectJS("the report of this assessment", `pm.expect(text).to.include("# Assessment " + pm.collectionVariables.get("assessmentId"))`)}},
		{name: "The assessment page (HTML)", op: "getAssessmentReport", id: "assessmentId", accept: "text/html", status: http.StatusOK,
			note:  "one self-contained page (open it in a browser)",
			tests: []string{expectJS("an HTML page of this assessment", `pm.expect(text).to.include("<title>Assessment " + pm.collectionVariables.get("assessmentId"))`)}},
		{name: "Start a migration", ref: "start", op: "startMigration", example: "start", status: http.StatusAccepted,
			note: "the migration is stored (status planning); the PollJob timer plans and runs it",
			tests: append(started(),
				expectEq("d.request.verify", migration.VerifyModeIDs),
				expectEq("d.request.exportStrategy", migration.StrategyPerType)),
			set: capture("start", "migrationId")},
		{name: "Wait for the migration", op: "getMigration", id: "migrationId", status: http.StatusOK,
			note:  "its document: status, jobs, progress, verification",
			until: terminal(), awaited: "the migration ends (" + terminalText() + ")", tests: completed},
		{name: "The report (Markdown)", op: "getReport", id: "migrationId", accept: "text/markdown", status: http.StatusOK,
			note:  "the readable verification report",
			tests: []string{expectJS("the report of this migration", `pm.expect(text).to.include("# Verification of migration " + pm.collectionVariables.get("migrationId"))`)}},
		{name: "The report page (HTML)", op: "getReport", id: "migrationId", accept: "text/html", status: http.StatusOK,
			note: "one self-contained page, running or finished (open it in a browser)",
			tests: []string{expectJS("an HTML page of this migration", `pm.expect(text).to.include("<title>Migration " + pm.collectionVariables.get("migrationId"))`),
				expectJS("under a Content-Security-Policy", `pm.expect(pm.response.headers.get("Content-Security-Policy")).to.be.a("string").that.is.not.empty`)}},
		{name: "Every missing id", op: "getMissingIDs", id: "migrationId", status: http.StatusOK,
			note:  "one Type/id a line (none: verification passed)",
			tests: []string{expectJS("no id is missing", `pm.expect(text).to.eql("")`)}},
		{name: "The SearchParameters held back", op: "getSearchParameterBundle", id: "migrationId", status: http.StatusNotFound, code: "not_found",
			note: "a batch Bundle when an InitialLoad destination could not take them; IncrementalLoad copies them, so none here"},
		{name: "Verify again", op: "verifyAgain", id: "migrationId", example: "ids", status: http.StatusAccepted,
			note: "a new verification round (e.g. once the destination's index caught up)",
			tests: []string{expectEq("d.status", string(migration.StatusVerifying)),
				expectEq("d.verification.generation", 2)}},
		{name: "Wait for the verification", op: "getMigration", id: "migrationId", status: http.StatusOK,
			until: terminal(), awaited: "the verification ends (" + terminalText() + ")",
			tests: append(slices.Clone(completed), expectEq("d.verification.generation", 2))},
		{name: "Repair", op: "repair", id: "migrationId", status: http.StatusConflict, code: "nothing_to_repair",
			note: "writes the source's current version of every resource whose newest version the destination refused, then verifies again; nothing here"},
		{name: "Start a syncing migration", ref: "startSync", op: "startMigration", example: "sync", status: http.StatusAccepted,
			note: "copies everything, then keeps the destination in step with the source until the cutover",
			tests: append(started(),
				expectEq("d.request.sync", true),
				expectEq("d.request.reconcile", migration.DefaultReconcile),
				expectEq("d.request.syncInterval", "15m0s")),
			set: capture("startSync", "syncMigrationId")},
		{name: "List migrations, one a page", ref: "firstPage", op: "listMigrations", query: [][2]string{{"top", "1"}}, status: http.StatusOK,
			note: "oldest first; continuationToken names the next page",
			tests: []string{expectJS("one migration", `pm.expect(d.migrations).to.have.lengthOf(1)`),
				expectJS("a next page", `pm.expect(d.continuationToken).to.be.a("string").that.is.not.empty`)},
			set: []walkCapture{
				{variable: "continuationToken", js: "d.continuationToken", http: "firstPage.response.body.$.continuationToken"},
				{variable: "firstPageId", js: "d.migrations[0].id", http: "firstPage.response.body.$.migrations[0].id"}}},
		{name: "List migrations, the next page", op: "listMigrations", query: [][2]string{{"top", "1"}, {"continuationToken", "{{continuationToken}}"}},
			status: http.StatusOK, note: "the page after the first",
			tests: []string{expectJS("one migration", `pm.expect(d.migrations).to.have.lengthOf(1)`),
				expectJS("another migration than the first page's", `pm.expect(d.migrations[0].id).to.not.eql(pm.collectionVariables.get("firstPageId"))`)}},
		{name: "Wait until the migration syncs", op: "getMigration", id: "syncMigrationId", status: http.StatusOK,
			until: `d.status === "syncing" || ` + terminal(), awaited: "the full copy is verified (status syncing)",
			tests: []string{expectEq("d.status", string(migration.StatusSyncing)),
				expectJS("a high-water mark", `pm.expect(d.sync.highWater).to.be.a("string")`)}},
		{name: "Cut over", op: "cutOver", id: "syncMigrationId", example: "switch", status: http.StatusAccepted,
			note: "once writes to the source have stopped: a final round, then the destination is verified",
			tests: []string{expectEq("d.status", string(migration.StatusSyncing)),
				expectJS("the cutover is requested", `pm.expect(d.sync.cutoverRequestedAt).to.be.a("string")`)}},
		{name: "Wait for the cutover", op: "getMigration", id: "syncMigrationId", status: http.StatusOK,
			until: terminal(), awaited: "the cutover ends (" + terminalText() + ")",
			tests: append(slices.Clone(completed), expectJS("switched", `pm.expect(d.cutover.at).to.be.a("string")`))},
		{name: "What cleanup would delete", op: "cleanUp", id: "migrationId", example: "dryRun", status: http.StatusOK,
			note: "the staged export files, with sizes; nothing is deleted",
			tests: []string{expectEq("d.dryRun", true),
				expectJS("staged files", `pm.expect(d.blobs).to.be.an("array").that.is.not.empty`),
				expectJS("the migration's container", `pm.expect(d.container).to.eql(pm.collectionVariables.get("migrationId"))`)}},
		{name: "Delete the staged files", op: "cleanUp", id: "migrationId", example: "delete", status: http.StatusOK,
			tests: []string{expectEq("d.dryRun", false),
				expectEq("d.migration.cleanup.state", "done")}},
		{name: "Start a migration to cancel", ref: "startToCancel", op: "startMigration", example: "start", status: http.StatusAccepted,
			tests: started(), set: capture("startToCancel", "cancelMigrationId")},
		{name: "Cancel a migration", op: "cancelMigration", id: "cancelMigrationId", status: http.StatusOK,
			note:  "every running server job is canceled",
			tests: []string{expectEq("d.status", string(migration.StatusCanceled))}},
	}
}

// walkOp is what the generators read of an operation of the description.
type walkOp struct {
	method, path string
	OperationID  string `json:"operationId"`
	Summary      string `json:"summary"`
	Description  string `json:"description"`
	RequestBody  *struct {
		Required bool `json:"required"`
		Content  map[string]struct {
			Examples map[string]struct {
				Value json.RawMessage `json:"value"`
			} `json:"examples"`
		} `json:"content"`
	} `json:"requestBody"`
	Parameters []struct {
		Name string `json:"name"`
		In   string `json:"in"`
	} `json:"parameters"`
	Responses map[string]struct {
		Content    map[string]json.RawMessage `json:"content"`
		ErrorCodes []string                   `json:"x-error-codes"`
	} `json:"responses"`
}

// walkRequest is one step resolved against the description.
type walkRequest struct {
	walkStep
	op          walkOp
	path        string // with {{variables}}
	query       string // "?a=b&c=d" or ""
	body        string // indented JSON, or ""
	contentType string // of the answer awaited
	json        bool   // the answer is JSON
}

var variableRef = regexp.MustCompile(`{{([A-Za-z]+)}}`)

// resolveWalkthrough checks every step against the description (the operation, its example, parameters, status
// and error code) and the variables it uses against those set before it, and that every operation is walked.
func resolveWalkthrough(openAPI []byte, steps []walkStep) ([]walkRequest, error) {
	var doc struct {
		Paths map[string]map[string]walkOp `json:"paths"`
	}
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		return nil, fmt.Errorf("read the OpenAPI document: %w", err)
	}
	ops := map[string]walkOp{}
	paths := slices.Sorted(maps.Keys(doc.Paths))
	for p, methods := range doc.Paths {
		for m, op := range methods {
			op.method, op.path = strings.ToUpper(m), p
			ops[op.OperationID] = op
		}
	}
	known := map[string]bool{}
	for _, v := range walkVariables {
		known[v[0]] = true
	}
	names := map[string]bool{}
	walked := map[string]bool{}
	var out []walkRequest
	for _, st := range steps {
		fail := func(format string, args ...any) error {
			return fmt.Errorf("walkthrough step %q: %s", st.name, fmt.Sprintf(format, args...))
		}
		if names[st.name] {
			return nil, fail("the name is used twice")
		}
		names[st.name] = true
		op, ok := ops[st.op]
		if !ok {
			return nil, fail("no operation %s in the description", st.op)
		}
		walked[st.op] = true
		r := walkRequest{walkStep: st, op: op, path: op.path}
		r.tests = slices.Clone(st.tests)
		for i, l := range r.tests {
			r.tests[i] = strings.ReplaceAll(l, describedPaths, js(paths))
		}
		if strings.Contains(op.path, "{id}") {
			if st.id == "" {
				return nil, fail("%s needs an id", op.path)
			}
			r.path = strings.ReplaceAll(op.path, "{id}", "{{"+st.id+"}}")
		} else if st.id != "" {
			return nil, fail("%s takes no id", op.path)
		}
		var q []string
		for _, kv := range st.query {
			if !slices.ContainsFunc(op.Parameters, func(p struct {
				Name string `json:"name"`
				In   string `json:"in"`
			}) bool {
				return p.In == "query" && p.Name == kv[0]
			}) {
				return nil, fail("%s has no query parameter %s", st.op, kv[0])
			}
			q = append(q, kv[0]+"="+kv[1])
		}
		if q != nil {
			r.query = "?" + strings.Join(q, "&")
		}
		switch {
		case st.example != "" && st.refused != "":
			return nil, fail("an example or a refused body, not both")
		case st.example != "":
			if op.RequestBody == nil {
				return nil, fail("%s takes no body", st.op)
			}
			ex, ok := op.RequestBody.Content["application/json"].Examples[st.example]
			if !ok {
				return nil, fail("%s has no example %s", st.op, st.example)
			}
			r.body = indentJSON(ex.Value)
			for _, kv := range exampleValues {
				r.body = strings.ReplaceAll(r.body, js(kv[1]), js("{{"+kv[0]+"}}"))
			}
		case st.refused != "":
			if st.status != http.StatusBadRequest {
				return nil, fail("a refused body is answered 400")
			}
			r.body = indentJSON(json.RawMessage(st.refused))
		case op.RequestBody != nil && op.RequestBody.Required:
			return nil, fail("%s needs a body", st.op)
		}
		answer, ok := op.Responses[strconv.Itoa(st.status)]
		if !ok {
			return nil, fail("%s does not answer %d", st.op, st.status)
		}
		switch {
		case st.status >= 400 && !slices.Contains(answer.ErrorCodes, st.code):
			return nil, fail("%s does not answer %d %s", st.op, st.status, st.code)
		case st.status < 400 && st.code != "":
			return nil, fail("an error code with status %d", st.status)
		}
		switch {
		case st.accept != "":
			r.contentType = st.accept
		case len(answer.Content) == 1:
			for ct := range answer.Content {
				r.contentType = ct
			}
		default:
			return nil, fail("%s answers %d in several media types: say which (accept)", st.op, st.status)
		}
		if _, ok := answer.Content[r.contentType]; !ok {
			return nil, fail("%s does not answer %d as %s", st.op, st.status, r.contentType)
		}
		r.json = strings.HasSuffix(r.contentType, "json")
		for _, m := range variableRef.FindAllStringSubmatch(r.path+r.query+r.body, -1) {
			if !known[m[1]] {
				return nil, fail("{{%s}} is used before a request sets it", m[1])
			}
		}
		if (st.until == "") != (st.awaited == "") {
			return nil, fail("a wait needs until and awaited")
		}
		for _, c := range st.set {
			if st.ref == "" {
				return nil, fail("sets %s but has no ref for requests.http", c.variable)
			}
			if !strings.HasPrefix(c.http, st.ref+".") {
				return nil, fail("%s in requests.http must refer to %s", c.variable, st.ref)
			}
			known[c.variable] = true
		}
		out = append(out, r)
	}
	for id := range ops {
		if !walked[id] {
			return nil, fmt.Errorf("walkthrough: no step requests the operation %s", id)
		}
	}
	return out, nil
}

// indentJSON indents a body, its fields in the order written.
func indentJSON(raw json.RawMessage) string {
	var b bytes.Buffer
	if err := json.Indent(&b, raw, "", "  "); err != nil {
		return string(raw)
	}
	return b.String()
}

// capturedVariables are the variables the steps set, in order, each with the step that sets it.
func capturedVariables(reqs []walkRequest) []walkCapture {
	var out []walkCapture
	for _, r := range reqs {
		for _, c := range r.set {
			c.by = r.name
			out = append(out, c)
		}
	}
	return out
}

// testScript is a step's Postman test script.
func (r walkRequest) testScript() []string {
	lines := []string{
		fmt.Sprintf("pm.test(%s, function () { pm.response.to.have.status(%d); });", js(fmt.Sprintf("answers %d", r.status)), r.status),
		fmt.Sprintf("pm.test(%s, function () { pm.expect(pm.response.headers.get(\"Content-Type\")).to.include(%s); });",
			js("answers "+r.contentType), js(r.contentType)),
	}
	if r.json {
		lines = append(lines, "var d = pm.response.json();")
	} else {
		lines = append(lines, "var text = pm.response.text();")
	}
	if r.code != "" {
		lines = append(lines, expectEq("d.error.code", r.code))
	}
	final := slices.Clone(r.tests)
	for _, c := range r.set {
		final = append(final, fmt.Sprintf("pm.collectionVariables.set(%s, %s);", js(c.variable), c.js))
	}
	if r.until == "" {
		return append(lines, final...)
	}
	lines = append(lines,
		`var polls = Number(pm.collectionVariables.get("polls") || 0);`,
		`var maxPolls = Number(pm.variables.get("maxPolls") || 600);`,
		"if (!("+r.until+")) {",
		"  if (polls + 1 < maxPolls) {",
		`    pm.collectionVariables.set("polls", polls + 1);`,
		"    (pm.execution && pm.execution.setNextRequest ? pm.execution : postman).setNextRequest(pm.info.requestName);",
		"  } else {",
		`    pm.collectionVariables.set("polls", 0);`,
		"    "+expectJS("waited until "+r.awaited, `pm.expect.fail("still " + d.status + " after " + maxPolls + " requests")`),
		"  }",
		"} else {",
		`  pm.collectionVariables.set("polls", 0);`)
	for _, l := range final {
		lines = append(lines, "  "+l)
	}
	return append(lines, "}")
}

// postmanCollection generates the Postman collection (v2.1) of the walkthrough from the OpenAPI document.
func postmanCollection(openAPI []byte) ([]byte, error) {
	reqs, err := resolveWalkthrough(openAPI, walkthrough())
	if err != nil {
		return nil, err
	}
	type kv struct {
		Key         string `json:"key"`
		Value       string `json:"value"`
		Type        string `json:"type,omitempty"`
		Description string `json:"description,omitempty"`
	}
	type item struct {
		Name    string `json:"name"`
		Event   []any  `json:"event"`
		Request any    `json:"request"`
	}
	script := func(listen string, exec []string) map[string]any {
		return map[string]any{"listen": listen, "script": map[string]any{"type": "text/javascript", "exec": exec}}
	}
	var items []item
	for _, r := range reqs {
		path := strings.Split(strings.TrimPrefix(r.path, "/"), "/")
		url := map[string]any{"raw": "{{baseUrl}}" + r.path + r.query, "host": []string{"{{baseUrl}}"}, "path": path}
		var query []kv
		for _, q := range r.walkStep.query {
			query = append(query, kv{Key: q[0], Value: q[1]})
		}
		if query != nil {
			url["query"] = query
		}
		description := strings.TrimSpace(r.op.Summary + "\n\n" + r.op.Description)
		if r.note != "" {
			description += "\n\nHere: " + r.note + "."
		}
		if r.until != "" {
			description += "\n\nA wait: sent again, at most maxPolls times and pollMillis apart, until " + r.awaited + "."
		}
		req := map[string]any{"method": r.op.method, "url": url, "description": description}
		// The function key on every request: the collection's authorization is its OAuth 2.0 sign-in.
		header := []kv{{Key: "x-functions-key", Value: "{{functionKey}}", Type: "text"}}
		if r.accept != "" {
			header = append(header, kv{Key: "Accept", Value: r.accept})
		}
		if r.body != "" {
			header = append(header, kv{Key: "Content-Type", Value: "application/json"})
			req["body"] = map[string]any{"mode": "raw", "raw": r.body, "options": map[string]any{"raw": map[string]any{"language": "json"}}}
		}
		req["header"] = header
		it := item{Name: r.name, Request: req, Event: []any{script("test", r.testScript())}}
		if r.until != "" {
			it.Event = append([]any{script("prerequest", []string{
				"// A wait: every request after the first waits pollMillis.",
				`if (Number(pm.collectionVariables.get("polls") || 0) > 0) {`,
				`  setTimeout(function () {}, Number(pm.variables.get("pollMillis") || 1000));`,
				"}",
			})}, it.Event...)
		}
		items = append(items, it)
	}
	var vars []kv
	for _, v := range append(slices.Clone(walkVariables), entraVariables...) {
		vars = append(vars, kv{Key: v[0], Value: v[1], Type: "string", Description: v[2]})
	}
	for _, c := range capturedVariables(reqs) {
		vars = append(vars, kv{Key: c.variable, Value: "", Type: "string", Description: "set by " + c.by})
	}
	vars = append(vars, kv{Key: "polls", Value: "0", Type: "string", Description: "the requests the current wait sent"})
	collection := map[string]any{
		"info": map[string]any{
			"_postman_id": "3b1f8a52-6f0e-4c64-9d7e-5b2f0c1a9e11",
			"name":        "FHIR migrator",
			"description": "Every operation of the API, in an order that runs top to bottom (Run collection, or newman run): " +
				"a dry run, a migration started, waited for, reported on and verified again, a syncing migration listed, cut over and waited for, a cleanup, and a cancel last. " +
				"Each request's tests check its answer; the waits send their request again until the migration gets there (at most maxPolls, pollMillis apart). " +
				"Set baseUrl (the Function App's URL), functionKey, sourceUrl and destinationUrl; the defaults are the local stack's (make stack-up). " +
				"A Function App deployed with AUTH_MODE entra also wants a Microsoft Entra token: the collection's authorization is OAuth 2.0, off while entraAccessToken is empty; " +
				"set entraTenantId, entraClientId, entraClientSecret and entraScope (api://<AUTH_CLIENT_ID>/.default) and the collection's pre-request script gets a token by the client credentials grant, " +
				"or set entraAccessToken to a token of your own, or use Authorization > Get New Access Token (client credentials, or switch the grant type to Authorization Code with PKCE). " +
				"Generated from GET /api/openapi.json and the walkthrough in handler/walkthrough.go, like requests.http: go test ./handler -run Walkthrough -update-postman rewrites both.",
			"schema": "https://schema.getpostman.com/json/collection/v2.1.0/collection.json",
		},
		// AUTH_MODE entra: OAuth 2.0, client credentials, the migrator's scope; nothing is sent while
		// entraAccessToken is empty.
		"auth": map[string]any{"type": "oauth2", "oauth2": []kv{
			{Key: "accessToken", Value: "{{entraAccessToken}}", Type: "string"},
			{Key: "addTokenTo", Value: "header", Type: "string"},
			{Key: "headerPrefix", Value: "Bearer", Type: "string"},
			{Key: "grant_type", Value: "client_credentials", Type: "string"},
			{Key: "accessTokenUrl", Value: "{{entraAuthority}}/{{entraTenantId}}/oauth2/v2.0/token", Type: "string"},
			{Key: "authUrl", Value: "{{entraAuthority}}/{{entraTenantId}}/oauth2/v2.0/authorize", Type: "string"},
			{Key: "clientId", Value: "{{entraClientId}}", Type: "string"},
			{Key: "clientSecret", Value: "{{entraClientSecret}}", Type: "string"},
			{Key: "scope", Value: "{{entraScope}}", Type: "string"},
			{Key: "client_authentication", Value: "body", Type: "string"},
			{Key: "tokenName", Value: "FHIR migrator (Microsoft Entra ID)", Type: "string"},
		}},
		"event":    []any{script("prerequest", entraPrerequest)},
		"variable": vars,
		"item":     items,
	}
	out, err := json.MarshalIndent(collection, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// requestsHTTP generates requests.http (the VS Code REST Client's syntax) of the walkthrough.
func requestsHTTP(openAPI []byte) ([]byte, error) {
	reqs, err := resolveWalkthrough(openAPI, walkthrough())
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	b.WriteString(`# Every request of the migration service's HTTP API, in an order that runs top to bottom, for the VS Code REST
# Client (# @name and {{name.response.body.$.x}} are its syntax); the same walkthrough as the Postman collection,
# whose tests check each answer. Generated from GET /api/openapi.json and handler/walkthrough.go:
# go test ./handler -run Walkthrough -update-postman rewrites it. Defaults target the local stack (make stack-up); in
# Azure set @baseUrl to https://<app>.azurewebsites.net, @functionKey to a function key and the FHIR servers. A
# Function App deployed with AUTH_MODE entra also wants a Microsoft Entra token on each request, beside the key:
# Authorization: Bearer <az account get-access-token --scope api://<AUTH_CLIENT_ID>/.default --query accessToken -o tsv>
`)
	for _, v := range walkVariables {
		if v[0] == "maxPolls" || v[0] == "pollMillis" {
			continue
		}
		value := v[1]
		if v[0] == "functionKey" && value == "" {
			value = "local"
		}
		fmt.Fprintf(&b, "@%s = %s\n", v[0], value)
	}
	b.WriteString("# Taken from the answers:\n")
	for _, c := range capturedVariables(reqs) {
		fmt.Fprintf(&b, "@%s = {{%s}}\n", c.variable, c.http)
	}
	for _, r := range reqs {
		fmt.Fprintf(&b, "\n### %s\n", r.name)
		if r.ref != "" {
			fmt.Fprintf(&b, "# @name %s\n", r.ref)
		}
		fmt.Fprintf(&b, "# %s\n", r.op.Summary)
		expect := fmt.Sprintf("%d %s", r.status, http.StatusText(r.status))
		if r.code != "" {
			expect += " " + r.code
		}
		if r.note != "" {
			expect += ": " + r.note
		}
		fmt.Fprintf(&b, "# Answers %s.\n", expect)
		if r.until != "" {
			fmt.Fprintf(&b, "# A wait: send again until %s.\n", r.awaited)
		}
		fmt.Fprintf(&b, "%s {{baseUrl}}%s%s\n", r.op.method, r.path, r.query)
		if r.accept != "" {
			fmt.Fprintf(&b, "Accept: %s\n", r.accept)
		}
		if r.body != "" {
			b.WriteString("Content-Type: application/json\n")
		}
		b.WriteString("x-functions-key: {{functionKey}}\n")
		if r.body != "" {
			fmt.Fprintf(&b, "\n%s\n", r.body)
		}
	}
	b.WriteString(`
### Local host only: the in-memory Service Bus queues and their dead letters
GET {{baseUrl}}/admin/servicebus/queues

###
GET {{baseUrl}}/admin/servicebus/queues/run-import/deadletters

### Local host only: run the PollJob timer now
POST {{baseUrl}}/admin/functions/PollJob
Content-Type: application/json

{"input": ""}
`)
	return []byte(b.String()), nil
}
