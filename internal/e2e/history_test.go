package e2e

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/localstack"
)

// fhirWrite changes a simulator as a client of the service would, and requires success. It returns in the next
// millisecond: the services keep times to the millisecond, and two versions of one resource written in one
// millisecond share it (the import keeps one of them), which a test means only when it sets the clock.
func fhirWrite(t *testing.T, base, method, path, resource string) {
	t.Helper()
	var body []byte
	if resource != "" {
		body = []byte(resource)
	}
	status, raw, err := localstack.Write(t.Context(), base, method, path, body)
	require.NoError(t, err)
	require.Less(t, status, 300, "%s %s: %s", method, path, raw)
	time.Sleep(2 * time.Millisecond)
}

type historyBundle struct {
	Entry []struct {
		Resource json.RawMessage `json:"resource"`
		Request  struct{ Method, URL string }
	} `json:"entry"`
}

func resourceHistory(t *testing.T, base, path string) historyBundle {
	t.Helper()
	var h historyBundle
	require.NoError(t, localstack.GetJSON(t.Context(), base, base+path+"?_count=1000", &h))
	return h
}

// TestHistoryAndDeletesAreCopied: with history and deletes, every version and every deletion of the source
// arrives in the destination (same versionId, lastUpdated and content, deleted ones gone from search and 410 on
// read), verified in full against the source itself; a resource deleted on the source that then appears in the
// destination fails a new verification.
func TestHistoryAndDeletesAreCopied(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{patients: 3})
	src := s.source.URL
	fhirWrite(t, src, http.MethodPut, "/Patient/h1", `{"resourceType":"Patient","id":"h1","gender":"female"}`)
	fhirWrite(t, src, http.MethodPut, "/Patient/h1", `{"resourceType":"Patient","id":"h1","gender":"male"}`)
	fhirWrite(t, src, http.MethodPut, "/Observation/d1", `{"resourceType":"Observation","id":"d1","status":"final"}`)
	fhirWrite(t, src, http.MethodDelete, "/Observation/d1", "")
	fhirWrite(t, src, http.MethodPut, "/Patient/h2", `{"resourceType":"Patient","id":"h2"}`)
	fhirWrite(t, src, http.MethodDelete, "/Patient/h2", "")
	fhirWrite(t, src, http.MethodPut, "/Patient/h2", `{"resourceType":"Patient","id":"h2","active":true}`)

	id := s.start(map[string]any{"source": src, "destination": s.dest.URL, "types": []string{"Patient", "Observation"},
		"history": true, "deletes": true, "verify": "full"})
	final, raw := s.await(id, nil)
	require.Equal(t, "completed", final.Status, string(raw))
	d := s.verified(id)
	require.True(t, d.Verification.Passed)

	for _, path := range []string{"/Patient/h1/_history", "/Patient/h2/_history", "/Observation/d1/_history"} {
		want, got := resourceHistory(t, src, path), resourceHistory(t, s.dest.URL, path)
		require.Equal(t, len(want.Entry), len(got.Entry), path)
		for i := range want.Entry {
			require.Equal(t, want.Entry[i].Request, got.Entry[i].Request, path)
			if len(want.Entry[i].Resource) > 0 {
				require.JSONEq(t, string(want.Entry[i].Resource), string(got.Entry[i].Resource), path)
			}
		}
	}
	require.Len(t, resourceHistory(t, s.dest.URL, "/Patient/h2/_history").Entry, 3, "created, deleted, created again")
	status, _, err := localstack.Write(t.Context(), s.dest.URL, http.MethodGet, "/Observation/d1", nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusGone, status)
	for _, typ := range []string{"Patient", "Observation"} {
		require.Equal(t, count(t, src, typ, nil), count(t, s.dest.URL, typ, nil), typ)
	}
	for _, r := range d.Verification.Rows {
		require.True(t, r.Match, "%+v", r)
	}

	// Someone writes the deleted resource into the destination: the copy no longer matches the source.
	fhirWrite(t, s.dest.URL, http.MethodPut, "/Observation/d1", `{"resourceType":"Observation","id":"d1","status":"final"}`)
	status, raw = s.api(http.MethodPost, "/api/migrations/"+id+"/verify", `{"verify":"ids"}`)
	require.Equal(t, http.StatusAccepted, status, string(raw))
	final, raw = s.await(id, nil)
	require.Equal(t, "failed", final.Status, string(raw))
	require.Equal(t, "verification_mismatch", final.Error.Code)
	var v struct {
		Verification struct {
			Rows []struct {
				Type, Reason, Explanation string
				Extra, Different          int64
			}
		}
	}
	require.NoError(t, json.Unmarshal(raw, &v))
	for _, r := range v.Verification.Rows {
		if r.Type != "Observation" {
			continue
		}
		require.Equal(t, "different", r.Reason)
		require.Equal(t, int64(1), r.Extra, "the id deleted on the source is an extra")
		require.Zero(t, r.Different, "an extra is not also counted as a difference")
		require.Contains(t, r.Explanation, "1 ids deleted on the source are still in the destination")
		return
	}
	require.Fail(t, "no Observation row", string(raw))
}

// History and deletes are refused where the services cannot honour them.
func TestHistoryRefusals(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{patients: 1})
	for _, tc := range []struct {
		req   map[string]any
		field string
	}{
		{map[string]any{"types": []string{"Observation"}, "typeFilter": []string{"Observation?status=final"}, "deletes": true}, "typeFilter"},
		{map[string]any{"history": true, "importMode": "InitialLoad"}, "importMode"},
	} {
		tc.req["source"], tc.req["destination"] = s.source.URL, s.dest.URL
		status, raw := s.api(http.MethodPost, "/api/migrations", tc.req)
		require.Equal(t, http.StatusBadRequest, status, string(raw))
		var e struct{ Error struct{ Code, Field string } }
		require.NoError(t, json.Unmarshal(raw, &e))
		require.Equal(t, "history_not_combinable", e.Error.Code)
		require.Equal(t, tc.field, e.Error.Field)
	}
}
