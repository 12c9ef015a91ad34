package migration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fhir-migrator/fhir-migrator/internal/fhir"
)

// At the cutover the destination's ids are held against the source's: what the source hard-deleted or purged
// (DELETE ?hardDelete=true, $purge-history: fhir-server DeletionService.cs, hardDelete.js "Completely delete the
// document and all of its histories") leaves no stub, so no export can carry it, and the destination keeps it
// until the cutover removes it. Each type's ids are listed on the destination a page at a time (_elements=id,
// never all held), looked up on the source 100 at a time, and one the source does not hold is read there: gone
// (404) is removed from the destination with a hard delete, deleted (410) with a delete; with history, a resource
// whose versions are more on the destination than on the source, whose current version is the same and of which
// the source holds only that one, was purged there and is purged on the destination. Ids found written directly
// on the destination are never removed: they are the operator's to judge (destination_written). A type the
// destination held resources of before the migration (or whose count before is unknown) is not reconciled: its
// ids the source lacks may be the destination's own. Once the cutover is recorded the destination is the live
// server: a later verification never reconciles.

// Reconcile modes (request reconcile).
const (
	ReconcileDelete = "delete"
	ReconcileReport = "report"
)

// reconcilePage is the size of one page of the destination's ids.
const reconcilePage = 1000

// Reconcile is the cutover's reconciliation: its cursor while it runs, then what it found.
type Reconcile struct {
	Mode  string   `json:"mode"`
	Types []string `json:"types"`
	// TypeIndex and Next are the cursor: the type being listed and the next page's link ("" for its first page);
	// PurgeCheck says whether this type's versions are compared resource by resource.
	TypeIndex  int    `json:"typeIndex"`
	Next       string `json:"next,omitempty"`
	PurgeCheck *bool  `json:"purgeCheck,omitempty"`
	Done       bool   `json:"done,omitempty"`
	// Skipped are the types not reconciled, with why.
	Skipped map[string]string `json:"skipped,omitempty"`
	// Checked counts the destination's ids looked at; Removed the resources deleted from the destination (or, in
	// report mode, Extra those it holds and the source does not); Purged the histories purged (or HistoryDiffers
	// those listed only).
	Checked        int64                      `json:"checked"`
	Removed        int64                      `json:"removed,omitempty"`
	Extra          int64                      `json:"extra,omitempty"`
	Purged         int64                      `json:"purged,omitempty"`
	HistoryDiffers int64                      `json:"historyDiffers,omitempty"`
	ByType         map[string]*ReconcileTally `json:"byType,omitempty"`
	// Listed are the first of them, as "Type/id: what was done"; Parts name the report blobs listing every one.
	Listed []string `json:"listed,omitempty"`
	Parts  []string `json:"parts,omitempty"`
	// Method is "counts" for a fast cutover (Compare: counts over _lastUpdated ranges on both servers, ids listed
	// only where they differ; Types then holds only the types whose every id is listed) or "ids" (every id listed).
	Method  string          `json:"method,omitempty"`
	Compare *CutoverCompare `json:"compare,omitempty"`
	// Missing lists the first resources the source holds and the destination does not, found by the comparison
	// (MissingCount counts them all; the parts list them).
	Missing      []string `json:"missing,omitempty"`
	MissingCount int64    `json:"missingCount,omitempty"`
	// StartedAt and FinishedAt time the reconciliation (part of a cutover's downtime).
	StartedAt  *time.Time `json:"startedAt,omitempty"`
	FinishedAt *time.Time `json:"finishedAt,omitempty"`
}

// ReconcileTally counts one type's reconciliation.
type ReconcileTally struct {
	Checked        int64 `json:"checked"`
	Removed        int64 `json:"removed,omitempty"`
	Extra          int64 `json:"extra,omitempty"`
	Purged         int64 `json:"purged,omitempty"`
	HistoryDiffers int64 `json:"historyDiffers,omitempty"`
	// Missing counts resources of the source the destination lacks, found by the cutover's count comparison.
	Missing int64 `json:"missing,omitempty"`
}

// reconcileDue reports whether this verification round reconciles first: the cutover of a synced migration.
func reconcileDue(m *Migration) bool {
	return m.Request.Reconcile != "" && m.Sync != nil && m.Sync.CutoverRequestedAt != nil && m.Sync.Round == nil &&
		m.Cutover == nil && (m.Verification.Reconcile == nil || !m.Verification.Reconcile.Done)
}

// reconcileStep is what one page of the reconciliation found and did.
type reconcileStep struct {
	typ                                     string
	checked, removed, extra, purged, differ int64
	lines                                   []string
	next                                    string
	purgeCheck                              *bool
}

// reconcileOpen is what a reconciliation (the cutover's, or a pass while syncing) starts from: both servers'
// clients, and the resources written directly on the destination (never the reconciliation's to remove), by
// "Type/id".
func (s *Service) reconcileOpen(ctx context.Context, m *Migration) (src, dst FHIRClient, written map[string]bool, err error) {
	if src, err = s.sourceClient(&m.Request); err != nil {
		return nil, nil, nil, fmt.Errorf("client for %s: %w", m.Request.Source, err)
	}
	if dst, err = s.cfg.FHIR(m.Request.Destination); err != nil {
		return nil, nil, nil, fmt.Errorf("client for %s: %w", m.Request.Destination, err)
	}
	all, err := s.allDestinationWrites(ctx, m.Sync.DestinationWrites)
	if err != nil {
		return nil, nil, nil, err
	}
	written = make(map[string]bool, len(all))
	for _, l := range all {
		written[l.Type+"/"+l.ID] = true
	}
	return src, dst, written, nil
}

// reconcile runs the reconciliation from its cursor, a page at a time, saving after each; when the budget is
// spent it sends the next message and answers false.
func (s *Service) reconcile(ctx context.Context, m *Migration, generation int) (bool, error) {
	src, dst, written, err := s.reconcileOpen(ctx, m)
	if err != nil {
		return false, err
	}
	started := s.now()
	for {
		rc := m.Verification.Reconcile
		if rc == nil {
			types, skipped := reconcileTypes(m)
			rc = &Reconcile{Mode: m.Request.Reconcile, ByType: map[string]*ReconcileTally{}, Skipped: skipped, Method: "ids",
				StartedAt: timePtr(s.now())}
			if fastCutover(m) {
				// Counts first; the types whose ids must all be listed join Types as the comparison finds them. What
				// the sync's passes removed is reported with what the cutover removes.
				rc.Method, rc.Compare = "counts", newCutoverCompare(m, types)
				if c := m.Sync.Checks; c != nil && c.Removed > 0 {
					rc.Removed = c.Removed
					for t, n := range c.RemovedByType {
						rc.ByType[t] = &ReconcileTally{Removed: n}
					}
					rc.Listed = slices.Clone(c.RemovedListed)
					rc.Parts = slices.Clone(c.Reports)
				}
			} else {
				rc.Types = types
			}
		}
		if cc := rc.Compare; cc != nil && !cc.Done && cc.TypeIndex < len(cc.Types) {
			res, t, err := s.compareStep(ctx, m, rc, src, dst, written)
			if err != nil {
				return false, err
			}
			more := s.now().Sub(started) >= verifyBudget
			if err := s.saveCompare(ctx, m.ID, generation, rc, t, res, more); err != nil {
				return false, err
			}
			if m, _, err = s.load(ctx, m.ID); err != nil {
				return false, err
			}
			if !verifiable(m, generation) || more {
				return false, nil
			}
			continue
		}
		if rc.Compare != nil && !rc.Compare.Done {
			rc = cloneReconcile(rc)
			rc.Compare.Done = true // no type to compare
		}
		if rc.TypeIndex >= len(rc.Types) {
			return true, s.saveReconcile(ctx, m.ID, generation, rc, nil, true)
		}
		step, err := s.reconcilePage(ctx, m, rc, src, dst, written)
		if err != nil {
			return false, err
		}
		more := s.now().Sub(started) >= verifyBudget
		if err := s.saveReconcile(ctx, m.ID, generation, rc, step, more); err != nil {
			return false, err
		}
		if m, _, err = s.load(ctx, m.ID); err != nil {
			return false, err
		}
		if !verifiable(m, generation) {
			return false, nil
		}
		if more {
			return false, nil
		}
	}
}

// reconcilePage lists one page of the current type's ids on the destination and reconciles them.
func (s *Service) reconcilePage(ctx context.Context, m *Migration, rc *Reconcile, src, dst FHIRClient, written map[string]bool) (*reconcileStep, error) {
	t := rc.Types[rc.TypeIndex]
	step := &reconcileStep{typ: t, purgeCheck: rc.PurgeCheck}
	if m.Request.History && step.purgeCheck == nil {
		// Versions are compared resource by resource only where the type's counts say they differ.
		srcN, err := src.HistoryCount(ctx, t, fhir.HistoryRange{})
		if err != nil {
			return nil, fmt.Errorf("count the history of %s on the source: %w", t, err)
		}
		dstN, err := dst.HistoryCount(ctx, t, fhir.HistoryRange{})
		if err != nil {
			return nil, fmt.Errorf("count the history of %s on the destination: %w", t, err)
		}
		check := dstN > srcN
		step.purgeCheck = &check
	}
	page, next, err := dst.SearchPage(ctx, t, url.Values{"_elements": {"id"}, "_count": {strconv.Itoa(reconcilePage)}}, rc.Next)
	if err != nil {
		return nil, fmt.Errorf("list the ids of %s on the destination: %w", t, err)
	}
	step.next = next
	var ids []string
	for _, raw := range page {
		var head struct {
			ResourceType string `json:"resourceType"`
			ID           string `json:"id"`
		}
		if json.Unmarshal(raw, &head) == nil && head.ResourceType == t && idPattern.MatchString(head.ID) {
			ids = append(ids, head.ID)
		}
	}
	step.checked = int64(len(ids))
	for start := 0; start < len(ids); start += idsPerSearch {
		chunk := ids[start:min(start+idsPerSearch, len(ids))]
		if err := s.reconcileChunk(ctx, m, t, chunk, src, dst, written, step); err != nil {
			return nil, err
		}
	}
	return step, nil
}

// reconcileChunk reconciles up to idsPerSearch ids of one type.
func (s *Service) reconcileChunk(ctx context.Context, m *Migration, t string, ids []string, src, dst FHIRClient,
	written map[string]bool, step *reconcileStep) error {
	found := map[string]bool{}
	q := url.Values{"_id": {strings.Join(ids, ",")}, "_elements": {"id"}, "_count": {strconv.Itoa(len(ids))}}
	if err := src.Search(ctx, t, q, func(r json.RawMessage) error {
		var head struct {
			ResourceType string `json:"resourceType"`
			ID           string `json:"id"`
		}
		if json.Unmarshal(r, &head) == nil && head.ResourceType == t {
			found[head.ID] = true
		}
		return nil
	}); err != nil {
		return fmt.Errorf("look up %d %s ids on the source: %w", len(ids), t, err)
	}
	del := m.Request.Reconcile == ReconcileDelete
	var compare []string // held by both: versions compared when the type's counts differ
	for _, id := range ids {
		key := t + "/" + id
		if written[key] {
			continue // written directly on the destination: named, not removed
		}
		if !found[id] {
			cur, err := src.Read(ctx, t, id)
			if err != nil {
				return fmt.Errorf("read %s on the source: %w", key, err)
			}
			if cur.Status == 200 {
				continue // written on the source since the search: the sync carried it
			}
			what := "hard-deleted or purged on the source"
			if cur.Status == 410 {
				what = "deleted on the source"
			}
			if !del {
				step.extra++
				step.lines = append(step.lines, key+": "+what+", still on the destination")
				continue
			}
			if err := dst.Delete(ctx, t, id, cur.Status == 404); err != nil {
				return fmt.Errorf("remove %s from the destination: %w", key, err)
			}
			step.removed++
			step.lines = append(step.lines, key+": "+what+": removed from the destination")
			continue
		}
		if step.purgeCheck != nil && *step.purgeCheck {
			compare = append(compare, id)
		}
	}
	steps := make([]reconcileStep, len(compare))
	errs := make([]error, len(compare))
	fanOut(len(compare), s.cfg.PollConcurrency, func(i int) {
		errs[i] = reconcileHistory(ctx, t, compare[i], src, dst, del, &steps[i])
	})
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for _, st := range steps {
		step.purged += st.purged
		step.differ += st.differ
		step.lines = append(step.lines, st.lines...)
	}
	return nil
}

// reconcileHistory compares one resource's versions on both servers: the source purged its history when it holds
// one version, the same current one as the destination, which holds more.
func reconcileHistory(ctx context.Context, t, id string, src, dst FHIRClient, del bool, step *reconcileStep) error {
	key := t + "/" + id
	srcN, err := src.ResourceHistoryCount(ctx, t, id)
	if err != nil {
		return fmt.Errorf("count the versions of %s on the source: %w", key, err)
	}
	dstN, err := dst.ResourceHistoryCount(ctx, t, id)
	if err != nil {
		return fmt.Errorf("count the versions of %s on the destination: %w", key, err)
	}
	if dstN <= srcN {
		return nil
	}
	s, err := src.Read(ctx, t, id)
	if err != nil {
		return fmt.Errorf("read %s on the source: %w", key, err)
	}
	d, err := dst.Read(ctx, t, id)
	if err != nil {
		return fmt.Errorf("read %s on the destination: %w", key, err)
	}
	if srcN != 1 || s.Status != d.Status || s.VersionID != d.VersionID {
		step.differ++
		step.lines = append(step.lines, fmt.Sprintf("%s: %d versions on the source, %d on the destination", key, srcN, dstN))
		return nil
	}
	if !del {
		step.differ++
		step.lines = append(step.lines, fmt.Sprintf("%s: purged on the source (%d versions on the destination)", key, dstN))
		return nil
	}
	if err := dst.PurgeHistory(ctx, t, id); err != nil {
		return fmt.Errorf("purge %s on the destination: %w", key, err)
	}
	step.purged++
	step.lines = append(step.lines, fmt.Sprintf("%s: purged on the source: %d older versions purged on the destination", key, dstN-1))
	return nil
}

// saveReconcile adds one step to the saved reconciliation (when its cursor is still the one the step started
// from: a re-sent message does nothing twice) and, with more, sends the next message.
func (s *Service) saveReconcile(ctx context.Context, id string, generation int, from *Reconcile, step *reconcileStep, more bool) error {
	var part string
	if step != nil && len(step.lines) > 0 {
		part = fmt.Sprintf("%s%s-reconcile/%d/%04d-%s.txt", reportPrefix, id, generation, from.TypeIndex, pageTag(from.Next))
		if err := s.putReport(ctx, part, []byte(strings.Join(step.lines, "\n")+"\n")); err != nil {
			return fmt.Errorf("write the reconciliation's list: %w", err)
		}
	}
	_, eff, err := s.update(ctx, id, func(m *Migration) (*effects, error) {
		if !verifiable(m, generation) {
			return nil, errUnchanged
		}
		cur := m.Verification.Reconcile
		if cur != nil && (cur.TypeIndex != from.TypeIndex || cur.Next != from.Next || cur.Done) {
			return nil, errUnchanged
		}
		rc := *cloneReconcile(from)
		if step != nil {
			tl := rc.ByType[step.typ]
			if tl == nil {
				tl = &ReconcileTally{}
				rc.ByType[step.typ] = tl
			}
			tl.Checked += step.checked
			tl.Removed += step.removed
			tl.Extra += step.extra
			tl.Purged += step.purged
			tl.HistoryDiffers += step.differ
			rc.Checked += step.checked
			rc.Removed += step.removed
			rc.Extra += step.extra
			rc.Purged += step.purged
			rc.HistoryDiffers += step.differ
			rc.Listed = append(rc.Listed, step.lines[:min(len(step.lines), max(maxListedRefused-len(rc.Listed), 0))]...)
			if part != "" {
				rc.Parts = append(rc.Parts, part)
			}
			rc.PurgeCheck = step.purgeCheck
			rc.Next = step.next
			if step.next == "" {
				rc.TypeIndex++
				rc.PurgeCheck = nil
			}
		}
		rc.Done = rc.TypeIndex >= len(rc.Types) && (rc.Compare == nil || rc.Compare.Done)
		if rc.Done {
			rc.FinishedAt = timePtr(s.now())
		}
		m.Verification.Reconcile = &rc
		m.Verification.DispatchAt = s.now()
		if !more || rc.Done {
			return nil, nil
		}
		e := &effects{}
		m.Verification.Dispatch++
		e.send(verifyMessage(m.ID, generation, m.Verification.Dispatch, time.Time{}))
		return e, nil
	})
	if err != nil && !errors.Is(err, errUnchanged) {
		return fmt.Errorf("save the reconciliation: %w", err)
	}
	s.perform(ctx, id, eff)
	return nil
}

// pageTag names a page of a listing in a blob name: a digest of its link.
func pageTag(next string) string {
	if next == "" {
		return "first"
	}
	h := uint32(2166136261)
	for i := range len(next) {
		h = (h ^ uint32(next[i])) * 16777619
	}
	return fmt.Sprintf("%08x", h)
}
