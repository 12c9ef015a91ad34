package fhirsim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// History as the service answers it (fhir-server SearchService.SearchHistoryAsync, HistoryModel.cs,
// BundleFactory.CreateHistoryBundle): at system, type and instance level, every version (current, older and
// deletions), each chosen by its own lastUpdated.
const (
	defaultHistoryCount = 10
	// maxHistoryCount is MaxItemCountPerSearch (CoreFeatureConfiguration.cs): a larger _count is cut to it.
	maxHistoryCount = 1000
)

// handleHistory serves GET [/{Type}[/{id}]]/_history. It reads _since (ge, inclusive), _before (lt, exclusive;
// 403 in the future), _count (at most 1000; 0 counts), _summary=count, _sort (_lastUpdated or -_lastUpdated, the
// default: newest first) and the page cursor ct; _at is not supported (400 with Prefer: handling=strict, else
// dropped, and 403 with _since or _before); any other parameter is not read at all (_till among them).
func (s *Server) handleHistory(w http.ResponseWriter, r *http.Request, typ, id string) {
	q := r.URL.Query()
	strict := strings.Contains(r.Header.Get("Prefer"), "handling=strict")
	forbidden := func(format string, args ...any) { writeOutcome(w, http.StatusForbidden, "forbidden", format, args...) }
	if q.Has("_at") {
		switch {
		case q.Has("_since"):
			forbidden("_at and _since cannot both be specified.")
			return
		case q.Has("_before"):
			forbidden("_at and _before cannot both be specified.")
			return
		case strict:
			writeOutcome(w, http.StatusBadRequest, "not-supported", "The search parameter '_at' is not supported for resource type '%s'.", typ)
			return
		}
	}
	hq := historyQuery{typ: typ, to: time.Unix(1<<40, 0), desc: true, limit: defaultHistoryCount}
	if v := q.Get("_since"); v != "" {
		tr, err := parseFHIRTime(v)
		if err != nil {
			writeOutcome(w, http.StatusBadRequest, "invalid", "_since: %v", err)
			return
		}
		hq.from = tr.start
	}
	if v := q.Get("_before"); v != "" {
		tr, err := parseFHIRTime(v)
		if err != nil {
			writeOutcome(w, http.StatusBadRequest, "invalid", "_before: %v", err)
			return
		}
		if tr.start.After(s.now()) {
			forbidden("Parameter _before cannot a be a value in the future.")
			return
		}
		hq.to = tr.start
	}
	switch v := q.Get("_sort"); v {
	case "", "-_lastUpdated":
	case "_lastUpdated":
		hq.desc = false
	default:
		forbidden("Sorting by the '%s' parameter is not supported.", v)
		return
	}
	countOnly := strings.EqualFold(q.Get("_summary"), "count")
	if v := q.Get("_count"); v != "" {
		n, err := strconv.Atoi(v)
		switch {
		case err != nil:
			writeOutcome(w, http.StatusBadRequest, "invalid", "_count %q is not an integer", v)
			return
		case n == 0:
			countOnly = true
		case n > 0:
			hq.limit = min(n, maxHistoryCount)
		}
	}
	hq.after = q.Get("ct")
	if id != "" {
		all := s.resources.get(typ, id).all()
		if len(all) == 0 {
			writeOutcome(w, http.StatusNotFound, "not-found", "Resource type '%s' with id '%s' couldn't be found.", typ, id)
			return
		}
		s.writeHistory(w, r, q, hq, countOnly, s.instanceHistory(all, hq))
		return
	}
	if countOnly {
		total := s.resources.historyCountRange(hq)
		s.chargeCount(r.Context(), total)
		total *= int(s.cfg.rates.weight())
		writeJSON(w, http.StatusOK, "application/fhir+json", bundle{ResourceType: "Bundle", ID: newJobID(), Type: "history", Total: &total})
		return
	}
	page, more := s.resources.historyPage(hq)
	s.chargeSearch(r.Context(), len(page))
	s.writeHistoryPage(w, r, q, page, more)
}

// instanceHistory is one resource's versions hq selects, in its order.
func (s *Server) instanceHistory(all []*resource, hq historyQuery) []*resource {
	var out []*resource
	for _, v := range all {
		if !v.LastUpdated.Before(hq.from) && v.LastUpdated.Before(hq.to) {
			out = append(out, v)
		}
	}
	if hq.desc {
		for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
			out[i], out[j] = out[j], out[i]
		}
	}
	return out
}

// writeHistory answers an instance history: its count, or a page of it.
func (s *Server) writeHistory(w http.ResponseWriter, r *http.Request, q url.Values, hq historyQuery, countOnly bool, versions []*resource) {
	if countOnly {
		total := len(versions) * int(s.cfg.rates.weight())
		writeJSON(w, http.StatusOK, "application/fhir+json", bundle{ResourceType: "Bundle", ID: newJobID(), Type: "history", Total: &total})
		return
	}
	var page []*resource
	for _, v := range versions {
		k := historyKey(v)
		if hq.after != "" && ((!hq.desc && k <= hq.after) || (hq.desc && k >= hq.after)) {
			continue
		}
		page = append(page, v)
	}
	more := len(page) > hq.limit
	if more {
		page = page[:hq.limit]
	}
	s.writeHistoryPage(w, r, q, page, more)
}

// writeHistoryPage writes one page of history entries, with a next link carrying the cursor when more follow.
func (s *Server) writeHistoryPage(w http.ResponseWriter, r *http.Request, q url.Values, page []*resource, more bool) {
	out := bundle{ResourceType: "Bundle", ID: newJobID(), Type: "history", Entry: []bundleEntry{}}
	for _, v := range page {
		out.Entry = append(out.Entry, historyEntry(baseURL(r), v))
	}
	if more {
		next := cloneQuery(q)
		next.Set("ct", historyKey(page[len(page)-1]))
		out.Link = append(out.Link, bundleLink{Relation: "next", URL: baseURL(r) + r.URL.Path + "?" + next.Encode()})
	}
	writeJSON(w, http.StatusOK, "application/fhir+json", out)
}

// historyEntry is one version as a history entry: a deletion is a DELETE carrying its stub (without the export's
// deleted-state extension), a version 1 a create (201), any other an update (200).
func historyEntry(base string, v *resource) bundleEntry {
	url := fmt.Sprintf("%s/%s/_history/%s", v.Type, v.ID, v.VersionID)
	e := bundleEntry{FullURL: base + "/" + v.Type + "/" + v.ID}
	resp := &entryResponse{Etag: `W/"` + v.VersionID + `"`, LastModified: formatInstant(v.LastUpdated)}
	switch {
	case v.Deleted:
		e.Resource, _ = json.Marshal(map[string]any{"resourceType": v.Type, "id": v.ID,
			"meta": map[string]string{"versionId": v.VersionID, "lastUpdated": formatInstant(v.LastUpdated)}})
		e.Request = &entryRequest{Method: http.MethodDelete, URL: url}
		resp.Status = "204"
	case v.VersionID == "1":
		e.Resource = append(json.RawMessage(nil), v.Raw...)
		e.Request = &entryRequest{Method: http.MethodPut, URL: url}
		resp.Status = "201"
	default:
		e.Resource = append(json.RawMessage(nil), v.Raw...)
		e.Request = &entryRequest{Method: http.MethodPut, URL: url}
		resp.Status = "200"
	}
	e.Response = resp
	return e
}

func cloneQuery(q url.Values) url.Values {
	out := make(url.Values, len(q))
	for k, v := range q {
		out[k] = append([]string(nil), v...)
	}
	return out
}
