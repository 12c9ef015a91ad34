package fhir

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// MaxImportInputs is the documented maximum number of input files per $import request.
const MaxImportInputs = 10000

// Import modes.
const (
	ImportModeIncremental = "IncrementalLoad"
	ImportModeInitial     = "InitialLoad"
)

const (
	mediaFHIRJSON   = "application/fhir+json"
	mediaJSON       = "application/json"
	mediaFHIRNDJSON = "application/fhir+ndjson"
)

// ExportKickoff starts a system-level $export and returns its absolute Content-Location. It is never retried
// (a repeated GET $export starts a second job): any failure returns at once, a non-success answer as *Error.
func (c *Client) ExportKickoff(ctx context.Context, r ExportRequest) (string, error) {
	const op = "export kick-off"
	q, err := exportQuery(r)
	if err != nil {
		return "", fmt.Errorf("%s: %w", op, err)
	}
	path := "$export"
	if r.Path != "" {
		if !exportPathPattern.MatchString(r.Path) {
			return "", fmt.Errorf("%s: the path %q is not $export, Patient/$export or Group/{id}/$export", op, r.Path)
		}
		path = r.Path
	}
	resp, err := c.do(ctx, call{
		op:     op,
		method: http.MethodGet,
		url:    c.endpoint(path, q),
		header: http.Header{"Accept": {mediaFHIRJSON}, "Prefer": {"respond-async"}},
	})
	if err != nil {
		return "", err
	}
	return c.contentLocation(op, resp)
}

// exportPathPattern is an export kick-off's path: Patient/$export or Group/{id}/$export (a FHIR id).
var exportPathPattern = regexp.MustCompile(`^(Patient/\$export|Group/[A-Za-z0-9\-.]{1,64}/\$export)$`)

func exportQuery(r ExportRequest) (url.Values, error) {
	q := url.Values{}
	for _, t := range r.Types {
		if !resourceTypePattern.MatchString(t) {
			return nil, fmt.Errorf("invalid resource type %q", t)
		}
	}
	if len(r.Types) > 0 {
		q.Set("_type", strings.Join(r.Types, ","))
	}
	if r.Since != nil && r.Till != nil && r.Till.Before(*r.Since) {
		return nil, errors.New("till is before since")
	}
	if r.Since != nil {
		q.Set("_since", FormatInstant(*r.Since))
	}
	if r.Till != nil {
		q.Set("_till", FormatInstant(*r.Till))
	}
	if r.Until != nil {
		if r.Since != nil && r.Until.Before(*r.Since) {
			return nil, errors.New("until is before since")
		}
		q.Set("_until", FormatInstant(*r.Until))
	}
	if len(r.TypeFilter) > 0 {
		if len(r.Types) == 0 {
			return nil, errors.New("typeFilter needs types")
		}
		for _, f := range r.TypeFilter {
			t, _, ok := strings.Cut(f, "?")
			if !ok || !resourceTypePattern.MatchString(t) {
				return nil, fmt.Errorf("typeFilter %q is not Type?query", f)
			}
		}
		q.Set("_typeFilter", strings.Join(r.TypeFilter, ","))
	}
	if r.Container != "" {
		q.Set("_container", r.Container)
	}
	if r.IsParallel != nil {
		q.Set("_isParallel", strconv.FormatBool(*r.IsParallel))
	}
	var associated []string
	if r.History {
		associated = append(associated, "_history")
	}
	if r.Deleted {
		associated = append(associated, "_deleted")
	}
	if len(associated) > 0 {
		if len(r.TypeFilter) > 0 {
			return nil, errors.New("history and deleted resources cannot be exported with a typeFilter")
		}
		q.Set("includeAssociatedData", strings.Join(associated, ","))
	}
	return q, nil
}

// instantLayout writes exactly 7 fractional digits: the FHIR service parses _since, _till and _lastUpdated into
// 100 ns ticks and answers 400 to an 8th or 9th digit, and a search value means the whole span its precision
// covers ("le...05Z" is every time in that second), so fewer digits would widen a window's end past the next
// window's start.
const instantLayout = "2006-01-02T15:04:05.0000000Z07:00"

// FormatInstant writes a FHIR instant in UTC as the service accepts it in _since, _till and _lastUpdated: always 7
// fractional digits (a finer time is truncated to the 100 ns tick that holds it), so that it stands for that one
// tick.
func FormatInstant(t time.Time) string {
	return t.UTC().Truncate(100 * time.Nanosecond).Format(instantLayout)
}

// contentLocation reads the absolute job URL from a kick-off's 202 answer.
func (c *Client) contentLocation(op string, resp *response) (string, error) {
	if resp.status < 200 || resp.status > 299 {
		return "", newError(op, resp, c.now())
	}
	loc := resp.header.Get("Content-Location")
	if loc == "" {
		loc = resp.header.Get("Location")
	}
	if loc == "" {
		return "", fmt.Errorf("%s: HTTP %d without Content-Location", op, resp.status)
	}
	u, err := c.resolve(loc, resp.url)
	if err != nil {
		return "", fmt.Errorf("%s: Content-Location: %w", op, err)
	}
	return u.String(), nil
}

// statusURL parses a stored Content-Location; relative ones are taken against the base URL.
func (c *Client) statusURL(op, contentLocation string) (*url.URL, error) {
	u, err := c.resolve(contentLocation, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: Content-Location: %w", op, err)
	}
	return u, nil
}

// ExportStatus polls an export: 202 -> not done (RetryAfter when the server sent one); 200 -> validated manifest;
// anything else -> *Error (a failed job answers its failure code with an OperationOutcome; a user-canceled one 404).
func (c *Client) ExportStatus(ctx context.Context, contentLocation string) (*ExportStatus, error) {
	const op = "export status"
	u, err := c.statusURL(op, contentLocation)
	if err != nil {
		return nil, err
	}
	resp, err := c.do(ctx, call{
		op: op, method: http.MethodGet, url: u, retry: true,
		header: http.Header{"Accept": {mediaJSON}},
	})
	if err != nil {
		return nil, err
	}
	switch resp.status {
	case http.StatusAccepted:
		return &ExportStatus{RetryAfter: ParseRetryAfter(resp.header, c.now())}, nil
	case http.StatusOK:
		m, err := ParseManifest(resp.body)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", op, redactURL(u), err)
		}
		return &ExportStatus{Done: true, Manifest: m}, nil
	default:
		return nil, newError(op, resp, c.now())
	}
}

// ImportKickoff posts $import with a Parameters body (inputFormat application/fhir+ndjson, mode, one input per
// file) and returns the absolute Content-Location. Retried on transient failures: the server registers an
// identical body idempotently. Refused without a call: no inputs, more than MaxImportInputs, an input URL with a
// query string or fragment, a duplicate URL, a SearchParameter input, an unknown mode.
func (c *Client) ImportKickoff(ctx context.Context, r ImportRequest) (string, error) {
	const op = "import kick-off"
	body, err := importBody(r)
	if err != nil {
		return "", fmt.Errorf("%s: %w", op, err)
	}
	resp, err := c.do(ctx, call{
		op: op, method: http.MethodPost, url: c.endpoint("$import", nil), body: body, retry: true,
		header: http.Header{
			"Prefer":       {"respond-async"},
			"Content-Type": {mediaFHIRJSON},
			"Accept":       {mediaFHIRJSON},
		},
	})
	if err != nil {
		return "", err
	}
	return c.contentLocation(op, resp)
}

type parameter struct {
	Name        string      `json:"name"`
	ValueString string      `json:"valueString,omitempty"`
	ValueURI    string      `json:"valueUri,omitempty"`
	Part        []parameter `json:"part,omitempty"`
}

// importBody builds the $import Parameters resource after checking every input.
func importBody(r ImportRequest) ([]byte, error) {
	mode := r.Mode
	if mode == "" {
		mode = ImportModeIncremental
	}
	if mode != ImportModeIncremental && mode != ImportModeInitial {
		return nil, fmt.Errorf("mode %q is neither %s nor %s", r.Mode, ImportModeIncremental, ImportModeInitial)
	}
	switch n := len(r.Inputs); {
	case n == 0:
		return nil, errors.New("no inputs")
	case n > MaxImportInputs:
		return nil, fmt.Errorf("%d inputs, more than the %d allowed per request", n, MaxImportInputs)
	}
	params := make([]parameter, 0, len(r.Inputs)+2)
	params = append(params,
		parameter{Name: "inputFormat", ValueString: mediaFHIRNDJSON},
		parameter{Name: "mode", ValueString: mode})
	seen := make(map[string]bool, len(r.Inputs))
	for i, in := range r.Inputs {
		if in.Type == "SearchParameter" {
			return nil, fmt.Errorf("input %d: SearchParameter resources cannot be imported", i)
		}
		if in.Type != "" && !resourceTypePattern.MatchString(in.Type) {
			return nil, fmt.Errorf("input %d: invalid resource type %q", i, in.Type)
		}
		u, err := url.Parse(in.URL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, fmt.Errorf("input %d: url is not an absolute http(s) URL", i)
		}
		if u.RawQuery != "" || u.ForceQuery || strings.Contains(in.URL, "?") {
			return nil, fmt.Errorf("input %d: url must not have a query string (no SAS URLs)", i)
		}
		if u.Fragment != "" || strings.Contains(in.URL, "#") {
			return nil, fmt.Errorf("input %d: url must not have a fragment", i)
		}
		if seen[in.URL] {
			return nil, fmt.Errorf("input %d: duplicate url %s", i, in.URL)
		}
		seen[in.URL] = true
		parts := make([]parameter, 0, 3)
		if in.Type != "" {
			parts = append(parts, parameter{Name: "type", ValueString: in.Type})
		}
		parts = append(parts, parameter{Name: "url", ValueURI: in.URL})
		if in.ETag != "" {
			parts = append(parts, parameter{Name: "etag", ValueURI: in.ETag})
		}
		params = append(params, parameter{Name: "input", Part: parts})
	}
	body, err := json.Marshal(struct {
		ResourceType string      `json:"resourceType"`
		Parameter    []parameter `json:"parameter"`
	}{"Parameters", params})
	if err != nil {
		return nil, fmt.Errorf("encode parameters: %w", err)
	}
	return body, nil
}

// ImportStatus polls an import with StatusTimeout per call (the server holds a completed job's status up to 60 s):
// 202 -> not done; 200 -> validated result; anything else -> *Error (a canceled job answers 400 "User requested
// cancellation of operation.").
func (c *Client) ImportStatus(ctx context.Context, contentLocation string) (*ImportStatus, error) {
	const op = "import status"
	u, err := c.statusURL(op, contentLocation)
	if err != nil {
		return nil, err
	}
	resp, err := c.do(ctx, call{
		op: op, method: http.MethodGet, url: u, retry: true, timeout: c.statusTimeout,
		header: http.Header{"Accept": {mediaJSON}},
	})
	if err != nil {
		return nil, err
	}
	switch resp.status {
	case http.StatusAccepted:
		return &ImportStatus{RetryAfter: ParseRetryAfter(resp.header, c.now())}, nil
	case http.StatusOK:
		r, err := ParseImportResult(resp.body)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", op, redactURL(u), err)
		}
		return &ImportStatus{Done: true, Result: r}, nil
	default:
		return nil, newError(op, resp, c.now())
	}
}

// CancelJob sends DELETE to a job's Content-Location. 200, 202 and 204 (canceled), 404 (unknown or already
// canceled) and 409 (an import that already completed or failed: nothing left to cancel) all return nil; the
// caller polls the status when it needs to know how the job ended. Anything else is *Error.
func (c *Client) CancelJob(ctx context.Context, contentLocation string) error {
	const op = "cancel job"
	u, err := c.statusURL(op, contentLocation)
	if err != nil {
		return err
	}
	resp, err := c.do(ctx, call{
		op: op, method: http.MethodDelete, url: u, retry: true,
		header: http.Header{"Accept": {mediaJSON}},
	})
	if err != nil {
		return err
	}
	switch resp.status {
	case http.StatusOK, http.StatusAccepted, http.StatusNoContent:
		return nil
	case http.StatusNotFound, http.StatusConflict:
		c.log.InfoContext(ctx, "cancel: job not running", "url", redactURL(u), "status", resp.status)
		return nil
	default:
		return newError(op, resp, c.now())
	}
}
