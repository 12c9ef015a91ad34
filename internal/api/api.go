// Package api is the HTTP API's wire contract apart from the engine: how request bodies are read, how errors are
// answered, and the one table of error codes with their kinds and HTTP statuses (the README's table is rendered
// from it, and a test keeps the two equal).
package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/fhir-migrator/fhir-migrator/internal/migration"
)

// Body limits: the start request, and every action's body.
const (
	MaxStartBody  = 1 << 20
	MaxActionBody = 64 << 10
)

// Kinds of the API's own errors, beside the engine's.
const (
	// Body: the request body itself is not what the route reads.
	Body migration.ErrorKind = "body"
	// Route: no such endpoint or action.
	Route migration.ErrorKind = "route"
	// Method: the endpoint is there, the method is not one it takes.
	Method migration.ErrorKind = "method"
	// Internal: the request failed on the service's side; the details stay in the function's log.
	Internal migration.ErrorKind = "internal"
	// Unauthenticated: with AUTH_MODE entra, the request carries no principal signed in by the platform.
	Unauthenticated migration.ErrorKind = "unauthenticated"
	// Forbidden: with AUTH_MODE entra, the signed-in principal lacks the app role the operation needs.
	Forbidden migration.ErrorKind = "forbidden"
)

// Error is an error answer: {"error": {"code", "message", "field"}} with Status.
type Error struct {
	Status  int
	Code    string
	Message string
	Field   string
}

func (e *Error) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("%s (%s): %s", e.Code, e.Field, e.Message)
	}
	return e.Code + ": " + e.Message
}

// StatusOf is the HTTP status of an error kind.
func StatusOf(kind migration.ErrorKind) int {
	switch kind {
	case migration.Invalid, Body:
		return http.StatusBadRequest
	case migration.NotFound, Route:
		return http.StatusNotFound
	case Method:
		return http.StatusMethodNotAllowed
	case Unauthenticated:
		return http.StatusUnauthorized
	case Forbidden:
		return http.StatusForbidden
	case migration.Conflict:
		return http.StatusConflict
	case migration.Unavailable:
		return http.StatusBadGateway
	}
	return http.StatusInternalServerError
}

// Code is one row of the error table.
type Code struct {
	Status int
	Code   string
	Kind   migration.ErrorKind
	When   string
}

// Codes is every code the API answers with: its own (the body, the route, an internal failure) and every code
// of the engine's operations, each with the status of its kind, in the order of the README's table.
func Codes() []Code {
	out := []Code{
		{Code: "invalid_body", Kind: Body, When: "the body could not be read"},
		{Code: "body_too_large", Kind: Body, When: "the body is over its limit: 1 MiB for a start request, 64 KiB for an action"},
		{Code: "invalid_json", Kind: Body, When: "the body is not one JSON object, or a field has the wrong JSON type (`field` names it)"},
		{Code: "unknown_field", Kind: Body, When: "the body has a field the route does not know (`field` names it)"},
	}
	for _, c := range migration.Codes() {
		out = append(out, Code{Code: c.Code, Kind: c.Kind, When: c.When})
	}
	out = append(out,
		Code{Code: "unknown_action", Kind: Route, When: "`POST /api/migrations/{id}/{action}` with an action other than `verify`, `cleanup`, `cutover` or `repair`"},
		Code{Code: "no_route", Kind: Route, When: "no such endpoint"},
		Code{Code: "method_not_allowed", Kind: Method, When: "the path is an endpoint's and the method is not one it takes; the `Allow` header lists those it takes"},
		Code{Code: "unauthenticated", Kind: Unauthenticated, When: "`AUTH_MODE` `entra`: the request carries no principal signed in by App Service authentication (`X-MS-CLIENT-PRINCIPAL` absent or unreadable), or one whose token was issued for another audience"},
		Code{Code: "forbidden", Kind: Forbidden, When: "`AUTH_MODE` `entra`: the signed-in principal lacks the app role the operation needs (`message` names it): `Migration.Read` to read, `Migration.Operate` to start or change a migration"},
		Code{Code: "internal_error", Kind: Internal, When: "the request failed on the service's side (storage unreachable, ...); the log has the details"},
	)
	for i := range out {
		out[i].Status = StatusOf(out[i].Kind)
	}
	return out
}

// MarkdownTable renders Codes as the README's error table.
func MarkdownTable() string {
	var b strings.Builder
	b.WriteString("| Status | `code` | Kind | When |\n| --- | --- | --- | --- |\n")
	for _, c := range Codes() {
		fmt.Fprintf(&b, "| %d | `%s` | %s | %s |\n", c.Status, c.Code, c.Kind, c.When)
	}
	return b.String()
}

// FromError is the answer to a failed request: an engine refusal by its kind, an API error as it is, anything
// else an internal_error (internal is then true: the caller logs err, which is never sent).
func FromError(err error) (answer *Error, internal bool) {
	var refusal *migration.Error
	var apiErr *Error
	switch {
	case errors.As(err, &apiErr):
		return apiErr, false
	case errors.As(err, &refusal):
		return &Error{Status: StatusOf(refusal.Kind), Code: refusal.Code, Message: refusal.Message, Field: refusal.Field}, false
	}
	return &Error{Status: http.StatusInternalServerError, Code: "internal_error", Message: "the request failed; see the function's log"}, true
}

func bodyError(code, field, format string, args ...any) *Error {
	return &Error{Status: StatusOf(Body), Code: code, Field: field, Message: fmt.Sprintf(format, args...)}
}

// Decode reads one JSON object from body into v, strictly: at most limit bytes (body_too_large), no field v does
// not know (unknown_field), every field of its JSON type (invalid_json), nothing after the object. An empty body
// leaves v as it is when optional, else it is invalid_json.
func Decode(body io.Reader, limit int64, optional bool, v any) *Error {
	data, err := io.ReadAll(io.LimitReader(body, limit+1))
	if err != nil {
		return bodyError("invalid_body", "", "the request body could not be read")
	}
	if int64(len(data)) > limit {
		return bodyError("body_too_large", "", "the request body is over %d bytes", limit)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		if optional {
			return nil
		}
		return bodyError("invalid_json", "", "the request body is empty: send a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			name = strings.Trim(name, `"`)
			return bodyError("unknown_field", name, "unknown field %q", name)
		}
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Field != "" {
			return bodyError("invalid_json", typeErr.Field, "field %s must be a JSON %s", typeErr.Field, jsonKind(typeErr.Type.Kind().String()))
		}
		return bodyError("invalid_json", "", "the body is not a JSON object: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return bodyError("invalid_json", "", "unexpected data after the JSON object")
	}
	return nil
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string", "ptr":
		return "string"
	case "slice":
		return "array"
	case "int", "int64":
		return "integer"
	case "bool":
		return "boolean"
	}
	return "value of another type"
}

// errorBody is the JSON of an error answer.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

// Write answers an error as JSON.
func Write(w http.ResponseWriter, e *Error) {
	WriteJSON(w, e.Status, errorBody{Error: errorDetail{Code: e.Code, Message: e.Message, Field: e.Field}})
}

// WriteJSON answers v as indented JSON with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
