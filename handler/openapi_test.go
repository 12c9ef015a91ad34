package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/api"
)

type openAPIOperation struct {
	OperationID string `json:"operationId"`
	RequestBody *struct {
		Content map[string]struct {
			Example json.RawMessage `json:"example"`
		} `json:"content"`
	} `json:"requestBody"`
	Responses map[string]struct {
		ErrorCodes []string `json:"x-error-codes"`
	} `json:"responses"`
}

// codes are every error code the operation is described to answer.
func (op openAPIOperation) codes() []string {
	var out []string
	for _, r := range op.Responses {
		out = append(out, r.ErrorCodes...)
	}
	return out
}

var updatePostman = flag.Bool("update-postman", false, "rewrite the Postman collection from the OpenAPI document")

type openAPIDoc struct {
	OpenAPI    string                                 `json:"openapi"`
	Paths      map[string]map[string]openAPIOperation `json:"paths"`
	Components struct {
		Schemas map[string]json.RawMessage `json:"schemas"`
	} `json:"components"`
	RouteCodes struct {
		Codes []string `json:"codes"`
	} `json:"x-route-codes"`
}

func readOpenAPI(t *testing.T) ([]byte, openAPIDoc) {
	t.Helper()
	raw, err := openAPIDocument()
	require.NoError(t, err)
	var doc openAPIDoc
	require.NoError(t, json.Unmarshal(raw, &doc))
	require.Equal(t, "3.1.0", doc.OpenAPI)
	return raw, doc
}

// Every route of the handler's HTTP API, each action and each report part, is one operation of the description,
// and the description has no other.
func TestOpenAPIMatchesTheRoutes(t *testing.T) {
	t.Parallel()
	_, doc := readOpenAPI(t)
	var described []string
	for p, methods := range doc.Paths {
		for m := range methods {
			described = append(described, strings.ToUpper(m)+" "+p)
		}
	}
	var routed []string
	for _, r := range (&app{}).apiRoutes() {
		switch {
		case strings.HasSuffix(r.pattern, "/{action}"):
			for _, a := range actionNames {
				routed = append(routed, strings.TrimSuffix(r.pattern, "{action}")+a)
			}
		case strings.HasSuffix(r.pattern, "/{part}"):
			for _, p := range reportParts {
				routed = append(routed, strings.TrimSuffix(r.pattern, "{part}")+p)
			}
		default:
			routed = append(routed, r.pattern)
		}
	}
	slices.Sort(described)
	slices.Sort(routed)
	require.Equal(t, routed, described)
}

// The action and report-part lists the description is built from are exactly the ones the handler serves.
func TestActionsAndReportPartsAreTheServedOnes(t *testing.T) {
	t.Parallel()
	require.Equal(t, slices.Sorted(maps.Keys((&app{}).actionHandlers())), slices.Sorted(slices.Values(actionNames)),
		"every served action is described, and only those")
	srv := actionsServer(t)
	code := func(method, path string) (int, string) {
		req, err := http.NewRequest(method, srv.URL+path, nil)
		require.NoError(t, err)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var e struct{ Error struct{ Code string } }
		body, _ := io.ReadAll(resp.Body)
		_ = json.Unmarshal(body, &e)
		return resp.StatusCode, e.Error.Code
	}
	for _, a := range actionNames {
		_, c := code(http.MethodPost, "/api/migrations/m-1/"+a)
		require.NotEqual(t, "unknown_action", c, a)
	}
	_, c := code(http.MethodPost, "/api/migrations/m-1/bogus")
	require.Equal(t, "unknown_action", c)
	for _, p := range reportParts {
		_, c := code(http.MethodGet, "/api/migrations/m-1/report/"+p)
		require.NotEqual(t, "no_route", c, p)
	}
	_, c = code(http.MethodGet, "/api/migrations/m-1/report/bogus")
	require.Equal(t, "no_route", c)

	status, _ := code(http.MethodGet, "/api/openapi.json")
	require.Equal(t, http.StatusOK, status)
}

// Every code of the error table is in the description: in the error answer's enum, in order, and answered by
// some operation (or to no operation at all); no operation answers a code the table lacks.
func TestOpenAPICodesAreTheErrorTable(t *testing.T) {
	t.Parallel()
	_, doc := readOpenAPI(t)
	var table []string
	for _, c := range api.Codes() {
		table = append(table, c.Code)
	}
	var errAnswer struct {
		Properties struct {
			Error struct {
				Properties struct {
					Code struct {
						Enum []string `json:"enum"`
					} `json:"code"`
				} `json:"properties"`
			} `json:"error"`
		} `json:"properties"`
	}
	require.NoError(t, json.Unmarshal(doc.Components.Schemas["ErrorAnswer"], &errAnswer))
	require.Equal(t, table, errAnswer.Properties.Error.Properties.Code.Enum)

	answered := map[string]bool{}
	for _, c := range doc.RouteCodes.Codes {
		answered[c] = true
	}
	for p, methods := range doc.Paths {
		for m, op := range methods {
			for status, r := range op.Responses {
				for _, c := range r.ErrorCodes {
					require.Contains(t, table, c, "%s %s %s", m, p, status)
					answered[c] = true
				}
			}
		}
	}
	for _, c := range table {
		require.True(t, answered[c], "no operation of the description answers %s", c)
	}
}

// The request examples are bodies the API accepts, and the answers' schemas are there.
func TestOpenAPIExamplesAndSchemas(t *testing.T) {
	t.Parallel()
	_, doc := readOpenAPI(t)
	for _, op := range apiOperations() {
		for _, ex := range op.examples {
			ptr := reflect.New(reflect.TypeOf(op.request)).Interface()
			require.Nil(t, api.Decode(strings.NewReader(ex.body), api.MaxStartBody, false, ptr), "%s example %s", op.id, ex.name)
		}
	}
	for _, name := range []string{"StartRequest", "Migration", "Plan", "ListResult", "ReverifyRequest", "CleanupRequest",
		"CleanupResult", "Sync", "SyncRound", "Cutover", "ErrorAnswer"} {
		require.Contains(t, doc.Components.Schemas, name)
	}
	raw, _ := readOpenAPI(t)
	require.NotContains(t, string(raw), "#/$defs/", "every reference points into components")
}

// The Postman collection and requests.http are generated from the description and the walkthrough and checked in;
// both must match (-update-postman rewrites them). The collection is a v2.1 collection whose every request
// carries a test script; requests.http holds the same requests in the same order.
func TestWalkthroughPostmanCollectionAndRequestsHTTPAreGenerated(t *testing.T) {
	t.Parallel()
	raw, doc := readOpenAPI(t)
	for _, f := range []struct {
		path     string
		generate func([]byte) ([]byte, error)
	}{{postmanCollectionPath, postmanCollection}, {requestsHTTPPath, requestsHTTP}} {
		want, err := f.generate(raw)
		require.NoError(t, err)
		path := filepath.Join(repoRoot, filepath.FromSlash(f.path))
		if *updatePostman {
			require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
			require.NoError(t, os.WriteFile(path, want, 0o644))
		}
		got, err := os.ReadFile(path)
		require.NoError(t, err, "run go test ./handler -run Postman -update-postman")
		require.True(t, bytes.Equal(want, got), "the checked-in %s is stale: run go test ./handler -run Postman -update-postman", f.path)
	}

	var c struct {
		Info     struct{ Schema string }
		Variable []struct{ Key string }
		Item     []struct {
			Name  string
			Event []struct {
				Listen string
				Script struct{ Exec []string }
			}
			Request struct {
				Method string
				URL    struct{ Raw string }
			}
		}
	}
	require.NoError(t, json.Unmarshal([]byte(readRepoFile(t, postmanCollectionPath)), &c))
	require.Equal(t, "https://schema.getpostman.com/json/collection/v2.1.0/collection.json", c.Info.Schema)
	var keys []string
	for _, v := range c.Variable {
		keys = append(keys, v.Key)
	}
	require.Subset(t, keys, []string{"baseUrl", "functionKey", "sourceUrl", "destinationUrl", "migrationId"})
	steps := walkthrough()
	require.Len(t, c.Item, len(steps), "one request per step")
	httpFile := readRepoFile(t, requestsHTTPPath)
	at := 0
	for i, it := range c.Item {
		require.Equal(t, steps[i].name, it.Name)
		require.True(t, strings.HasPrefix(it.Request.URL.Raw, "{{baseUrl}}/api/"), it.Name)
		var tests string
		for _, e := range it.Event {
			if e.Listen == "test" {
				tests = strings.Join(e.Script.Exec, "\n")
			}
		}
		require.Contains(t, tests, "pm.response.to.have.status(", "%s: its answer's status is tested", it.Name)
		// requests.http: the same request, in the same order.
		line := it.Request.Method + " " + it.Request.URL.Raw
		next := strings.Index(httpFile[at:], "\n"+line+"\n")
		require.GreaterOrEqual(t, next, 0, "requests.http lacks %q after the previous step's request", line)
		at += next + 1
	}
	ops := 0
	for _, methods := range doc.Paths {
		ops += len(methods)
	}
	walked := map[string]bool{}
	for _, st := range steps {
		walked[st.op] = true
	}
	require.Len(t, walked, ops, "every operation is walked")
}

// The generation refuses a walkthrough that does not fit the description: an operation, example, query
// parameter, status or error code it lacks, a variable used before a request sets it, an operation left out.
func TestWalkthroughRefusesWhatTheDescriptionLacks(t *testing.T) {
	t.Parallel()
	raw, _ := readOpenAPI(t)
	_, err := resolveWalkthrough(raw, walkthrough())
	require.NoError(t, err)
	step := func(i int, change func(s *walkStep)) []walkStep {
		steps := slices.Clone(walkthrough())
		change(&steps[i])
		return steps
	}
	find := func(name string) int {
		i := slices.IndexFunc(walkthrough(), func(s walkStep) bool { return s.name == name })
		require.GreaterOrEqual(t, i, 0, name)
		return i
	}
	start, list, cancel := find("Start a migration"), find("List migrations, the next page"), find("Cancel a migration")
	for _, tc := range []struct {
		name  string
		steps []walkStep
		want  string
	}{
		{"unknown operation", step(start, func(s *walkStep) { s.op = "startMigrations" }), "no operation startMigrations"},
		{"unknown example", step(start, func(s *walkStep) { s.example = "quick" }), "has no example quick"},
		{"status not described", step(start, func(s *walkStep) { s.status = http.StatusCreated }), "does not answer 201"},
		{"code not described", step(cancel, func(s *walkStep) { s.status, s.code = http.StatusConflict, "not_syncing" }), "does not answer 409 not_syncing"},
		{"unknown query parameter", step(list, func(s *walkStep) { s.query = [][2]string{{"skip", "1"}} }), "no query parameter skip"},
		{"variable not set yet", step(start, func(s *walkStep) { s.op, s.id, s.example, s.status = "getMigration", "migrationId", "", http.StatusOK }), "{{migrationId}} is used before"},
		{"an operation left out", slices.DeleteFunc(walkthrough(), func(s walkStep) bool { return s.op == "repair" }), "no step requests the operation repair"},
		{"a name twice", append(walkthrough(), walkthrough()[0]), "the name is used twice"},
	} {
		_, err := resolveWalkthrough(raw, tc.steps)
		require.ErrorContains(t, err, tc.want, tc.name)
	}
}
