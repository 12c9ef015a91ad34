package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/fhirsim"
	"github.com/fhir-migrator/fhir-migrator/internal/localstack"
)

// cutoverDoc is what the cutover test reads of the document.
type cutoverDoc struct {
	Status string
	Error  *struct{ Code, Message string }
	Sync   *struct {
		Rounds            int
		DestinationWrites *struct{ Count int64 }
	}
	Verification *struct {
		Refused *struct {
			Versions, Stale int64
			Resources       []struct {
				Type, ID string
				Stale    bool
				Versions []struct{ Version, Reason string }
			}
		}
		Reconcile *struct {
			Removed, Purged int64
			Listed          []string
		}
		DestinationWrites *struct {
			Unresolved int64
			Listed     []struct{ Type, ID, Version string }
		}
	}
	Repairs *struct{ Resources int }
}

// TestCutoverNamesWhatTheServiceDoes: while a migration with history syncs, the source hard-deletes a resource,
// purges another's history, hard-deletes one and creates it again, writes two versions of one resource in one
// millisecond and one whose newest version is dated before the version it replaced, and someone writes once
// directly on the destination. The cutover names each case: the hard delete and the purge reconciled (removed,
// purged on the destination), the recreated and the inverted resources stale (their newest version refused), the
// same-millisecond one a refused older version, the direct write. After the repair, with the direct write
// removed and the refused older version accepted, it completes, and the live ids and contents are equal, versions
// too (the repaired resources by content).
func TestCutoverNamesWhatTheServiceDoes(t *testing.T) {
	t.Parallel()
	c := &settableClock{}
	s := newStack(t, stackOptions{patients: 3, sourceOptions: []fhirsim.Option{fhirsim.WithClock(c.Now)}})
	src, dst := s.source.URL, s.dest.URL
	id := s.start(map[string]any{"source": src, "destination": dst, "types": []string{"Patient", "Observation"},
		"sync": true, "history": true, "syncInterval": "1s", "syncMargin": "2s", "verify": "full"})
	d := s.until(id, "syncing", func(d syncDoc) bool { return d.Status == "syncing" })

	var patients []string
	for k := range resources(t, src, "Patient") {
		patients = append(patients, strings.TrimPrefix(k, "Patient/"))
	}
	require.GreaterOrEqual(t, len(patients), 3)
	hard, purged, recreated := patients[0], patients[1], patients[2]
	put := func(base, id, body string) {
		fhirWrite(t, base, http.MethodPut, "/Patient/"+id, fmt.Sprintf(`{"resourceType":"Patient","id":%q%s}`, id, body))
	}
	fhirWrite(t, src, http.MethodDelete, "/Patient/"+hard+"?hardDelete=true", "")
	put(src, purged, `,"gender":"other"`)
	put(src, purged, `,"gender":"unknown"`)
	fhirWrite(t, src, http.MethodDelete, "/Patient/"+purged+"/$purge-history", "")
	fhirWrite(t, src, http.MethodDelete, "/Patient/"+recreated+"?hardDelete=true", "")
	put(src, recreated, `,"gender":"female","active":true`)
	now := time.Now().Truncate(time.Millisecond)
	c.set(&now)
	put(src, "same-ms", `,"gender":"female"`)
	put(src, "same-ms", `,"gender":"male"`) // the same millisecond
	put(src, "inverted", `,"gender":"female"`)
	back := now.Add(-5 * time.Millisecond)
	c.set(&back) // the Cosmos write race: the newest version before the one it replaced
	put(src, "inverted", `,"gender":"male"`)
	c.set(nil)
	put(dst, "direct", `,"active":false`) // written on the destination, not by the migration

	done := d.Sync.Rounds + 2
	s.until(id, "two rounds after the writes", func(d syncDoc) bool { return d.Sync.Rounds >= done })
	status, raw := s.api(http.MethodPost, "/api/migrations/"+id+"/cutover", nil)
	require.Equal(t, http.StatusAccepted, status, string(raw))
	final, raw := s.await(id, nil)
	require.Equal(t, "failed", final.Status, string(raw))
	var cd cutoverDoc
	require.NoError(t, json.Unmarshal(raw, &cd))
	v := cd.Verification
	// Reconciled: the hard delete removed, the purge purged.
	require.NotNil(t, v.Reconcile, string(raw))
	require.Equal(t, int64(1), v.Reconcile.Removed, "%v", v.Reconcile.Listed)
	require.Equal(t, int64(1), v.Reconcile.Purged, "%v", v.Reconcile.Listed)
	listed := strings.Join(v.Reconcile.Listed, "\n")
	require.Contains(t, listed, "Patient/"+hard+": hard-deleted or purged on the source: removed from the destination")
	require.Contains(t, listed, "Patient/"+purged+": purged on the source")
	// Refused: the recreated and the inverted resources stale, the same-millisecond one an older version.
	require.NotNil(t, v.Refused, string(raw))
	state := map[string]bool{}
	for _, r := range v.Refused.Resources {
		state[r.ID] = r.Stale
	}
	require.Equal(t, map[string]bool{recreated: true, "inverted": true, "same-ms": false}, state)
	// The direct write, never removed by the reconciliation.
	require.NotNil(t, v.DestinationWrites, string(raw))
	require.Equal(t, int64(1), v.DestinationWrites.Unresolved)
	require.Equal(t, "direct", v.DestinationWrites.Listed[0].ID)
	require.Equal(t, "verification_mismatch", final.Error.Code)
	require.Contains(t, final.Error.Message, "written directly on the destination")
	require.Contains(t, final.Error.Message, "refused the newest version of 2 resources")

	status, raw = s.api(http.MethodPost, "/api/migrations/"+id+"/repair", nil)
	require.Equal(t, http.StatusAccepted, status, string(raw))
	final, raw = s.await(id, nil)
	require.Equal(t, "failed", final.Status, string(raw))
	// Repaired: no resource is stale. The direct write remains (one version more on the destination), and the
	// refused older version waits for its acceptance.
	require.NotContains(t, final.Error.Message, "refused the newest version", string(raw))
	require.Contains(t, final.Error.Message, "written directly on the destination")
	cd = cutoverDoc{}
	require.NoError(t, json.Unmarshal(raw, &cd))
	require.Zero(t, cd.Verification.Refused.Stale)
	require.Equal(t, int64(3), cd.Verification.Refused.Versions, "the repaired ones' and the older one, named still")

	status, _, err := localstack.Write(t.Context(), dst, http.MethodDelete, "/Patient/direct?hardDelete=true", nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusNoContent, status)
	status, raw = s.api(http.MethodPost, "/api/migrations/"+id+"/verify", map[string]any{"accept": []string{"refused-versions"}})
	require.Equal(t, http.StatusAccepted, status, string(raw))
	final, raw = s.await(id, nil)
	require.Equal(t, "completed", final.Status, string(raw))
	cd = cutoverDoc{}
	require.NoError(t, json.Unmarshal(raw, &cd))
	require.Equal(t, 2, cd.Repairs.Resources)

	// The live ids and contents are equal; the repaired resources' versionId and lastUpdated on the destination
	// are their own, so they are compared without them.
	repaired := map[string]bool{"Patient/" + recreated: true, "Patient/inverted": true}
	for _, typ := range []string{"Patient", "Observation"} {
		want, got := resources(t, src, typ), resources(t, dst, typ)
		require.Equal(t, len(want), len(got), typ)
		for k, w := range want {
			g, ok := got[k]
			require.True(t, ok, "%s is not on the destination", k)
			if repaired[k] {
				w, g = withoutMeta(t, w), withoutMeta(t, g)
			}
			require.JSONEq(t, string(w), string(g), k)
		}
	}
	// Versions, resource by resource, but for the repaired resources and the one whose older version the
	// destination refused (accepted).
	requireSameHistories(t, src, dst, []string{"Patient", "Observation"},
		map[string]bool{"Patient/" + recreated: true, "Patient/inverted": true, "Patient/same-ms": true})
	status, _, err = localstack.Write(t.Context(), dst, http.MethodGet, "/Patient/"+hard, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusNotFound, status, "hard-deleted on both")
	require.Equal(t, int64(1), historyCountOf(t, dst, "/Patient/"+purged), "purged on both")
}

func historyCountOf(t *testing.T, base, path string) int64 {
	t.Helper()
	var b struct {
		Total *int64 `json:"total"`
	}
	require.NoError(t, localstack.GetJSON(t.Context(), base, base+path+"/_history?_summary=count", &b))
	require.NotNil(t, b.Total)
	return *b.Total
}
