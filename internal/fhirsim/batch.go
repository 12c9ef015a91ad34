package fhirsim

import (
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
)

const maxBatchBodySize = 64 << 20

type batchRequest struct {
	ResourceType string `json:"resourceType"`
	Type         string `json:"type"`
	Entry        []struct {
		Resource json.RawMessage `json:"resource"`
		Request  *entryRequest   `json:"request"`
	} `json:"entry"`
}

// handleBatch serves POST / with a batch Bundle of PUT {Type}/{id} entries: each is an upsert answered on its own.
func (s *Server) handleBatch(w http.ResponseWriter, r *http.Request) {
	if !fhirJSONBody(w, r) || !s.writable(w) {
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBatchBodySize))
	if err != nil {
		writeOutcome(w, http.StatusBadRequest, "invalid", "read bundle: %v", err)
		return
	}
	var req batchRequest
	if err := json.Unmarshal(body, &req); err != nil {
		writeOutcome(w, http.StatusBadRequest, "invalid", "the body is not a valid Bundle: %v", err)
		return
	}
	if req.ResourceType != "Bundle" || req.Type != "batch" {
		writeOutcome(w, http.StatusBadRequest, "invalid", "POST / takes a Bundle of type batch, not %s of type %q", req.ResourceType, req.Type)
		return
	}
	resp := bundle{ResourceType: "Bundle", ID: newJobID(), Type: "batch-response", Entry: []bundleEntry{}}
	for i, e := range req.Entry {
		resp.Entry = append(resp.Entry, bundleEntry{Response: s.batchPut(e.Request, e.Resource, i)})
	}
	writeJSON(w, http.StatusOK, "application/fhir+json", resp)
}

// fhirJSONBody answers 415 unless the request's body is FHIR JSON (application/fhir+json or application/json).
func fhirJSONBody(w http.ResponseWriter, r *http.Request) bool {
	switch mediaType(r.Header.Get("Content-Type")) {
	case "application/fhir+json", "application/json":
		return true
	}
	writeOutcome(w, http.StatusUnsupportedMediaType, "not-supported", "the Content-Type must be application/fhir+json or application/json")
	return false
}

// mediaType is the media type of a Content-Type header, "" when unparsable.
func mediaType(contentType string) string {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return ""
	}
	return mt
}

func (s *Server) batchPut(req *entryRequest, raw json.RawMessage, index int) *entryResponse {
	fail := func(status int, format string, args ...any) *entryResponse {
		oo, _ := json.Marshal(newOutcome("invalid", fmt.Sprintf("entry %d: ", index)+fmt.Sprintf(format, args...)))
		return &entryResponse{Status: strconv.Itoa(status), Outcome: oo}
	}
	if req == nil || req.Method != http.MethodPut {
		return fail(http.StatusBadRequest, "only PUT entries are supported by the simulator")
	}
	typ, id, ok := strings.Cut(strings.Trim(req.URL, "/"), "/")
	if !ok || !knownType(typ) || !resourceIDRE.MatchString(id) {
		return fail(http.StatusBadRequest, "request.url %q must be {Type}/{id}", req.URL)
	}
	if len(raw) == 0 {
		return fail(http.StatusBadRequest, "the entry has no resource")
	}
	p, err := parseResource(raw)
	if err != nil {
		return fail(http.StatusBadRequest, "%v", err)
	}
	if p.Type != typ || p.ID != id {
		return fail(http.StatusBadRequest, "the resource %s/%s does not match request.url %s", p.Type, p.ID, req.URL)
	}
	var stored *resource
	created := false
	err = s.resources.update(typ, id, func(v versions) (change, error) {
		r, err := stamped(p, nextVersion(v), s.writeTime(v))
		created, stored = v.current == nil, r
		return change{latest: r}, err
	})
	if err != nil {
		return fail(http.StatusBadRequest, "%v", err)
	}
	// The service writes the status code alone ("201"), not with its reason phrase.
	status := "200"
	if created {
		status = "201"
	}
	return &entryResponse{
		Status:       status,
		Location:     fmt.Sprintf("%s/%s/_history/%s", typ, id, stored.VersionID),
		Etag:         `W/"` + stored.VersionID + `"`,
		LastModified: formatInstant(stored.LastUpdated),
	}
}
