package fhir

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// HistoryRange selects versions by their own lastUpdated, as _history takes it (fhir-server
// SearchService.SearchHistoryAsync): Since inclusive (_since, ge), Before exclusive (_before, lt; the server
// refuses one in the future with 403). Nil is open.
type HistoryRange struct {
	Since, Before *time.Time
}

func (r HistoryRange) query() url.Values {
	q := url.Values{}
	if r.Since != nil {
		q.Set("_since", FormatInstant(*r.Since))
	}
	if r.Before != nil {
		q.Set("_before", FormatInstant(*r.Before))
	}
	return q
}

// HistoryEntry is one version of a history listing.
type HistoryEntry struct {
	Type, ID, VersionID string
	LastUpdated         time.Time
	// Deleted: the version is a deletion (request.method DELETE).
	Deleted bool
}

// Key names the version: Type/id/versionId/lastUpdated (to the millisecond, as the services keep it).
func (e HistoryEntry) Key() string {
	return e.Type + "/" + e.ID + "/" + e.VersionID + "/" + e.LastUpdated.UTC().Format("2006-01-02T15:04:05.000Z")
}

// HistoryCount answers GET {base}[/{Type}]/_history?_summary=count within r: every version of the type (of every
// type when resourceType is ""), current, older and deleted ones, whose own lastUpdated is in the range.
func (c *Client) HistoryCount(ctx context.Context, resourceType string, r HistoryRange) (int64, error) {
	op, err := typeOp("history count", resourceType)
	if err != nil {
		return 0, err
	}
	path := "_history"
	if resourceType != "" {
		path = resourceType + "/_history"
	}
	q := r.query()
	q.Set("_summary", "count")
	return c.bundleTotal(ctx, op, path, q, http.Header{"Accept": {mediaFHIRJSON}})
}

// ResourceHistoryCount counts every version of one resource (GET {Type}/{id}/_history?_summary=count); a
// resource the server holds nothing of (never written, or hard-deleted) counts 0.
func (c *Client) ResourceHistoryCount(ctx context.Context, resourceType, id string) (int64, error) {
	op, err := typeOp("history count", resourceType)
	if err != nil {
		return 0, err
	}
	if !resourceIDPattern.MatchString(id) {
		return 0, fmt.Errorf("%s: invalid id %q", op, id)
	}
	n, err := c.bundleTotal(ctx, op+"/"+id, resourceType+"/"+id+"/_history", url.Values{"_summary": {"count"}},
		http.Header{"Accept": {mediaFHIRJSON}})
	var fe *Error
	if errors.As(err, &fe) && fe.StatusCode == http.StatusNotFound {
		return 0, nil
	}
	return n, err
}

// History lists the versions of a type (every type when resourceType is "") in r, oldest first with oldestFirst
// (else newest first), a page of pageSize at a time, and calls each for every version until it returns an error
// (returned wrapped, so that errors.Is finds it: a caller may stop early with a sentinel).
func (c *Client) History(ctx context.Context, resourceType string, r HistoryRange, oldestFirst bool, pageSize int,
	each func(HistoryEntry) error) error {
	op, err := typeOp("history", resourceType)
	if err != nil {
		return err
	}
	path := "_history"
	if resourceType != "" {
		path = resourceType + "/_history"
	}
	q := r.query()
	q.Set("_sort", "-_lastUpdated")
	if oldestFirst {
		q.Set("_sort", "_lastUpdated")
	}
	q.Set("_count", strconv.Itoa(min(max(pageSize, 1), 1000)))
	page := c.endpoint(path, q)
	seen := map[string]bool{}
	for n := 1; ; n++ {
		seen[page.String()] = true
		b, resp, err := c.getBundle(ctx, op, page)
		if err != nil {
			return err
		}
		for i, e := range b.Entry {
			h, err := historyEntry(e.Resource, e.Request, e.Response)
			if err != nil {
				return fmt.Errorf("%s page %d entry %d: %w", op, n, i, err)
			}
			if err := each(h); err != nil {
				return fmt.Errorf("%s page %d: %w", op, n, err)
			}
		}
		next := b.next()
		if next == "" {
			return nil
		}
		u, err := c.resolve(next, resp.url)
		if err != nil {
			return fmt.Errorf("%s page %d: next link: %w", op, n, err)
		}
		if seen[u.String()] {
			return fmt.Errorf("%s page %d: next link repeats an earlier page", op, n)
		}
		page = u
	}
}

// getBundle GETs one page and parses it as a Bundle.
func (c *Client) getBundle(ctx context.Context, op string, page *url.URL) (*bundle, *response, error) {
	resp, err := c.do(ctx, call{op: op, method: http.MethodGet, url: page, retry: true,
		header: http.Header{"Accept": {mediaFHIRJSON}}})
	if err != nil {
		return nil, nil, err
	}
	if resp.status != http.StatusOK {
		return nil, nil, newError(op, resp, c.now())
	}
	b, err := parseBundle(resp.body)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", op, err)
	}
	return b, resp, nil
}

// historyEntry reads one history entry: the version from its resource's meta, else from response.etag and
// lastModified (a deletion may carry no resource), the deletion from request.method.
func historyEntry(resource json.RawMessage, req *struct {
	Method string `json:"method"`
	URL    string `json:"url"`
}, resp *struct {
	Status       string `json:"status"`
	Etag         string `json:"etag"`
	LastModified string `json:"lastModified"`
}) (HistoryEntry, error) {
	var h HistoryEntry
	var head struct {
		ResourceType string `json:"resourceType"`
		ID           string `json:"id"`
		Meta         struct {
			VersionID   string `json:"versionId"`
			LastUpdated string `json:"lastUpdated"`
		} `json:"meta"`
	}
	if len(resource) > 0 {
		if err := json.Unmarshal(resource, &head); err != nil {
			return h, fmt.Errorf("resource: %w", err)
		}
	}
	h.Type, h.ID, h.VersionID = head.ResourceType, head.ID, head.Meta.VersionID
	at := head.Meta.LastUpdated
	if req != nil {
		h.Deleted = req.Method == http.MethodDelete
		// request.url is Type/id (or Type/id/_history/v): it names the resource when no body does.
		if parts := strings.Split(strings.Trim(req.URL, "/"), "/"); len(parts) >= 2 && h.Type == "" {
			h.Type, h.ID = parts[0], parts[1]
		}
	}
	if resp != nil {
		if h.VersionID == "" {
			h.VersionID = strings.TrimSuffix(strings.TrimPrefix(resp.Etag, `W/"`), `"`)
		}
		if at == "" {
			at = resp.LastModified
		}
	}
	if !resourceTypePattern.MatchString(h.Type) || !resourceIDPattern.MatchString(h.ID) || h.VersionID == "" {
		return h, fmt.Errorf("no resource type, id and version (%q, %q, %q)", h.Type, h.ID, h.VersionID)
	}
	t, err := time.Parse(time.RFC3339Nano, at)
	if err != nil {
		return h, fmt.Errorf("lastUpdated %q: %w", at, err)
	}
	h.LastUpdated = t
	return h, nil
}

// ReadResult is a read of one resource: found (200, with its current version), deleted (410, with the deletion's
// version from the ETag when the server sends one) or absent (404: never written, or hard-deleted).
type ReadResult struct {
	Status    int
	VersionID string
	// LastUpdated is the found resource's meta.lastUpdated, as written.
	LastUpdated string
	Resource    json.RawMessage
}

// Read answers GET {Type}/{id}. 200, 404 and 410 are results; any other answer is an error.
func (c *Client) Read(ctx context.Context, resourceType, id string) (ReadResult, error) {
	op, err := typeOp("read", resourceType)
	if err != nil {
		return ReadResult{}, err
	}
	if !resourceIDPattern.MatchString(id) {
		return ReadResult{}, fmt.Errorf("%s: invalid id %q", op, id)
	}
	resp, err := c.do(ctx, call{op: op, method: http.MethodGet, url: c.endpoint(resourceType+"/"+id, nil), retry: true,
		header: http.Header{"Accept": {mediaFHIRJSON}}})
	if err != nil {
		return ReadResult{}, err
	}
	res := ReadResult{Status: resp.status}
	switch resp.status {
	case http.StatusOK:
		var head struct {
			ResourceType string `json:"resourceType"`
			ID           string `json:"id"`
			Meta         struct {
				VersionID   string `json:"versionId"`
				LastUpdated string `json:"lastUpdated"`
			} `json:"meta"`
		}
		if err := decodeStrict(resp.body, &head); err != nil {
			return ReadResult{}, fmt.Errorf("%s/%s: %w", op, id, err)
		}
		if head.ResourceType != resourceType || head.ID != id {
			return ReadResult{}, fmt.Errorf("%s/%s: answered %s/%s", op, id, head.ResourceType, head.ID)
		}
		res.VersionID, res.LastUpdated, res.Resource = head.Meta.VersionID, head.Meta.LastUpdated, resp.body
	case http.StatusGone:
		res.VersionID = strings.TrimSuffix(strings.TrimPrefix(resp.header.Get("ETag"), `W/"`), `"`)
	case http.StatusNotFound:
	default:
		return ReadResult{}, newError(op+"/"+id, resp, c.now())
	}
	return res, nil
}

// VRead reads one version of a resource: GET {Type}/{id}/_history/{version}. It answers the version's lastUpdated
// and true when the server holds it (a deleted version answers 410 and counts as held), false on 404.
func (c *Client) VRead(ctx context.Context, resourceType, id, version string) (time.Time, bool, error) {
	op, err := typeOp("vread", resourceType)
	if err != nil {
		return time.Time{}, false, err
	}
	if !resourceIDPattern.MatchString(id) || !resourceIDPattern.MatchString(version) {
		return time.Time{}, false, fmt.Errorf("%s: invalid id %q or version %q", op, id, version)
	}
	resp, err := c.do(ctx, call{op: op, method: http.MethodGet, url: c.endpoint(resourceType+"/"+id+"/_history/"+version, nil),
		retry: true, header: http.Header{"Accept": {mediaFHIRJSON}}})
	if err != nil {
		return time.Time{}, false, err
	}
	switch resp.status {
	case http.StatusOK:
		var head struct {
			Meta struct {
				LastUpdated string `json:"lastUpdated"`
			} `json:"meta"`
		}
		if err := decodeStrict(resp.body, &head); err != nil {
			return time.Time{}, false, fmt.Errorf("%s/%s/%s: %w", op, id, version, err)
		}
		at, err := time.Parse(time.RFC3339Nano, head.Meta.LastUpdated)
		if err != nil {
			return time.Time{}, false, fmt.Errorf("%s/%s/%s: meta.lastUpdated: %w", op, id, version, err)
		}
		return at, true, nil
	case http.StatusGone:
		at, _ := http.ParseTime(resp.header.Get("Last-Modified"))
		return at, true, nil
	case http.StatusNotFound:
		return time.Time{}, false, nil
	}
	return time.Time{}, false, newError(op+"/"+id, resp, c.now())
}

// VersionBefore reads the newest version of one resource dated before a time: GET {Type}/{id}/_history
// ?_before=...&_count=1 (newest first). It answers it as a read would (200 with the version, 410 when it is a
// deletion), or 404 when the resource had no version then.
func (c *Client) VersionBefore(ctx context.Context, resourceType, id string, before time.Time) (ReadResult, error) {
	op, err := typeOp("history", resourceType)
	if err != nil {
		return ReadResult{}, err
	}
	if !resourceIDPattern.MatchString(id) {
		return ReadResult{}, fmt.Errorf("%s: invalid id %q", op, id)
	}
	q := url.Values{"_before": {FormatInstant(before)}, "_count": {"1"}, "_sort": {"-_lastUpdated"}}
	b, _, err := c.getBundle(ctx, op+"/"+id, c.endpoint(resourceType+"/"+id+"/_history", q))
	var fe *Error
	if errors.As(err, &fe) && fe.StatusCode == http.StatusNotFound {
		return ReadResult{Status: http.StatusNotFound}, nil
	}
	if err != nil {
		return ReadResult{}, err
	}
	if len(b.Entry) == 0 {
		return ReadResult{Status: http.StatusNotFound}, nil
	}
	e := b.Entry[0]
	h, err := historyEntry(e.Resource, e.Request, e.Response)
	if err != nil {
		return ReadResult{}, fmt.Errorf("%s/%s: %w", op, id, err)
	}
	if h.Deleted {
		return ReadResult{Status: http.StatusGone, VersionID: h.VersionID}, nil
	}
	return ReadResult{Status: http.StatusOK, VersionID: h.VersionID, LastUpdated: h.LastUpdated.UTC().Format(time.RFC3339Nano),
		Resource: e.Resource}, nil
}

// Delete deletes one resource: DELETE {Type}/{id}, with hardDelete=true every version of it. A resource already
// gone is no error (the server answers 204 either way).
func (c *Client) Delete(ctx context.Context, resourceType, id string, hard bool) error {
	op, err := typeOp("delete", resourceType)
	if err != nil {
		return err
	}
	if !resourceIDPattern.MatchString(id) {
		return fmt.Errorf("%s: invalid id %q", op, id)
	}
	var q url.Values
	if hard {
		q = url.Values{"hardDelete": {"true"}}
	}
	return c.noContent(ctx, op+"/"+id, c.endpoint(resourceType+"/"+id, q))
}

// PurgeHistory removes one resource's older versions and keeps its current one: DELETE {Type}/{id}/$purge-history.
func (c *Client) PurgeHistory(ctx context.Context, resourceType, id string) error {
	op, err := typeOp("purge history", resourceType)
	if err != nil {
		return err
	}
	if !resourceIDPattern.MatchString(id) {
		return fmt.Errorf("%s: invalid id %q", op, id)
	}
	return c.noContent(ctx, op+"/"+id, c.endpoint(resourceType+"/"+id+"/$purge-history", nil))
}

// noContent sends a DELETE that must answer 200 or 204 (retried: deleting again changes nothing).
func (c *Client) noContent(ctx context.Context, op string, u *url.URL) error {
	resp, err := c.do(ctx, call{op: op, method: http.MethodDelete, url: u, retry: true,
		header: http.Header{"Accept": {mediaFHIRJSON}}})
	if err != nil {
		return err
	}
	if resp.status != http.StatusNoContent && resp.status != http.StatusOK {
		return newError(op, resp, c.now())
	}
	return nil
}

// SearchPage runs one page of a search: GET {base}[/{Type}]?{query}, or the next link of an earlier page when
// next is set, and answers its resources and its own next link ("" on the last page). A caller that keeps the
// link can go on later, in another process.
func (c *Client) SearchPage(ctx context.Context, resourceType string, query url.Values, next string) ([]json.RawMessage, string, error) {
	op, err := typeOp("search", resourceType)
	if err != nil {
		return nil, "", err
	}
	page := c.endpoint(resourceType, cloneValues(query))
	if next != "" {
		if page, err = c.resolve(next, c.base); err != nil {
			return nil, "", fmt.Errorf("%s: next link: %w", op, err)
		}
	}
	b, resp, err := c.getBundle(ctx, op, page)
	if err != nil {
		return nil, "", err
	}
	var out []json.RawMessage
	for _, e := range b.Entry {
		if (e.Search != nil && e.Search.Mode == "outcome") || len(e.Resource) == 0 || string(e.Resource) == "null" {
			continue
		}
		out = append(out, e.Resource)
	}
	link := b.next()
	if link != "" {
		u, err := c.resolve(link, resp.url)
		if err != nil {
			return nil, "", fmt.Errorf("%s: next link: %w", op, err)
		}
		if u.String() == page.String() {
			return nil, "", fmt.Errorf("%s: next link repeats the page", op)
		}
		link = u.String()
	}
	return out, link, nil
}
