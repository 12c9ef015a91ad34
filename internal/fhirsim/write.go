package fhirsim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// The extension a deletion stub carries in an export with includeAssociatedData=_deleted, and which an
// IncrementalLoad import reads (url and value, case-sensitive) to store the row as deleted.
const (
	deletedStateURL   = "http://azurehealthcareapis.com/data-extensions/deleted-state"
	deletedStateValue = "soft-deleted"
)

const maxResourceBodySize = 16 << 20

// nextVersion is the version a write of a resource with these versions gets.
func nextVersion(v versions) int {
	if l := v.latest(); l != nil {
		return versionNumber(l.VersionID) + 1
	}
	return 1
}

// writeTime is when a write of a resource with these versions is stamped: now, or just after its newest version
// when that is as late (times are kept to the millisecond here, and two versions of one resource never share one,
// as on the service, whose times are finer).
func writeTime(v versions, now time.Time) time.Time {
	now = now.UTC().Truncate(time.Millisecond)
	if l := v.latest(); l != nil && !now.After(l.LastUpdated) {
		return l.LastUpdated.Add(time.Millisecond)
	}
	return now
}

// deletionStub is the row a delete writes: the resource's type and id, and a meta with its version, time and the
// deleted-state extension, as an export with _deleted writes it.
func deletionStub(typ, id string, version int, at time.Time) *resource {
	at = at.UTC().Truncate(time.Millisecond)
	raw, _ := json.Marshal(map[string]any{ // a map of strings: never fails
		"resourceType": typ,
		"id":           id,
		"meta": map[string]any{
			"versionId":   strconv.Itoa(version),
			"lastUpdated": formatInstant(at),
			"extension":   []map[string]string{{"url": deletedStateURL, "valueString": deletedStateValue}},
		},
	})
	return &resource{Type: typ, ID: id, VersionID: strconv.Itoa(version), LastUpdated: at, Raw: raw, Deleted: true}
}

// isDeletionStub reports whether raw's meta carries the deleted-state extension, exactly.
func isDeletionStub(raw []byte) bool {
	var h struct {
		Meta struct {
			Extension []struct {
				URL         string `json:"url"`
				ValueString string `json:"valueString"`
			} `json:"extension"`
		} `json:"meta"`
	}
	if json.Unmarshal(raw, &h) != nil {
		return false
	}
	for _, e := range h.Meta.Extension {
		if e.URL == deletedStateURL && e.ValueString == deletedStateValue {
			return true
		}
	}
	return false
}

// writable answers 423 when the service is in initial import mode (every write but $import is locked there).
func (s *Server) writable(w http.ResponseWriter) bool {
	if s.cfg.flavor == FlavorAHDS && s.cfg.initialImportMode {
		writeOutcome(w, http.StatusLocked, "lock-error", "the service is in initial import mode: writes are not allowed")
		return false
	}
	return true
}

// readResourceBody reads a PUT or POST body as a resource of typ.
func readResourceBody(w http.ResponseWriter, r *http.Request, typ string) (parsedResource, bool) {
	if !fhirJSONBody(w, r) {
		return parsedResource{}, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxResourceBodySize))
	if err != nil {
		writeOutcome(w, http.StatusBadRequest, "invalid", "read resource: %v", err)
		return parsedResource{}, false
	}
	p, err := parseResource(body)
	if err != nil {
		writeOutcome(w, http.StatusBadRequest, "invalid", "%v", err)
		return parsedResource{}, false
	}
	if p.Type != typ {
		writeOutcome(w, http.StatusBadRequest, "invalid", "the resource type %q does not match the URL's %q", p.Type, typ)
		return parsedResource{}, false
	}
	return p, true
}

// handleRead serves GET /{Type}/{id}: the current version, 410 for a deleted resource, 404 for an unknown one.
func (s *Server) handleRead(w http.ResponseWriter, typ, id string) {
	v := s.resources.get(typ, id)
	if v.current == nil {
		if l := v.latest(); l != nil && l.Deleted {
			writeOutcome(w, http.StatusGone, "deleted", "resource type %q with id %q was deleted", typ, id)
			return
		}
		writeOutcome(w, http.StatusNotFound, "not-found", "resource type %q with id %q couldn't be found", typ, id)
		return
	}
	writeResource(w, http.StatusOK, v.current)
}

func writeResource(w http.ResponseWriter, status int, r *resource) {
	w.Header().Set("ETag", `W/"`+r.VersionID+`"`)
	w.Header().Set("Last-Modified", r.LastUpdated.UTC().Format(http.TimeFormat))
	writeRaw(w, status, "application/fhir+json", r.Raw)
}

// handlePut serves PUT /{Type}/{id}: create or update, a new version stamped now (201 when there was no current
// version, a deleted resource included; 200 otherwise).
func (s *Server) handlePut(w http.ResponseWriter, r *http.Request, typ, id string) {
	if !s.writable(w) {
		return
	}
	p, ok := readResourceBody(w, r, typ)
	if !ok {
		return
	}
	if p.ID != id {
		writeOutcome(w, http.StatusBadRequest, "invalid", "the resource id %q does not match the URL's %q", p.ID, id)
		return
	}
	s.store(w, r, p)
}

// handlePost serves POST /{Type}: a create with an id the server assigns (a sent id is ignored, as in FHIR).
func (s *Server) handlePost(w http.ResponseWriter, r *http.Request, typ string) {
	if !s.writable(w) {
		return
	}
	p, ok := readResourceBody(w, r, typ)
	if !ok {
		return
	}
	p.ID = newJobID()
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(p.Compact, &obj); err != nil {
		writeOutcome(w, http.StatusBadRequest, "invalid", "%v", err)
		return
	}
	obj["id"], _ = json.Marshal(p.ID)
	raw, err := json.Marshal(obj)
	if err != nil {
		writeOutcome(w, http.StatusInternalServerError, "exception", "%v", err)
		return
	}
	p.Compact = raw
	s.store(w, r, p)
}

func (s *Server) store(w http.ResponseWriter, req *http.Request, p parsedResource) {
	var stored *resource
	created := false
	err := s.resources.update(p.Type, p.ID, func(v versions) (change, error) {
		r, err := stamped(p, nextVersion(v), writeTime(v, s.now()))
		created, stored = v.current == nil, r
		return change{latest: r}, err
	})
	if err != nil {
		writeOutcome(w, http.StatusBadRequest, "invalid", "%v", err)
		return
	}
	w.Header().Set("Location", fmt.Sprintf("%s/%s/%s/_history/%s", baseURL(req), stored.Type, stored.ID, stored.VersionID))
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeResource(w, status, stored)
}

// handleDelete serves DELETE /{Type}/{id}: a deletion stub becomes the newest version and the resource leaves
// search; 204 also when there was nothing to delete, as on the service.
func (s *Server) handleDelete(w http.ResponseWriter, typ, id string) {
	if !s.writable(w) {
		return
	}
	_ = s.resources.update(typ, id, func(v versions) (change, error) {
		if v.current == nil {
			return change{}, nil
		}
		return change{latest: deletionStub(typ, id, nextVersion(v), writeTime(v, s.now()))}, nil
	})
	w.WriteHeader(http.StatusNoContent)
}

// handleHistory serves GET /{Type}/{id}/_history (every version, newest first; deleted ones as DELETE entries)
// and _summary=count at instance, type (id "") and system (typ "") level: current, older and deleted versions.
func (s *Server) handleHistory(w http.ResponseWriter, r *http.Request, typ, id string) {
	q := r.URL.Query()
	for name := range q {
		if name != "_summary" {
			writeOutcome(w, http.StatusBadRequest, "not-supported", "the simulator's _history takes only _summary=count, not %q", name)
			return
		}
	}
	countOnly := q.Get("_summary") == "count"
	if q.Has("_summary") && !countOnly {
		writeOutcome(w, http.StatusBadRequest, "not-supported", "_summary=%q is not supported on _history", q.Get("_summary"))
		return
	}
	weight := int(s.cfg.rates.weight())
	if id == "" {
		if !countOnly {
			writeOutcome(w, http.StatusBadRequest, "not-supported", "the simulator lists history per resource only; use _summary=count here")
			return
		}
		total := s.resources.historyCount(typ) * weight
		writeJSON(w, http.StatusOK, "application/fhir+json", bundle{ResourceType: "Bundle", ID: newJobID(), Type: "history", Total: &total})
		return
	}
	all := s.resources.get(typ, id).all()
	total := len(all) * weight
	out := bundle{ResourceType: "Bundle", ID: newJobID(), Type: "history", Total: &total}
	if !countOnly {
		out.Entry = []bundleEntry{}
		for i := len(all) - 1; i >= 0; i-- {
			v := all[i]
			url := fmt.Sprintf("%s/%s/_history/%s", typ, id, v.VersionID)
			e := bundleEntry{FullURL: baseURL(r) + "/" + typ + "/" + id}
			if v.Deleted {
				e.Request = &entryRequest{Method: http.MethodDelete, URL: url}
				e.Response = &entryResponse{Status: "204", LastModified: formatInstant(v.LastUpdated)}
			} else {
				e.Resource = bytes.Clone(v.Raw)
				e.Request = &entryRequest{Method: http.MethodPut, URL: url}
				e.Response = &entryResponse{Status: "200", Etag: `W/"` + v.VersionID + `"`, LastModified: formatInstant(v.LastUpdated)}
			}
			out.Entry = append(out.Entry, e)
		}
	}
	writeJSON(w, http.StatusOK, "application/fhir+json", out)
}
