// Package fhir is the client for the FHIR REST and bulk data APIs of Azure API for FHIR and the Azure Health
// Data Services FHIR service: $export and $import with their status and cancel calls, counts, search with
// paging, and batch bundles. It is tolerant of every documented variant of the services' answers.
//
// Tokens are requested per server for the audience {scheme}://{host}[:{port}] and sent only to hosts on the
// allow-list (see HostPolicy), never across a redirect to another host or port, and never logged.
package fhir

import (
	"errors"
	"net/http"
	"strconv"
	"time"
)

// ExportRequest is an $export kick-off: GET {base}/$export, or {base}/{Path} (Patient/$export, Group/{id}/$export).
type ExportRequest struct {
	// Path is the kick-off's path under the base URL: "" for $export (system level), "Patient/$export" or
	// "Group/{id}/$export".
	Path string
	// Types becomes _type (comma-joined); empty exports every type.
	Types []string
	// Since and Till become _since and _till (RFC 3339) when not nil; Until becomes _until (the Bulk Data IG v2's
	// name of an upper bound, for a server that declares it).
	Since *time.Time
	Till  *time.Time
	Until *time.Time
	// TypeFilter entries such as "Observation?status=final" become _typeFilter (comma-joined).
	TypeFilter []string
	// Container becomes _container.
	Container string
	// History and Deleted become includeAssociatedData=_history,_deleted: older versions and deletion stubs in
	// the same files (not combinable with TypeFilter).
	History, Deleted bool
	// IsParallel, when not nil, becomes _isParallel: the FHIR service's export is parallel unless told otherwise,
	// Azure API for FHIR's is not (ExportController.cs GetExportParallelSetting).
	IsParallel *bool
}

// Capabilities is what the engine reads of a server's CapabilityStatement.
type Capabilities struct {
	// Types are the resource types of its rest entries in mode server, in order, each once.
	Types []string
	// FHIRVersion is its fhirVersion, such as "4.0.1" ("" when absent).
	FHIRVersion string
	// Operations are the operations it declares, at system level and on its resources (rest.operation and
	// rest.resource.operation, mode server): name, such as "export" or "group-export", to definition (a canonical
	// URL).
	Operations map[string]string
}

// Manifest is the body of a completed export's status (200).
type Manifest struct {
	TransactionTime     string         `json:"transactionTime"`
	Request             string         `json:"request"`
	RequiresAccessToken bool           `json:"requiresAccessToken"`
	Output              []ManifestFile `json:"output"`
	Error               []ManifestFile `json:"error"`
}

// ManifestFile is one NDJSON file of an export manifest; Count is per file.
type ManifestFile struct {
	Type  string `json:"type"`
	URL   string `json:"url"`
	Count int64  `json:"count"`
}

// ExportStatus is the answer to a poll of an export's Content-Location.
type ExportStatus struct {
	// Done is true on 200; Manifest is then set.
	Done     bool
	Manifest *Manifest
	// RetryAfter is the server's Retry-After (seconds or HTTP-date) when present, clamped to [100ms, 60s];
	// zero when absent (the usual case on a 202: the caller uses its own backoff).
	RetryAfter time.Duration
}

// ImportInput is one NDJSON file to import. URL has no query string. ETag is optional.
type ImportInput struct {
	Type string
	URL  string
	ETag string
}

// ImportRequest is a $import kick-off (POST {base}/$import with a Parameters body,
// inputFormat application/fhir+ndjson).
type ImportRequest struct {
	// Mode is "IncrementalLoad" or "InitialLoad".
	Mode   string
	Inputs []ImportInput
}

// ImportResult is the body of a completed import's status (200).
type ImportResult struct {
	TransactionTime string            `json:"transactionTime"`
	Request         string            `json:"request"`
	Output          []ImportOutput    `json:"output"`
	Error           []ImportErrorFile `json:"error"`
}

// ImportOutput counts the resources imported from one input file.
type ImportOutput struct {
	Type     string `json:"type"`
	Count    int64  `json:"count"`
	InputURL string `json:"inputUrl"`
}

// ImportErrorFile points to the NDJSON file of OperationOutcomes for the failed lines of one input file.
type ImportErrorFile struct {
	Type     string `json:"type"`
	Count    int64  `json:"count"`
	InputURL string `json:"inputUrl"`
	URL      string `json:"url"`
}

// ImportStatus is the answer to a poll of an import's Content-Location.
type ImportStatus struct {
	// Done is true on 200; Result is then set.
	Done       bool
	Result     *ImportResult
	RetryAfter time.Duration
}

// BatchEntry is one PUT of a batch Bundle: PUT {Type}/{ID} with Resource as the body.
type BatchEntry struct {
	Type     string
	ID       string
	Resource []byte
}

// BatchResult is the per-entry outcome of a batch Bundle, in request order.
type BatchResult struct {
	// Status holds each entry's response.status, such as "201 Created" or "400 Bad Request".
	Status []string
	// Version and LastUpdated hold each entry's new version (from response.etag) and time (response.lastModified),
	// empty when the server did not say.
	Version     []string
	LastUpdated []string
}

// Error is a FHIR server's non-success answer. Op names the call ("export kick-off", "import status", ...).
// Message is the OperationOutcome's diagnostics/text when the body had one, else a short body excerpt.
type Error struct {
	Op         string
	StatusCode int
	Message    string
	// RetryAfter is the server's Retry-After / x-ms-retry-after-ms when present (clamped), else 0.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	if e.Message == "" {
		return e.Op + ": HTTP " + strconv.Itoa(e.StatusCode)
	}
	return e.Op + ": HTTP " + strconv.Itoa(e.StatusCode) + ": " + e.Message
}

// Refused reports whether err is a FHIR server refusing the request itself (a 4xx other than 408, 423 and 429):
// asking again the same way will not help. The engine classifies answers with these, never by status code.
func Refused(err error) bool {
	var fe *Error
	return errors.As(err, &fe) && fe.StatusCode/100 == 4 && !fe.Temporary()
}

// Throttled reports whether err is a FHIR server asking the caller to slow down (429).
func Throttled(err error) bool {
	var fe *Error
	return errors.As(err, &fe) && fe.StatusCode == http.StatusTooManyRequests
}

// Temporary reports whether the same call may succeed later: 408, 423, 429 and 5xx other than 501.
func (e *Error) Temporary() bool {
	switch {
	case e.StatusCode == 408, e.StatusCode == 423, e.StatusCode == 429:
		return true
	case e.StatusCode >= 500 && e.StatusCode != 501:
		return true
	}
	return false
}
