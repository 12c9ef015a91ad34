package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/fhirsim"
	"github.com/fhir-migrator/fhir-migrator/internal/localstack"
	"github.com/fhir-migrator/fhir-migrator/internal/store"
)

// settableClock is a simulator's clock: a set time while a test writes history in the past, the real time
// otherwise.
type settableClock struct {
	mu sync.Mutex
	at *time.Time
}

func (c *settableClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.at != nil {
		return *c.at
	}
	return time.Now()
}

func (c *settableClock) set(at *time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.at = at
}

// editDoc changes a stored migration document as an operator with storage access could, with the ETag it read
// (a race with the handler is read again and retried).
func (s *stack) editDoc(id string, edit func(d map[string]any)) {
	s.t.Helper()
	ctx := s.t.Context()
	client, err := azblob.NewClientFromConnectionString(azurite.ConnectionString, nil)
	require.NoError(s.t, err)
	st, err := store.NewBlob(ctx, client, s.docs)
	require.NoError(s.t, err)
	name := "migrations/" + id + ".json"
	for range 50 {
		data, etag, err := st.Get(ctx, name)
		require.NoError(s.t, err)
		items, err := st.List(ctx, name)
		require.NoError(s.t, err)
		require.Len(s.t, items, 1)
		var d map[string]any
		require.NoError(s.t, json.Unmarshal(data, &d))
		edit(d)
		out, err := json.Marshal(d)
		require.NoError(s.t, err)
		if _, err = st.Put(ctx, name, out, etag, items[0].Metadata); !errors.Is(err, store.ErrConflict) {
			require.NoError(s.t, err)
			return
		}
	}
	require.FailNow(s.t, "the document kept changing")
}

// versionTypes are the types of the versions test: Task ends with every resource deleted.
var versionTypes = []string{"Patient", "Observation", "Encounter", "Task"}

// writeOldVersions writes, on the source's clock set in the past, versions and deletions dated before any live
// resource (the generated data starts in 2019): Observations whose first versions are from 2001, an Encounter
// with two versions in years no live Encounter has, a Patient created and deleted in 2003-2004, and Tasks all
// deleted in 2011. Their current versions (where they have one) are written now.
func writeOldVersions(t *testing.T, src string, c *settableClock) {
	at := func(year int, month time.Month) {
		tm := time.Date(year, month, 1, 12, 0, 0, 0, time.UTC)
		c.set(&tm)
	}
	for i := range 5 {
		at(2001, time.Month(1+i))
		fhirWrite(t, src, http.MethodPut, fmt.Sprintf("/Observation/old-%d", i), fmt.Sprintf(`{"resourceType":"Observation","id":"old-%d","status":"preliminary"}`, i))
	}
	at(2002, 2)
	fhirWrite(t, src, http.MethodPut, "/Encounter/e1", `{"resourceType":"Encounter","id":"e1","status":"planned"}`)
	at(2005, 5)
	fhirWrite(t, src, http.MethodPut, "/Encounter/e1", `{"resourceType":"Encounter","id":"e1","status":"in-progress"}`)
	at(2003, 3)
	fhirWrite(t, src, http.MethodPut, "/Patient/gone", `{"resourceType":"Patient","id":"gone"}`)
	at(2004, 4)
	fhirWrite(t, src, http.MethodDelete, "/Patient/gone", "")
	for i := range 3 {
		at(2010, time.Month(1+i))
		fhirWrite(t, src, http.MethodPut, fmt.Sprintf("/Task/t%d", i), fmt.Sprintf(`{"resourceType":"Task","id":"t%d","status":"draft","intent":"order"}`, i))
		at(2011, time.Month(1+i))
		fhirWrite(t, src, http.MethodDelete, fmt.Sprintf("/Task/t%d", i), "")
	}
	c.set(nil)
	for i := range 5 {
		fhirWrite(t, src, http.MethodPut, fmt.Sprintf("/Observation/old-%d", i), fmt.Sprintf(`{"resourceType":"Observation","id":"old-%d","status":"final"}`, i))
	}
	fhirWrite(t, src, http.MethodPut, "/Encounter/e1", `{"resourceType":"Encounter","id":"e1","status":"finished"}`)
}

func historyTotal(t *testing.T, base, typ string) int64 {
	t.Helper()
	var b struct {
		Total *int64 `json:"total"`
	}
	require.NoError(t, localstack.GetJSON(t.Context(), base, base+"/"+typ+"/_history?_summary=count", &b))
	require.NotNil(t, b.Total)
	return *b.Total
}

// TestVersionsOutsideTheLiveWindowsAreCopied: a history migration (history and deletes, windows forced small, no
// sync) of a source whose older versions and deletions lie before any live resource, with a type whose every
// resource is deleted, copies every version: each type's _history count on the destination equals the source's,
// as the simulators answer them, and the deleted resources read 410. The same run with the windows the live counts
// alone would plan (windows starting at the oldest live resource, none where nothing is live) fails with
// history_mismatch, never completed.
func TestVersionsOutsideTheLiveWindowsAreCopied(t *testing.T) {
	t.Parallel()
	for _, liveWindows := range []bool{false, true} {
		t.Run(fmt.Sprintf("liveWindows=%v", liveWindows), func(t *testing.T) {
			t.Parallel()
			c := &settableClock{}
			s := newStack(t, stackOptions{patients: 3, sourceOptions: []fhirsim.Option{fhirsim.WithClock(c.Now)}})
			src := s.source.URL
			writeOldVersions(t, src, c)
			req := map[string]any{"source": src, "destination": s.dest.URL, "types": versionTypes,
				"history": true, "deletes": true, "windowTarget": 40, "verify": "counts"}
			if liveWindows {
				require.NoError(t, s.srcSim.SetFault(fhirsim.FaultKickoff429, 1)) // hold the exports back
			}
			id := s.start(req)
			if liveWindows {
				s.awaitPlanned(id)
				s.planLikeLiveCounts(id)
				require.NoError(t, s.srcSim.SetFault(fhirsim.FaultKickoff429, 0))
			}
			final, raw := s.await(id, nil)
			if liveWindows {
				require.Equal(t, "failed", final.Status, string(raw))
				require.Equal(t, "verification_mismatch", final.Error.Code)
				require.Contains(t, final.Error.Message, "versions of the type")
				var v struct {
					Verification struct {
						Rows []struct {
							Type, Reason string
						}
					}
				}
				require.NoError(t, json.Unmarshal(raw, &v))
				reasons := map[string]string{}
				for _, r := range v.Verification.Rows {
					reasons[r.Type] = r.Reason
				}
				for _, typ := range versionTypes {
					require.Equal(t, "history_mismatch", reasons[typ], "%s: %s", typ, raw)
				}
				return
			}
			require.Equal(t, "completed", final.Status, string(raw))
			exports := 0
			for _, j := range final.Jobs {
				if j.Kind == "export" {
					exports++
				}
			}
			require.Greater(t, exports, len(versionTypes), "some type is split into windows")
			for _, typ := range versionTypes {
				n := historyTotal(t, src, typ)
				require.Positive(t, n, typ)
				require.Equal(t, n, historyTotal(t, s.dest.URL, typ), "%s: every version and deletion copied", typ)
			}
			for _, path := range []string{"/Patient/gone", "/Task/t0", "/Task/t2"} {
				status, _, err := localstack.Write(t.Context(), s.dest.URL, http.MethodGet, path, nil)
				require.NoError(t, err)
				require.Equal(t, http.StatusGone, status, path)
			}
			var e1 struct{ Status string }
			require.NoError(t, localstack.GetJSON(t.Context(), s.dest.URL, s.dest.URL+"/Encounter/e1", &e1))
			require.Equal(t, "finished", e1.Status)
		})
	}
}

// awaitPlanned waits until planning is done (the exports are held back by the test).
func (s *stack) awaitPlanned(id string) {
	s.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		status, raw := s.api(http.MethodGet, "/api/migrations/"+id, nil)
		require.Equal(s.t, http.StatusOK, status, string(raw))
		var d doc
		require.NoError(s.t, json.Unmarshal(raw, &d))
		if d.Status != "planning" {
			require.Equal(s.t, "exporting", d.Status, string(raw))
			return
		}
		require.True(s.t, time.Now().Before(deadline), "still planning: %s", raw)
		time.Sleep(200 * time.Millisecond)
	}
}

// planLikeLiveCounts rewrites a planned migration's windows as a plan from the live counts alone would have
// them: each type's windows start no earlier than its oldest live resource, and a window that holds no live
// resource (so a type with none at all) is not exported.
func (s *stack) planLikeLiveCounts(id string) {
	s.t.Helper()
	oldest := map[string]*time.Time{}
	for _, typ := range versionTypes {
		var b struct {
			Entry []struct {
				Resource struct {
					Meta struct {
						LastUpdated time.Time `json:"lastUpdated"`
					} `json:"meta"`
				} `json:"resource"`
			} `json:"entry"`
		}
		require.NoError(s.t, localstack.GetJSON(s.t.Context(), s.source.URL, s.source.URL+"/"+typ+"?_sort=_lastUpdated&_count=1", &b))
		if len(b.Entry) > 0 {
			oldest[typ] = &b.Entry[0].Resource.Meta.LastUpdated
		}
	}
	removed := 0
	s.editDoc(id, func(d map[string]any) {
		var kept []any
		for _, raw := range d["jobs"].([]any) {
			j := raw.(map[string]any)
			if j["kind"] != "export" {
				kept = append(kept, j)
				continue
			}
			typ := j["types"].([]any)[0].(string)
			till, err := time.Parse(time.RFC3339Nano, j["till"].(string))
			require.NoError(s.t, err)
			live := oldest[typ]
			if live == nil || till.Before(*live) {
				removed++
				continue
			}
			if since, ok := j["since"].(string); !ok || mustTime(s.t, since).Before(*live) {
				j["since"] = live.Format(time.RFC3339Nano)
			}
			q := url.Values{"_lastUpdated": {"ge" + fhirInstant(s.t, j["since"].(string)), "le" + fhirInstant(s.t, j["till"].(string))}}
			if count(s.t, s.source.URL, typ, q) == 0 {
				removed++
				continue
			}
			kept = append(kept, j)
		}
		d["jobs"] = kept
	})
	require.Positive(s.t, removed, "the live counts leave windows out")
}

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	at, err := time.Parse(time.RFC3339Nano, s)
	require.NoError(t, err)
	return at
}

// fhirInstant writes a time as the service reads it in a search: 7 fractional digits at most.
func fhirInstant(t *testing.T, s string) string {
	return mustTime(t, s).UTC().Truncate(100 * time.Nanosecond).Format("2006-01-02T15:04:05.0000000Z")
}

// TestRefusedVersionsAreNamedAndRepaired: the source holds a Patient with two versions in one millisecond and one
// whose newest version is dated before the version it replaced (the Cosmos write race). The destination refuses
// one version of each (a duplicate, a version conflict); the verification names both with the service's reason,
// fails the resource whose newest version was refused as different (counts mode too), and holds the other until
// accepted. POST .../repair writes the stale one's current version; accepting the refused older version completes.
func TestRefusedVersionsAreNamedAndRepaired(t *testing.T) {
	t.Parallel()
	c := &settableClock{}
	s := newStack(t, stackOptions{patients: 2, sourceOptions: []fhirsim.Option{fhirsim.WithClock(c.Now)}})
	src := s.source.URL
	at := func(tm time.Time) { c.set(&tm) }
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	at(base)
	fhirWrite(t, src, http.MethodPut, "/Patient/same", `{"resourceType":"Patient","id":"same","gender":"female"}`)
	fhirWrite(t, src, http.MethodPut, "/Patient/same", `{"resourceType":"Patient","id":"same","gender":"male"}`) // the same millisecond
	at(base.Add(time.Second))
	fhirWrite(t, src, http.MethodPut, "/Patient/inv", `{"resourceType":"Patient","id":"inv","gender":"female"}`)
	at(base.Add(time.Second - 5*time.Millisecond)) // the clock went back: version 2 before version 1
	fhirWrite(t, src, http.MethodPut, "/Patient/inv", `{"resourceType":"Patient","id":"inv","gender":"male"}`)
	c.set(nil)

	id := s.start(map[string]any{"source": src, "destination": s.dest.URL, "types": []string{"Patient"},
		"history": true, "deletes": true, "verify": "counts"})
	final, raw := s.await(id, nil)
	require.Equal(t, "failed", final.Status, string(raw))
	require.Equal(t, "verification_mismatch", final.Error.Code, "a stale resource is a difference")
	type refusedDoc struct {
		Verification struct {
			Refused struct {
				Versions, Stale int64
				Resources       []struct {
					Type, ID string
					Stale    bool
					Versions []struct{ Version, Reason, Message string }
				}
			}
			Rows []struct {
				Type, Reason        string
				Stale, RefusedOlder int64
				Explanation         string
			}
		}
		Repairs *struct{ Resources int }
	}
	var d refusedDoc
	require.NoError(t, json.Unmarshal(raw, &d))
	rf := d.Verification.Refused
	require.Equal(t, int64(2), rf.Versions)
	require.Equal(t, int64(1), rf.Stale)
	byID := map[string]int{}
	for i, r := range rf.Resources {
		byID[r.ID] = i
	}
	same, inv := rf.Resources[byID["same"]], rf.Resources[byID["inv"]]
	require.False(t, same.Stale, "its newest version is on the destination")
	require.Equal(t, "1", same.Versions[0].Version)
	require.Equal(t, "duplicate", same.Versions[0].Reason)
	require.Contains(t, same.Versions[0].Message, "Failed to import duplicate resource, resource id: same")
	require.True(t, inv.Stale, "its newest version was refused")
	require.Equal(t, "2", inv.Versions[0].Version)
	require.Equal(t, "version conflict", inv.Versions[0].Reason)
	require.Equal(t, "different", d.Verification.Rows[0].Reason)
	require.Equal(t, int64(1), d.Verification.Rows[0].RefusedOlder)

	status, body := s.api(http.MethodPost, "/api/migrations/"+id+"/repair", nil)
	require.Equal(t, http.StatusAccepted, status, string(body))
	final, raw = s.await(id, nil)
	require.Equal(t, "failed", final.Status, string(raw))
	require.Equal(t, "refused_versions", final.Error.Code, "the repaired resource passes; the refused older version waits")
	d = refusedDoc{}
	require.NoError(t, json.Unmarshal(raw, &d))
	require.NotNil(t, d.Repairs)
	require.Equal(t, 1, d.Repairs.Resources)
	var srcInv, dstInv struct {
		Gender string
		Meta   struct{ VersionID string }
	}
	require.NoError(t, localstack.GetJSON(t.Context(), src, src+"/Patient/inv", &srcInv))
	require.NoError(t, localstack.GetJSON(t.Context(), s.dest.URL, s.dest.URL+"/Patient/inv", &dstInv))
	require.Equal(t, "male", dstInv.Gender, "the source's current content")
	require.Equal(t, srcInv.Gender, dstInv.Gender)
	status, body = s.api(http.MethodPost, "/api/migrations/"+id+"/repair", nil)
	require.Equal(t, http.StatusConflict, status, "nothing stale is left: %s", body)

	status, body = s.api(http.MethodPost, "/api/migrations/"+id+"/verify", map[string]any{"accept": []string{"refused-versions"}})
	require.Equal(t, http.StatusAccepted, status, string(body))
	final, raw = s.await(id, nil)
	require.Equal(t, "completed", final.Status, string(raw))
	status, body = s.api(http.MethodPost, "/api/migrations/"+id+"/verify", map[string]any{"accept": []string{"everything"}})
	require.Equal(t, http.StatusBadRequest, status)
	require.Contains(t, string(body), "invalid_accept")
}
