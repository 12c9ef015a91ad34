package fhirsim

import (
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

// writeTime is when a write of a resource with these versions is stamped: now, to the millisecond
// (ResourceWrapperFactoryExtensions.cs: "store with millisecond precision"), so two writes in one millisecond
// share it. Azure API for FHIR (Cosmos DB) checks nothing against the version it replaces
// (CosmosFhirDataStore.InternalUpsertAsync), so a clock that went back, or the write-race fault, stamps a version
// before the one it replaces (fhir-server issue 3998). The AHDS service (SQL) takes the time from the database's
// ever-increasing surrogate ids (MergeResourcesBeginTransaction.sql, MergeResources.sql refuses an id out of
// order), so a version is never earlier than the one it replaces, and may share its millisecond.
func (s *Server) writeTime(v versions) time.Time {
	now := s.now().Truncate(time.Millisecond)
	l := v.latest()
	switch {
	case l == nil:
	case s.cfg.flavor == FlavorAHDS && now.Before(l.LastUpdated):
		return l.LastUpdated
	case s.cfg.flavor == FlavorAPIForFHIR && s.faults.roll(FaultWriteRace):
		raced := l.LastUpdated.Add(-time.Duration(1+s.faults.intn(5)) * time.Millisecond)
		s.log.Info("fault injected", "fault", FaultWriteRace, "resource", l.Type+"/"+l.ID, "lastUpdated", formatInstant(raced))
		return raced
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

// handleRead serves GET /{Type}/{id}: the current version, 410 for a deleted resource (with the deletion's version
// as ETag: OperationOutcomeExceptionFilterAttribute.cs, ResourceGoneException), 404 for an unknown or hard-deleted
// one.
func (s *Server) handleRead(w http.ResponseWriter, typ, id string) {
	v := s.resources.get(typ, id)
	if v.current == nil {
		if l := v.latest(); l != nil && l.Deleted {
			w.Header().Set("ETag", `W/"`+l.VersionID+`"`)
			writeOutcome(w, http.StatusGone, "deleted", "resource type %q with id %q was deleted", typ, id)
			return
		}
		writeOutcome(w, http.StatusNotFound, "not-found", "resource type %q with id %q couldn't be found", typ, id)
		return
	}
	writeResource(w, http.StatusOK, v.current)
}

// handleVRead serves GET /{Type}/{id}/_history/{version} (GetResourceHandler.cs): the version, 410 for a deletion
// (with its version as ETag), 404 for a version the server does not hold (a purged or hard-deleted one included).
func (s *Server) handleVRead(w http.ResponseWriter, typ, id, version string) {
	n, err := strconv.Atoi(version)
	v := s.resources.get(typ, id).find(n)
	switch {
	case err != nil || v == nil:
		writeOutcome(w, http.StatusNotFound, "not-found", "resource type %q with id %q has no version %q", typ, id, version)
	case v.Deleted:
		w.Header().Set("ETag", `W/"`+v.VersionID+`"`)
		writeOutcome(w, http.StatusGone, "deleted", "resource type %q with id %q was deleted in version %s", typ, id, version)
	default:
		writeResource(w, http.StatusOK, v)
	}
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
		r, err := stamped(p, nextVersion(v), s.writeTime(v))
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

// handleDelete serves DELETE /{Type}/{id} (DeletionService.cs, FhirController.Delete): a soft delete writes a
// deletion stub as the newest version (the resource leaves search, a read answers 410) and answers 204 with its
// version as ETag; nothing to delete is a 204 without one. With hardDelete=true (or _hardDelete=true) every version
// is removed (hardDelete.js: "Completely delete the document and all of its histories"): 204 without an ETag, and
// afterwards a read, a history and an export find nothing.
func (s *Server) handleDelete(w http.ResponseWriter, r *http.Request, typ, id string) {
	if !s.writable(w) {
		return
	}
	q := r.URL.Query()
	if q.Get("hardDelete") == "true" || q.Get("_hardDelete") == "true" {
		s.resources.hardDelete(typ, id)
		w.WriteHeader(http.StatusNoContent)
		return
	}
	var stub *resource
	_ = s.resources.update(typ, id, func(v versions) (change, error) {
		if v.current == nil {
			return change{}, nil
		}
		stub = deletionStub(typ, id, nextVersion(v), s.writeTime(v))
		return change{latest: stub}, nil
	})
	if stub != nil {
		w.Header().Set("ETag", `W/"`+stub.VersionID+`"`)
	}
	w.WriteHeader(http.StatusNoContent)
}

// handlePurgeHistory serves DELETE /{Type}/{id}/$purge-history (FhirController.PurgeHistory): the older versions
// go, the current one (or a deleted resource's stub) stays; 204.
func (s *Server) handlePurgeHistory(w http.ResponseWriter, typ, id string) {
	if !s.writable(w) {
		return
	}
	s.resources.purgeHistory(typ, id)
	w.WriteHeader(http.StatusNoContent)
}
