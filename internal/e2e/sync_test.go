package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/fhirsim"
	"github.com/fhir-migrator/fhir-migrator/internal/localstack"
)

// syncDoc is the part of a synced migration's document the tests read.
type syncDoc struct {
	Status string `json:"status"`
	Error  *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	Sync *struct {
		HighWater  time.Time `json:"highWater"`
		LagSeconds float64   `json:"lagSeconds"`
		Rounds     int       `json:"rounds"`
		Round      *struct {
			N     int  `json:"n"`
			Final bool `json:"final"`
		} `json:"round"`
		LastError          string     `json:"lastError"`
		CutoverRequestedAt *time.Time `json:"cutoverRequestedAt"`
		Recent             []struct {
			N        int       `json:"n"`
			Since    time.Time `json:"since"`
			Exported int64     `json:"exported"`
			Imported int64     `json:"imported"`
			Final    bool      `json:"final"`
		} `json:"recent"`
	} `json:"sync"`
	Cutover *struct {
		At         time.Time `json:"at"`
		LagSeconds float64   `json:"lagSeconds"`
	} `json:"cutover"`
	Verification *struct {
		Passed bool   `json:"passed"`
		Mode   string `json:"mode"`
		Rows   []struct {
			Type    string `json:"type"`
			History *struct {
				Compared    bool  `json:"compared"`
				Source      int64 `json:"source"`
				Destination int64 `json:"destination"`
			} `json:"history"`
		} `json:"rows"`
	} `json:"verification"`
}

func (s *stack) syncDoc(id string) (syncDoc, []byte) {
	s.t.Helper()
	status, raw := s.api(http.MethodGet, "/api/migrations/"+id, nil)
	require.Equal(s.t, http.StatusOK, status, string(raw))
	var d syncDoc
	require.NoError(s.t, json.Unmarshal(raw, &d))
	return d, raw
}

// until polls the migration until ok says so (failing on a terminal status ok did not expect), and returns it.
func (s *stack) until(id, what string, ok func(d syncDoc) bool) syncDoc {
	s.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		d, raw := s.syncDoc(id)
		if ok(d) {
			return d
		}
		require.NotContains(s.t, []string{"failed", "canceled"}, d.Status, "waiting for %s:\n%s", what, raw)
		require.True(s.t, time.Now().Before(deadline), "still waiting for %s:\n%s", what, raw)
		time.Sleep(200 * time.Millisecond)
	}
}

// TestSyncKeepsTheDestinationInStepUntilTheCutover: a migration with sync and history copies everything, then
// keeps copying what the source changes (creates, updates of resources copied before, deletes, a resource created
// and deleted between two rounds) while the handler is killed during a round and during the cutover's final
// round; after the cutover the destination's current resources equal the source's, ids and content, the deleted
// ones are gone, every version is there, and no round was lost or run twice.
func TestSyncKeepsTheDestinationInStepUntilTheCutover(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{patients: 3})
	src, dst := s.source.URL, s.dest.URL
	id := s.start(map[string]any{"source": src, "destination": dst, "types": []string{"Patient", "Observation"},
		"sync": true, "history": true, "syncInterval": "1s", "syncMargin": "2s", "verify": "full"})
	d := s.until(id, "syncing", func(d syncDoc) bool { return d.Status == "syncing" })
	syncing := time.Now()
	require.NotNil(t, d.Sync)
	require.Equal(t, "counts", d.Verification.Mode, "the full copy of a live source is counted; ids wait for the cutover")

	before := resources(t, src, "Patient")
	var copied string
	for k := range before {
		copied = k // a Patient/id copied by the full copy
		break
	}
	var obs string
	for k := range resources(t, src, "Observation") {
		obs = k
		break
	}
	fhirWrite(t, src, http.MethodPut, "/Patient/new-1", `{"resourceType":"Patient","id":"new-1","active":true}`)
	fhirWrite(t, src, http.MethodPut, "/"+copied, fmt.Sprintf(`{"resourceType":"Patient","id":%q,"gender":"unknown"}`, copied[len("Patient/"):]))
	fhirWrite(t, src, http.MethodDelete, "/"+obs, "")
	fhirWrite(t, src, http.MethodPut, "/Observation/brief", `{"resourceType":"Observation","id":"brief","status":"final"}`)
	fhirWrite(t, src, http.MethodDelete, "/Observation/brief", "")

	// A round that starts after the writes, killed while in flight, still carries them.
	d, _ = s.syncDoc(id)
	after := d.Sync.Rounds
	killed := false
	d = s.until(id, "two more rounds", func(d syncDoc) bool {
		if !killed && d.Sync.Round != nil && d.Sync.Round.N > after {
			require.NoError(t, s.host.RestartHandler(t.Context()))
			killed = true
		}
		return d.Sync.Rounds >= after+2
	})
	require.True(t, killed)
	require.Less(t, d.Sync.LagSeconds, 60.0)
	require.GreaterOrEqual(t, count(t, dst, "Patient", nil), int64(len(before)+1), "the new patient arrived before the cutover")

	// The switch: writes stop, one final round (the handler killed while it runs), then the destination is
	// verified against the source.
	status, raw := s.api(http.MethodPost, "/api/migrations/"+id+"/cutover", nil)
	require.Equal(t, http.StatusAccepted, status, string(raw))
	killed = false
	d = s.until(id, "completed", func(d syncDoc) bool {
		if !killed && d.Sync.Round != nil && d.Sync.Round.Final {
			require.NoError(t, s.host.RestartHandler(t.Context()))
			killed = true
		}
		return d.Status == "completed"
	})
	require.True(t, killed, "the handler was killed during the final round")
	require.NotNil(t, d.Cutover, "the switch is recorded")
	require.True(t, d.Verification.Passed)
	require.Equal(t, "full", d.Verification.Mode)
	// Judged from the simulators' records: every window and round exported and imported once, none lost; every
	// version on both servers, resource by resource.
	rounds := requireEachExportImportedOnce(t, s.srcSim, s.destSim, syncing)
	require.GreaterOrEqual(t, rounds, 2*3, "two types a round: a round killed in flight, the one after it, the final one")
	requireSameHistories(t, src, dst, []string{"Patient", "Observation"}, nil)
	for _, typ := range []string{"Patient", "Observation"} {
		require.Greater(t, historyTotal(t, src, typ), count(t, src, typ, nil), "%s: older versions and deletions were copied too", typ)
	}

	for _, typ := range []string{"Patient", "Observation"} {
		want, got := resources(t, src, typ), resources(t, dst, typ)
		require.Equal(t, len(want), len(got), typ)
		for k, v := range want {
			require.JSONEq(t, string(v), string(got[k]), k)
		}
	}
	require.Len(t, resourceHistory(t, dst, "/"+copied+"/_history").Entry, 2)
	require.Len(t, resourceHistory(t, dst, "/Observation/brief/_history").Entry, 2, "created and deleted between rounds")
	for _, gone := range []string{"/" + obs, "/Observation/brief"} {
		status, _, err := localstack.Write(t.Context(), dst, http.MethodGet, gone, nil)
		require.NoError(t, err)
		require.Equal(t, http.StatusGone, status, gone)
	}
	status, raw = s.api(http.MethodPost, "/api/migrations/"+id+"/cutover", nil)
	require.Equal(t, http.StatusConflict, status, string(raw))
	require.Contains(t, string(raw), "not_syncing")
}

// freezableClock is the source simulator's clock: real time, or a frozen instant.
type freezableClock struct {
	mu     sync.Mutex
	frozen *time.Time
}

func (c *freezableClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.frozen != nil {
		return *c.frozen
	}
	return time.Now()
}

func (c *freezableClock) freeze(at *time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.frozen = at
}

// TestSyncCopiesAChangeAtARoundsBoundary: a resource updated (and one created) at the very instant a round's
// export reflects (its transactionTime, the new high-water mark), but after that export read the source, is
// carried by the next round, even with no margin: a round's since is inclusive.
func TestSyncCopiesAChangeAtARoundsBoundary(t *testing.T) {
	t.Parallel()
	clock := &freezableClock{}
	s := newStack(t, stackOptions{patients: 2, sourceOptions: []fhirsim.Option{fhirsim.WithClock(clock.Now)}})
	src, dst := s.source.URL, s.dest.URL
	id := s.start(map[string]any{"source": src, "destination": dst, "types": []string{"Patient"},
		"sync": true, "syncInterval": "1s", "syncMargin": "0s"})
	d := s.until(id, "syncing", func(d syncDoc) bool { return d.Status == "syncing" })

	var copied string
	for k := range resources(t, src, "Patient") {
		copied = k[len("Patient/"):] // a patient the full copy moved
		break
	}
	at := time.Now().UTC().Truncate(time.Millisecond)
	clock.freeze(&at)
	d = s.until(id, "a round kicked off at the frozen instant", func(d syncDoc) bool { return d.Sync.HighWater.Equal(at) })
	fhirWrite(t, src, http.MethodPut, "/Patient/"+copied, fmt.Sprintf(`{"resourceType":"Patient","id":%q,"gender":"other"}`, copied))
	fhirWrite(t, src, http.MethodPut, "/Patient/edge", `{"resourceType":"Patient","id":"edge"}`)
	clock.freeze(nil)
	carried := d.Sync.Rounds + 1
	s.until(id, "the next round", func(d syncDoc) bool { return d.Sync.Rounds >= carried })
	// In the source's own records: the round after exports from exactly the mark.
	mark := at.Format("2006-01-02T15:04:05.0000000Z")
	fromMark := 0
	for _, e := range s.srcSim.Stats().Exports {
		q, err := url.ParseQuery(e.Query)
		require.NoError(t, err)
		if q.Get("_since") == mark {
			fromMark++
			require.Equal(t, "completed", e.State)
		}
	}
	require.Equal(t, 1, fromMark, "one export from the mark %s", mark)
	require.Equal(t, int64(1), count(t, dst, "Patient", url.Values{"_id": {"edge"}}), "the boundary create arrived")
	got := resources(t, dst, "Patient")["Patient/"+copied]
	require.Contains(t, string(got), `"gender":"other"`, "the boundary update arrived")
	require.Contains(t, string(got), `"lastUpdated":"`+at.Format("2006-01-02T15:04:05.000Z")+`"`, "written exactly at the mark")
}
