package fhir

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Retry-After values are clamped to this range, as the reference bulk client does.
const (
	minRetryAfter = 100 * time.Millisecond
	maxRetryAfter = 60 * time.Second
)

var (
	resourceTypePattern = regexp.MustCompile(`^[A-Z][A-Za-z]{0,63}$`)
	resourceIDPattern   = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)
)

// ParseRetryAfter reads x-ms-retry-after-ms, else Retry-After (seconds or HTTP-date), clamped to [100ms, 60s];
// 0 when absent or unreadable.
func ParseRetryAfter(h http.Header, now time.Time) time.Duration {
	if v := strings.TrimSpace(h.Get("x-ms-retry-after-ms")); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && !math.IsNaN(ms) && !math.IsInf(ms, 0) && ms >= 0 {
			return clampRetryAfter(ms / 1000)
		}
	}
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseFloat(v, 64); err == nil {
		if math.IsNaN(secs) || math.IsInf(secs, 0) || secs < 0 {
			return 0
		}
		return clampRetryAfter(secs)
	}
	if t, err := http.ParseTime(v); err == nil {
		return clampRetryAfter(t.Sub(now).Seconds())
	}
	return 0
}

func clampRetryAfter(secs float64) time.Duration {
	switch {
	case secs >= maxRetryAfter.Seconds():
		return maxRetryAfter
	case secs <= minRetryAfter.Seconds():
		return minRetryAfter
	}
	return time.Duration(secs * float64(time.Second))
}

// newError builds the *Error for a non-success answer.
func newError(op string, r *response, now time.Time) *Error {
	return &Error{
		Op:         op,
		StatusCode: r.status,
		Message:    outcomeMessage(r.body),
		RetryAfter: ParseRetryAfter(r.header, now),
	}
}

// outcomeMessage returns the OperationOutcome's diagnostics/details text, else a short printable body excerpt.
func outcomeMessage(body []byte) string {
	var oo struct {
		ResourceType string `json:"resourceType"`
		Issue        []struct {
			Diagnostics string `json:"diagnostics"`
			Details     struct {
				Text string `json:"text"`
			} `json:"details"`
		} `json:"issue"`
	}
	if json.Unmarshal(body, &oo) == nil && oo.ResourceType == "OperationOutcome" {
		var parts []string
		for _, is := range oo.Issue {
			switch {
			case is.Diagnostics != "":
				parts = append(parts, is.Diagnostics)
			case is.Details.Text != "":
				parts = append(parts, is.Details.Text)
			}
		}
		if len(parts) > 0 {
			return excerpt(strings.Join(parts, "; "), 1000)
		}
	}
	return excerpt(string(body), 200)
}

// excerpt keeps at most n bytes of printable text on one line.
func excerpt(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r == unicode.ReplacementChar || !unicode.IsPrint(r) {
			return ' '
		}
		return r
	}, strings.TrimSpace(s))
	if len(s) > n {
		cut := n
		for cut > 0 && !utfStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "..."
	}
	return s
}

func utfStart(b byte) bool { return b&0xC0 != 0x80 }

// decodeStrict unmarshals one JSON object and nothing after it.
func decodeStrict(data []byte, v any) error {
	if t := bytes.TrimSpace(data); len(t) == 0 || t[0] != '{' {
		return errors.New("not a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("data after the JSON value")
	}
	return nil
}

// jsonCount reads a non-negative integer count; present reports whether the field was there.
func jsonCount(n *json.Number) (count int64, present bool, err error) {
	if n == nil {
		return 0, false, nil
	}
	v, err := strconv.ParseInt(n.String(), 10, 64)
	if err != nil {
		f, ferr := n.Float64()
		if ferr != nil || f != math.Trunc(f) || f < 0 || f > math.MaxInt64/2 {
			return 0, true, fmt.Errorf("count %s is not a non-negative integer", n.String())
		}
		v = int64(f)
	}
	if v < 0 {
		return 0, true, fmt.Errorf("count %d is negative", v)
	}
	return v, true, nil
}

type rawManifestFile struct {
	Type  *string      `json:"type"`
	URL   *string      `json:"url"`
	Count *json.Number `json:"count"`
}

// ParseManifest reads and validates a completed export's manifest: every output entry needs a type, an absolute
// http(s) url and a count >= 0.
func ParseManifest(data []byte) (*Manifest, error) {
	var raw struct {
		TransactionTime     string            `json:"transactionTime"`
		Request             string            `json:"request"`
		RequiresAccessToken bool              `json:"requiresAccessToken"`
		Output              []rawManifestFile `json:"output"`
		Error               []rawManifestFile `json:"error"`
	}
	if err := decodeStrict(data, &raw); err != nil {
		return nil, fmt.Errorf("export manifest is malformed: %w", err)
	}
	m := &Manifest{
		TransactionTime:     raw.TransactionTime,
		Request:             raw.Request,
		RequiresAccessToken: raw.RequiresAccessToken,
		Output:              make([]ManifestFile, 0, len(raw.Output)),
		Error:               make([]ManifestFile, 0, len(raw.Error)),
	}
	for i, f := range raw.Output {
		if f.Type == nil || !resourceTypePattern.MatchString(*f.Type) {
			return nil, fmt.Errorf("export manifest is malformed: output[%d] has no valid type", i)
		}
		if f.URL == nil || !absoluteHTTPURL(*f.URL) {
			return nil, fmt.Errorf("export manifest is malformed: output[%d] has no absolute http(s) url", i)
		}
		count, present, err := jsonCount(f.Count)
		if err != nil || !present {
			return nil, fmt.Errorf("export manifest is malformed: output[%d] needs a count >= 0", i)
		}
		m.Output = append(m.Output, ManifestFile{Type: *f.Type, URL: *f.URL, Count: count})
	}
	for i, f := range raw.Error {
		count, _, err := jsonCount(f.Count)
		if err != nil {
			return nil, fmt.Errorf("export manifest is malformed: error[%d]: %w", i, err)
		}
		m.Error = append(m.Error, ManifestFile{Type: deref(f.Type), URL: deref(f.URL), Count: count})
	}
	return m, nil
}

// ParseImportResult reads and validates a completed import's status body: counts must be integers >= 0.
func ParseImportResult(data []byte) (*ImportResult, error) {
	var raw struct {
		TransactionTime string `json:"transactionTime"`
		Request         string `json:"request"`
		Output          []struct {
			Type     string       `json:"type"`
			Count    *json.Number `json:"count"`
			InputURL string       `json:"inputUrl"`
		} `json:"output"`
		Error []struct {
			Type     string       `json:"type"`
			Count    *json.Number `json:"count"`
			InputURL string       `json:"inputUrl"`
			URL      string       `json:"url"`
		} `json:"error"`
	}
	if err := decodeStrict(data, &raw); err != nil {
		return nil, fmt.Errorf("import result is malformed: %w", err)
	}
	r := &ImportResult{
		TransactionTime: raw.TransactionTime,
		Request:         raw.Request,
		Output:          make([]ImportOutput, 0, len(raw.Output)),
		Error:           make([]ImportErrorFile, 0, len(raw.Error)),
	}
	for i, o := range raw.Output {
		count, present, err := jsonCount(o.Count)
		if err != nil || !present {
			return nil, fmt.Errorf("import result is malformed: output[%d] needs a count >= 0", i)
		}
		r.Output = append(r.Output, ImportOutput{Type: o.Type, Count: count, InputURL: o.InputURL})
	}
	for i, e := range raw.Error {
		count, _, err := jsonCount(e.Count)
		if err != nil {
			return nil, fmt.Errorf("import result is malformed: error[%d]: %w", i, err)
		}
		r.Error = append(r.Error, ImportErrorFile{Type: e.Type, Count: count, InputURL: e.InputURL, URL: e.URL})
	}
	return r, nil
}

// bundle is the part of a FHIR Bundle the client reads.
type bundle struct {
	ResourceType string       `json:"resourceType"`
	Type         string       `json:"type"`
	Total        *json.Number `json:"total"`
	Link         []struct {
		Relation string `json:"relation"`
		URL      string `json:"url"`
	} `json:"link"`
	Entry []struct {
		Resource json.RawMessage `json:"resource"`
		Search   *struct {
			Mode string `json:"mode"`
		} `json:"search"`
		Request *struct {
			Method string `json:"method"`
			URL    string `json:"url"`
		} `json:"request"`
		Response *struct {
			Status       string `json:"status"`
			Etag         string `json:"etag"`
			LastModified string `json:"lastModified"`
		} `json:"response"`
	} `json:"entry"`
}

func parseBundle(data []byte) (*bundle, error) {
	var b bundle
	if err := decodeStrict(data, &b); err != nil {
		return nil, fmt.Errorf("bundle is malformed: %w", err)
	}
	if b.ResourceType != "Bundle" {
		return nil, fmt.Errorf("expected a Bundle, got resourceType %q", excerpt(b.ResourceType, 64))
	}
	return &b, nil
}

// next returns the Bundle's link with relation "next", or "".
func (b *bundle) next() string {
	for _, l := range b.Link {
		if l.Relation == "next" {
			return l.URL
		}
	}
	return ""
}

// parseCapabilityTypes returns the resource types of the CapabilityStatement's server rest entries, deduplicated,
// in order.
func parseCapabilityTypes(data []byte) ([]string, error) {
	c, err := parseCapabilities(data)
	if err != nil {
		return nil, err
	}
	return c.Types, nil
}

// parseCapabilities reads the server resource types and the fhirVersion of a CapabilityStatement.
func parseCapabilities(data []byte) (Capabilities, error) {
	var cs struct {
		ResourceType string `json:"resourceType"`
		FHIRVersion  string `json:"fhirVersion"`
		Rest         []struct {
			Mode     string `json:"mode"`
			Resource []struct {
				Type      string         `json:"type"`
				Operation []capOperation `json:"operation"`
			} `json:"resource"`
			Operation []capOperation `json:"operation"`
		} `json:"rest"`
	}
	if err := decodeStrict(data, &cs); err != nil {
		return Capabilities{}, fmt.Errorf("capability statement is malformed: %w", err)
	}
	if cs.ResourceType != "CapabilityStatement" {
		return Capabilities{}, fmt.Errorf("expected a CapabilityStatement, got resourceType %q", excerpt(cs.ResourceType, 64))
	}
	seen := map[string]bool{}
	var types []string
	ops := map[string]string{}
	for _, rest := range cs.Rest {
		if rest.Mode != "server" {
			continue
		}
		for _, o := range rest.Operation {
			ops[o.Name] = o.Definition
		}
		for _, r := range rest.Resource {
			for _, o := range r.Operation {
				ops[o.Name] = o.Definition
			}
			if !resourceTypePattern.MatchString(r.Type) {
				return Capabilities{}, fmt.Errorf("capability statement lists an invalid resource type %q", excerpt(r.Type, 64))
			}
			if !seen[r.Type] {
				seen[r.Type] = true
				types = append(types, r.Type)
			}
		}
	}
	if len(types) == 0 {
		return Capabilities{}, errors.New("capability statement lists no server resource types")
	}
	return Capabilities{Types: types, FHIRVersion: cs.FHIRVersion, Operations: ops}, nil
}

// capOperation is one operation a CapabilityStatement declares.
type capOperation struct {
	Name       string `json:"name"`
	Definition string `json:"definition"`
}

func absoluteHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != ""
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
