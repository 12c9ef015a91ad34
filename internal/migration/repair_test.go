package migration

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/fhir"
)

// versionedServer is a fake server that keeps each resource's current version: reads, PUTs by batch and deletes
// act on it as the service does (a PUT adds a version, a soft delete answers 410 after, a hard delete 404).
type versionedServer struct {
	*fakeServer
	mu        sync.Mutex
	resources map[string]versioned
	puts      int
	deletes   []string
}

type versioned struct {
	version int
	deleted bool
	body    string // without meta
}

func newVersionedServer(base string) *versionedServer {
	reg := &fileRegistry{counts: map[string]int64{}, content: map[string]string{}}
	return &versionedServer{fakeServer: newFakeServer(base, []string{"Patient"}, reg), resources: map[string]versioned{}}
}

func (v *versionedServer) set(typ, id string, version int, body string, deleted bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.resources[typ+"/"+id] = versioned{version: version, body: body, deleted: deleted}
}

func (v *versionedServer) Read(_ context.Context, typ, id string) (fhir.ReadResult, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	r, ok := v.resources[typ+"/"+id]
	switch {
	case !ok:
		return fhir.ReadResult{Status: 404}, nil
	case r.deleted:
		return fhir.ReadResult{Status: 410, VersionID: strconv.Itoa(r.version)}, nil
	}
	return fhir.ReadResult{Status: 200, VersionID: strconv.Itoa(r.version), LastUpdated: h0().Format(time.RFC3339Nano),
		Resource: json.RawMessage(fmt.Sprintf(`{"resourceType":%q,"id":%q,"meta":{"versionId":"%d"},%s}`, typ, id, r.version, r.body))}, nil
}

func (v *versionedServer) Batch(_ context.Context, entries []fhir.BatchEntry) (*fhir.BatchResult, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	res := &fhir.BatchResult{}
	for _, e := range entries {
		var body map[string]json.RawMessage
		if err := json.Unmarshal(e.Resource, &body); err != nil {
			return nil, err
		}
		key := e.Type + "/" + e.ID
		r := v.resources[key]
		r.version++
		r.deleted = false
		r.body = `"name":` + string(body["name"])
		v.resources[key] = r
		v.puts++
		res.Status = append(res.Status, "200 OK")
		res.Version = append(res.Version, strconv.Itoa(r.version))
		res.LastUpdated = append(res.LastUpdated, h0().Format(time.RFC3339Nano))
	}
	return res, nil
}

func (v *versionedServer) Delete(_ context.Context, typ, id string, hard bool) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	key := typ + "/" + id
	v.deletes = append(v.deletes, fmt.Sprintf("%s hard=%t", key, hard))
	if hard {
		delete(v.resources, key)
		return nil
	}
	if r, ok := v.resources[key]; ok && !r.deleted {
		r.version++
		r.deleted = true
		v.resources[key] = r
	}
	return nil
}

// A repair that runs twice (a redelivered message after the first one wrote but did not record itself) writes
// nothing the second time: what the destination already holds is left as it is, and each action is named.
func TestARepairRunTwiceWritesOnce(t *testing.T) {
	t.Parallel()
	src, dst := newVersionedServer(srcBase), newVersionedServer(dstBase)
	h := newHarness(t, func(c *Config) {
		c.FHIR = func(base string) (FHIRClient, error) {
			if base == srcBase {
				return src, nil
			}
			return dst, nil
		}
	})
	// stale-put: the destination holds an older version; gone-soft / gone-hard: deleted on the source since;
	// recreated: the source's chain started again below the destination's.
	src.set("Patient", "stale-put", 3, `"name":"new"`, false)
	dst.set("Patient", "stale-put", 2, `"name":"old"`, false)
	src.set("Patient", "gone-soft", 4, ``, true)
	dst.set("Patient", "gone-soft", 3, `"name":"x"`, false)
	dst.set("Patient", "gone-hard", 1, `"name":"x"`, false)
	src.set("Patient", "recreated", 1, `"name":"again"`, false)
	dst.set("Patient", "recreated", 5, `"name":"before"`, false)

	m := &Migration{ID: "m-repair", Request: Request{Source: srcBase, Destination: dstBase}}
	var report []RefusedResource
	for _, id := range []string{"stale-put", "gone-soft", "gone-hard", "recreated"} {
		report = append(report, RefusedResource{Type: "Patient", ID: id, Stale: true})
	}
	report = append(report, RefusedResource{Type: "Patient", ID: "older-only"}) // not stale: never touched
	require.NoError(t, h.svc.putJSON(context.Background(), "report.json", report))

	first, _, err := h.svc.repairStale(context.Background(), m, "report.json", 1)
	require.NoError(t, err)
	actions := map[string]string{}
	for _, r := range first {
		actions[r.ID] = r.Action
	}
	require.Equal(t, map[string]string{"stale-put": repairPut, "gone-soft": repairDelete, "gone-hard": repairHardDelete,
		"recreated": repairRecreate}, actions)
	require.Equal(t, 2, dst.puts)
	require.ElementsMatch(t, []string{"Patient/gone-soft hard=false", "Patient/gone-hard hard=true", "Patient/recreated hard=true"}, dst.deletes)
	for _, id := range []string{"stale-put", "recreated"} {
		s, err := src.Read(context.Background(), "Patient", id)
		require.NoError(t, err)
		d, err := dst.Read(context.Background(), "Patient", id)
		require.NoError(t, err)
		require.True(t, sameContent(s.Resource, d.Resource), id)
	}

	second, _, err := h.svc.repairStale(context.Background(), m, "report.json", 2)
	require.NoError(t, err)
	for _, r := range second {
		require.Equal(t, repairNone, r.Action, "%s is repaired already", r.ID)
	}
	require.Equal(t, 2, dst.puts, "nothing is written twice")
	require.Len(t, dst.deletes, 3, "nothing is deleted twice")
}

// While a repair runs outside any update, its round's dispatch time is kept fresh, so the sweep does not send
// the round again; a heartbeat for another generation changes nothing, and stop ends it.
func TestARepairKeepsItsRoundAlive(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *Config) { c.RedriveAfter = 3 * time.Second })
	m := h.start(`{` + endpoints + `,"types":["Patient"]}`)
	m = h.drive(m.ID, 10*time.Second, 100)
	require.Equal(t, StatusCompleted, m.Status)
	at := h.clock.Now()
	_, _, err := h.svc.update(context.Background(), m.ID, func(m *Migration) (*effects, error) {
		m.Status = StatusVerifying
		m.Verification.Generation++
		m.Verification.DispatchAt = at
		return nil, nil
	})
	require.NoError(t, err)
	gen := h.get(m.ID).Verification.Generation
	h.clock.Advance(time.Hour)

	other := h.svc.heartbeat(context.Background(), m.ID, gen+1)
	stop := h.svc.heartbeat(context.Background(), m.ID, gen)
	require.Eventually(t, func() bool {
		return h.get(m.ID).Verification.DispatchAt.Equal(at.Add(time.Hour))
	}, 30*time.Second, 20*time.Millisecond, "the round's dispatch time follows the clock")
	stop()
	other()
	h.clock.Advance(time.Hour)
	time.Sleep(1500 * time.Millisecond) // longer than a beat: a stopped heartbeat writes nothing
	require.True(t, h.get(m.ID).Verification.DispatchAt.Equal(at.Add(time.Hour)))
}
