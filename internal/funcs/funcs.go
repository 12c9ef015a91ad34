// Package funcs is the Azure Functions custom-handler wire contract: the invocation envelope the host POSTs to
// /{FunctionName}, decoders that survive the host's encoding quirks, and the response the host expects back.
//
// The host serialises each binding value and each metadata value on its own, so strings arrive JSON-quoted a
// second time ("\"4e77...\""), numbers arrive as strings ("1"), dates as plain strings without a zone, and a
// Service Bus body arrives as a JSON string holding the body text. The decoders accept those shapes and the
// plain ones, and never panic on outside input.
package funcs

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// InvokeRequest is the envelope of one invocation (POST /{FunctionName}).
type InvokeRequest struct {
	Data     map[string]json.RawMessage `json:"Data"`
	Metadata map[string]json.RawMessage `json:"Metadata"`
}

// DecodeInvokeRequest parses an envelope; it fails on anything that is not a JSON object with object-valued
// Data and Metadata (either may be absent or null).
func DecodeInvokeRequest(raw []byte) (*InvokeRequest, error) {
	var r InvokeRequest
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, fmt.Errorf("decode invocation envelope: %w", err)
	}
	return &r, nil
}

// Sys is Metadata.sys, present on every invocation.
type Sys struct {
	MethodName string
	UtcNow     time.Time
	RandGuid   string
}

// Sys decodes Metadata.sys.
func (r *InvokeRequest) Sys() (Sys, error) {
	raw, ok := r.Metadata["sys"]
	if !ok || isNull(raw) {
		return Sys{}, errors.New("metadata sys: absent")
	}
	var wire struct {
		MethodName string `json:"MethodName"`
		UtcNow     string `json:"UtcNow"`
		RandGuid   string `json:"RandGuid"`
	}
	if err := json.Unmarshal(raw, &wire); err != nil {
		return Sys{}, fmt.Errorf("metadata sys: %w", err)
	}
	s := Sys{MethodName: wire.MethodName, RandGuid: wire.RandGuid}
	if wire.UtcNow != "" {
		t, err := ParseHostTime(wire.UtcNow)
		if err != nil {
			return Sys{}, fmt.Errorf("metadata sys.UtcNow: %w", err)
		}
		s.UtcNow = t
	}
	return s, nil
}

// MetadataString returns a string metadata value, unquoting the host's second JSON quoting when present.
// Absent, null, object and array values report false.
func (r *InvokeRequest) MetadataString(key string) (string, bool) {
	raw, ok := r.Metadata[key]
	if !ok {
		return "", false
	}
	return scalarString(raw)
}

// MetadataInt returns an integer metadata value, which the host sends as a string ("1") or, rarely, a number.
func (r *InvokeRequest) MetadataInt(key string) (int64, bool) {
	s, ok := r.MetadataString(key)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return 0, false
	}
	return n, true
}

// MetadataTime returns a date metadata value ("2023-10-12T20:13:49", zone-less means UTC).
func (r *InvokeRequest) MetadataTime(key string) (time.Time, bool) {
	s, ok := r.MetadataString(key)
	if !ok || s == "" {
		return time.Time{}, false
	}
	t, err := ParseHostTime(s)
	if err != nil {
		return time.Time{}, false
	}
	return t, true
}

// TimerInfo is Data.{binding} of a timer trigger.
type TimerInfo struct {
	Schedule TimerSchedule
	// ScheduleStatus is nil when the host sends null (first run, or useMonitor false).
	ScheduleStatus *ScheduleStatus
	IsPastDue      bool
}

// TimerSchedule is the schedule part of TimerInfo.
type TimerSchedule struct {
	AdjustForDST bool
}

// ScheduleStatus is what the host's schedule monitor remembers of the timer.
type ScheduleStatus struct {
	Last        time.Time
	Next        time.Time
	LastUpdated time.Time
}

// Timer decodes the timer trigger binding.
func (r *InvokeRequest) Timer(binding string) (TimerInfo, error) {
	raw, err := r.binding(binding)
	if err != nil {
		return TimerInfo{}, err
	}
	var wire struct {
		Schedule *struct {
			AdjustForDST bool `json:"AdjustForDST"`
		} `json:"Schedule"`
		ScheduleStatus *struct {
			Last        string `json:"Last"`
			Next        string `json:"Next"`
			LastUpdated string `json:"LastUpdated"`
		} `json:"ScheduleStatus"`
		IsPastDue bool `json:"IsPastDue"`
	}
	if err := json.Unmarshal(raw, &wire); err != nil {
		return TimerInfo{}, fmt.Errorf("timer binding %q: %w", binding, err)
	}
	t := TimerInfo{IsPastDue: wire.IsPastDue}
	if wire.Schedule != nil {
		t.Schedule.AdjustForDST = wire.Schedule.AdjustForDST
	}
	if st := wire.ScheduleStatus; st != nil {
		var s ScheduleStatus
		for _, f := range []struct {
			name string
			in   string
			out  *time.Time
		}{{"Last", st.Last, &s.Last}, {"Next", st.Next, &s.Next}, {"LastUpdated", st.LastUpdated, &s.LastUpdated}} {
			if f.in == "" {
				continue
			}
			v, err := ParseHostTime(f.in)
			if err != nil {
				return TimerInfo{}, fmt.Errorf("timer binding %q ScheduleStatus.%s: %w", binding, f.name, err)
			}
			*f.out = v
		}
		t.ScheduleStatus = &s
	}
	return t, nil
}

// ServiceBusMessage is a Service Bus trigger's message: the body from Data, the rest from Metadata.
type ServiceBusMessage struct {
	Body            []byte
	MessageID       string
	DeliveryCount   int64
	EnqueuedTimeUtc time.Time
	ContentType     string
	SequenceNumber  int64
	CorrelationID   string
}

// ServiceBusMessage decodes the Service Bus trigger binding and its metadata.
func (r *InvokeRequest) ServiceBusMessage(binding string) (ServiceBusMessage, error) {
	raw, err := r.binding(binding)
	if err != nil {
		return ServiceBusMessage{}, err
	}
	body, err := messageBody(raw)
	if err != nil {
		return ServiceBusMessage{}, fmt.Errorf("service bus binding %q: %w", binding, err)
	}
	m := ServiceBusMessage{Body: body}
	m.MessageID, _ = r.MetadataString("MessageId")
	m.DeliveryCount, _ = r.MetadataInt("DeliveryCount")
	m.EnqueuedTimeUtc, _ = r.MetadataTime("EnqueuedTimeUtc")
	m.ContentType, _ = r.MetadataString("ContentType")
	m.SequenceNumber, _ = r.MetadataInt("SequenceNumber")
	m.CorrelationID, _ = r.MetadataString("CorrelationId")
	return m, nil
}

// HTTPRequestData is Data.{binding} of an HTTP trigger in payload mode (not forwarded).
type HTTPRequestData struct {
	URL        string
	Method     string
	Query      map[string]string
	Headers    map[string][]string
	Params     map[string]string
	Identities json.RawMessage
	Body       string
}

// HTTPRequest decodes the HTTP trigger binding of payload mode.
func (r *InvokeRequest) HTTPRequest(binding string) (HTTPRequestData, error) {
	raw, err := r.binding(binding)
	if err != nil {
		return HTTPRequestData{}, err
	}
	var wire struct {
		URL        string                     `json:"Url"`
		Method     string                     `json:"Method"`
		Query      map[string]json.RawMessage `json:"Query"`
		Headers    map[string]json.RawMessage `json:"Headers"`
		Params     map[string]json.RawMessage `json:"Params"`
		Identities json.RawMessage            `json:"Identities"`
		Body       json.RawMessage            `json:"Body"`
	}
	if err := json.Unmarshal(raw, &wire); err != nil {
		return HTTPRequestData{}, fmt.Errorf("http binding %q: %w", binding, err)
	}
	req := HTTPRequestData{
		URL:        wire.URL,
		Method:     wire.Method,
		Query:      map[string]string{},
		Headers:    map[string][]string{},
		Params:     map[string]string{},
		Identities: wire.Identities,
	}
	for k, v := range wire.Query {
		if s, ok := scalarString(v); ok {
			req.Query[k] = s
		}
	}
	for k, v := range wire.Params {
		if s, ok := scalarString(v); ok {
			req.Params[k] = s
		}
	}
	for k, v := range wire.Headers {
		var list []string
		if err := json.Unmarshal(v, &list); err == nil {
			req.Headers[k] = list
		} else if s, ok := scalarString(v); ok {
			req.Headers[k] = []string{s}
		} else {
			return HTTPRequestData{}, fmt.Errorf("http binding %q header %q: want a string or a list of strings", binding, k)
		}
	}
	if len(wire.Body) > 0 && !isNull(wire.Body) {
		var s string
		if err := json.Unmarshal(wire.Body, &s); err == nil {
			req.Body = s
		} else {
			// Some hosts hand a JSON request body over already parsed.
			req.Body = string(compact(wire.Body))
		}
	}
	return req, nil
}

// InvokeResponse is what the handler answers to an invocation.
type InvokeResponse struct {
	Outputs     map[string]any `json:"Outputs"`
	Logs        []string       `json:"Logs"`
	ReturnValue any            `json:"ReturnValue"`
}

// WriteInvokeResponse writes resp as JSON with the given status.
func WriteInvokeResponse(w http.ResponseWriter, status int, resp InvokeResponse) {
	if resp.Outputs == nil {
		resp.Outputs = map[string]any{}
	}
	if resp.Logs == nil {
		resp.Logs = []string{}
	}
	raw, err := json.Marshal(resp)
	if err != nil {
		raw = []byte(`{"Outputs":{},"Logs":["response could not be encoded"],"ReturnValue":null}`)
		status = http.StatusInternalServerError
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(raw)
}

// ListenAddr is where the handler must listen: 127.0.0.1:{FUNCTIONS_CUSTOMHANDLER_PORT}, or the legacy
// FUNCTIONS_HTTPWORKER_PORT.
func ListenAddr(getenv func(string) string) (string, error) {
	name := "FUNCTIONS_CUSTOMHANDLER_PORT"
	port := strings.TrimSpace(getenv(name))
	if port == "" {
		name = "FUNCTIONS_HTTPWORKER_PORT"
		port = strings.TrimSpace(getenv(name))
	}
	if port == "" {
		return "", errors.New("FUNCTIONS_CUSTOMHANDLER_PORT is not set (the Functions host sets it)")
	}
	n, err := strconv.Atoi(port)
	if err != nil || n <= 0 || n > 65535 {
		return "", fmt.Errorf("%s: want a port number, got %q", name, port)
	}
	return "127.0.0.1:" + strconv.Itoa(n), nil
}

// hostTimeLayouts are the date shapes the host produces: RFC 3339, zone-less ISO 8601 (UTC) and .NET's
// invariant-culture format. Fractional seconds are accepted by every layout.
var hostTimeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05",
	"2006-01-02 15:04:05Z07:00",
	"2006-01-02 15:04:05",
	"01/02/2006 15:04:05",
}

// ParseHostTime parses a date as the host sends it; a date without a zone is UTC.
func ParseHostTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	for _, layout := range hostTimeLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("unrecognised date %q", s)
}

func (r *InvokeRequest) binding(name string) (json.RawMessage, error) {
	raw, ok := r.Data[name]
	if !ok {
		return nil, fmt.Errorf("binding %q: absent from Data", name)
	}
	if isNull(raw) {
		return nil, fmt.Errorf("binding %q: null", name)
	}
	return raw, nil
}

// messageBody turns Data.{binding} of a Service Bus trigger into the body bytes.
func messageBody(raw json.RawMessage) ([]byte, error) {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 {
		return nil, errors.New("empty body")
	}
	switch trimmed[0] {
	case '{', '[':
		// A raw JSON object: the body as the host parsed it.
		return compact(trimmed), nil
	case '"':
		var s string
		if err := json.Unmarshal(trimmed, &s); err != nil {
			return nil, fmt.Errorf("body string: %w", err)
		}
		if inner, ok := unquoteAgain(s); ok {
			return []byte(inner), nil
		}
		if json.Valid([]byte(s)) {
			return []byte(s), nil
		}
		if b, ok := base64Body(s); ok {
			return b, nil
		}
		return []byte(s), nil
	default:
		return nil, fmt.Errorf("body: want a string or an object, got %.20s", trimmed)
	}
}

// base64Body decodes a base64 body, accepted only when it yields text (a JSON body would be double-encoded).
func base64Body(s string) ([]byte, bool) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding} {
		if b, err := enc.DecodeString(s); err == nil && len(b) > 0 && utf8.Valid(b) {
			return b, true
		}
	}
	return nil, false
}

// scalarString renders a JSON scalar as text, removing a second layer of quoting from strings.
func scalarString(raw json.RawMessage) (string, bool) {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || isNull(trimmed) {
		return "", false
	}
	switch trimmed[0] {
	case '"':
		var s string
		if err := json.Unmarshal(trimmed, &s); err != nil {
			return "", false
		}
		if inner, ok := unquoteAgain(s); ok {
			return inner, true
		}
		return s, true
	case '{', '[':
		return "", false
	default:
		if !json.Valid(trimmed) {
			return "", false
		}
		return string(trimmed), true
	}
}

// unquoteAgain removes the host's second JSON quoting ("\"abc\"" -> "abc").
func unquoteAgain(s string) (string, bool) {
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return "", false
	}
	var inner string
	if err := json.Unmarshal([]byte(s), &inner); err != nil {
		return "", false
	}
	return inner, true
}

func isNull(raw json.RawMessage) bool {
	return string(bytes.TrimSpace(raw)) == "null"
}

func compact(raw []byte) []byte {
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return raw
	}
	return buf.Bytes()
}
