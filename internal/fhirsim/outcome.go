package fhirsim

import (
	"encoding/json"
	"fmt"
	"net/http"
)

type operationOutcome struct {
	ResourceType string         `json:"resourceType"`
	ID           string         `json:"id,omitempty"`
	Issue        []outcomeIssue `json:"issue"`
}

type outcomeIssue struct {
	Severity    string          `json:"severity"`
	Code        string          `json:"code"`
	Diagnostics string          `json:"diagnostics"`
	Details     *outcomeDetails `json:"details,omitempty"`
}

type outcomeDetails struct {
	Text string `json:"text"`
}

func newOutcome(code, diagnostics string) operationOutcome {
	return operationOutcome{
		ResourceType: "OperationOutcome",
		Issue:        []outcomeIssue{{Severity: "error", Code: code, Diagnostics: diagnostics}},
	}
}

// writeOutcome answers with an OperationOutcome whose issue[0].diagnostics is the formatted message.
func writeOutcome(w http.ResponseWriter, status int, code, format string, args ...any) {
	writeJSON(w, status, "application/fhir+json", newOutcome(code, fmt.Sprintf(format, args...)))
}

func writeJSON(w http.ResponseWriter, status int, contentType string, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encode response", http.StatusInternalServerError)
		return
	}
	writeRaw(w, status, contentType, body)
}

func writeRaw(w http.ResponseWriter, status int, contentType string, body []byte) {
	w.Header().Set("Content-Type", contentType+"; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
