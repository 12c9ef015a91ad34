package migration

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func auditEntry(op, who string) *AuditEntry {
	return &AuditEntry{Operation: op, Who: who, ObjectID: "oid-" + who, Name: who, Verified: true, Client: "203.0.113.7",
		Fields: map[string]any{"force": true}, InvocationID: "inv-" + op}
}

// Every request that changes a migration is recorded once, in the save of its change, with who made it; a request
// refused, or made without an entry in its context, records nothing.
func TestAuditRecordsEachChangeOnceInItsSave(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	ctx := context.Background()
	body := `{"source":"` + srcBase + `","destination":"` + dstBase + `","types":["Patient"]}`
	res, err := h.svc.Start(WithAudit(ctx, "", auditEntry("startMigration", "alice")), decode[StartRequest](t, body))
	require.NoError(t, err)
	id := res.Migration.ID
	require.Len(t, res.Migration.Audit, 1, "the start's answer carries its own entry")
	m := h.get(id)
	require.Len(t, m.Audit, 1)
	got := m.Audit[0]
	require.Equal(t, "startMigration", got.Operation)
	require.Equal(t, "alice", got.Who)
	require.Equal(t, "oid-alice", got.ObjectID)
	require.True(t, got.Verified)
	require.Equal(t, "203.0.113.7", got.Client)
	require.Equal(t, h0(), got.At, "when the change was saved")

	// A start without an entry (the engine's own tests, any caller that says nothing) records nothing.
	other := h.start(body)
	require.Empty(t, h.get(other.ID).Audit)

	// Cancel saves, then performs its effects (more saves under the same context): one entry.
	h.clock.Advance(1e9)
	_, err = h.svc.Cancel(WithAudit(ctx, id, auditEntry("cancelMigration", "bob")), id)
	require.NoError(t, err)
	m = h.get(id)
	require.Len(t, m.Audit, 2)
	require.Equal(t, "cancelMigration", m.Audit[1].Operation)
	require.Equal(t, "bob", m.Audit[1].Who)
	require.Equal(t, h0().Add(1e9), m.Audit[1].At)

	// Refused (already finished): nothing recorded.
	_, err = h.svc.Cancel(WithAudit(ctx, id, auditEntry("cancelMigration", "carol")), id)
	require.ErrorContains(t, err, "already_finished")
	require.Len(t, h.get(id).Audit, 2)

	// Cleanup saves twice (its intent, then what went): one entry, with the request's fields.
	_, err = h.svc.Cleanup(WithAudit(ctx, id, auditEntry("cleanUp", "dave")), id, CleanupRequest{Force: true})
	require.NoError(t, err)
	m = h.get(id)
	require.Len(t, m.Audit, 3)
	require.Equal(t, "cleanUp", m.Audit[2].Operation)
	require.Equal(t, map[string]any{"force": true}, m.Audit[2].Fields)

	// An entry for another migration is not recorded in this one.
	_, err = h.svc.Cancel(WithAudit(ctx, id, auditEntry("cancelMigration", "erin")), other.ID)
	require.NoError(t, err)
	require.Empty(t, h.get(other.ID).Audit)
}

// A save that loses its race records the entry again on the fresh document: once, never twice, never lost.
func TestAuditEntrySurvivesAConflict(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	m := h.start(`{"source":"` + srcBase + `","destination":"` + dstBase + `","types":["Patient"]}`)
	h.store.set(func(s *hookStore) { s.conflictOnce = true })
	_, err := h.svc.Cancel(WithAudit(context.Background(), m.ID, auditEntry("cancelMigration", "bob")), m.ID)
	require.NoError(t, err)
	h.store.set(func(s *hookStore) { require.Equal(t, 1, s.conflicts, "the save lost a race") })
	got := h.get(m.ID).Audit
	require.Len(t, got, 1)
	require.Equal(t, "bob", got[0].Who)
}

// The document keeps the latest entries; older ones move to pages written once, named by their content, and the
// whole trail reads back in order.
func TestAuditPagesOlderEntries(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	ctx := context.Background()
	m := h.start(`{"source":"` + srcBase + `","destination":"` + dstBase + `","types":["Patient"]}`)
	const requests = 2*auditKept + auditPageSize + 7
	for i := range requests {
		_, _, err := h.svc.update(WithAudit(ctx, m.ID, auditEntry(fmt.Sprintf("op-%03d", i), "alice")), m.ID,
			func(m *Migration) (*effects, error) {
				m.Notes = appendNote(m.Notes, "note")
				return nil, nil
			})
		require.NoError(t, err)
		doc := h.get(m.ID)
		require.LessOrEqual(t, len(doc.Audit), auditKept+auditPageSize-1, "the document's trail stays short")
		require.NotEmpty(t, doc.Audit, "request %d recorded nothing", i)
		require.Equal(t, fmt.Sprintf("op-%03d", i), doc.Audit[len(doc.Audit)-1].Operation, "the latest is in the document")
	}
	doc := h.get(m.ID)
	require.Len(t, doc.AuditPages, (requests-auditKept)/auditPageSize)
	require.GreaterOrEqual(t, len(doc.Audit), auditKept)
	trail, err := h.svc.AuditTrail(ctx, m.ID)
	require.NoError(t, err)
	require.Len(t, trail, requests)
	for i, e := range trail {
		require.Equal(t, fmt.Sprintf("op-%03d", i), e.Operation, "oldest first, none lost or twice")
	}
	for i, name := range doc.AuditPages {
		require.True(t, strings.HasPrefix(name, filesPrefix+m.ID+fmt.Sprintf("/audit-%04d-", i+1)), name)
		raw, _, err := h.store.Get(ctx, name)
		require.NoError(t, err)
		var page []AuditEntry
		require.NoError(t, json.Unmarshal(raw, &page))
		require.Len(t, page, auditPageSize)
	}
	// A page changed after it was written is refused.
	raw, etag, err := h.store.Get(ctx, doc.AuditPages[0])
	require.NoError(t, err)
	_, err = h.store.Store.Put(ctx, doc.AuditPages[0], []byte(strings.Replace(string(raw), "alice", "mallory", 1)), etag, nil)
	require.NoError(t, err)
	_, err = h.svc.AuditTrail(ctx, m.ID)
	require.ErrorContains(t, err, "does not hold what it was written with")
}
