package fhirsim_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/fhirsim"
)

// clock is a settable time for the simulators.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

func fhirHeaders() map[string]string {
	return map[string]string{"Content-Type": "application/fhir+json"}
}

type written struct {
	status           int
	location, etag   string
	ResourceType, ID string
	Meta             struct{ VersionID, LastUpdated string }
	Status           string
}

func (s *sim) write(t *testing.T, method, path, body string) written {
	t.Helper()
	resp := s.do(t, request{method: method, path: path, headers: fhirHeaders(), body: body})
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	w := written{status: resp.StatusCode, location: resp.Header.Get("Location"), etag: resp.Header.Get("ETag")}
	if len(data) > 0 && resp.StatusCode < 300 {
		require.NoError(t, json.Unmarshal(data, &w), "%s", data)
	}
	return w
}

type history struct {
	Type  string `json:"type"`
	Total *int   `json:"total"`
	Entry []struct {
		Resource json.RawMessage `json:"resource"`
		Request  struct{ Method, URL string }
	} `json:"entry"`
}

func TestWritesVersionDeleteAndHistory(t *testing.T) {
	t.Parallel()
	c := &clock{now: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)}
	s := startSim(t, fhirsim.WithClock(c.Now))

	w := s.write(t, http.MethodPut, "/Patient/p1", `{"resourceType":"Patient","id":"p1","gender":"female"}`)
	require.Equal(t, http.StatusCreated, w.status)
	require.Equal(t, "1", w.Meta.VersionID)
	require.Equal(t, "2026-03-01T10:00:00.000Z", w.Meta.LastUpdated)
	require.Equal(t, s.URL+"/Patient/p1/_history/1", w.location)
	require.Equal(t, `W/"1"`, w.etag)

	c.set(c.Now().Add(time.Minute))
	w = s.write(t, http.MethodPut, "/Patient/p1", `{"resourceType":"Patient","id":"p1","gender":"male"}`)
	require.Equal(t, http.StatusOK, w.status)
	require.Equal(t, "2", w.Meta.VersionID)

	w = s.write(t, http.MethodPost, "/Observation", `{"resourceType":"Observation","id":"ignored","status":"final"}`)
	require.Equal(t, http.StatusCreated, w.status)
	require.NotEqual(t, "ignored", w.ID, "the server assigns the id of a create")
	obs := w.ID

	// Refusals: media type, a body for another resource, a type in the URL the body does not have.
	require.Equal(t, http.StatusUnsupportedMediaType, s.do(t, request{method: http.MethodPut, path: "/Patient/p1",
		headers: map[string]string{"Content-Type": "text/plain"}, body: `{}`}).StatusCode)
	require.Equal(t, http.StatusBadRequest, s.write(t, http.MethodPut, "/Patient/p1", `{"resourceType":"Patient","id":"p2"}`).status)
	require.Equal(t, http.StatusBadRequest, s.write(t, http.MethodPost, "/Patient", `{"resourceType":"Observation"}`).status)

	c.set(c.Now().Add(time.Minute))
	require.Equal(t, http.StatusNoContent, s.do(t, request{method: http.MethodDelete, path: "/Patient/p1"}).StatusCode)
	require.Equal(t, http.StatusNoContent, s.do(t, request{method: http.MethodDelete, path: "/Patient/nobody"}).StatusCode)
	require.Equal(t, http.StatusGone, s.do(t, request{path: "/Patient/p1"}).StatusCode)
	require.Equal(t, http.StatusNotFound, s.do(t, request{path: "/Patient/nobody"}).StatusCode)
	require.Zero(t, s.count(t, "/Patient?_summary=count"), "a deleted resource leaves search")
	require.Zero(t, s.count(t, "/Patient?_id=p1&_summary=count"))

	var h history
	s.getJSON(t, "/Patient/p1/_history", &h)
	require.Equal(t, "history", h.Type)
	require.Nil(t, h.Total, "a history page has no total (BundleFactory: only a count sets it)")
	require.Len(t, h.Entry, 3)
	require.Equal(t, "DELETE", h.Entry[0].Request.Method, "newest first: the deletion")
	require.Equal(t, "Patient/p1/_history/3", h.Entry[0].Request.URL)
	require.Contains(t, string(h.Entry[1].Resource), `"gender":"male"`)
	require.Contains(t, string(h.Entry[2].Resource), `"gender":"female"`)

	for path, want := range map[string]int{"/Patient/p1/_history?_summary=count": 3, "/Patient/_history?_summary=count": 3,
		"/_history?_summary=count": 4, "/Observation/" + obs + "/_history?_summary=count": 1} {
		var b history
		s.getJSON(t, path, &b)
		require.Equal(t, want, *b.Total, path)
		require.Empty(t, b.Entry, path)
	}
	var typeLevel history
	s.getJSON(t, "/Patient/_history", &typeLevel)
	require.Len(t, typeLevel.Entry, 3, "a type's history lists every version of every resource")
	require.Equal(t, "DELETE", typeLevel.Entry[0].Request.Method, "newest first")

	// A resource can come back after its deletion: a new version on top of the stub.
	c.set(c.Now().Add(time.Minute))
	w = s.write(t, http.MethodPut, "/Patient/p1", `{"resourceType":"Patient","id":"p1","gender":"other"}`)
	require.Equal(t, http.StatusCreated, w.status)
	require.Equal(t, "4", w.Meta.VersionID)
	require.Equal(t, 1, s.count(t, "/Patient?_summary=count"))
}

func TestInitialImportModeLocksWrites(t *testing.T) {
	t.Parallel()
	s := startSim(t, fhirsim.WithFlavor(fhirsim.FlavorAHDS), fhirsim.WithInitialImportMode(true))
	require.Equal(t, http.StatusLocked, s.write(t, http.MethodPut, "/Patient/p1", `{"resourceType":"Patient","id":"p1"}`).status)
	require.Equal(t, http.StatusLocked, s.write(t, http.MethodPost, "/Patient", `{"resourceType":"Patient"}`).status)
	require.Equal(t, http.StatusLocked, s.do(t, request{method: http.MethodDelete, path: "/Patient/p1"}).StatusCode)
	require.Equal(t, http.StatusNotFound, s.do(t, request{path: "/Patient/p1"}).StatusCode, "reads stay open")
}

// exportLines exports with query and returns every line of the output, per type, with the manifest's counts checked.
func exportLines(t *testing.T, source *sim, query string) (manifest, []map[string]any) {
	t.Helper()
	m, _ := exportAll(t, source, query)
	var out []map[string]any
	for _, o := range m.Output {
		lines := readBlobURL(t, o.URL)
		require.Len(t, lines, o.Count, "the manifest counts lines: old versions and stubs included")
		for _, l := range lines {
			var r map[string]any
			require.NoError(t, json.Unmarshal([]byte(l), &r))
			out = append(out, r)
		}
	}
	return m, out
}

// versionKeys are "Type/id/version[/deleted]" of exported lines, sorted.
func versionKeys(lines []map[string]any) []string {
	var keys []string
	for _, l := range lines {
		meta := l["meta"].(map[string]any)
		k := l["resourceType"].(string) + "/" + l["id"].(string) + "/" + meta["versionId"].(string)
		if ext, ok := meta["extension"].([]any); ok {
			e := ext[0].(map[string]any)
			if e["url"] == "http://azurehealthcareapis.com/data-extensions/deleted-state" && e["valueString"] == "soft-deleted" {
				k += "/deleted"
			}
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// A source with history and deletions exports them with includeAssociatedData, and an IncrementalLoad import
// rebuilds the same history on the destination: versions, times and deletions.
func TestHistoryAndDeletionsExportAndImport(t *testing.T) {
	t.Parallel()
	c := &clock{now: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)}
	errContainer := uniqueName("errs")
	source := startSim(t, fhirsim.WithStorage(azurite.ConnectionString), fhirsim.WithClock(c.Now),
		fhirsim.WithJobDelay(time.Millisecond), fhirsim.WithPollsBeforeDone(0))
	dest := startSim(t, fhirsim.WithFlavor(fhirsim.FlavorAHDS), fhirsim.WithStorage(azurite.ConnectionString),
		fhirsim.WithJobDelay(time.Millisecond), fhirsim.WithErrorContainer(errContainer))
	step := func() { c.set(c.Now().Add(time.Minute)) }
	put := func(typ, id, body string) {
		w := source.write(t, http.MethodPut, "/"+typ+"/"+id, `{"resourceType":"`+typ+`","id":"`+id+`"`+body+`}`)
		require.Less(t, w.status, 300)
		step()
	}
	del := func(typ, id string) {
		require.Equal(t, http.StatusNoContent, source.do(t, request{method: http.MethodDelete, path: "/" + typ + "/" + id}).StatusCode)
		step()
	}
	put("Patient", "a", `,"gender":"female"`) // a: v1, v2
	put("Patient", "b", ``)                   // b: v1, deleted v2
	put("Patient", "a", `,"gender":"male"`)
	del("Patient", "b")
	mid := c.Now()
	put("Observation", "o", `,"status":"preliminary"`) // o: v1, v2, deleted v3, v4
	put("Observation", "o", `,"status":"final"`)
	del("Observation", "o")
	put("Observation", "o", `,"status":"amended"`)
	put("Patient", "c", ``) // c: created and deleted
	del("Patient", "c")
	c.set(c.Now().Add(time.Hour)) // the export's kick-off

	container := uniqueName("hist")
	q := url.Values{"_container": {container}}
	_, current := exportLines(t, source, q.Encode())
	require.Equal(t, []string{"Observation/o/4", "Patient/a/2"}, versionKeys(current), "without associated data: current versions")

	// _deleted alone: the stubs of resources deleted now, not o's older stub (o was written again since).
	q.Set("includeAssociatedData", "_deleted")
	_, withDeleted := exportLines(t, source, q.Encode())
	require.Equal(t, []string{"Observation/o/4", "Patient/a/2", "Patient/b/2/deleted", "Patient/c/2/deleted"}, versionKeys(withDeleted))

	q.Set("includeAssociatedData", "_history,_deleted")
	m, all := exportLines(t, source, q.Encode())
	want := []string{"Observation/o/1", "Observation/o/2", "Observation/o/3/deleted", "Observation/o/4", "Patient/a/1", "Patient/a/2",
		"Patient/b/1", "Patient/b/2/deleted", "Patient/c/1", "Patient/c/2/deleted"}
	require.Equal(t, want, versionKeys(all))

	// _since applies to each version's own lastUpdated.
	q.Set("_since", mid.Format(time.RFC3339))
	_, since := exportLines(t, source, q.Encode())
	require.Equal(t, []string{"Observation/o/1", "Observation/o/2", "Observation/o/3/deleted", "Observation/o/4", "Patient/c/1", "Patient/c/2/deleted"}, versionKeys(since))

	var inputs []importInput
	for _, o := range m.Output {
		inputs = append(inputs, importInput{Type: o.Type, URL: o.URL})
	}
	importOnce := func() importResult {
		_, body, _ := dest.pollDone(t, postImport(t, dest, importBody("IncrementalLoad", inputs...)))
		var res importResult
		require.NoError(t, json.Unmarshal(body, &res))
		return res
	}
	res := importOnce()
	require.Empty(t, res.Error)
	total := 0
	for _, o := range res.Output {
		total += o.Count
	}
	require.Equal(t, len(want), total)

	for _, path := range []string{"/Patient/a/_history", "/Patient/b/_history", "/Patient/c/_history", "/Observation/o/_history"} {
		var srcH, dstH history
		source.getJSON(t, path, &srcH)
		dest.getJSON(t, path, &dstH)
		require.Equal(t, len(srcH.Entry), len(dstH.Entry), path)
		for i := range srcH.Entry {
			require.Equal(t, srcH.Entry[i].Request, dstH.Entry[i].Request, path)
			require.JSONEq(t, string(cmpOr(srcH.Entry[i].Resource)), string(cmpOr(dstH.Entry[i].Resource)), path)
		}
	}
	require.Equal(t, http.StatusGone, dest.do(t, request{path: "/Patient/b"}).StatusCode)
	require.Equal(t, http.StatusGone, dest.do(t, request{path: "/Patient/c"}).StatusCode)
	require.Equal(t, 1, dest.count(t, "/Patient?_summary=count"))
	require.Equal(t, 1, dest.count(t, "/Observation?_summary=count"))

	// The same files again, in a new job: every row is already stored, a success that changes nothing.
	res = importOnce()
	require.Empty(t, res.Error)
	var h history
	dest.getJSON(t, "/_history?_summary=count", &h)
	require.Equal(t, len(want), *h.Total)

	// A row whose version is stored with other content is a version conflict; the same version twice in one job
	// is a duplicate.
	conflict := uploadBlob(t, container, "conflict.ndjson",
		`{"resourceType":"Patient","id":"a","gender":"unknown","meta":{"versionId":"2","lastUpdated":"2026-03-01T10:02:00.000Z"}}`+"\n"+
			`{"resourceType":"Patient","id":"z","meta":{"versionId":"1","lastUpdated":"2026-03-01T10:02:00.000Z"}}`+"\n"+
			`{"resourceType":"Patient","id":"z","meta":{"versionId":"1","lastUpdated":"2026-03-01T10:02:00.000Z"}}`+"\n")
	_, body, _ := dest.pollDone(t, postImport(t, dest, importBody("IncrementalLoad", importInput{Type: "Patient", URL: conflict})))
	require.NoError(t, json.Unmarshal(body, &res))
	require.Len(t, res.Error, 1)
	errs := strings.Join(readBlobURL(t, res.Error[0].URL), "\n")
	require.Contains(t, errs, "version conflict")
	require.Contains(t, errs, "Failed to import duplicate resource")
	require.Equal(t, 2, res.Error[0].Count, "two of the three rows failed")

	// Versions arriving newest first: a lower version with an earlier time goes into the history; with a later
	// time it disagrees with the stored order.
	reversed := uploadBlob(t, container, "reversed.ndjson",
		`{"resourceType":"Patient","id":"r","gender":"male","meta":{"versionId":"2","lastUpdated":"2026-03-01T10:05:00.000Z"}}`+"\n"+
			`{"resourceType":"Patient","id":"r","gender":"female","meta":{"versionId":"1","lastUpdated":"2026-03-01T10:04:00.000Z"}}`+"\n"+
			`{"resourceType":"Patient","id":"q","meta":{"versionId":"2","lastUpdated":"2026-03-01T10:04:00.000Z"}}`+"\n"+
			`{"resourceType":"Patient","id":"q","meta":{"versionId":"1","lastUpdated":"2026-03-01T10:05:00.000Z"}}`+"\n")
	_, body, _ = dest.pollDone(t, postImport(t, dest, importBody("IncrementalLoad", importInput{Type: "Patient", URL: reversed})))
	require.NoError(t, json.Unmarshal(body, &res))
	require.Len(t, res.Error, 1)
	require.Equal(t, 1, res.Error[0].Count)
	// By time, newest first, the versions must fall: q's version 2, older than its version 1, is the conflict.
	require.Contains(t, strings.Join(readBlobURL(t, res.Error[0].URL), "\n"),
		"Failed to import resource with version conflict, resource id: q, line: 3")
	var rh history
	dest.getJSON(t, "/Patient/r/_history", &rh)
	require.Len(t, rh.Entry, 2)
	require.Contains(t, string(rh.Entry[0].Resource), `"gender":"male"`, "version 2 stays current")
	require.Contains(t, string(rh.Entry[1].Resource), `"gender":"female"`)
}

func cmpOr(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 {
		return json.RawMessage(`null`)
	}
	return raw
}

// Times are kept to the millisecond: two writes of one resource in the same millisecond share it, on both
// services. A clock that goes back stamps the new version before the one it replaces on Azure API for FHIR
// (Cosmos DB checks nothing), never on the AHDS service (SQL surrogate ids only grow).
func TestWritesInOneMillisecondShareIt(t *testing.T) {
	t.Parallel()
	for _, flavor := range []fhirsim.Flavor{fhirsim.FlavorAPIForFHIR, fhirsim.FlavorAHDS} {
		c := &clock{now: time.Date(2026, 3, 1, 10, 0, 0, 400_000, time.UTC)}
		s := startSim(t, fhirsim.WithFlavor(flavor), fhirsim.WithClock(c.Now))
		a := s.write(t, http.MethodPut, "/Patient/p", `{"resourceType":"Patient","id":"p"}`)
		b := s.write(t, http.MethodPut, "/Patient/p", `{"resourceType":"Patient","id":"p","active":true}`)
		require.Equal(t, "2026-03-01T10:00:00.000Z", a.Meta.LastUpdated, flavor)
		require.Equal(t, "2026-03-01T10:00:00.000Z", b.Meta.LastUpdated, "%s: the same millisecond", flavor)
		require.Equal(t, "2", b.Meta.VersionID)
		c.set(c.Now().Add(-5 * time.Millisecond))
		back := s.write(t, http.MethodPut, "/Patient/p", `{"resourceType":"Patient","id":"p","active":false}`)
		want := "2026-03-01T09:59:59.995Z" // inverted, as the Cosmos write race leaves it
		if flavor == fhirsim.FlavorAHDS {
			want = "2026-03-01T10:00:00.000Z"
		}
		require.Equal(t, want, back.Meta.LastUpdated, flavor)
		require.Equal(t, "3", back.Meta.VersionID)
		var h history
		s.getJSON(t, "/Patient/p/_history", &h)
		require.Len(t, h.Entry, 3)
	}
}

// A system export with deleted resources carries the stubs of a type none of whose resources is left.
func TestASystemExportCarriesTheStubsOfAnEmptiedType(t *testing.T) {
	t.Parallel()
	c := &clock{now: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)}
	source := startSim(t, fhirsim.WithStorage(azurite.ConnectionString), fhirsim.WithClock(c.Now),
		fhirsim.WithJobDelay(time.Millisecond), fhirsim.WithPollsBeforeDone(0))
	for _, id := range []string{"a", "b"} {
		require.Equal(t, http.StatusCreated, source.write(t, http.MethodPut, "/Patient/"+id, `{"resourceType":"Patient","id":"`+id+`"}`).status)
		require.Equal(t, http.StatusNoContent, source.do(t, request{method: http.MethodDelete, path: "/Patient/" + id}).StatusCode)
	}
	c.set(c.Now().Add(time.Minute)) // the export's kick-off comes after every write (on a real clock, a stub stamped a
	// millisecond after its version, written in the same millisecond, could still be ahead of it)
	q := url.Values{"_container": {uniqueName("emptied")}, "includeAssociatedData": {"_deleted"}}
	_, lines := exportLines(t, source, q.Encode())
	require.Equal(t, []string{"Patient/a/2/deleted", "Patient/b/2/deleted"}, versionKeys(lines))
}
