package fhir

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestHistoryCount(t *testing.T) {
	t.Parallel()
	srv := newFHIRServer(t, func(w http.ResponseWriter, r *http.Request, _ []byte, _ int) {
		switch r.URL.Path {
		case "/fhir/Patient/_history":
			_, _ = io.WriteString(w, `{"resourceType":"Bundle","type":"history","total":17}`)
		case "/fhir/_history":
			_, _ = io.WriteString(w, `{"resourceType":"Bundle","type":"history","total":40}`)
		case "/fhir/Patient/p1/_history":
			_, _ = io.WriteString(w, `{"resourceType":"Bundle","type":"history","total":3}`)
		default:
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"not-found"}]}`)
		}
	})
	c := newTestClient(t, srv.URL+"/fhir", "127.0.0.1")
	ctx := context.Background()
	since := time.Date(2024, 1, 2, 3, 4, 5, 600_000_000, time.UTC)
	before := since.Add(time.Hour)
	n, err := c.HistoryCount(ctx, "Patient", HistoryRange{Since: &since, Before: &before})
	require.NoError(t, err)
	require.Equal(t, int64(17), n)
	q := srv.requests()[0].Query
	require.Equal(t, "count", q.Get("_summary"))
	require.Equal(t, "2024-01-02T03:04:05.6000000Z", q.Get("_since"))
	require.Equal(t, "2024-01-02T04:04:05.6000000Z", q.Get("_before"))
	n, err = c.HistoryCount(ctx, "", HistoryRange{})
	require.NoError(t, err)
	require.Equal(t, int64(40), n)
	require.False(t, srv.requests()[1].Query.Has("_since"), "an open range sends no bound")
	_, err = c.HistoryCount(ctx, "Observation", HistoryRange{})
	require.Error(t, err)
	_, err = c.HistoryCount(ctx, "../x", HistoryRange{})
	require.Error(t, err)

	n, err = c.ResourceHistoryCount(ctx, "Patient", "p1")
	require.NoError(t, err)
	require.Equal(t, int64(3), n)
	n, err = c.ResourceHistoryCount(ctx, "Patient", "gone")
	require.NoError(t, err, "a resource the server holds nothing of has no versions")
	require.Zero(t, n)
}

// History follows next links and reads each entry's version, time and deletion; a deletion without a body is
// named by its request url and response etag.
func TestHistoryListsEveryPage(t *testing.T) {
	t.Parallel()
	var srv *fhirServer
	srv = newFHIRServer(t, func(w http.ResponseWriter, r *http.Request, _ []byte, n int) {
		if r.URL.Query().Get("ct") == "" {
			_, _ = io.WriteString(w, `{"resourceType":"Bundle","type":"history","link":[{"relation":"next","url":"`+srv.URL+`/fhir/_history?ct=2"}],"entry":[`+
				`{"resource":{"resourceType":"Patient","id":"a","meta":{"versionId":"1","lastUpdated":"2024-01-01T00:00:00.000Z"}},"request":{"method":"PUT","url":"Patient/a/_history/1"},"response":{"status":"201"}}]}`)
			return
		}
		_, _ = io.WriteString(w, `{"resourceType":"Bundle","type":"history","entry":[`+
			`{"request":{"method":"DELETE","url":"Observation/o/_history/3"},"response":{"status":"204","etag":"W/\"3\"","lastModified":"2024-01-02T00:00:00.123Z"}}]}`)
	})
	c := newTestClient(t, srv.URL+"/fhir", "127.0.0.1")
	since := time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC)
	var got []HistoryEntry
	require.NoError(t, c.History(context.Background(), "", HistoryRange{Since: &since}, true, 5000, func(e HistoryEntry) error {
		got = append(got, e)
		return nil
	}))
	require.Len(t, got, 2)
	require.Equal(t, "Patient/a/1/2024-01-01T00:00:00.000Z", got[0].Key())
	require.False(t, got[0].Deleted)
	require.Equal(t, HistoryEntry{Type: "Observation", ID: "o", VersionID: "3", Deleted: true,
		LastUpdated: time.Date(2024, 1, 2, 0, 0, 0, 123_000_000, time.UTC)}, got[1])
	q := srv.requests()[0].Query
	require.Equal(t, "_lastUpdated", q.Get("_sort"), "oldest first")
	require.Equal(t, "1000", q.Get("_count"), "a page is at most 1000")

	stop := errors.New("enough")
	err := c.History(context.Background(), "", HistoryRange{}, false, 10, func(HistoryEntry) error { return stop })
	require.ErrorIs(t, err, stop)
	require.Equal(t, "-_lastUpdated", srv.requests()[2].Query.Get("_sort"))
}

func TestReadDeleteAndPurge(t *testing.T) {
	t.Parallel()
	srv := newFHIRServer(t, func(w http.ResponseWriter, r *http.Request, _ []byte, _ int) {
		switch r.Method + " " + r.URL.Path {
		case "GET /fhir/Patient/live":
			_, _ = io.WriteString(w, `{"resourceType":"Patient","id":"live","meta":{"versionId":"4"}}`)
		case "GET /fhir/Patient/deleted":
			w.Header().Set("ETag", `W/"7"`)
			w.WriteHeader(http.StatusGone)
		case "GET /fhir/Patient/wrong":
			_, _ = io.WriteString(w, `{"resourceType":"Patient","id":"other"}`)
		case "DELETE /fhir/Patient/live", "DELETE /fhir/Patient/live/$purge-history":
			w.WriteHeader(http.StatusNoContent)
		case "GET /fhir/Patient/boom":
			w.WriteHeader(http.StatusForbidden)
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	})
	c := newTestClient(t, srv.URL+"/fhir", "127.0.0.1")
	ctx := context.Background()
	r, err := c.Read(ctx, "Patient", "live")
	require.NoError(t, err)
	require.Equal(t, ReadResult{Status: 200, VersionID: "4", Resource: json.RawMessage(`{"resourceType":"Patient","id":"live","meta":{"versionId":"4"}}`)}, r)
	require.Empty(t, r.LastUpdated)
	r, err = c.Read(ctx, "Patient", "deleted")
	require.NoError(t, err)
	require.Equal(t, ReadResult{Status: 410, VersionID: "7"}, r)
	r, err = c.Read(ctx, "Patient", "absent")
	require.NoError(t, err)
	require.Equal(t, 404, r.Status)
	_, err = c.Read(ctx, "Patient", "wrong")
	require.ErrorContains(t, err, "answered Patient/other")
	_, err = c.Read(ctx, "Patient", "boom")
	require.True(t, Refused(err))
	_, err = c.Read(ctx, "Patient", "a/b")
	require.Error(t, err)

	require.NoError(t, c.Delete(ctx, "Patient", "live", true))
	require.Equal(t, "true", srv.requests()[len(srv.requests())-1].Query.Get("hardDelete"))
	require.NoError(t, c.Delete(ctx, "Patient", "live", false))
	require.False(t, srv.requests()[len(srv.requests())-1].Query.Has("hardDelete"))
	require.NoError(t, c.PurgeHistory(ctx, "Patient", "live"))
	require.Equal(t, "/fhir/Patient/live/$purge-history", srv.requests()[len(srv.requests())-1].Path)
	require.Error(t, c.Delete(ctx, "Patient", "absent", true), "a 404 is the server refusing")
}

// SearchPage answers one page and the next link, absolute, to go on from later.
func TestSearchPageGoesOnFromItsLink(t *testing.T) {
	t.Parallel()
	var srv *fhirServer
	srv = newFHIRServer(t, func(w http.ResponseWriter, r *http.Request, _ []byte, _ int) {
		if r.URL.Query().Get("ct") == "" {
			_, _ = io.WriteString(w, `{"resourceType":"Bundle","type":"searchset","link":[{"relation":"next","url":"Patient?_elements=id&ct=x"}],`+
				`"entry":[{"resource":{"resourceType":"Patient","id":"a"}},{"resource":{"resourceType":"OperationOutcome"},"search":{"mode":"outcome"}}]}`)
			return
		}
		_, _ = io.WriteString(w, `{"resourceType":"Bundle","type":"searchset","entry":[{"resource":{"resourceType":"Patient","id":"b"}}]}`)
	})
	c := newTestClient(t, srv.URL+"/fhir", "127.0.0.1")
	ctx := context.Background()
	page, next, err := c.SearchPage(ctx, "Patient", map[string][]string{"_elements": {"id"}}, "")
	require.NoError(t, err)
	require.Len(t, page, 1)
	require.Equal(t, srv.URL+"/fhir/Patient?_elements=id&ct=x", next)
	page, next, err = c.SearchPage(ctx, "Patient", nil, next)
	require.NoError(t, err)
	require.JSONEq(t, `{"resourceType":"Patient","id":"b"}`, string(page[0]))
	require.Empty(t, next)
	_, _, err = c.SearchPage(ctx, "Patient", nil, "https://elsewhere.example/fhir/Patient?ct=1")
	require.Error(t, err, "a next link off the allow-list is refused")
}
