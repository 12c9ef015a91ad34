package migration

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/fhir-migrator/fhir-migrator/internal/store"
)

// The audit trail: every request of the API that changes a migration (start, cancel, verify again, cut over,
// repair, clean up) is recorded in the migration's document, in the same save as the change it made: who, what,
// when and from where. The handler says who and what (it reads the caller from the request); the engine records
// it with the first change it saves for that request. The actor travels in the request's context (WithAudit), so
// no operation's signature names it: Start, Cancel, Reverify, Cutover, Repair and Cleanup are called as before,
// and a call without an audit entry in its context (a test, the engine's own steps) records nothing.
//
// The document keeps the latest entries (auditKept to auditKept+auditPageSize-1 of them); older ones move, a page
// at a time, to blobs beside the document, each named by its content and written once (as the sync's rounds are),
// listed in auditPages oldest first.

// Audit trail bounds: the entries the document keeps, and how many move to a page at once.
const (
	auditKept     = 50
	auditPageSize = 50
)

// AuditEntry is one request that changed a migration.
type AuditEntry struct {
	// At is when the change was saved.
	At time.Time `json:"at"`
	// Operation is the API operation, by its OpenAPI operationId (startMigration, cancelMigration, verifyAgain,
	// cutOver, repair, cleanUp).
	Operation string `json:"operation"`
	// Who is the caller: the signed-in principal's name (its object id when it has no name), or "function key"
	// when the API is reached with function keys (AUTH_MODE keys).
	Who string `json:"who"`
	// ObjectID and Name are the principal's object id and name. Verified: the platform signed the principal in
	// (AUTH_MODE entra); otherwise they are what the request's X-MS-CLIENT-PRINCIPAL headers claimed, which
	// nothing checked (a client may send them), kept for reference only.
	ObjectID string `json:"objectId,omitempty"`
	Name     string `json:"name,omitempty"`
	Verified bool   `json:"verified"`
	// Client is the caller's address: the first hop of X-Forwarded-For (which the caller may have set itself);
	// ForwardedFor is the whole chain when it has more than one hop (the last one added by the platform).
	Client       string `json:"client,omitempty"`
	ForwardedFor string `json:"forwardedFor,omitempty"`
	// Fields are the request body's fields that matter, as sent (URLs without query or user info; no secret).
	Fields map[string]any `json:"fields,omitempty"`
	// InvocationID is the Functions host's invocation id of the request (its log lines carry it too).
	InvocationID string `json:"invocationId,omitempty"`
}

type auditKey struct{}

// auditSlot is a request's entry, recorded once: by the first save of a change to the migration it names.
type auditSlot struct {
	id    string // the migration the request names; "" for a start (a new migration)
	entry *AuditEntry

	mu    sync.Mutex
	saved bool
}

// WithAudit returns a context under which the first change the service saves to migration id (for a start, id
// "": the new migration) records e in that migration's audit trail, as e reads at that save. A request that
// changes nothing (refused, a dry run, a cutover asked again) records nothing.
func WithAudit(ctx context.Context, id string, e *AuditEntry) context.Context {
	return context.WithValue(ctx, auditKey{}, &auditSlot{id: id, entry: e})
}

// pendingAudit is the request's audit slot when its entry is still to be recorded in migration id.
func pendingAudit(ctx context.Context, id string, creating bool) *auditSlot {
	slot, _ := ctx.Value(auditKey{}).(*auditSlot)
	if slot == nil || slot.entry == nil {
		return nil
	}
	if creating != (slot.id == "") || (!creating && slot.id != id) {
		return nil
	}
	slot.mu.Lock()
	defer slot.mu.Unlock()
	if slot.saved {
		return nil
	}
	return slot
}

// markSaved records that the slot's entry is in a saved document.
func (a *auditSlot) markSaved() {
	if a == nil {
		return
	}
	a.mu.Lock()
	a.saved = true
	a.mu.Unlock()
}

// recordAudit appends the request's audit entry, if one is pending for m, to m's trail (paging the oldest out when
// due) and returns its slot, to be marked saved once the document is; nil when there is nothing to record. It runs
// on the document about to be saved, so a save that loses its race records the entry again on the fresh document.
func (s *Service) recordAudit(ctx context.Context, m *Migration, creating bool) (*auditSlot, error) {
	slot := pendingAudit(ctx, m.ID, creating)
	if slot == nil {
		return nil, nil
	}
	e := *slot.entry
	e.At = s.now().UTC()
	m.Audit = append(m.Audit, e)
	if err := s.pageAudit(ctx, m); err != nil {
		return nil, err
	}
	return slot, nil
}

// pageAudit moves all but the latest auditKept entries into a blob written once (named by its content) once
// auditPageSize of them have gathered.
func (s *Service) pageAudit(ctx context.Context, m *Migration) error {
	if len(m.Audit) < auditKept+auditPageSize {
		return nil
	}
	old := m.Audit[:len(m.Audit)-auditKept]
	data, err := json.Marshal(old)
	if err != nil {
		return fmt.Errorf("encode audit entries: %w", err)
	}
	name := auditPageName(m.ID, len(m.AuditPages)+1, data)
	if _, err := s.cfg.Store.Put(ctx, name, data, "", map[string]string{"kind": "audit"}); err != nil && !errors.Is(err, store.ErrConflict) {
		return fmt.Errorf("write audit page %s: %w", name, err) // ErrConflict: written before, same content
	}
	m.AuditPages = append(m.AuditPages, name)
	m.Audit = slices.Clone(m.Audit[len(old):])
	return nil
}

func auditPageName(id string, n int, data []byte) string {
	sum := sha256.Sum256(data)
	return fmt.Sprintf("%s%s/audit-%04d-%x.json", filesPrefix, id, n, sum[:8])
}

// AuditTrail is every audit entry of a migration, oldest first: its pages, then the document's own.
func (s *Service) AuditTrail(ctx context.Context, id string) ([]AuditEntry, error) {
	m, _, err := s.load(ctx, id)
	if err != nil {
		return nil, err
	}
	var all []AuditEntry
	for i, name := range m.AuditPages {
		raw, _, err := s.cfg.Store.Get(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("read audit page %s: %w", name, err)
		}
		// A page's name is its content's hash: a page changed since it was written is refused.
		if want := auditPageName(m.ID, i+1, raw); want != name {
			return nil, fmt.Errorf("audit page %s does not hold what it was written with (its content hashes to %s)", name, want)
		}
		var page []AuditEntry
		if err := json.Unmarshal(raw, &page); err != nil {
			return nil, fmt.Errorf("decode audit page %s: %w", name, err)
		}
		all = append(all, page...)
	}
	return append(all, m.Audit...), nil
}
