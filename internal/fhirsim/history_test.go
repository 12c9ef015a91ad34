package fhirsim_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/fhirsim"
)

// Deletes as the service does them (fhir-server DeletionService.cs, FhirController.cs, hardDelete.js): a soft
// delete's 204 and a read's 410 carry the deletion's version, a hard delete leaves nothing (404 for a read and a
// history, nothing to export) and the id starts again at version 1, and $purge-history keeps only the current
// version.
func TestHardDeletePurgeAndSoftDelete(t *testing.T) {
	t.Parallel()
	c := &clock{now: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)}
	s := startSim(t, fhirsim.WithStorage(azurite.ConnectionString), fhirsim.WithClock(c.Now),
		fhirsim.WithJobDelay(time.Millisecond), fhirsim.WithPollsBeforeDone(0))
	step := func() { c.set(c.Now().Add(time.Second)) }
	put := func(id, body string) written {
		w := s.write(t, http.MethodPut, "/Patient/"+id, `{"resourceType":"Patient","id":"`+id+`"`+body+`}`)
		require.Less(t, w.status, 300)
		step()
		return w
	}
	del := func(path string) *http.Response {
		resp := s.do(t, request{method: http.MethodDelete, path: path})
		step()
		return resp
	}
	instanceCount := func(id string) int { return s.count(t, "/Patient/"+id+"/_history?_summary=count") }

	put("soft", "")
	resp := del("/Patient/soft")
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	require.Equal(t, `W/"2"`, resp.Header.Get("ETag"), "the soft delete's version")
	gone := s.do(t, request{path: "/Patient/soft"})
	require.Equal(t, http.StatusGone, gone.StatusCode)
	require.Equal(t, `W/"2"`, gone.Header.Get("ETag"), "a 410 names the deletion's version")
	again := del("/Patient/soft")
	require.Equal(t, http.StatusNoContent, again.StatusCode)
	require.Empty(t, again.Header.Get("ETag"), "deleting a deleted resource writes nothing")
	require.Equal(t, 2, instanceCount("soft"))

	put("hard", ``)
	put("hard", `,"active":true`)
	put("hard", `,"active":false`)
	resp = del("/Patient/hard?hardDelete=true")
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	require.Empty(t, resp.Header.Get("ETag"))
	require.Equal(t, http.StatusNotFound, s.do(t, request{path: "/Patient/hard"}).StatusCode)
	require.Equal(t, http.StatusNotFound, s.do(t, request{path: "/Patient/hard/_history"}).StatusCode)
	require.Equal(t, http.StatusNoContent, del("/Patient/nothing?_hardDelete=true").StatusCode, "nothing to delete: 204 too")
	q := url.Values{"_container": {uniqueName("hard")}, "includeAssociatedData": {"_history,_deleted"}}
	_, lines := exportLines(t, s, q.Encode())
	require.Equal(t, []string{"Patient/soft/1", "Patient/soft/2/deleted"}, versionKeys(lines), "nothing is left of hard")
	recreated := put("hard", `,"gender":"other"`)
	require.Equal(t, http.StatusCreated, recreated.status)
	require.Equal(t, "1", recreated.Meta.VersionID, "a hard-deleted id starts again at version 1")

	put("purged", ``)
	put("purged", `,"active":true`)
	put("purged", `,"active":false`)
	require.Equal(t, http.StatusNoContent, del("/Patient/purged/$purge-history").StatusCode)
	require.Equal(t, 1, instanceCount("purged"))
	var cur struct{ Meta struct{ VersionID string } }
	s.getJSON(t, "/Patient/purged", &cur)
	require.Equal(t, "3", cur.Meta.VersionID, "the current version stays")
	require.Equal(t, http.StatusNoContent, del("/Patient/soft/$purge-history").StatusCode)
	require.Equal(t, 1, instanceCount("soft"), "a deleted resource keeps its stub")
	require.Equal(t, http.StatusGone, s.do(t, request{path: "/Patient/soft"}).StatusCode)
}

type historyPage struct {
	Total *int `json:"total"`
	Link  []struct{ Relation, URL string }
	Entry []struct {
		Resource json.RawMessage
		Request  struct{ Method, URL string }
		Response struct{ Status, Etag, LastModified string }
	}
}

func (h historyPage) next() string {
	for _, l := range h.Link {
		if l.Relation == "next" {
			return l.URL
		}
	}
	return ""
}

// Type- and system-level history (SearchService.SearchHistoryAsync): _since is inclusive, _before exclusive and
// never in the future (403), _count pages (at most 1000) and 0 counts, _sort is _lastUpdated or -_lastUpdated
// (the default), _at is refused with _since or _before, and _till is no history parameter at all.
func TestHistoryAtTypeAndSystemLevel(t *testing.T) {
	t.Parallel()
	c := &clock{now: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)}
	s := startSim(t, fhirsim.WithClock(c.Now))
	t0 := c.Now()
	for i := range 5 {
		id := fmt.Sprintf("p%d", i)
		require.Equal(t, http.StatusCreated, s.write(t, http.MethodPut, "/Patient/"+id, `{"resourceType":"Patient","id":"`+id+`"}`).status)
		c.set(c.Now().Add(time.Second))
	}
	require.Equal(t, http.StatusOK, s.write(t, http.MethodPut, "/Patient/p0", `{"resourceType":"Patient","id":"p0","active":true}`).status)
	c.set(c.Now().Add(time.Second))
	require.Equal(t, http.StatusNoContent, s.do(t, request{method: http.MethodDelete, path: "/Patient/p1"}).StatusCode)
	c.set(c.Now().Add(time.Second))
	require.Equal(t, http.StatusCreated, s.write(t, http.MethodPut, "/Observation/o", `{"resourceType":"Observation","id":"o","status":"final"}`).status)
	c.set(c.Now().Add(time.Hour))

	at := func(sec int) string {
		return t0.Add(time.Duration(sec) * time.Second).Format("2006-01-02T15:04:05.000Z")
	}
	require.Equal(t, 7, s.count(t, "/Patient/_history?_summary=count"))
	require.Equal(t, 8, s.count(t, "/_history?_summary=count"))
	require.Equal(t, 8, s.count(t, "/_history?_count=0"))
	require.Equal(t, 3, s.count(t, "/Patient/_history?_summary=count&_since="+at(2)+"&_before="+at(5)), "[2, 5): p2, p3, p4")
	require.Equal(t, 3, s.count(t, "/_history?_summary=count&_since="+at(5)), "p0 v2, p1's deletion, o")
	require.Equal(t, 7, s.count(t, "/Patient/_history?_summary=count&_till="+at(1)), "_till is no history parameter")

	// Pages, oldest first, following next links.
	var got []string
	path := "/Patient/_history?_sort=_lastUpdated&_count=3"
	for path != "" {
		var h historyPage
		s.getJSON(t, path, &h)
		require.LessOrEqual(t, len(h.Entry), 3)
		require.Nil(t, h.Total)
		for _, e := range h.Entry {
			got = append(got, e.Request.Method+" "+e.Request.URL+" "+e.Response.Status)
		}
		path = strings.TrimPrefix(h.next(), s.URL)
	}
	require.Equal(t, []string{"PUT Patient/p0/_history/1 201", "PUT Patient/p1/_history/1 201", "PUT Patient/p2/_history/1 201",
		"PUT Patient/p3/_history/1 201", "PUT Patient/p4/_history/1 201", "PUT Patient/p0/_history/2 200",
		"DELETE Patient/p1/_history/2 204"}, got)
	var newest historyPage
	s.getJSON(t, "/_history?_count=1", &newest)
	require.Len(t, newest.Entry, 1)
	require.Equal(t, "Observation/o/_history/1", newest.Entry[0].Request.URL, "newest first by default")
	var deletion historyPage
	s.getJSON(t, "/Patient/p1/_history?_count=1", &deletion)
	require.JSONEq(t, `{"resourceType":"Patient","id":"p1","meta":{"versionId":"2","lastUpdated":"`+at(6)+`"}}`,
		string(deletion.Entry[0].Resource), "a deletion carries its stub")

	for path, status := range map[string]int{
		"/_history?_before=" + c.Now().Add(time.Hour).Format(time.RFC3339): http.StatusForbidden,
		"/_history?_at=" + at(1) + "&_since=" + at(0):                      http.StatusForbidden,
		"/Patient/_history?_sort=_id":                                      http.StatusForbidden,
		"/_history?_since=yesterday":                                       http.StatusBadRequest,
	} {
		require.Equal(t, status, s.do(t, request{path: path}).StatusCode, path)
	}
	strictAt := s.do(t, request{path: "/_history?_at=" + at(1), headers: map[string]string{"Prefer": "handling=strict"}})
	require.Equal(t, http.StatusBadRequest, strictAt.StatusCode, "_at is no supported parameter")
	require.Equal(t, http.StatusOK, s.do(t, request{path: "/_history?_at=" + at(1)}).StatusCode, "dropped without strict handling")
}

// The export parameter includeAssociatedData is split on commas and not trimmed (ExportController.cs).
func TestIncludeAssociatedDataIsNotTrimmed(t *testing.T) {
	t.Parallel()
	s := startSim(t, fhirsim.WithStorage(azurite.ConnectionString))
	resp := s.do(t, request{path: "/$export?includeAssociatedData=_history,%20_deleted", headers: exportHeaders()})
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	var oo struct {
		Issue []struct{ Diagnostics string }
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&oo))
	require.Contains(t, oo.Issue[0].Diagnostics, `contains an invalid value. Supported values are:  _deleted.`)
	require.Equal(t, http.StatusAccepted, s.do(t, request{path: "/$export?includeAssociatedData=_history,,_deleted&_container=" + uniqueName("x"), headers: exportHeaders()}).StatusCode)
}

// Import as the SQL data store does it (SqlServerFhirDataStore.ImportResourcesAsync): lastUpdated to the
// millisecond; rows of one resource at one millisecond in one batch of 1,000 collapse to the highest version (the
// others are duplicates), while in a later batch the same millisecond, already stored, is a conflict; by time the
// versions must fall.
func TestImportDedupesPerBatchAndRefusesVersionsOutOfOrder(t *testing.T) {
	t.Parallel()
	errs := uniqueName("errs")
	dest := startSim(t, fhirsim.WithFlavor(fhirsim.FlavorAHDS), fhirsim.WithStorage(azurite.ConnectionString),
		fhirsim.WithJobDelay(time.Millisecond), fhirsim.WithErrorContainer(errs), fhirsim.WithPollsBeforeDone(0))
	container := uniqueName("rows")
	c, err := azurite.Client()
	require.NoError(t, err)
	_, err = c.CreateContainer(t.Context(), container, nil)
	require.NoError(t, err)
	row := func(id, version, lastUpdated, extra string) string {
		return `{"resourceType":"Patient","id":"` + id + `"` + extra + `,"meta":{"versionId":"` + version + `","lastUpdated":"` + lastUpdated + `"}}`
	}
	var lines []string
	lines = append(lines,
		row("same", "1", "2026-03-01T10:00:00.0004Z", `,"active":true`),  // same ms as the next: collapses to version 2
		row("same", "2", "2026-03-01T10:00:00.0007Z", `,"active":false`), // kept, truncated to .000
		row("inv", "1", "2026-03-01T10:00:05.000Z", ``),                  // inverted: version 2 is older than version 1
		row("inv", "2", "2026-03-01T10:00:04.000Z", `,"active":true`),
		row("later", "1", "2026-03-01T10:00:09.000Z", ``),
	)
	for i := range 1000 { // fill the batch, so that the next row lands in the second one
		lines = append(lines, row(fmt.Sprintf("f%d", i), "1", "2026-03-01T09:00:00.000Z", ``))
	}
	lines = append(lines, row("later", "2", "2026-03-01T10:00:09.000Z", `,"active":true`)) // same ms, stored already
	u := uploadBlob(t, container, "rows.ndjson", strings.Join(lines, "\n")+"\n")
	_, body, _ := dest.pollDone(t, postImport(t, dest, importBody("IncrementalLoad", importInput{Type: "Patient", URL: u})))
	var res importResult
	require.NoError(t, json.Unmarshal(body, &res))
	require.Len(t, res.Error, 1)
	require.Equal(t, 3, res.Error[0].Count)
	errLines := readBlobURL(t, res.Error[0].URL)
	var texts []string
	for _, l := range errLines {
		var oo struct {
			Issue []struct {
				Diagnostics string
				Details     struct{ Text string }
			}
		}
		require.NoError(t, json.Unmarshal([]byte(l), &oo))
		require.Regexp(t, `^Failed to process resource at line: \d+ with stream start offset: 0$`, oo.Issue[0].Diagnostics)
		texts = append(texts, oo.Issue[0].Details.Text)
	}
	require.ElementsMatch(t, []string{
		"Failed to import duplicate resource, resource id: same, line: 1",
		"Failed to import resource with version conflict, resource id: inv, line: 4",
		"Failed to import resource with version conflict, resource id: later, line: 1006",
	}, texts)
	var same struct {
		Active bool
		Meta   struct{ VersionID, LastUpdated string }
	}
	dest.getJSON(t, "/Patient/same", &same)
	require.Equal(t, "2", same.Meta.VersionID)
	require.Equal(t, "2026-03-01T10:00:00.000Z", same.Meta.LastUpdated, "truncated to the millisecond")
	require.Equal(t, 1, dest.count(t, "/Patient/same/_history?_summary=count"), "version 1 was never stored")
	dest.getJSON(t, "/Patient/inv", &same)
	require.Equal(t, "1", same.Meta.VersionID, "the refused newest version leaves the older one current")
}
