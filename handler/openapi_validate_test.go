package main

// The served description is checked by a real OpenAPI 3.1 validator (npm @seriousme/openapi-schema-validator,
// installed by scripts/install-tools.sh and run by scripts/openapi-check.mjs), its Schema Objects by Ajv's JSON
// Schema 2020-12 validator in strict mode, its examples and defaults against their schemas; and the request
// schemas are held to the service's own validation: values inside and outside every enum, format, pattern and
// bound are sent through both, and both must give the same verdict.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/migration"
)

// openAPIProbe is a request body evaluated by the service (sent to path) and by the schema.
type openAPIProbe struct {
	Name   string `json:"name"`
	Schema string `json:"schema"`
	Value  any    `json:"value"`
	path   string
}

// openAPIError is one finding of the validator.
type openAPIError struct {
	Where   string `json:"where"`
	Message string `json:"message"`
}

type openAPICheck struct {
	Documents []struct {
		Errors []openAPIError `json:"errors"`
	} `json:"documents"`
	Probes []struct {
		Name   string   `json:"name"`
		Valid  bool     `json:"valid"`
		Errors []string `json:"errors"`
	} `json:"probes"`
}

// checkOpenAPI runs scripts/openapi-check.mjs on descriptions (the probes against the first) and returns its
// verdict.
func checkOpenAPI(t *testing.T, docs [][]byte, probes []openAPIProbe) openAPICheck {
	t.Helper()
	node, err := exec.LookPath("node")
	require.NoError(t, err, "node (Node 20) runs the OpenAPI validator")
	dir := t.TempDir()
	if probes == nil {
		probes = []openAPIProbe{}
	}
	data, err := json.Marshal(probes)
	require.NoError(t, err)
	probesFile := filepath.Join(dir, "probes.json")
	require.NoError(t, os.WriteFile(probesFile, data, 0o600))
	args := []string{filepath.Join(repoRoot, "scripts", "openapi-check.mjs"), "--probes", probesFile}
	for i, doc := range docs {
		f := filepath.Join(dir, fmt.Sprintf("openapi-%d.json", i))
		require.NoError(t, os.WriteFile(f, doc, 0o600))
		args = append(args, f)
	}
	cmd := exec.Command(node, args...)
	cmd.Stderr = &strings.Builder{}
	out, err := cmd.Output()
	var exit *exec.ExitError
	if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 1) {
		require.FailNow(t, "openapi-check did not run", "%v: %s (scripts/install-tools.sh installs the validator)", err, cmd.Stderr)
	}
	var res openAPICheck
	require.NoError(t, json.Unmarshal(out, &res), string(out))
	require.Len(t, res.Documents, len(docs))
	require.Len(t, res.Probes, len(probes))
	return res
}

// servedOpenAPI is the description as GET /api/openapi.json answers it.
func servedOpenAPI(t *testing.T, base string) []byte {
	t.Helper()
	resp, err := http.Get(base + "/api/openapi.json")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return raw
}

func TestOpenAPIPassesAnOpenAPI31Validator(t *testing.T) {
	t.Parallel()
	res := checkOpenAPI(t, [][]byte{servedOpenAPI(t, actionsServer(t).URL)}, nil)
	for _, e := range res.Documents[0].Errors {
		t.Errorf("%s: %s", e.Where, e.Message)
	}
}

// The validator must be able to fail: each break of a copy of the description is found where it is.
func TestOpenAPIValidatorFindsABrokenDescription(t *testing.T) {
	t.Parallel()
	raw := servedOpenAPI(t, actionsServer(t).URL)
	type doc = map[string]any
	at := func(d doc, path ...string) doc {
		for _, p := range path {
			d = d[p].(doc)
		}
		return d
	}
	startRequest := []string{"components", "schemas", "StartRequest"}
	cases := []struct {
		name, where string
		breakIt     func(d doc)
	}{
		{"an enum that is not a list", "StartRequest", func(d doc) { at(d, append(startRequest, "properties", "verify")...)["enum"] = "counts" }},
		{"a default outside its enum", "importMode", func(d doc) { at(d, append(startRequest, "properties", "importMode")...)["default"] = "Overwrite" }},
		{"an unknown format", "StartRequest", func(d doc) { at(d, append(startRequest, "properties", "since")...)["format"] = "datetime" }},
		{"a required field that is not there", "StartRequest", func(d doc) { at(d, startRequest...)["required"] = []any{"source", "sourse"} }},
		{"a reference to nothing", "Plan", func(d doc) {
			at(d, "components", "schemas", "Plan", "properties", "request")["$ref"] = "#/components/schemas/Requests"
		}},
		{"an example outside its enum", "example start", func(d doc) {
			ex := at(d, "paths", "/api/migrations", "post", "requestBody", "content", "application/json", "examples", "start")
			ex["value"].(doc)["verify"] = "all"
		}},
		{"a query parameter's default out of bounds", "parameter top", func(d doc) {
			at(d, "paths", "/api/migrations", "get")["parameters"].([]any)[0].(doc)["schema"].(doc)["default"] = 1000
		}},
		{"a path parameter not required", "document/paths", func(d doc) {
			at(d, "paths", "/api/migrations/{id}", "get")["parameters"].([]any)[0].(doc)["required"] = false
		}},
	}
	docs := [][]byte{raw}
	for _, tc := range cases {
		var d doc
		require.NoError(t, json.Unmarshal(raw, &d))
		tc.breakIt(d)
		broken, err := json.Marshal(d)
		require.NoError(t, err)
		docs = append(docs, broken)
	}
	res := checkOpenAPI(t, docs, nil)
	require.Empty(t, res.Documents[0].Errors, "the description as served")
	for i, tc := range cases {
		errs := res.Documents[i+1].Errors
		require.NotEmpty(t, errs, "%s: the validator took it", tc.name)
		found := slices.ContainsFunc(errs, func(e openAPIError) bool { return strings.Contains(e.Where+" "+e.Message, tc.where) })
		require.True(t, found, "%s: no error names %s: %+v", tc.name, tc.where, errs)
	}
}

// startBase is a start request the service's validation accepts (it then fails to reach the servers, which is
// no refusal of the request).
func startBase(extra map[string]any) map[string]any {
	b := map[string]any{"source": "https://source.azurehealthcareapis.com", "destination": "https://dest.azurehealthcareapis.com"}
	for k, v := range extra {
		b[k] = v
	}
	return b
}

// openAPIProbes are values inside and outside every enum of the request schemas (read from the description: each
// value, and values beside them), each default, and the formats, patterns and bounds.
func openAPIProbes(t *testing.T, raw []byte) []openAPIProbe {
	t.Helper()
	var d struct {
		Components struct {
			Schemas map[string]struct {
				Properties map[string]struct {
					Enum    []any `json:"enum"`
					Default any   `json:"default"`
					Items   *struct {
						Enum []any `json:"enum"`
					} `json:"items"`
				} `json:"properties"`
			} `json:"schemas"`
		} `json:"components"`
	}
	require.NoError(t, json.Unmarshal(raw, &d))
	// Fields that apply with sync only.
	withSync := map[string]bool{"reconcile": true, "syncInterval": true, "syncMargin": true, "cutoverVerify": true}
	bodies := map[string]struct {
		path string
		base func(map[string]any) map[string]any
	}{
		"StartRequest":    {"/api/migrations", startBase},
		"ReverifyRequest": {"/api/migrations/m-1/verify", func(e map[string]any) map[string]any { return e }},
		"CutoverRequest":  {"/api/migrations/m-1/cutover", func(e map[string]any) map[string]any { return e }},
	}
	var probes []openAPIProbe
	add := func(schema, name string, fields map[string]any) {
		b := bodies[schema]
		for f := range fields {
			if schema == "StartRequest" && withSync[f] {
				fields["sync"] = true
			}
		}
		probes = append(probes, openAPIProbe{Name: schema + " " + name, Schema: schema, Value: b.base(fields), path: b.path})
	}
	// Every value any enum of the description names, and every value of the engine's lists: each enum field is
	// probed with all of them, so that a value the service accepts and its enum lacks is found.
	pool := map[string]bool{}
	for name, sc := range d.Components.Schemas {
		if name == "ErrorAnswer" {
			continue
		}
		for _, p := range sc.Properties {
			values := p.Enum
			if p.Items != nil {
				values = append(values, p.Items.Enum...)
			}
			for _, v := range values {
				if s, ok := v.(string); ok {
					pool[s] = true
				}
			}
		}
	}
	for _, list := range [][]string{migration.ExportStrategies(), migration.ImportModes(), migration.VerifyModes(),
		migration.ReverifyModes(), migration.CleanupModes(), migration.ReconcileModes(), migration.AcceptValues()} {
		for _, v := range list {
			pool[v] = true
		}
	}
	for _, s := range migration.Statuses() {
		pool[string(s)] = true
	}
	enums := 0
	for schema := range bodies {
		props := d.Components.Schemas[schema].Properties
		require.NotEmpty(t, props, schema)
		for field, p := range props {
			values, list := p.Enum, false
			if p.Items != nil && p.Items.Enum != nil {
				values, list = p.Items.Enum, true
			}
			wrap := func(v any) any {
				if list {
					return []any{v}
				}
				return v
			}
			if values != nil {
				tried := map[string]bool{}
				try := func(v string) {
					if !tried[v] {
						tried[v] = true
						add(schema, fmt.Sprintf("%s %q", field, v), map[string]any{field: wrap(v)})
					}
				}
				for v := range pool {
					try(v)
				}
				for _, v := range values {
					enums++
					if s, ok := v.(string); ok && s != "" {
						// Beside each value: its case changed, and padded.
						try(strings.ToUpper(s))
						try(" " + s)
					}
				}
				try("bogus")
			}
			if p.Default != nil {
				add(schema, fmt.Sprintf("%s default %v", field, p.Default), map[string]any{field: p.Default})
			}
		}
	}
	require.GreaterOrEqual(t, enums, 15, "the request schemas' enums")
	for _, tc := range []struct {
		name   string
		fields map[string]any
	}{
		{"source an https URL with a path", map[string]any{"source": "https://x.azurehealthcareapis.com/fhir"}},
		{"source not a URL", map[string]any{"source": "not a url"}},
		{"source with a query", map[string]any{"source": "https://x.azurehealthcareapis.com/?a=1"}},
		{"source ftp", map[string]any{"source": "ftp://x.azurehealthcareapis.com"}},
		{"since UTC", map[string]any{"since": "2022-01-01T00:00:00Z"}},
		{"since with an offset and fraction", map[string]any{"since": "2022-01-01T00:00:00.123+02:00"}},
		{"since a date", map[string]any{"since": "2022-01-01"}},
		{"since without a zone", map[string]any{"since": "2022-01-01T00:00:00"}},
		{"till in words", map[string]any{"till": "tomorrow"}},
		{"till UTC", map[string]any{"till": "2030-01-01T00:00:00Z"}},
		{"types one", map[string]any{"types": []any{"Patient"}}},
		{"types none", map[string]any{"types": []any{}}},
		{"types lower case", map[string]any{"types": []any{"patient"}}},
		{"types twice", map[string]any{"types": []any{"Patient", "Patient"}}},
		{"types a path", map[string]any{"types": []any{"Patient/1"}}},
		{"typeFilter one", map[string]any{"typeFilter": []any{"Observation?status=final"}}},
		{"typeFilter two parameters", map[string]any{"typeFilter": []any{"Observation?status=final&code=1234-5"}}},
		{"typeFilter an escape", map[string]any{"typeFilter": []any{"Observation?code=a%20b"}}},
		{"typeFilter an empty value", map[string]any{"typeFilter": []any{"Observation?code="}}},
		{"typeFilter no query", map[string]any{"typeFilter": []any{"Observation"}}},
		{"typeFilter no value", map[string]any{"typeFilter": []any{"Observation?status"}}},
		{"typeFilter no name", map[string]any{"typeFilter": []any{"Observation?=final"}}},
		{"typeFilter a comma", map[string]any{"typeFilter": []any{"Observation?status=final,amended"}}},
		{"typeFilter an empty parameter", map[string]any{"typeFilter": []any{"Observation?a=1&&b=2"}}},
		{"typeFilter a bad escape", map[string]any{"typeFilter": []any{"Observation?a=%zz"}}},
		{"typeFilter a semicolon", map[string]any{"typeFilter": []any{"Observation?a=1;b=2"}}},
		{"typeFilter lower-case type", map[string]any{"typeFilter": []any{"observation?a=1"}}},
		{"container", map[string]any{"container": "my-container-1"}},
		{"container 63", map[string]any{"container": strings.Repeat("a", 63)}},
		{"container 64", map[string]any{"container": strings.Repeat("a", 64)}},
		{"container 2", map[string]any{"container": "ab"}},
		{"container upper case", map[string]any{"container": "My-Container"}},
		{"container double hyphen", map[string]any{"container": "a--b"}},
		{"container leading hyphen", map[string]any{"container": "-abc"}},
		{"verifySample 0", map[string]any{"verifySample": 0}},
		{"verifySample 10", map[string]any{"verifySample": 10}},
		{"verifySample -1", map[string]any{"verifySample": -1}},
		{"verifySample text", map[string]any{"verifySample": "10"}},
		{"windowTarget 1", map[string]any{"windowTarget": 1}},
		{"windowTarget 0", map[string]any{"windowTarget": 0}},
		{"windowTarget a fraction", map[string]any{"windowTarget": 1.5}},
		{"dryRun", map[string]any{"dryRun": true}},
		{"dryRun text", map[string]any{"dryRun": "yes"}},
		{"an unknown field", map[string]any{"verfy": "ids"}},
		{"syncInterval 1h30m", map[string]any{"syncInterval": "1h30m"}},
		{"syncInterval 1.5h", map[string]any{"syncInterval": "1.5h"}},
		{"syncInterval .5s", map[string]any{"syncInterval": ".5s"}},
		{"syncInterval +5m", map[string]any{"syncInterval": "+5m"}},
		{"syncInterval 300ms", map[string]any{"syncInterval": "300ms"}},
		{"syncInterval 2µs", map[string]any{"syncInterval": "2µs"}},
		{"syncInterval 0s", map[string]any{"syncInterval": "0s"}},
		{"syncInterval 0", map[string]any{"syncInterval": "0"}},
		{"syncInterval -5m", map[string]any{"syncInterval": "-5m"}},
		{"syncInterval no unit", map[string]any{"syncInterval": "15"}},
		{"syncInterval ISO 8601", map[string]any{"syncInterval": "PT15M"}},
		{"syncInterval a space", map[string]any{"syncInterval": "5 m"}},
		{"syncMargin 0s", map[string]any{"syncMargin": "0s"}},
		{"syncMargin 0", map[string]any{"syncMargin": "0"}},
		{"syncMargin 2m30s", map[string]any{"syncMargin": "2m30s"}},
		{"syncMargin -1s", map[string]any{"syncMargin": "-1s"}},
		{"syncMargin no unit", map[string]any{"syncMargin": "5"}},
	} {
		add("StartRequest", tc.name, tc.fields)
	}
	probes = append(probes,
		openAPIProbe{Name: "StartRequest without both servers", Schema: "StartRequest", Value: map[string]any{}, path: "/api/migrations"},
		openAPIProbe{Name: "StartRequest without a destination", Schema: "StartRequest",
			Value: map[string]any{"source": "https://source.azurehealthcareapis.com"}, path: "/api/migrations"},
		openAPIProbe{Name: "StartRequest without a source", Schema: "StartRequest",
			Value: map[string]any{"destination": "https://dest.azurehealthcareapis.com"}, path: "/api/migrations"})
	for _, tc := range []struct {
		name   string
		fields map[string]any
	}{
		{"verify none", map[string]any{"verify": "none"}},
		{"verifySample -1", map[string]any{"verifySample": -1}},
		{"verifySample 3", map[string]any{"verifySample": 3}},
		{"accept twice", map[string]any{"accept": []any{"refused-versions", "refused-versions"}}},
		{"accept none", map[string]any{"accept": []any{}}},
		{"nothing", map[string]any{}},
	} {
		add("ReverifyRequest", tc.name, tc.fields)
	}
	for _, tc := range []struct {
		name   string
		fields map[string]any
	}{
		{"accept twice", map[string]any{"accept": []any{"refused-versions", "refused-versions"}}},
		{"nothing", map[string]any{}},
		{"an unknown field", map[string]any{"force": true}},
	} {
		add("CutoverRequest", tc.name, tc.fields)
	}
	// The walkthrough's refused request is refused by both.
	for _, st := range walkthrough() {
		if st.refused == "" {
			continue
		}
		var v map[string]any
		require.NoError(t, json.Unmarshal([]byte(strings.NewReplacer("{{sourceUrl}}", "https://source.azurehealthcareapis.com",
			"{{destinationUrl}}", "https://dest.azurehealthcareapis.com").Replace(st.refused)), &v))
		probes = append(probes, openAPIProbe{Name: "walkthrough: " + st.name, Schema: "StartRequest", Value: v, path: "/api/migrations"})
	}
	return probes
}

// Every probe gets the same verdict from the service's validation (400: refused) and from the description's
// schema: every enum value is accepted and values beside it refused, every default accepted, and the formats,
// patterns and bounds say what the code checks.
func TestOpenAPIRequestSchemasAreTheServicesValidation(t *testing.T) {
	t.Parallel()
	srv := actionsServer(t)
	raw := servedOpenAPI(t, srv.URL)
	probes := openAPIProbes(t, raw)
	res := checkOpenAPI(t, [][]byte{raw}, probes)
	require.Empty(t, res.Documents[0].Errors)
	refusedByBoth := 0
	for i, p := range probes {
		body, err := json.Marshal(p.Value)
		require.NoError(t, err)
		resp, err := http.Post(srv.URL+p.path, "application/json", strings.NewReader(string(body)))
		require.NoError(t, err)
		answer, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		serviceAccepts := resp.StatusCode != http.StatusBadRequest
		schema := res.Probes[i]
		require.Equal(t, p.Name, schema.Name)
		if serviceAccepts != schema.Valid {
			t.Errorf("%s: %s\n  the service answers %d %s\n  the schema says valid=%v %v", p.Name, body, resp.StatusCode,
				strings.TrimSpace(string(answer)), schema.Valid, schema.Errors)
		}
		if !serviceAccepts && !schema.Valid {
			refusedByBoth++
		}
	}
	require.Greater(t, refusedByBoth, len(probes)/3, "the probes must refuse too")
}
