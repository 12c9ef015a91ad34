package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/invopop/jsonschema"

	"github.com/fhir-migrator/fhir-migrator/internal/api"
	"github.com/fhir-migrator/fhir-migrator/internal/assess"
	"github.com/fhir-migrator/fhir-migrator/internal/migration"
)

// The OpenAPI description of the HTTP API is built from the operations below, the engine's request and answer
// types (their JSON Schemas reflected) and the error table, and served at GET /api/openapi.json. A test holds it
// to the handler's routes and actions and to every error code; the Postman collection is generated from it.

// Actions of POST /api/migrations/{id}/{action}, and parts of GET /api/migrations/{id}/report/{part}.
var (
	actionNames = []string{"verify", "cleanup", "cutover", "repair"}
	reportParts = []string{"missing", "search-parameters"}
)

// bodyCodes answer a request whose body cannot be read as the route's type.
var bodyCodes = []string{"invalid_body", "body_too_large", "invalid_json", "unknown_field"}

// routeCodes answer a request to no operation.
var routeCodes = []string{"unknown_action", "no_route", "method_not_allowed"}

type apiOperation struct {
	method, path, id, summary, description string
	// request is the body's Go type (nil: none); a body that may be left out is optional.
	request  any
	optional bool
	query    []apiParam
	answers  []apiAnswer
	// codes are the error codes it may answer with (internal_error is added to every operation that reaches the
	// document store: all but the description itself).
	codes []string
	// inMemory: the operation answers from the handler's memory alone, never internal_error.
	inMemory bool
	// examples are request bodies, by name (in the description; the walkthrough's requests take theirs from it).
	examples []apiExample
}

// apiExample is a named request body; {{variables}} stand for the walkthrough's values, which the description
// shows as exampleValues.
type apiExample struct{ name, summary, body string }

// exampleValues are what the examples' {{variables}} read in the description (the walkthrough puts the variables
// back).
var exampleValues = [][2]string{
	{"sourceUrl", "https://myapiforfhir.azurehealthcareapis.com"},
	{"destinationUrl", "https://myworkspace-myfhir.fhir.azurehealthcareapis.com"},
}

// apiParam is a query parameter and its JSON Schema.
type apiParam struct {
	name, description string
	schema            map[string]any
}

type apiAnswer struct {
	status      int
	description string
	contentType string
	body        any // a Go value whose type is the answer's schema; nil with contentType: text
	location    bool
}

func startCodes() []string {
	return append(slices.Clone(bodyCodes), "missing_field", "invalid_source_kind", "fhir_version_mismatch", "invalid_group", "unsupported_by_source_kind", "export_not_declared", "group_not_found", "invalid_url", "host_not_allowed", "same_server", "invalid_type",
		"unknown_type", "invalid_time", "invalid_window", "invalid_type_filter", "invalid_export_strategy",
		"invalid_import_mode", "invalid_container", "invalid_verify", "invalid_verify_sample", "invalid_cleanup",
		"invalid_window_target", "history_not_combinable", "invalid_sync", "invalid_reconcile", "invalid_cutover_verify", "container_in_use", "source_unreachable",
		"destination_unreachable")
}

// assessmentCodes answer POST /api/assessments: the start request's own validation (startCodes), without what only
// a start checks: the servers and their FHIR versions (an assessment reports them as items), the container, what only a
// bulk-data source's CapabilityStatement tells (such a source is not assessed: unsupported_by_source_kind), and
// history_not_combinable (assessed, a blocking item).
func assessmentCodes() []string {
	return slices.DeleteFunc(startCodes(), func(c string) bool {
		return slices.Contains([]string{"unknown_type", "container_in_use", "source_unreachable", "destination_unreachable", "fhir_version_mismatch", "history_not_combinable", "export_not_declared", "group_not_found"}, c)
	})
}

// apiOperations is every operation of the HTTP API.
func apiOperations() []apiOperation {
	doc := apiAnswer{status: http.StatusOK, description: "the migration document", contentType: "application/json", body: migration.Migration{}}
	accepted := func(d string) apiAnswer {
		return apiAnswer{status: http.StatusAccepted, description: d, contentType: "application/json", body: migration.Migration{}, location: true}
	}
	return []apiOperation{
		{method: http.MethodPost, path: "/api/migrations", id: "startMigration", summary: "Start a migration",
			description: "Validates the request, checks both servers and stores the migration (status planning); the PollJob timer plans and runs it. With dryRun, answers the plan and stores nothing.",
			request:     migration.StartRequest{},
			examples: []apiExample{
				{"start", "a per-type migration of two types, verified id by id",
					`{"source": "{{sourceUrl}}", "destination": "{{destinationUrl}}", "types": ["Patient", "Observation"], "verify": "ids"}`},
				{"dryRun", "the plan of a migration of what changed since a date, Observations narrowed by a search; nothing is stored",
					`{"source": "{{sourceUrl}}", "destination": "{{destinationUrl}}", "types": ["Patient", "Observation"], "since": "2000-01-01T00:00:00Z", "typeFilter": ["Observation?status=final"], "verify": "ids", "dryRun": true}`},
				{"sync", "a migration kept in step with its source (a round every syncInterval, deletions included) until the cutover",
					`{"source": "{{sourceUrl}}", "destination": "{{destinationUrl}}", "types": ["Encounter", "Condition"], "sync": true, "verify": "ids"}`},
				{"everything", "a system export of every type, its staged files deleted once verification passed",
					`{"source": "{{sourceUrl}}", "destination": "{{destinationUrl}}", "cleanup": "after-verify"}`},
			},
			answers: []apiAnswer{accepted("the new migration"),
				{status: http.StatusOK, description: "dryRun: the planned windows", contentType: "application/json", body: migration.Plan{}}},
			codes: startCodes()},
		{method: http.MethodGet, path: "/api/migrations", id: "listMigrations", summary: "List migrations",
			query: []apiParam{
				{"top", fmt.Sprintf("page size, 1 to %d (default %d)", migration.MaxListTop, migration.DefaultListTop),
					map[string]any{"type": "integer", "minimum": 1, "maximum": migration.MaxListTop, "default": migration.DefaultListTop}},
				{"continuationToken", "the continuationToken of the previous page's answer (absent there on the last page)",
					map[string]any{"type": "string", "minLength": 1}},
			},
			answers: []apiAnswer{{status: http.StatusOK, description: "one page of migrations", contentType: "application/json", body: migration.ListResult{}}},
			codes:   []string{"invalid_top", "invalid_continuation_token"}},
		{method: http.MethodGet, path: "/api/migrations/{id}", id: "getMigration", summary: "Get a migration",
			answers: []apiAnswer{doc}, codes: []string{"not_found"}},
		{method: http.MethodDelete, path: "/api/migrations/{id}", id: "cancelMigration", summary: "Cancel a migration",
			description: "Cancels every running server job and stops the migration.",
			answers:     []apiAnswer{doc}, codes: []string{"not_found", "already_finished"}},
		{method: http.MethodGet, path: "/api/migrations/{id}/report", id: "getReport", summary: "The report",
			description: "With Accept: text/html, one self-contained HTML page of the migration as it is now (running or finished); otherwise the Markdown report of its verification.",
			answers: []apiAnswer{{status: http.StatusOK, description: "the report", contentType: "text/markdown"},
				{status: http.StatusOK, description: "the report", contentType: "text/html"}},
			codes: []string{"not_found", "report_not_ready"}},
		{method: http.MethodGet, path: "/api/migrations/{id}/report/missing", id: "getMissingIDs", summary: "Every missing id, one Type/id a line",
			answers: []apiAnswer{{status: http.StatusOK, description: "the missing ids", contentType: "text/plain"}},
			codes:   []string{"not_found", "report_not_ready"}},
		{method: http.MethodGet, path: "/api/migrations/{id}/report/search-parameters", id: "getSearchParameterBundle",
			summary: "The SearchParameters an InitialLoad destination could not take, as a batch Bundle",
			answers: []apiAnswer{{status: http.StatusOK, description: "the batch Bundle", contentType: "application/fhir+json"}},
			codes:   []string{"not_found"}},
		{method: http.MethodPost, path: "/api/migrations/{id}/verify", id: "verifyAgain", summary: "Verify a finished migration again",
			request: migration.ReverifyRequest{}, optional: true,
			examples: []apiExample{{"ids", "every id looked up on the destination this time", `{"verify": "ids"}`}},
			answers:  []apiAnswer{accepted("the migration, verifying (a new generation)")},
			codes: append(slices.Clone(bodyCodes), "invalid_verify", "invalid_verify_sample", "invalid_accept", "not_found",
				"verification_running", "not_verifiable", "staged_files_deleted")},
		{method: http.MethodPost, path: "/api/migrations/{id}/cleanup", id: "cleanUp", summary: "Delete the staged export files",
			request: migration.CleanupRequest{}, optional: true,
			examples: []apiExample{{"dryRun", "what would be deleted, with sizes; nothing is", `{"dryRun": true}`},
				{"delete", "delete the staged files (verification passed)", `{}`}},
			answers: []apiAnswer{{status: http.StatusOK, description: "what was (or with dryRun would be) deleted", contentType: "application/json", body: migration.CleanupResult{}}},
			codes:   append(slices.Clone(bodyCodes), "not_found", "migration_running", "verification_not_passed", "container_not_owned")},
		{method: http.MethodPost, path: "/api/migrations/{id}/cutover", id: "cutOver", summary: "Switch a syncing migration",
			description: "Writes to the source have stopped: one final round copies the last changes, then the destination is verified against the source. accept: [\"refused-versions\"] lets versions the destination refused that are not a resource's newest pass.",
			request:     migration.CutoverRequest{}, optional: true,
			examples: []apiExample{{"switch", "switch; every refused version must be repaired first", `{}`},
				{"acceptRefused", "switch, letting refused versions that are not a resource's newest pass", `{"accept": ["refused-versions"]}`}},
			answers: []apiAnswer{accepted("the migration, cutover requested")},
			codes:   append(slices.Clone(bodyCodes), "invalid_accept", "not_found", "not_syncing", "cutover_requested")},
		{method: http.MethodPost, path: "/api/migrations/{id}/repair", id: "repair", summary: "Repair the resources whose newest version the destination refused",
			description: "Writes on the destination, by PUT, the source's current version of every resource the last verification found stale (a hard delete first when the source's versions started again), records each repair (the destination's versionId and lastUpdated are new), then verifies again in the same mode.",
			answers:     []apiAnswer{accepted("the migration, verifying (a new generation that repairs first)")},
			codes:       append(slices.Clone(bodyCodes), "not_found", "verification_running", "nothing_to_repair")},
		{method: http.MethodPost, path: "/api/assessments", id: "startAssessment", summary: "Assess a migration before starting it",
			description: "Takes the body of POST /api/migrations and answers 202 with the assessment (status running) and its Location; the PollJob timer runs its checks (both servers, a probe export with an empty output, the staging account, the destination's import and its mode, what each type holds on both servers, custom SearchParameters and profiles, the plan and an estimate), writing nothing to either FHIR server, until it is completed (or failed when it could not finish). Each item has a stable code and a status ok, warning or blocking (docs/assessment.md).",
			request:     migration.StartRequest{},
			examples: []apiExample{
				{"assess", "is this migration ready to run, how long will it take, what is left to do by hand",
					`{"source": "{{sourceUrl}}", "destination": "{{destinationUrl}}", "types": ["Patient", "Observation"], "verify": "ids"}`},
			},
			answers: []apiAnswer{{status: http.StatusAccepted, description: "the new assessment, running", contentType: "application/json",
				body: assess.Assessment{}, location: true}},
			codes: assessmentCodes()},
		{method: http.MethodGet, path: "/api/assessments/{id}", id: "getAssessment", summary: "Get an assessment",
			answers: []apiAnswer{{status: http.StatusOK, description: "the assessment document", contentType: "application/json", body: assess.Assessment{}}},
			codes:   []string{"not_found"}},
		{method: http.MethodGet, path: "/api/assessments/{id}/report", id: "getAssessmentReport", summary: "The assessment's report",
			description: "With Accept: text/html, one self-contained HTML page of the assessment as it is now; otherwise its Markdown report.",
			answers: []apiAnswer{{status: http.StatusOK, description: "the report", contentType: "text/markdown"},
				{status: http.StatusOK, description: "the report", contentType: "text/html"}},
			codes: []string{"not_found"}},
		{method: http.MethodGet, path: "/api/openapi.json", id: "getOpenAPI", summary: "This description", inMemory: true,
			answers: []apiAnswer{{status: http.StatusOK, description: "the OpenAPI 3.1 document", contentType: "application/json"}}},
	}
}

// serveOpenAPI answers GET /api/openapi.json.
func (a *app) serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	a.openAPIOnce.Do(func() { a.openAPI, a.openAPIErr = openAPIDocument() })
	if a.openAPIErr != nil {
		a.logger.Error("OpenAPI document", "err", a.openAPIErr)
		api.Write(w, &api.Error{Status: http.StatusInternalServerError, Code: "internal_error", Message: "the API description could not be built"})
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(a.openAPI)
}

// openAPIDocument builds the OpenAPI 3.1 document.
func openAPIDocument() ([]byte, error) {
	r := &jsonschema.Reflector{RequiredFromJSONSchemaTags: true, AllowAdditionalProperties: false,
		Mapper: func(t reflect.Type) *jsonschema.Schema {
			switch t {
			case reflect.TypeFor[migration.Duration]():
				return &jsonschema.Schema{Type: "string", Pattern: durationPattern, Description: "a Go duration such as \"15m0s\" or \"3s\""}
			case reflect.TypeFor[migration.Status]():
				return &jsonschema.Schema{Type: "string", Enum: anyList(migration.Statuses()),
					Description: "completed, failed and canceled are final"}
			case reflect.TypeFor[migration.JobKind]():
				return &jsonschema.Schema{Type: "string", Enum: anyList(migration.JobKinds())}
			case reflect.TypeFor[migration.JobState]():
				return &jsonschema.Schema{Type: "string", Enum: anyList(migration.JobStates())}
			case reflect.TypeFor[time.Time]():
				return &jsonschema.Schema{Type: "string", Format: "date-time"}
			case reflect.TypeFor[json.RawMessage]():
				return &jsonschema.Schema{Description: "any JSON value"}
			}
			return nil
		}}
	schemas := map[string]any{}
	ref := func(v any) (map[string]any, error) {
		s := r.Reflect(v)
		for name, def := range s.Definitions {
			schemas[name] = def
		}
		name := reflect.TypeOf(v).Name()
		if _, ok := s.Definitions[name]; !ok {
			return nil, fmt.Errorf("no schema reflected for %s", name)
		}
		return map[string]any{"$ref": "#/components/schemas/" + name}, nil
	}
	codes := map[string]api.Code{}
	var all []string
	for _, c := range api.Codes() {
		codes[c.Code] = c
		all = append(all, c.Code)
	}
	schemas["ErrorAnswer"] = map[string]any{
		"type": "object", "required": []string{"error"},
		"properties": map[string]any{"error": map[string]any{
			"type": "object", "required": []string{"code", "message"},
			"properties": map[string]any{
				"code":    map[string]any{"type": "string", "enum": all, "description": "a stable code (the README's error table)"},
				"message": map[string]any{"type": "string"},
				"field":   map[string]any{"type": "string", "description": "the offending field, when one is to blame"},
			}}},
	}
	paths := map[string]map[string]any{}
	for _, op := range apiOperations() {
		o := map[string]any{"operationId": op.id, "summary": op.summary, "tags": []string{"migrations"}}
		if op.description != "" {
			o["description"] = op.description
		}
		var params []any
		if strings.Contains(op.path, "{id}") {
			params = append(params, map[string]any{"name": "id", "in": "path", "required": true,
				"schema": map[string]any{"type": "string"}, "description": "the migration id"})
		}
		for _, q := range op.query {
			params = append(params, map[string]any{"name": q.name, "in": "query", "required": false,
				"schema": q.schema, "description": q.description})
		}
		if params != nil {
			o["parameters"] = params
		}
		if op.request != nil {
			s, err := ref(op.request)
			if err != nil {
				return nil, err
			}
			media := map[string]any{"schema": s}
			examples := map[string]any{}
			for _, ex := range op.examples {
				body := ex.body
				for _, kv := range exampleValues {
					body = strings.ReplaceAll(body, "{{"+kv[0]+"}}", kv[1])
				}
				if !json.Valid([]byte(body)) {
					return nil, fmt.Errorf("operation %s: example %s is not JSON", op.id, ex.name)
				}
				// Raw: the example keeps its fields in the order written.
				examples[ex.name] = map[string]any{"summary": ex.summary, "value": json.RawMessage(body)}
			}
			if len(examples) > 0 {
				media["examples"] = examples
			}
			o["requestBody"] = map[string]any{"required": !op.optional, "content": map[string]any{"application/json": media}}
		}
		responses := map[string]any{}
		for _, a := range op.answers {
			resp := map[string]any{"description": a.description}
			content := map[string]any{}
			if prev, ok := responses[strconv.Itoa(a.status)].(map[string]any); ok {
				resp, content = prev, prev["content"].(map[string]any) // another media type of the same answer
			}
			if a.body != nil {
				s, err := ref(a.body)
				if err != nil {
					return nil, err
				}
				content[a.contentType] = map[string]any{"schema": s}
			} else {
				content[a.contentType] = map[string]any{"schema": map[string]any{"type": "string"}}
			}
			resp["content"] = content
			if a.location {
				resp["headers"] = map[string]any{"Location": map[string]any{"description": "the migration's URL path",
					"schema": map[string]any{"type": "string"}}}
			}
			responses[strconv.Itoa(a.status)] = resp
		}
		byStatus := map[int][]string{}
		opCodes := slices.Clone(op.codes)
		if !op.inMemory {
			opCodes = append(opCodes, "internal_error")
		}
		// AUTH_MODE entra: every operation needs a signed-in caller holding the app role of its route (auth.go).
		role, ok := routeRole(op.method, op.path)
		if !ok {
			return nil, fmt.Errorf("operation %s: no route of the handler serves %s %s", op.id, op.method, op.path)
		}
		o["x-required-role"] = string(role)
		opCodes = append(opCodes, "unauthenticated", "forbidden")
		for _, c := range opCodes {
			row, ok := codes[c]
			if !ok {
				return nil, fmt.Errorf("operation %s: code %q is not in the error table", op.id, c)
			}
			byStatus[row.Status] = append(byStatus[row.Status], c)
		}
		for status, cs := range byStatus {
			var lines []string
			for _, c := range cs {
				line := fmt.Sprintf("`%s`: %s", c, codes[c].When)
				if c == "forbidden" {
					line += "; this operation needs `" + string(role) + "`"
				}
				lines = append(lines, line)
			}
			responses[strconv.Itoa(status)] = map[string]any{
				"description":   strings.Join(lines, "\n\n"),
				"x-error-codes": cs,
				"content": map[string]any{"application/json": map[string]any{
					"schema": map[string]any{"$ref": "#/components/schemas/ErrorAnswer"}}},
			}
		}
		o["responses"] = responses
		if paths[op.path] == nil {
			paths[op.path] = map[string]any{}
		}
		paths[op.path][strings.ToLower(op.method)] = o
	}
	if err := refineSchemas(schemas); err != nil {
		return nil, err
	}
	doc := map[string]any{
		"openapi": "3.1.0",
		"info": map[string]any{"title": "FHIR migrator", "version": "1.0.0",
			"description": "Moves a FHIR server's data from Azure API for FHIR to the Azure Health Data Services FHIR service: start, watch, verify, sync and cut over, clean up."},
		"servers": []any{map[string]any{"url": "{baseUrl}", "variables": map[string]any{
			"baseUrl": map[string]any{"default": "http://127.0.0.1:7071", "description": "the Function App's URL"}}}},
		// A function key always (every function is authLevel function); with AUTH_MODE entra a Microsoft Entra
		// access token as well.
		"security": []any{map[string]any{"functionKey": []string{}}, map[string]any{"functionKey": []string{}, "entraId": []string{}}},
		"paths":    paths,
		"components": map[string]any{"schemas": schemas, "securitySchemes": map[string]any{
			"functionKey": map[string]any{"type": "apiKey", "in": "header", "name": "x-functions-key", "description": "a function key of the app (none on the local host)"},
			"entraId": map[string]any{"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
				"description": "AUTH_MODE entra: a Microsoft Entra access token for the app registration (scope api://<AUTH_CLIENT_ID>/.default), sent with the function key. App Service authentication checks it; the handler then requires the app role each operation names in x-required-role (" + string(roleOperate) + " implies " + string(roleRead) + ")."},
		}},
		"x-route-codes": map[string]any{
			"description": "answered to a request that names no operation (404), or a method its path does not take (405, with Allow)",
			"codes":       routeCodes,
		},
	}
	data, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode the OpenAPI document: %w", err)
	}
	// Reflected schemas refer to each other under $defs; in OpenAPI they live under components.
	return []byte(strings.ReplaceAll(string(data), `"#/$defs/`, `"#/components/schemas/`)), nil
}
