package devhost

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// The envelopes below reproduce what the Functions host sends to a custom handler, quirks included (see
// testdata/host and the reference): every metadata value is serialised on its own, so strings are JSON-quoted a
// second time, counts are strings and dates are zone-less.

// plainDate is how the host writes Service Bus dates in metadata ("2023-10-12T20:13:49").
const plainDate = "2006-01-02T15:04:05"

// sbNamespace names the in-memory Service Bus in the (useless to a handler) Client metadata.
const sbNamespace = "devhost.servicebus.local"

// messageTTL is Service Bus's default time to live, shown in ExpiresAtUtc.
const messageTTL = 14 * 24 * time.Hour

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

type envelope struct {
	Data     map[string]any `json:"Data"`
	Metadata map[string]any `json:"Metadata"`
}

type sysMeta struct {
	MethodName string `json:"MethodName"`
	UtcNow     string `json:"UtcNow"`
	RandGuid   string `json:"RandGuid"`
}

func sys(function string, now time.Time) sysMeta {
	return sysMeta{MethodName: function, UtcNow: now.UTC().Format(time.RFC3339Nano), RandGuid: newUUID()}
}

// quoted is a string metadata value as the host sends it: the JSON text of the string.
func quoted(s string) string {
	raw, _ := json.Marshal(s)
	return string(raw)
}

// timerStatus is what the schedule monitor remembers; nil before the first run.
type timerStatus struct {
	Last, Next, LastUpdated time.Time
}

func encodeTimer(function, bindingName string, status *timerStatus, pastDue bool, now time.Time) ([]byte, error) {
	var st any
	if status != nil {
		st = map[string]string{
			"Last":        status.Last.UTC().Format(time.RFC3339Nano),
			"Next":        status.Next.UTC().Format(time.RFC3339Nano),
			"LastUpdated": status.LastUpdated.UTC().Format(time.RFC3339Nano),
		}
	}
	env := envelope{
		Data: map[string]any{bindingName: map[string]any{
			"Schedule":       map[string]bool{"AdjustForDST": true},
			"ScheduleStatus": st,
			"IsPastDue":      pastDue,
		}},
		Metadata: map[string]any{"sys": sys(function, now)},
	}
	return json.Marshal(env)
}

// delivery is one delivery of a queued message.
type delivery struct {
	MessageID      string
	Body           string
	ContentType    string
	CorrelationID  string
	SequenceNumber int64
	DeliveryCount  int
	EnqueuedAt     time.Time
	LockToken      string
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return quoted(s)
}

func encodeServiceBus(function, bindingName string, d delivery, now time.Time) ([]byte, error) {
	enq := d.EnqueuedAt.UTC().Truncate(time.Second)
	exp := enq.Add(messageTTL)
	meta := map[string]any{
		"MessageReceiver": map[string]any{},
		"MessageSession":  map[string]any{},
		"MessageActions":  map[string]any{},
		"SessionActions":  map[string]any{},
		"ReceiveActions":  map[string]any{},
		"Client": map[string]any{
			"FullyQualifiedNamespace": sbNamespace,
			"IsClosed":                false,
			"TransportType":           0,
			"Identifier":              sbNamespace + "-" + newUUID(),
		},
		"DeliveryCount":         strconv.Itoa(d.DeliveryCount),
		"DeadLetterSource":      nil,
		"LockToken":             quoted(d.LockToken),
		"ExpiresAtUtc":          exp.Format(plainDate),
		"ExpiresAt":             exp.Format(plainDate) + "+00:00",
		"EnqueuedTimeUtc":       enq.Format(plainDate),
		"EnqueuedTime":          enq.Format(plainDate) + "+00:00",
		"MessageId":             quoted(d.MessageID),
		"ContentType":           nullable(d.ContentType),
		"ReplyTo":               nil,
		"SequenceNumber":        strconv.FormatInt(d.SequenceNumber, 10),
		"To":                    nil,
		"Subject":               nil,
		"Label":                 nil,
		"CorrelationId":         nullable(d.CorrelationID),
		"SessionId":             nil,
		"ApplicationProperties": map[string]any{},
		"UserProperties":        map[string]any{},
		"sys":                   sys(function, now),
	}
	// The host binds the top-level fields of a JSON body as extra metadata, each serialised to text.
	var fields map[string]json.RawMessage
	if err := json.Unmarshal([]byte(d.Body), &fields); err == nil {
		for k, v := range fields {
			if _, taken := meta[k]; taken {
				continue
			}
			if string(bytes.TrimSpace(v)) == "null" {
				meta[k] = nil
				continue
			}
			var c bytes.Buffer
			if err := json.Compact(&c, v); err != nil {
				continue
			}
			meta[k] = c.String()
		}
	}
	env := envelope{Data: map[string]any{bindingName: d.Body}, Metadata: meta}
	return json.Marshal(env)
}

// localIdentity is what the host reports for a request it let through on its key check (locally: admin level).
var localIdentity = []any{map[string]any{
	"AuthenticationType": "WebJobsAuthLevel",
	"IsAuthenticated":    true,
	"Actor":              nil,
	"BootstrapContext":   nil,
	"Claims": []any{map[string]any{
		"Issuer":         "LOCAL AUTHORITY",
		"OriginalIssuer": "LOCAL AUTHORITY",
		"Properties":     map[string]any{},
		"Type":           "http://schemas.microsoft.com/2017/07/functions/claims/authlevel",
		"Value":          "Admin",
		"ValueType":      "http://www.w3.org/2001/XMLSchema#string",
	}},
	"Label":         nil,
	"Name":          nil,
	"NameClaimType": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
	"RoleClaimType": "http://schemas.microsoft.com/ws/2008/06/identity/claims/role",
}}

// maxHTTPBody bounds a body relayed in payload form, and what is read of an invocation's response.
const maxHTTPBody = 100 << 20

func encodeHTTP(function, bindingName string, r *http.Request, params map[string]string, now time.Time) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxHTTPBody))
	if err != nil {
		return nil, fmt.Errorf("read request body: %w", err)
	}
	query := map[string]string{}
	for k, v := range r.URL.Query() {
		if len(v) > 0 {
			query[k] = v[0]
		}
	}
	headers := map[string][]string{}
	firstHeaders := map[string]string{}
	for k, v := range r.Header {
		headers[k] = v
		if len(v) > 0 {
			firstHeaders[k] = v[0]
		}
	}
	if r.Host != "" {
		headers["Host"] = []string{r.Host}
		firstHeaders["Host"] = r.Host
	}
	if params == nil {
		params = map[string]string{}
	}
	meta := map[string]any{"Query": query, "Headers": firstHeaders, "Params": params, "sys": sys(function, now)}
	for k, v := range params {
		if _, taken := meta[k]; !taken {
			meta[k] = v
		}
	}
	env := envelope{
		Data: map[string]any{bindingName: map[string]any{
			"Url":        "http://" + r.Host + r.URL.RequestURI(),
			"Method":     r.Method,
			"Query":      query,
			"Headers":    headers,
			"Params":     params,
			"Identities": localIdentity,
			"Body":       string(body),
		}},
		Metadata: meta,
	}
	return json.Marshal(env)
}
