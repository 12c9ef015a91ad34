package fhirsim

import (
	"cmp"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Search page sizes, as on the real service.
const (
	defaultPageSize = 10
	maxPageSize     = 1000
)

// tokenParams lists the token search parameters the simulator understands, per resource type.
var tokenParams = map[string]map[string]bool{
	"Observation":       {"status": true, "code": true},
	"Condition":         {"code": true},
	"Encounter":         {"status": true},
	"MedicationRequest": {"status": true},
}

// tokenFilter is one token search parameter; its values are ORed.
type tokenFilter struct {
	param  string // "status" or "code"
	values []string
}

// criteria is a conjunction of search filters over one resource type (or all).
type criteria struct {
	ids    map[string]bool // nil: any id
	dates  []dateFilter
	tokens []tokenFilter
}

// resultParams shape a search's answer rather than select resources: never an unknown parameter.
var resultParams = map[string]bool{"_count": true, "_summary": true, "_elements": true, "_sort": true, continuationParam: true}

// parseCriteria reads _id, _lastUpdated and the type's token parameters from q. Other parameters are ignored
// (lenient handling) unless strict, when they are an error; result parameters are skipped when results is set.
func parseCriteria(typ string, q url.Values, strict, results bool) (criteria, error) {
	var c criteria
	for name, values := range q {
		switch {
		case results && resultParams[name]:
		case name == "_id":
			c.ids = map[string]bool{}
			for _, v := range values {
				for id := range strings.SplitSeq(v, ",") {
					c.ids[strings.TrimSpace(id)] = true
				}
			}
		case name == "_lastUpdated":
			for _, v := range values {
				f, err := parseDateFilter(v)
				if err != nil {
					return criteria{}, fmt.Errorf("invalid _lastUpdated value: %w", err)
				}
				c.dates = append(c.dates, f)
			}
		case tokenParams[typ][name]:
			for _, v := range values {
				c.tokens = append(c.tokens, tokenFilter{param: name, values: strings.Split(v, ",")})
			}
		case strict:
			return criteria{}, fmt.Errorf("the search parameter %q is not supported for %s", name, cmp.Or(typ, "a system search"))
		}
	}
	return c, nil
}

// searchable is the part of a resource the token filters look at.
type searchable struct {
	Status string          `json:"status"`
	Code   codeableConcept `json:"code"`
}

func (c criteria) match(r *resource) bool {
	if c.ids != nil && !c.ids[r.ID] {
		return false
	}
	for _, f := range c.dates {
		if !f.match(r.LastUpdated) {
			return false
		}
	}
	return c.matchTokens(r)
}

// query is the store query of these criteria: ids and dates go to the indexes, tokens are matched one by one.
func (c criteria) query(typ string) query {
	q := query{typ: typ, ids: c.ids, dates: c.dates}
	if len(c.tokens) > 0 {
		q.match = c.matchTokens
	}
	return q
}

func (c criteria) matchTokens(r *resource) bool {
	if len(c.tokens) == 0 {
		return true
	}
	var s searchable
	if err := json.Unmarshal(r.Raw, &s); err != nil {
		return false
	}
	for _, t := range c.tokens {
		if !t.match(s) {
			return false
		}
	}
	return true
}

func (t tokenFilter) match(s searchable) bool {
	for _, v := range t.values {
		system, code, hasSystem := strings.Cut(v, "|")
		if !hasSystem {
			code, system = system, ""
		}
		switch t.param {
		case "status":
			if s.Status == code {
				return true
			}
		case "code":
			for _, c := range s.Code.Coding {
				if hasSystem && c.System != system {
					continue
				}
				if code == "" || c.Code == code {
					return true
				}
			}
		}
	}
	return false
}

type bundle struct {
	ResourceType string        `json:"resourceType"`
	ID           string        `json:"id,omitempty"`
	Type         string        `json:"type"`
	Total        *int          `json:"total,omitempty"`
	Link         []bundleLink  `json:"link,omitempty"`
	Entry        []bundleEntry `json:"entry,omitempty"`
}

type bundleLink struct {
	Relation string `json:"relation"`
	URL      string `json:"url"`
}

type bundleEntry struct {
	FullURL  string          `json:"fullUrl,omitempty"`
	Resource json.RawMessage `json:"resource,omitempty"`
	Request  *entryRequest   `json:"request,omitempty"`
	Response *entryResponse  `json:"response,omitempty"`
}

type entryRequest struct {
	Method string `json:"method"`
	URL    string `json:"url"`
}

type entryResponse struct {
	Status       string          `json:"status"`
	Location     string          `json:"location,omitempty"`
	Etag         string          `json:"etag,omitempty"`
	LastModified string          `json:"lastModified,omitempty"`
	Outcome      json.RawMessage `json:"outcome,omitempty"`
}

// continuationParam carries the key of the last resource of the previous page.
const continuationParam = "ct"

// handleSearch serves GET /{Type}?... and GET /?... with _id, _lastUpdated, _count, _summary=count and paging.
// Unknown parameters are ignored, as on the service, unless the request sends Prefer: handling=strict.
func (s *Server) handleSearch(w http.ResponseWriter, r *http.Request, typ string) {
	q := r.URL.Query()
	strict, err := searchHandling(r.Header.Values("Prefer"))
	if err != nil {
		writeOutcome(w, http.StatusBadRequest, "invalid", "%v", err)
		return
	}
	c, err := parseCriteria(typ, q, strict, true)
	if err != nil {
		writeOutcome(w, http.StatusBadRequest, "invalid", "%v", err)
		return
	}
	pageSize := defaultPageSize
	if v := q.Get("_count"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeOutcome(w, http.StatusBadRequest, "invalid", "invalid _count value %q: want a non-negative integer", v)
			return
		}
		pageSize = min(n, maxPageSize)
	}
	after := ""
	if v := q.Get(continuationParam); v != "" {
		b, err := base64.RawURLEncoding.DecodeString(v)
		if err != nil {
			writeOutcome(w, http.StatusBadRequest, "invalid", "invalid continuation token")
			return
		}
		after = string(b)
	}
	summary := q.Get("_summary")
	if summary != "" && summary != "count" && summary != "false" {
		writeOutcome(w, http.StatusBadRequest, "not-supported", "_summary=%s is not supported by the simulator", summary)
		return
	}

	sq := c.query(typ)
	switch v := q.Get("_sort"); v {
	case "":
	case "_lastUpdated", "-_lastUpdated":
		sq.byTime, sq.desc = true, v[0] == '-'
	default:
		writeOutcome(w, http.StatusBadRequest, "not-supported", "_sort=%s is not supported by the simulator (only _lastUpdated)", v)
		return
	}
	var elements []string
	if v := q.Get("_elements"); v != "" {
		elements = strings.Split(v, ",")
	}
	self := baseURL(r) + r.URL.RequestURI()
	b := bundle{ResourceType: "Bundle", Type: "searchset", Link: []bundleLink{{Relation: "self", URL: self}}}
	if summary == "count" || pageSize == 0 {
		sq.countOnly = true
		total, _, _ := s.resources.find(sq)
		s.chargeCount(r.Context(), total)
		total *= int(s.cfg.rates.weight())
		b.Total = &total
		writeJSON(w, http.StatusOK, "application/fhir+json", b)
		return
	}
	sq.after, sq.limit = after, pageSize
	_, page, more := s.resources.find(sq)
	// An id lookup reads every id it asks for, found or not; a listing the entries it answers.
	if read := len(page); c.ids != nil {
		s.chargeSearch(r.Context(), max(read, len(c.ids)))
	} else {
		s.chargeSearch(r.Context(), read)
	}
	for _, res := range page {
		raw := res.Raw
		switch {
		case len(elements) == 1 && elements[0] == "id":
			raw = idOnly(res) // what an id lookup asks for: no decoding
		case elements != nil:
			raw = subset(raw, elements)
		}
		b.Entry = append(b.Entry, bundleEntry{FullURL: baseURL(r) + "/" + res.key(), Resource: raw})
	}
	if more {
		next := url.Values{}
		for k, v := range q {
			if k != continuationParam {
				next[k] = v
			}
		}
		next.Set(continuationParam, base64.RawURLEncoding.EncodeToString([]byte(sq.sortKey(page[len(page)-1]))))
		path := "/"
		if typ != "" {
			path += typ
		}
		b.Link = append(b.Link, bundleLink{Relation: "next", URL: baseURL(r) + path + "?" + next.Encode()})
	}
	writeJSON(w, http.StatusOK, "application/fhir+json", b)
}

// subsettedTag marks a resource answered with only some of its elements.
var subsettedTag = []coding{{System: "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", Code: "SUBSETTED"}}

// idResource is a resource subsetted to its id: resourceType, id and meta.
type idResource struct {
	ResourceType string `json:"resourceType"`
	ID           string `json:"id"`
	Meta         struct {
		VersionID   string   `json:"versionId,omitempty"`
		LastUpdated string   `json:"lastUpdated"`
		Tag         []coding `json:"tag"`
	} `json:"meta"`
}

// idOnly answers _elements=id from the stored fields, without decoding the resource.
func idOnly(r *resource) []byte {
	v := idResource{ResourceType: r.Type, ID: r.ID}
	v.Meta.VersionID, v.Meta.LastUpdated, v.Meta.Tag = r.VersionID, formatInstant(r.LastUpdated), subsettedTag
	out, _ := json.Marshal(v)
	return out
}

// subset keeps of a resource only resourceType, id, meta (tagged SUBSETTED, as the service marks it) and the
// elements asked for.
func subset(raw []byte, elements []string) []byte {
	var obj map[string]json.RawMessage
	if json.Unmarshal(raw, &obj) != nil {
		return raw
	}
	out := map[string]json.RawMessage{"resourceType": obj["resourceType"], "id": obj["id"]}
	for _, e := range elements {
		if v, ok := obj[strings.TrimSpace(e)]; ok {
			out[strings.TrimSpace(e)] = v
		}
	}
	var meta map[string]json.RawMessage
	if m, ok := obj["meta"]; ok && json.Unmarshal(m, &meta) == nil {
		meta["tag"], _ = json.Marshal(subsettedTag)
		out["meta"], _ = json.Marshal(meta)
	}
	subsetted, err := json.Marshal(out)
	if err != nil {
		return raw
	}
	return subsetted
}

// searchHandling reads the handling preference of a search: strict, lenient (the default), or a 400 for another
// value.
func searchHandling(prefer []string) (strict bool, err error) {
	for _, v := range prefer {
		for p := range strings.SplitSeq(v, ",") {
			name, value, _ := strings.Cut(strings.TrimSpace(p), "=")
			if strings.TrimSpace(name) != "handling" {
				continue
			}
			switch strings.TrimSpace(value) {
			case "strict":
				strict = true
			case "lenient":
			default:
				return false, fmt.Errorf("the Prefer handling %q is not supported (want strict or lenient)", value)
			}
		}
	}
	return strict, nil
}
