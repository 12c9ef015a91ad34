package e2e

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/fhirsim"
)

// bulkDataOptions make the source a Bulk Data server with SMART Backend Services, and the handler its SMART
// client with a key file (the local stack's signer).
func bulkDataOptions(t *testing.T, patients int, extra ...fhirsim.Option) stackOptions {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	der, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "smart-client.pem")
	require.NoError(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600))
	return stackOptions{
		patients: patients,
		sourceOptions: append([]fhirsim.Option{fhirsim.WithFlavor(fhirsim.FlavorBulkData),
			fhirsim.WithSMARTClient("fhir-migrator", &key.PublicKey)}, extra...),
		settings: map[string]string{"SmartClientId": "fhir-migrator", "SmartSigningKey": "file:" + path},
	}
}

// generatedByKey is the source's seed data by "Type/id".
func generatedByKey(t *testing.T, patients int) map[string]json.RawMessage {
	t.Helper()
	out := map[string]json.RawMessage{}
	for _, raw := range fhirsim.Generate(patients, 7) {
		var h struct{ ResourceType, ID string }
		require.NoError(t, json.Unmarshal(raw, &h))
		out[h.ResourceType+"/"+h.ID] = raw
	}
	return out
}

func requireSameResources(t *testing.T, want, got map[string]json.RawMessage) {
	t.Helper()
	require.Len(t, got, len(want))
	for key, w := range want {
		g, ok := got[key]
		require.True(t, ok, "%s missing in the destination", key)
		if strings.HasPrefix(key, "SearchParameter/") {
			w, g = withoutMeta(t, w), withoutMeta(t, g)
		}
		require.JSONEq(t, string(w), string(g), key)
	}
}

// TestBulkDataSourceMigratesExactly: a Bulk Data server (files behind its token, no _till, no _container) moves
// exactly; its files are fetched with SMART tokens, one download is cut and resumed by Range, the tokens are
// revoked mid-export and renewed on the 401, its error file is read into the report, and the export is deleted on
// the server once staged.
func TestBulkDataSourceMigratesExactly(t *testing.T) {
	t.Parallel()
	const patients = 6
	s := newStack(t, bulkDataOptions(t, patients, fhirsim.WithDownloadCuts(1), fhirsim.WithTokenRevocationAfterFiles(2),
		fhirsim.WithExportErrors("Observation/broken could not be serialized")))
	id := s.start(map[string]any{"source": s.source.URL, "destination": s.dest.URL, "sourceKind": "bulk-data"})
	final, raw := s.await(id, nil)
	require.Equal(t, "completed", final.Status, string(raw))
	require.Contains(t, string(raw), `"sourceKind": "bulk-data"`)
	require.Contains(t, string(raw), "export-system: the source reported 1 export error(s), the first: error processing: Observation/broken could not be serialized",
		"the source's error file, read into the report's notes")

	want := generatedByKey(t, patients)
	requireSameResources(t, want, resources(t, s.dest.URL, allTypes...))

	// What the source saw: one export, every file with a token it issued, the cut download resumed from where it
	// broke with the same token, a 401 after the revocation and the same file again with a new token, a DELETE.
	st := s.srcSim.Stats()
	require.Equal(t, 1, st.ExportJobs, "no time upper bound: the full copy is one export")
	require.NotContains(t, st.Exports[0].Query, "_till")
	require.NotContains(t, st.Exports[0].Query, "_container")
	fetches := s.srcSim.BulkFetches()
	var cut, resumed, refused, deletes int
	for i, f := range fetches {
		switch {
		case f.Method == http.MethodDelete:
			deletes++
			require.Equal(t, http.StatusAccepted, f.Status)
			continue
		case f.Cut:
			cut++
			next := fetches[i+1]
			require.Equal(t, fmt.Sprintf("bytes=%d-", f.Bytes), next.Range, "resumed where it broke")
			require.Equal(t, f.Path, next.Path)
		case f.Status == http.StatusPartialContent:
			resumed++
		case f.Status == http.StatusUnauthorized:
			refused++
			require.Equal(t, f.Path, fetches[i+1].Path, "the same file again")
			require.NotEqual(t, f.Token, fetches[i+1].Token, "with a renewed token")
			require.Equal(t, http.StatusOK, fetches[i+1].Status)
		}
		require.True(t, strings.HasPrefix(f.Token, "token-"), "every file fetched with an issued token: %+v", f)
	}
	require.Equal(t, 1, cut)
	require.Equal(t, 1, resumed)
	require.Equal(t, 1, refused)
	require.Equal(t, 1, deletes)
	grants := s.srcSim.TokenGrants()
	require.GreaterOrEqual(t, len(grants), 2)
	for _, g := range grants {
		require.Equal(t, http.StatusOK, g.Status)
		require.Equal(t, "RS384", g.Alg)
	}
}

// TestBulkDataGroupExportMovesTheGroup: Group/{id}/$export moves exactly the group's patients (an active member
// and the members of a nested group) and their compartments, nothing else, verified by the manifest's lines.
func TestBulkDataGroupExportMovesTheGroup(t *testing.T) {
	t.Parallel()
	const patients = 5
	all := generatedByKey(t, patients)
	var ids []string
	for key := range all {
		if id, ok := strings.CutPrefix(key, "Patient/"); ok {
			ids = append(ids, id)
		}
	}
	require.Len(t, ids, patients)
	members := map[string]bool{ids[0]: true, ids[1]: true}
	group := fmt.Sprintf(`{"resourceType":"Group","id":"cohort","type":"person","actual":true,"meta":{"versionId":"1","lastUpdated":"2024-01-01T00:00:00.000Z"},`+
		`"member":[{"entity":{"reference":"Patient/%s"}},{"entity":{"reference":"Patient/%s"},"inactive":true},{"entity":{"reference":"Group/nested"}}]}`, ids[0], ids[2])
	nested := fmt.Sprintf(`{"resourceType":"Group","id":"nested","type":"person","actual":true,"meta":{"versionId":"1","lastUpdated":"2024-01-01T00:00:00.000Z"},`+
		`"member":[{"entity":{"reference":"Patient/%s"}}]}`, ids[1])
	s := newStack(t, bulkDataOptions(t, patients, fhirsim.WithResources([]byte(group), []byte(nested))))

	id := s.start(map[string]any{"source": s.source.URL, "destination": s.dest.URL, "sourceKind": "bulk-data", "group": "cohort"})
	final, raw := s.await(id, nil)
	require.Equal(t, "completed", final.Status, string(raw))

	want := map[string]json.RawMessage{}
	for key, r := range all {
		var refs struct {
			Subject struct{ Reference string } `json:"subject"`
		}
		require.NoError(t, json.Unmarshal(r, &refs))
		typ, rid, _ := strings.Cut(key, "/")
		if (typ == "Patient" && members[rid]) || members[strings.TrimPrefix(refs.Subject.Reference, "Patient/")] {
			want[key] = r
		}
	}
	require.Greater(t, len(want), 20)
	requireSameResources(t, want, resources(t, s.dest.URL, append(allTypes, "Group")...))
	st := s.srcSim.Stats()
	require.Equal(t, 1, st.ExportJobs)
	require.Contains(t, s.srcSim.BulkFetches()[0].Path, "/_bulk/")
	status, report := s.api(http.MethodGet, "/api/migrations/"+id+"/report", nil)
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, string(report), "Group/cohort/$export, with _outputFormat, _since, _type, _typeFilter", "the report's scope names the export")

	// An Azure source takes no group; a group the source lacks is refused before anything starts.
	status, body := s.api(http.MethodPost, "/api/migrations", map[string]any{"source": s.source.URL, "destination": s.dest.URL,
		"sourceKind": "bulk-data", "group": "nobody"})
	require.Equal(t, http.StatusBadRequest, status, string(body))
	require.Contains(t, string(body), "group_not_found")
	status, body = s.api(http.MethodPost, "/api/migrations", map[string]any{"source": s.source.URL, "destination": s.dest.URL,
		"group": "cohort"})
	require.Equal(t, http.StatusBadRequest, status, string(body))
	require.Contains(t, string(body), "unsupported_by_source_kind")
}

// bulkWrite writes to the bulk-data source with a token it issued.
func bulkWrite(t *testing.T, sim *fhirsim.Server, base, method, path, resource string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, base+path, strings.NewReader(resource))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+sim.IssueToken())
	req.Header.Set("Content-Type", "application/fhir+json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Less(t, resp.StatusCode, 300, "%s %s", method, path)
}

// TestBulkDataSyncRoundsSinceTheLastTransactionTime: a synced bulk-data migration carries what the source
// changes, each round's _since the transactionTime of the round before (no _till), until the cutover.
func TestBulkDataSyncRoundsSinceTheLastTransactionTime(t *testing.T) {
	t.Parallel()
	const patients = 2
	s := newStack(t, bulkDataOptions(t, patients))
	src, dst := s.source.URL, s.dest.URL
	id := s.start(map[string]any{"source": src, "destination": dst, "sourceKind": "bulk-data",
		"sync": true, "syncInterval": "1s", "syncMargin": "0s"})
	d := s.until(id, "syncing", func(d syncDoc) bool { return d.Status == "syncing" })

	var copied string
	for key := range generatedByKey(t, patients) {
		if id, ok := strings.CutPrefix(key, "Patient/"); ok {
			copied = id
			break
		}
	}
	bulkWrite(t, s.srcSim, src, http.MethodPut, "/Patient/"+copied, fmt.Sprintf(`{"resourceType":"Patient","id":%q,"gender":"other"}`, copied))
	bulkWrite(t, s.srcSim, src, http.MethodPut, "/Patient/bulk-new", `{"resourceType":"Patient","id":"bulk-new"}`)
	carried := d.Sync.Rounds + 2
	s.until(id, "two more rounds", func(d syncDoc) bool { return d.Sync.Rounds >= carried })
	require.Equal(t, int64(1), count(t, dst, "Patient", url.Values{"_id": {"bulk-new"}}), "the create arrived")
	require.Contains(t, string(resources(t, dst, "Patient")["Patient/"+copied]), `"gender":"other"`, "the update arrived")

	status, raw := s.api(http.MethodPost, "/api/migrations/"+id+"/cutover", nil)
	require.Equal(t, http.StatusAccepted, status, string(raw))
	final, raw := s.await(id, nil)
	require.Equal(t, "completed", final.Status, string(raw))
	require.Equal(t, int64(patients+1), count(t, dst, "Patient", nil))

	// In the source's records: no export has _till; each round's _since is the transactionTime
	// (the kick-off instant, at the millisecond) of an export before it: the full copy's for the first round.
	exports := s.srcSim.Stats().Exports
	require.GreaterOrEqual(t, len(exports), 4)
	for i, e := range exports {
		q, err := url.ParseQuery(e.Query)
		require.NoError(t, err)
		require.False(t, q.Has("_till"))
		if i < 1 {
			continue
		}
		since, err := time.Parse(time.RFC3339Nano, q.Get("_since"))
		require.NoError(t, err, e.Query)
		found := false
		for _, before := range exports[:i] {
			found = found || before.Created.Truncate(time.Millisecond).Equal(since)
		}
		if !found {
			for _, b := range exports {
				t.Logf("export created %s query %s", b.Created.Format(time.RFC3339Nano), b.Query)
			}
		}
		require.True(t, found, "export %d: _since %s is no earlier export's transactionTime", i, since)
	}
}

// TestBulkDataUntilWhereDeclared: a server that declares _until takes the request's till as it, and the migration
// moves exactly what was last updated up to it (verified by counts with the same end).
func TestBulkDataUntilWhereDeclared(t *testing.T) {
	t.Parallel()
	const patients = 3
	s := newStack(t, bulkDataOptions(t, patients, fhirsim.WithDeclaredUntil(true)))
	till := "2022-01-01T00:00:00Z"
	id := s.start(map[string]any{"source": s.source.URL, "destination": s.dest.URL, "sourceKind": "bulk-data", "till": till})
	final, raw := s.await(id, nil)
	require.Equal(t, "completed", final.Status, string(raw))

	tillT, err := time.Parse(time.RFC3339, till)
	require.NoError(t, err)
	want := map[string]json.RawMessage{}
	for key, r := range generatedByKey(t, patients) {
		var m struct {
			Meta struct {
				LastUpdated time.Time `json:"lastUpdated"`
			} `json:"meta"`
		}
		require.NoError(t, json.Unmarshal(r, &m))
		if !m.Meta.LastUpdated.After(tillT) {
			want[key] = r
		}
	}
	require.Greater(t, len(want), 10)
	require.Less(t, len(want), len(generatedByKey(t, patients)), "the till leaves some out")
	requireSameResources(t, want, resources(t, s.dest.URL, allTypes...))
	q, err := url.ParseQuery(s.srcSim.Stats().Exports[0].Query)
	require.NoError(t, err)
	require.Equal(t, "2022-01-01T00:00:00.0000000Z", q.Get("_until"))
	require.False(t, q.Has("_till"))
}
