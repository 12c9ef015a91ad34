package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// postmanCollectionPath is where the generated Postman collection is checked in.
const postmanCollectionPath = "postman/fhir-migrator.postman_collection.json"

// postmanCollection generates a Postman collection (v2.1) from the OpenAPI document: one request per operation,
// in the document's order of paths, with the base URL, the function key and the migration id as collection
// variables; the start request's answer sets the migration id.
func postmanCollection(openAPI []byte) ([]byte, error) {
	var doc struct {
		Paths map[string]map[string]struct {
			OperationID string `json:"operationId"`
			Summary     string `json:"summary"`
			Description string `json:"description"`
			RequestBody *struct {
				Content map[string]struct {
					Example any `json:"example"`
				} `json:"content"`
			} `json:"requestBody"`
			Parameters []struct {
				Name, In, Description string
			} `json:"parameters"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		return nil, fmt.Errorf("read the OpenAPI document: %w", err)
	}
	type kv struct {
		Key         string `json:"key"`
		Value       string `json:"value"`
		Type        string `json:"type,omitempty"`
		Description string `json:"description,omitempty"`
		Disabled    bool   `json:"disabled,omitempty"`
	}
	type item struct {
		Name    string `json:"name"`
		Event   []any  `json:"event,omitempty"`
		Request any    `json:"request"`
	}
	var items []item
	paths := make([]string, 0, len(doc.Paths))
	for p := range doc.Paths {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	for _, p := range paths {
		methods := make([]string, 0, len(doc.Paths[p]))
		for m := range doc.Paths[p] {
			methods = append(methods, m)
		}
		slices.SortFunc(methods, func(a, b string) int { return methodRank(a) - methodRank(b) })
		for _, m := range methods {
			op := doc.Paths[p][m]
			path := strings.ReplaceAll(p, "{id}", "{{migrationId}}")
			url := map[string]any{"raw": "{{baseUrl}}" + path, "host": []string{"{{baseUrl}}"},
				"path": strings.Split(strings.TrimPrefix(path, "/"), "/")}
			var query []kv
			for _, prm := range op.Parameters {
				if prm.In == "query" {
					query = append(query, kv{Key: prm.Name, Value: "", Description: prm.Description, Disabled: true})
				}
			}
			if query != nil {
				url["query"] = query
			}
			req := map[string]any{"method": strings.ToUpper(m), "url": url, "description": strings.TrimSpace(op.Summary + "\n\n" + op.Description)}
			if op.RequestBody != nil {
				body := "{}"
				if ex := op.RequestBody.Content["application/json"].Example; ex != nil {
					b, err := json.MarshalIndent(ex, "", "  ")
					if err != nil {
						return nil, err
					}
					body = string(b)
				}
				req["header"] = []kv{{Key: "Content-Type", Value: "application/json"}}
				req["body"] = map[string]any{"mode": "raw", "raw": body, "options": map[string]any{"raw": map[string]any{"language": "json"}}}
			}
			it := item{Name: op.Summary, Request: req}
			if op.OperationID == "startMigration" {
				it.Event = []any{map[string]any{"listen": "test", "script": map[string]any{"type": "text/javascript", "exec": []string{
					"if (pm.response.code === 202) { pm.collectionVariables.set(\"migrationId\", pm.response.json().id); }",
				}}}}
			}
			items = append(items, it)
		}
	}
	collection := map[string]any{
		"info": map[string]any{
			"_postman_id": "3b1f8a52-6f0e-4c64-9d7e-5b2f0c1a9e11",
			"name":        "FHIR migrator",
			"description": "Generated from GET /api/openapi.json (handler/openapi.go). Set baseUrl (the Function App's URL, or http://127.0.0.1:7071 locally), functionKey (none on the local host), sourceUrl and destinationUrl; Start a migration sets migrationId.",
			"schema":      "https://schema.getpostman.com/json/collection/v2.1.0/collection.json",
		},
		"auth": map[string]any{"type": "apikey", "apikey": []kv{
			{Key: "key", Value: "x-functions-key", Type: "string"},
			{Key: "value", Value: "{{functionKey}}", Type: "string"},
			{Key: "in", Value: "header", Type: "string"},
		}},
		"variable": []kv{
			{Key: "baseUrl", Value: "http://127.0.0.1:7071", Type: "string"},
			{Key: "functionKey", Value: "", Type: "string"},
			{Key: "sourceUrl", Value: "https://myapiforfhir.azurehealthcareapis.com", Type: "string"},
			{Key: "destinationUrl", Value: "https://myworkspace-myfhir.fhir.azurehealthcareapis.com", Type: "string"},
			{Key: "migrationId", Value: "", Type: "string"},
		},
		"item": items,
	}
	out, err := json.MarshalIndent(collection, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

func methodRank(m string) int {
	return slices.Index([]string{"post", "get", "delete"}, m)
}
