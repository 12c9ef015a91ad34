package e2e

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/localstack"
)

// fastDoc is what the fast cutover's test reads of the document.
type fastDoc struct {
	Status string `json:"status"`
	Error  *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	Sync *struct {
		Rounds int `json:"rounds"`
		Checks *struct {
			Mode          string `json:"mode"`
			NextFile      int    `json:"nextFile"`
			Files         int    `json:"files"`
			CheckedRounds int    `json:"checkedRounds"`
			Passes        int    `json:"passes"`
			Pass          *struct {
				N int `json:"n"`
			} `json:"pass"`
			LastPass *struct {
				N          int        `json:"n"`
				StartedAt  time.Time  `json:"startedAt"`
				FinishedAt *time.Time `json:"finishedAt"`
			} `json:"lastPass"`
		} `json:"checks"`
	} `json:"sync"`
	Verification *struct {
		Mode    string   `json:"mode"`
		Missing []string `json:"missing"`
		IDs     *struct {
			NextFile int `json:"nextFile"`
			FromSync int `json:"fromSync"`
		} `json:"ids"`
		Reconcile *struct {
			Method  string   `json:"method"`
			Removed int64    `json:"removed"`
			Listed  []string `json:"listed"`
			Missing []string `json:"missing"`
			Compare *struct {
				PassStartedAt *time.Time `json:"passStartedAt"`
				Counts        int64      `json:"counts"`
				Ranges        int64      `json:"ranges"`
			} `json:"compare"`
		} `json:"reconcile"`
	} `json:"verification"`
}

func (s *stack) fastDoc(id string) (fastDoc, []byte) {
	s.t.Helper()
	status, raw := s.api(http.MethodGet, "/api/migrations/"+id, nil)
	require.Equal(s.t, http.StatusOK, status, string(raw))
	var d fastDoc
	require.NoError(s.t, json.Unmarshal(raw, &d))
	return d, raw
}

// TestFastCutoverFindsWhatChangedAfterTheSyncChecked: while a migration with verify ids syncs, its full copy's
// and its first round's staged files are ids-checked in the background and a reconciliation pass runs. Then a
// resource is lost on the destination (hard-deleted there, which leaves no version for the rounds' write check)
// after its file was checked, and the source hard-deletes another after the last pass finished. The interval is an
// hour, so that no other round and no other pass runs before the cutover (nothing here depends on timing): neither
// change is in a file the cutover reads (it starts where the sync's checks stopped, and the final round exports
// only what changed since the first round's mark, the margin being 0) nor seen by a pass. The cutover's counts over
// _lastUpdated ranges find both: the lost one is named missing (the cutover fails) and the hard-deleted one is
// removed from the destination.
func TestFastCutoverFindsWhatChangedAfterTheSyncChecked(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{patients: 3})
	src, dst := s.source.URL, s.dest.URL
	id := s.start(map[string]any{"source": src, "destination": dst, "types": []string{"Patient", "Observation"},
		"sync": true, "syncInterval": "1h", "syncMargin": "0s", "verify": "ids"})
	s.until(id, "syncing", func(d syncDoc) bool { return d.Status == "syncing" })

	// The full copy's and the first round's files checked while syncing, and a reconciliation pass completed.
	var checked fastDoc
	deadline := time.Now().Add(2 * time.Minute)
	for {
		d, raw := s.fastDoc(id)
		require.Equal(t, "syncing", d.Status, string(raw))
		if c := d.Sync.Checks; c != nil && c.CheckedRounds >= 1 && c.Passes >= 1 && c.Pass == nil {
			require.Equal(t, "ids", c.Mode)
			require.Positive(t, c.NextFile)
			require.Equal(t, c.Files, c.NextFile, "every file of the full copy and the first round checked")
			require.Equal(t, 1, d.Sync.Rounds, "an hour's interval: one round so far")
			checked = d
			break
		}
		require.True(t, time.Now().Before(deadline), "the sync's checks never got through the full copy and a pass:\n%s", raw)
		time.Sleep(100 * time.Millisecond)
	}
	lastPass := checked.Sync.Checks.LastPass
	require.NotNil(t, lastPass)
	require.NotNil(t, lastPass.FinishedAt)

	var lost string
	for k := range resources(t, dst, "Patient") {
		lost = strings.TrimPrefix(k, "Patient/")
		break
	}
	var gone string
	for k := range resources(t, src, "Observation") {
		gone = strings.TrimPrefix(k, "Observation/")
		break
	}
	require.NotEmpty(t, lost)
	require.NotEmpty(t, gone)
	// Lost on the destination after its file was checked: a hard delete leaves no version behind.
	status, _, err := localstack.Write(t.Context(), dst, http.MethodDelete, "/Patient/"+lost+"?hardDelete=true", nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusNoContent, status)
	// After the last pass finished (the next is due an hour later), the source hard-deletes an Observation.
	status, _, err = localstack.Write(t.Context(), src, http.MethodDelete, "/Observation/"+gone+"?hardDelete=true", nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusNoContent, status)
	d, raw := s.fastDoc(id)
	require.Equal(t, 1, d.Sync.Checks.Passes, "no pass ran after the hard delete:\n%s", raw)
	require.Nil(t, d.Sync.Checks.Pass, "no pass under way:\n%s", raw)

	status, raw = s.api(http.MethodPost, "/api/migrations/"+id+"/cutover", nil)
	require.Equal(t, http.StatusAccepted, status, string(raw))

	final, raw := s.await(id, nil)
	require.Equal(t, "failed", final.Status, string(raw))
	d, _ = s.fastDoc(id)
	require.Equal(t, "verification_mismatch", d.Error.Code, string(raw))
	require.Equal(t, 1, d.Sync.Checks.Passes, "the checks stopped at the cutover request")
	v := d.Verification
	require.Equal(t, "ids", v.Mode)
	// The cutover read only the files the sync's checks had not reached: the final round's.
	require.NotNil(t, v.IDs, string(raw))
	require.Equal(t, checked.Sync.Checks.NextFile, v.IDs.FromSync, "the cutover's id check started where the sync's stopped")
	// Its reconciliation counted, covering for what changed since the last pass started.
	rc := v.Reconcile
	require.NotNil(t, rc, string(raw))
	require.Equal(t, "counts", rc.Method)
	require.NotNil(t, rc.Compare)
	require.NotNil(t, rc.Compare.PassStartedAt)
	require.True(t, rc.Compare.PassStartedAt.Equal(lastPass.StartedAt), "the last completed pass")
	require.GreaterOrEqual(t, rc.Compare.Ranges, int64(2), "both types' counts differed")
	// The lost Patient named, the hard-deleted Observation removed.
	require.Contains(t, rc.Missing, "Patient/"+lost, string(raw))
	require.Contains(t, v.Missing, "Patient/"+lost)
	require.Contains(t, d.Error.Message, "missing from the destination")
	require.Equal(t, int64(1), rc.Removed, "%v", rc.Listed)
	require.Contains(t, strings.Join(rc.Listed, "\n"), "Observation/"+gone+": hard-deleted or purged on the source: removed from the destination")
	status, _, err = localstack.Write(t.Context(), dst, http.MethodGet, "/Observation/"+gone, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusNotFound, status, "hard-deleted on both")
}
