package fhir

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// ResourceTypes reads GET {base}/metadata and returns rest[mode=server].resource[].type, deduplicated, in order.
func (c *Client) ResourceTypes(ctx context.Context) ([]string, error) {
	caps, err := c.Capabilities(ctx)
	if err != nil {
		return nil, err
	}
	return caps.Types, nil
}

// Capabilities reads the server's CapabilityStatement (GET {base}/metadata): its resource types and fhirVersion.
func (c *Client) Capabilities(ctx context.Context) (Capabilities, error) {
	const op = "metadata"
	resp, err := c.do(ctx, call{
		op: op, method: http.MethodGet, url: c.endpoint("metadata", nil), retry: true,
		header: http.Header{"Accept": {mediaFHIRJSON}},
	})
	if err != nil {
		return Capabilities{}, err
	}
	if resp.status != http.StatusOK {
		return Capabilities{}, newError(op, resp, c.now())
	}
	caps, err := parseCapabilities(resp.body)
	if err != nil {
		return Capabilities{}, fmt.Errorf("%s: %w", op, err)
	}
	return caps, nil
}

// Count returns Bundle.total of GET {base}[/{Type}]?{query}&_summary=count; resourceType "" counts at system level.
// It sends Prefer: handling=strict, so that a search parameter the server does not know is a 400 instead of being
// silently dropped (which would count more than the query asks for).
func (c *Client) Count(ctx context.Context, resourceType string, query url.Values) (int64, error) {
	op, err := typeOp("count", resourceType)
	if err != nil {
		return 0, err
	}
	q := cloneValues(query)
	q.Set("_summary", "count")
	return c.bundleTotal(ctx, op, resourceType, q, http.Header{"Accept": {mediaFHIRJSON}, "Prefer": {"handling=strict"}})
}

// bundleTotal GETs path?query and answers the total of the Bundle that comes back.
func (c *Client) bundleTotal(ctx context.Context, op, path string, query url.Values, header http.Header) (int64, error) {
	resp, err := c.do(ctx, call{op: op, method: http.MethodGet, url: c.endpoint(path, query), retry: true, header: header})
	if err != nil {
		return 0, err
	}
	if resp.status != http.StatusOK {
		return 0, newError(op, resp, c.now())
	}
	b, err := parseBundle(resp.body)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", op, err)
	}
	total, present, err := jsonCount(b.Total)
	if err != nil {
		return 0, fmt.Errorf("%s: bundle total: %w", op, err)
	}
	if !present {
		return 0, fmt.Errorf("%s: bundle has no total", op)
	}
	return total, nil
}

// Search runs GET {base}[/{Type}]?{query} and calls each with every entry's resource, following link "next"
// (tokens go only to the base host:port; a next link on a host off the allow-list is refused). Entries with
// search.mode "outcome" are skipped. An error from each stops the search and is returned wrapped.
func (c *Client) Search(ctx context.Context, resourceType string, query url.Values,
	each func(resource json.RawMessage) error) error {
	op, err := typeOp("search", resourceType)
	if err != nil {
		return err
	}
	if each == nil {
		return fmt.Errorf("%s: nil callback", op)
	}
	page := c.endpoint(resourceType, cloneValues(query))
	seen := map[string]bool{}
	for n := 1; ; n++ {
		seen[page.String()] = true
		resp, err := c.do(ctx, call{
			op: op, method: http.MethodGet, url: page, retry: true,
			header: http.Header{"Accept": {mediaFHIRJSON}},
		})
		if err != nil {
			return err
		}
		if resp.status != http.StatusOK {
			return newError(op, resp, c.now())
		}
		b, err := parseBundle(resp.body)
		if err != nil {
			return fmt.Errorf("%s page %d: %w", op, n, err)
		}
		for _, e := range b.Entry {
			if e.Search != nil && e.Search.Mode == "outcome" {
				continue
			}
			if len(e.Resource) == 0 || bytes.Equal(e.Resource, []byte("null")) {
				continue
			}
			if err := each(e.Resource); err != nil {
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

// Batch posts a Bundle of type batch with one PUT {Type}/{ID} per entry and returns each entry's response.status
// in request order. It is retried on transient failures: a PUT is idempotent.
func (c *Client) Batch(ctx context.Context, entries []BatchEntry) (*BatchResult, error) {
	const op = "batch"
	body, err := BatchBody(entries)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	resp, err := c.do(ctx, call{
		op: op, method: http.MethodPost, url: c.endpoint("", nil), body: body, retry: true,
		header: http.Header{"Content-Type": {mediaFHIRJSON}, "Accept": {mediaFHIRJSON}},
	})
	if err != nil {
		return nil, err
	}
	if resp.status != http.StatusOK {
		return nil, newError(op, resp, c.now())
	}
	b, err := parseBundle(resp.body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if len(b.Entry) != len(entries) {
		return nil, fmt.Errorf("%s: answer has %d entries for %d sent", op, len(b.Entry), len(entries))
	}
	res := &BatchResult{Status: make([]string, len(b.Entry)), Version: make([]string, len(b.Entry)),
		LastUpdated: make([]string, len(b.Entry))}
	for i, e := range b.Entry {
		if e.Response == nil || e.Response.Status == "" {
			return nil, fmt.Errorf("%s: answer entry %d has no response.status", op, i)
		}
		res.Status[i] = e.Response.Status
		res.Version[i] = strings.TrimSuffix(strings.TrimPrefix(e.Response.Etag, `W/"`), `"`)
		res.LastUpdated[i] = e.Response.LastModified
	}
	return res, nil
}

// BatchBody is the batch Bundle of one PUT {Type}/{ID} per entry, after checking every entry: what Batch posts,
// and what an operator can post later when the server refuses writes now.
func BatchBody(entries []BatchEntry) ([]byte, error) {
	if len(entries) == 0 {
		return nil, errors.New("no entries")
	}
	type request struct {
		Method string `json:"method"`
		URL    string `json:"url"`
	}
	type entry struct {
		Resource json.RawMessage `json:"resource"`
		Request  request         `json:"request"`
	}
	out := make([]entry, 0, len(entries))
	for i, e := range entries {
		if !resourceTypePattern.MatchString(e.Type) {
			return nil, fmt.Errorf("entry %d: invalid resource type %q", i, e.Type)
		}
		if !resourceIDPattern.MatchString(e.ID) {
			return nil, fmt.Errorf("entry %d: invalid id %q", i, e.ID)
		}
		var head struct {
			ResourceType string `json:"resourceType"`
			ID           string `json:"id"`
		}
		if err := decodeStrict(e.Resource, &head); err != nil {
			return nil, fmt.Errorf("entry %d: resource is not a JSON object: %w", i, err)
		}
		if head.ResourceType != e.Type || head.ID != e.ID {
			return nil, fmt.Errorf("entry %d: resource is %s/%s, not %s/%s", i, head.ResourceType, head.ID, e.Type, e.ID)
		}
		out = append(out, entry{Resource: e.Resource, Request: request{Method: http.MethodPut, URL: e.Type + "/" + e.ID}})
	}
	body, err := json.Marshal(struct {
		ResourceType string  `json:"resourceType"`
		Type         string  `json:"type"`
		Entry        []entry `json:"entry"`
	}{"Bundle", "batch", out})
	if err != nil {
		return nil, fmt.Errorf("encode bundle: %w", err)
	}
	return body, nil
}

// typeOp names a call at type level ("count Patient") or system level ("count") and checks the type.
func typeOp(verb, resourceType string) (string, error) {
	if resourceType == "" {
		return verb, nil
	}
	op := verb + " " + resourceType
	if !resourceTypePattern.MatchString(resourceType) {
		return "", fmt.Errorf("%s: invalid resource type", op)
	}
	return op, nil
}

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}
