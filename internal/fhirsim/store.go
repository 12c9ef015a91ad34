package fhirsim

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// resource is one stored FHIR resource: its compact JSON and the fields the simulator searches on.
type resource struct {
	Type        string
	ID          string
	VersionID   string
	LastUpdated time.Time
	Raw         []byte
	// Deleted marks a deletion stub: Raw is {resourceType, id, meta} with the deleted-state extension, as the
	// service exports it.
	Deleted bool
}

func (r *resource) key() string { return r.Type + "/" + r.ID }

// resourceHeader is the part of a resource the simulator reads.
type resourceHeader struct {
	ResourceType string `json:"resourceType"`
	ID           string `json:"id"`
	Meta         *struct {
		VersionID   json.RawMessage `json:"versionId"`
		LastUpdated json.RawMessage `json:"lastUpdated"`
	} `json:"meta"`
}

var resourceIDRE = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)

// parsedResource is a resource read from outside: meta fields are raw, as the caller sent them.
type parsedResource struct {
	Type, ID    string
	VersionID   string // "" when absent or not a string
	LastUpdated string // "" when absent or not a string
	Compact     []byte
}

// parseResource checks that raw is a JSON object with a resourceType and a valid id, and compacts it.
func parseResource(raw []byte) (parsedResource, error) {
	var h resourceHeader
	if err := json.Unmarshal(raw, &h); err != nil {
		return parsedResource{}, fmt.Errorf("not a valid JSON resource: %w", err)
	}
	if h.ResourceType == "" {
		return parsedResource{}, errors.New("the resource has no resourceType")
	}
	if h.ID == "" {
		return parsedResource{}, errors.New("the resource has no id")
	}
	if !resourceIDRE.MatchString(h.ID) {
		return parsedResource{}, fmt.Errorf("the resource id %q is not a valid FHIR id", h.ID)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return parsedResource{}, fmt.Errorf("compact resource: %w", err)
	}
	p := parsedResource{Type: h.ResourceType, ID: h.ID, Compact: buf.Bytes()}
	if h.Meta != nil {
		_ = json.Unmarshal(h.Meta.VersionID, &p.VersionID)
		_ = json.Unmarshal(h.Meta.LastUpdated, &p.LastUpdated)
	}
	return p, nil
}

// withMeta returns raw with meta.versionId and meta.lastUpdated set, other fields kept.
func withMeta(raw []byte, versionID string, lastUpdated time.Time) ([]byte, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, fmt.Errorf("decode resource: %w", err)
	}
	meta := map[string]json.RawMessage{}
	if m, ok := obj["meta"]; ok {
		if err := json.Unmarshal(m, &meta); err != nil {
			return nil, fmt.Errorf("decode meta: %w", err)
		}
	}
	meta["versionId"], _ = json.Marshal(versionID)
	meta["lastUpdated"], _ = json.Marshal(formatInstant(lastUpdated))
	var err error
	if obj["meta"], err = json.Marshal(meta); err != nil {
		return nil, fmt.Errorf("encode meta: %w", err)
	}
	out, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("encode resource: %w", err)
	}
	return out, nil
}

// storedFrom turns a parsed resource whose meta is complete into a stored one; its lastUpdated is kept to the
// millisecond, as the service stores it (ResourceWrapperFactoryExtensions.cs).
func storedFrom(p parsedResource) (*resource, error) {
	r, err := parseFHIRTime(p.LastUpdated)
	if err != nil {
		return nil, fmt.Errorf("meta.lastUpdated: %w", err)
	}
	if at := r.start.Truncate(time.Millisecond); !at.Equal(r.start) {
		return stamped(p, versionNumber(p.VersionID), at)
	}
	return &resource{Type: p.Type, ID: p.ID, VersionID: p.VersionID, LastUpdated: r.start, Raw: p.Compact}, nil
}

// stamped returns p as stored with the given version and lastUpdated written into its meta.
func stamped(p parsedResource, version int, lastUpdated time.Time) (*resource, error) {
	raw, err := withMeta(p.Compact, strconv.Itoa(version), lastUpdated)
	if err != nil {
		return nil, err
	}
	return &resource{Type: p.Type, ID: p.ID, VersionID: strconv.Itoa(version), LastUpdated: lastUpdated.UTC().Truncate(time.Millisecond), Raw: raw}, nil
}

// versionNumber is the integer value of a versionId, 0 when it is not one.
func versionNumber(v string) int {
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// resourceStore keeps every version of every resource, by type and id, with the indexes a FHIR service's
// database has: current versions by key, and by (lastUpdated, id) for date ranges and _sort; older versions and
// deletion stubs (history) by id, and by lastUpdated for exports of history. The sorted views are rebuilt on the
// first query after a write, so a bulk load pays for one sort and a lookup by id never scans.
type resourceStore struct {
	mu     sync.RWMutex
	byType map[string]*typeIndex
}

// typeIndex holds one type's resources; byKey (by id) and byTime (by lastUpdated, then id) are nil while stale.
// byID holds current versions only: a deleted resource leaves it (and search) and its stub ends its history.
type typeIndex struct {
	byID          map[string]*resource
	byKey, byTime []*resource
	// older holds, per id, every version that is not current, by version ascending; olderByTime is their time
	// index (nil while stale) and olderN their number.
	older       map[string][]*resource
	olderByTime []*resource
	olderN      int
}

// archive puts r into the id's history, in version order.
func (ix *typeIndex) archive(r *resource) {
	h := ix.older[r.ID]
	i, _ := slices.BinarySearchFunc(h, versionNumber(r.VersionID), func(x *resource, v int) int {
		return cmp.Compare(versionNumber(x.VersionID), v)
	})
	ix.older[r.ID] = slices.Insert(h, i, r)
	ix.olderN++
	ix.olderByTime = nil
}

// versions are every stored version of one resource.
type versions struct {
	current *resource   // nil when absent or deleted
	older   []*resource // by version ascending; the last is a stub when the resource is deleted
}

// latest is the highest version: the current one, or the newest of the history (a stub when deleted).
func (v versions) latest() *resource {
	if v.current != nil {
		return v.current
	}
	if len(v.older) > 0 {
		return v.older[len(v.older)-1]
	}
	return nil
}

// find returns the stored version numbered n, or nil.
func (v versions) find(n int) *resource {
	if v.current != nil && versionNumber(v.current.VersionID) == n {
		return v.current
	}
	for _, r := range v.older {
		if versionNumber(r.VersionID) == n {
			return r
		}
	}
	return nil
}

// all lists every version, oldest first.
func (v versions) all() []*resource {
	out := slices.Clone(v.older)
	if v.current != nil {
		out = append(out, v.current)
	}
	return out
}

// change is what a write decides: latest becomes the newest version (a stub deletes the resource), older goes
// into the history, and each of insert takes its place by version number (an import of several versions). All
// empty: nothing changes.
type change struct {
	latest, older *resource
	insert        []*resource
}

func newResourceStore() *resourceStore {
	return &resourceStore{byType: map[string]*typeIndex{}}
}

func (s *resourceStore) put(r *resource) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.putLocked(r)
}

// putLocked makes r the newest version of its resource: the current one moves to the history, and a stub
// deletes the resource.
func (s *resourceStore) putLocked(r *resource) {
	ix := s.index(r.Type)
	if cur := ix.byID[r.ID]; cur != nil {
		ix.archive(cur)
		ix.unsort(cur)
	}
	if r.Deleted {
		delete(ix.byID, r.ID)
		ix.archive(r)
	} else {
		ix.byID[r.ID] = r
		ix.sortIn(r)
	}
}

// sortIn and unsort keep the sorted views, once built, up to date with one write (a binary search and a move of
// the tail, not a sort): a source written while it is searched does not sort its whole index per write.
func (ix *typeIndex) sortIn(r *resource) {
	if ix.byKey == nil || ix.byTime == nil {
		ix.byKey, ix.byTime = nil, nil
		return
	}
	i, _ := slices.BinarySearchFunc(ix.byKey, r.ID, func(x *resource, id string) int { return cmp.Compare(x.ID, id) })
	ix.byKey = slices.Insert(ix.byKey, i, r)
	j, _ := slices.BinarySearchFunc(ix.byTime, r, byTime)
	ix.byTime = slices.Insert(ix.byTime, j, r)
}

func (ix *typeIndex) unsort(r *resource) {
	if ix.byKey == nil || ix.byTime == nil {
		ix.byKey, ix.byTime = nil, nil
		return
	}
	if i, ok := slices.BinarySearchFunc(ix.byKey, r.ID, func(x *resource, id string) int { return cmp.Compare(x.ID, id) }); ok {
		ix.byKey = slices.Delete(ix.byKey, i, i+1)
	}
	if j, ok := slices.BinarySearchFunc(ix.byTime, r, byTime); ok {
		ix.byTime = slices.Delete(ix.byTime, j, j+1)
	}
}

func (s *resourceStore) index(typ string) *typeIndex {
	ix := s.byType[typ]
	if ix == nil {
		ix = &typeIndex{byID: map[string]*resource{}, older: map[string][]*resource{}}
		s.byType[typ] = ix
	}
	return ix
}

func (s *resourceStore) versionsLocked(typ, id string) versions {
	ix := s.byType[typ]
	if ix == nil {
		return versions{}
	}
	return versions{current: ix.byID[id], older: ix.older[id]}
}

// get returns every version of typ/id.
func (s *resourceStore) get(typ, id string) versions {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v := s.versionsLocked(typ, id)
	v.older = slices.Clone(v.older)
	return v
}

// update applies what decide makes of the versions of typ/id, atomically.
func (s *resourceStore) update(typ, id string, decide func(v versions) (change, error)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := decide(s.versionsLocked(typ, id))
	if err != nil {
		return err
	}
	if c.latest != nil {
		s.putLocked(c.latest)
	}
	if c.older != nil {
		s.index(typ).archive(c.older)
	}
	for _, r := range c.insert {
		s.insertLocked(r)
	}
	return nil
}

// insertLocked adds one version of a resource whose number is not stored yet: the highest version is the current
// one (a stub deletes the resource), any other goes into the history.
func (s *resourceStore) insertLocked(r *resource) {
	ix := s.index(r.Type)
	l := versions{current: ix.byID[r.ID], older: ix.older[r.ID]}.latest()
	if l == nil || versionNumber(r.VersionID) > versionNumber(l.VersionID) {
		s.putLocked(r)
		return
	}
	ix.archive(r)
}

// hardDelete removes every version of typ/id, as DELETE ?hardDelete=true does (nothing is left for a read, a
// history or an export); it reports whether anything was stored.
func (s *resourceStore) hardDelete(typ, id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	ix := s.byType[typ]
	if ix == nil {
		return false
	}
	_, had := ix.byID[id]
	h := ix.older[id]
	if !had && len(h) == 0 {
		return false
	}
	if cur := ix.byID[id]; cur != nil {
		ix.unsort(cur)
	}
	delete(ix.byID, id)
	delete(ix.older, id)
	ix.olderN -= len(h)
	ix.olderByTime = nil
	return true
}

// purgeHistory removes the older versions of typ/id and keeps its current one (a deleted resource keeps its
// deletion stub), as $purge-history does.
func (s *resourceStore) purgeHistory(typ, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ix := s.byType[typ]
	if ix == nil {
		return
	}
	h := ix.older[id]
	var keep []*resource
	if ix.byID[id] == nil && len(h) > 0 && h[len(h)-1].Deleted {
		keep = h[len(h)-1:]
	}
	ix.olderN -= len(h) - len(keep)
	if keep == nil {
		delete(ix.older, id)
	} else {
		ix.older[id] = keep
	}
	ix.olderByTime = nil
}

// currentStub reports whether r is the deletion stub a deleted resource ends with (not an older stub of a
// resource written again since).
func (ix *typeIndex) currentStub(r *resource) bool {
	if !r.Deleted || ix.byID[r.ID] != nil {
		return false
	}
	h := ix.older[r.ID]
	return len(h) > 0 && h[len(h)-1] == r
}

// historyCount counts every version of typ (every type when typ is ""): current, older and deletion stubs.
func (s *resourceStore) historyCount(typ string) int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := 0
	for t, ix := range s.byType {
		if typ == "" || t == typ {
			n += len(ix.byID) + ix.olderN
		}
	}
	return n
}

// olderInRange lists typ's history versions whose own lastUpdated is in [from, to), by lastUpdated then id.
func (s *resourceStore) olderInRangeLocked(typ string, from, to time.Time) []*resource {
	ix := s.byType[typ]
	if ix == nil || ix.olderN == 0 {
		return nil
	}
	if ix.olderByTime == nil {
		ix.olderByTime = make([]*resource, 0, ix.olderN)
		for _, h := range ix.older {
			ix.olderByTime = append(ix.olderByTime, h...)
		}
		slices.SortFunc(ix.olderByTime, func(a, b *resource) int {
			return cmp.Or(byTime(a, b), cmp.Compare(versionNumber(a.VersionID), versionNumber(b.VersionID)))
		})
	}
	list := ix.olderByTime
	lo, _ := slices.BinarySearchFunc(list, from, func(r *resource, t time.Time) int { return cmp.Or(r.LastUpdated.Compare(t), 1) })
	hi, _ := slices.BinarySearchFunc(list, to, func(r *resource, t time.Time) int { return cmp.Or(r.LastUpdated.Compare(t), 1) })
	return slices.Clone(list[lo:max(lo, hi)])
}

// types lists the resource types that have resources, sorted.
func (s *resourceStore) types() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.typesLocked()
}

func (s *resourceStore) typesLocked() []string {
	out := make([]string, 0, len(s.byType))
	for t, ix := range s.byType {
		if len(ix.byID) > 0 {
			out = append(out, t)
		}
	}
	slices.Sort(out)
	return out
}

// sorted returns the type's index with its sorted views up to date. Caller holds s.mu for writing.
func (s *resourceStore) sorted(typ string) *typeIndex {
	ix := s.byType[typ]
	if ix == nil {
		return &typeIndex{}
	}
	if ix.byKey == nil {
		ix.byKey = make([]*resource, 0, len(ix.byID))
		for _, r := range ix.byID {
			ix.byKey = append(ix.byKey, r)
		}
		slices.SortFunc(ix.byKey, func(a, b *resource) int { return cmp.Compare(a.ID, b.ID) })
	}
	if ix.byTime == nil {
		ix.byTime = slices.Clone(ix.byKey)
		slices.SortStableFunc(ix.byTime, byTime)
	}
	return ix
}

func byTime(a, b *resource) int {
	return cmp.Or(a.LastUpdated.Compare(b.LastUpdated), cmp.Compare(a.ID, b.ID))
}

// query is one search over the store.
type query struct {
	typ   string          // "" for every type
	ids   map[string]bool // nil: any id
	dates []dateFilter
	// match applies the remaining filters (token parameters); nil matches everything.
	match func(*resource) bool
	// byTime orders by lastUpdated (desc: newest first) instead of by type and id.
	byTime, desc bool
	// after is the cursor of the previous page: the sort key of its last resource ("" for the first page).
	after string
	// limit bounds the page; countOnly counts every match and returns no page.
	limit     int
	countOnly bool
}

// sortKey is a resource's place in the order of q, as a cursor.
func (q query) sortKey(r *resource) string {
	if q.byTime {
		return r.LastUpdated.UTC().Format("2006-01-02T15:04:05.000000000Z") + "|" + r.key() // fixed width: sorts as it compares
	}
	return r.key()
}

// find answers q: the number of matches when countOnly, else one page of at most limit matches after the cursor
// and whether more follow.
func (s *resourceStore) find(q query) (total int, page []*resource, more bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.findLocked(q)
}

// exportRange reads, in one moment (under one lock), what an export of types takes: for each type, the current
// resources q selects and, with history or deleted, the older versions or deletion stubs of the range, by
// lastUpdated. Without types, every type that has a resource, or with history or deleted a stored version.
func (s *resourceStore) exportRange(types []string, q func(typ string) query, history, deleted bool) []*resource {
	s.mu.Lock()
	defer s.mu.Unlock()
	if types == nil {
		for t, ix := range s.byType {
			if len(ix.byID) > 0 || ((history || deleted) && ix.olderN > 0) {
				types = append(types, t)
			}
		}
		slices.Sort(types)
	}
	var out []*resource
	for _, t := range types {
		tq := q(t)
		_, page, _ := s.findLocked(tq)
		if history || deleted {
			from, to, _ := dateRange(tq.dates)
			ix := s.byType[t]
			for _, r := range s.olderInRangeLocked(t, from, to) {
				// _history brings older versions; _deleted the stubs, and without _history only the current ones
				// (Cosmos QueryBuilder adds isHistory = false when History is not asked for).
				if (r.Deleted && deleted && (history || ix.currentStub(r))) || (!r.Deleted && history) {
					page = append(page, r)
				}
			}
			slices.SortStableFunc(page, func(a, b *resource) int {
				return cmp.Or(byTime(a, b), cmp.Compare(versionNumber(a.VersionID), versionNumber(b.VersionID)))
			})
		}
		out = append(out, page...)
	}
	return out
}

func (s *resourceStore) findLocked(q query) (total int, page []*resource, more bool) {
	types := []string{q.typ}
	if q.typ == "" {
		types = s.typesLocked()
	}
	if q.byTime && len(types) > 1 {
		return s.findAcrossTypesByTime(q, types)
	}
	if q.desc {
		slices.Reverse(types)
	}
	for _, t := range types {
		if !q.countOnly && q.after != "" && !q.byTime {
			if ty, _, _ := strings.Cut(q.after, "/"); (!q.desc && t < ty) || (q.desc && t > ty) {
				continue // the cursor is past this type
			}
		}
		cands := s.candidates(t, q)
		if q.countOnly && q.match == nil && q.ids == nil {
			total += len(cands) // a range of the index: no scan
			continue
		}
		if !q.countOnly && q.after != "" {
			// The candidates are in q's order: the next page starts past the cursor, found by a binary search, not by
			// a scan from the first.
			cands = cands[sort.Search(len(cands), func(i int) bool { return q.pastCursor(cands[i]) }):]
		}
		for _, r := range cands {
			if !q.keep(r) {
				continue
			}
			if q.countOnly {
				total++
				continue
			}
			if q.after != "" && !q.pastCursor(r) {
				continue
			}
			if len(page) == q.limit {
				return total, page, true
			}
			page = append(page, r)
		}
	}
	return total, page, false
}

// findAcrossTypesByTime orders every type's matches by lastUpdated (a system search sorted by _lastUpdated).
func (s *resourceStore) findAcrossTypesByTime(q query, types []string) (int, []*resource, bool) {
	var all []*resource
	for _, t := range types {
		for _, r := range s.candidates(t, q) {
			if q.keep(r) {
				all = append(all, r)
			}
		}
	}
	if q.countOnly {
		return len(all), nil, false
	}
	slices.SortFunc(all, func(a, b *resource) int { return cmp.Or(byTime(a, b), cmp.Compare(a.Type, b.Type)) })
	if q.desc {
		slices.Reverse(all)
	}
	var page []*resource
	for _, r := range all {
		if q.after != "" && !q.pastCursor(r) {
			continue
		}
		if len(page) == q.limit {
			return 0, page, true
		}
		page = append(page, r)
	}
	return 0, page, false
}

// candidates are the type's resources q may match, in q's order: the ids looked up by key, the range of the
// time index the date filters allow, or the whole index.
func (s *resourceStore) candidates(typ string, q query) []*resource {
	ix := s.sorted(typ)
	if q.ids != nil {
		var out []*resource
		for id := range q.ids {
			if r := ix.byID[id]; r != nil {
				out = append(out, r)
			}
		}
		if q.byTime {
			slices.SortFunc(out, byTime)
		} else {
			slices.SortFunc(out, func(a, b *resource) int { return cmp.Compare(a.ID, b.ID) })
		}
		if q.desc {
			slices.Reverse(out)
		}
		return out
	}
	list := ix.byKey
	if len(q.dates) > 0 || q.byTime {
		from, to, ok := dateRange(q.dates)
		list = ix.byTime
		if ok {
			lo, _ := slices.BinarySearchFunc(list, from, func(r *resource, t time.Time) int {
				return cmp.Or(r.LastUpdated.Compare(t), 1)
			})
			hi, _ := slices.BinarySearchFunc(list, to, func(r *resource, t time.Time) int {
				return cmp.Or(r.LastUpdated.Compare(t), 1)
			})
			list = list[lo:max(lo, hi)]
		}
		if !q.byTime && !q.countOnly {
			list = slices.Clone(list)
			slices.SortFunc(list, func(a, b *resource) int { return cmp.Compare(a.ID, b.ID) })
		}
	}
	if q.desc {
		list = slices.Clone(list)
		slices.Reverse(list)
	}
	return list
}

// keep applies the filters the candidates did not: dates (a range is exact only for ge/gt/le/lt/eq), ids and
// the token filters.
func (q query) keep(r *resource) bool {
	if q.ids != nil && !q.ids[r.ID] {
		return false
	}
	for _, f := range q.dates {
		if !f.match(r.LastUpdated) {
			return false
		}
	}
	return q.match == nil || q.match(r)
}

// pastCursor reports whether r comes after the cursor in q's order.
func (q query) pastCursor(r *resource) bool {
	k := q.sortKey(r)
	if q.desc {
		return k < q.after
	}
	return k > q.after
}

// dateRange is the [from, to) the date filters allow together, when they are all ranges (ne is not one).
func dateRange(filters []dateFilter) (from, to time.Time, ok bool) {
	from, to = time.Time{}, time.Unix(1<<40, 0)
	for _, f := range filters {
		switch f.prefix {
		case "ge":
			from = later(from, f.r.start)
		case "gt":
			from = later(from, f.r.end)
		case "le":
			to = earlier(to, f.r.end)
		case "lt":
			to = earlier(to, f.r.start)
		case "eq":
			from, to = later(from, f.r.start), earlier(to, f.r.end)
		default:
			return time.Time{}, time.Time{}, false
		}
	}
	return from, to, true
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func earlier(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// historyQuery is one _history search: versions of a type (every type when typ is "") whose own lastUpdated is in
// [from, to), oldest first unless desc, after the cursor.
type historyQuery struct {
	typ      string
	from, to time.Time
	desc     bool
	after    string
	limit    int
}

// historyKey is a version's place in history order, as a cursor: time (fixed width, so that it sorts as it
// compares), then type, id and version.
func historyKey(r *resource) string {
	return fmt.Sprintf("%s|%s|%s|%010d", r.LastUpdated.UTC().Format("2006-01-02T15:04:05.000000000Z"), r.Type, r.ID, versionNumber(r.VersionID))
}

// historyCountRange counts the versions hq selects: ranges of the time indexes, no scan.
func (s *resourceStore) historyCountRange(hq historyQuery) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, t := range s.historyTypesLocked(hq.typ) {
		cur, old := s.versionsInRangeLocked(t, hq.from, hq.to)
		n += len(cur) + len(old)
	}
	return n
}

// historyPage lists one page of the versions hq selects and reports whether more follow.
func (s *resourceStore) historyPage(hq historyQuery) ([]*resource, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var all []*resource
	for _, t := range s.historyTypesLocked(hq.typ) {
		cur, old := s.versionsInRangeLocked(t, hq.from, hq.to)
		all = append(append(all, cur...), old...)
	}
	keys := make(map[*resource]string, len(all))
	for _, r := range all {
		keys[r] = historyKey(r)
	}
	slices.SortFunc(all, func(a, b *resource) int { return strings.Compare(keys[a], keys[b]) })
	if hq.desc {
		slices.Reverse(all)
	}
	var page []*resource
	for _, r := range all {
		if hq.after != "" && ((!hq.desc && keys[r] <= hq.after) || (hq.desc && keys[r] >= hq.after)) {
			continue
		}
		if len(page) == hq.limit {
			return page, true
		}
		page = append(page, r)
	}
	return page, false
}

// historyTypesLocked are the types a history query reads: typ, or every type with a stored version.
func (s *resourceStore) historyTypesLocked(typ string) []string {
	if typ != "" {
		return []string{typ}
	}
	var out []string
	for t, ix := range s.byType {
		if len(ix.byID) > 0 || ix.olderN > 0 {
			out = append(out, t)
		}
	}
	slices.Sort(out)
	return out
}

// versionsInRangeLocked are typ's current versions and history versions whose lastUpdated is in [from, to).
func (s *resourceStore) versionsInRangeLocked(typ string, from, to time.Time) (current, older []*resource) {
	ix := s.sorted(typ)
	list := ix.byTime
	lo, _ := slices.BinarySearchFunc(list, from, func(r *resource, t time.Time) int { return cmp.Or(r.LastUpdated.Compare(t), 1) })
	hi, _ := slices.BinarySearchFunc(list, to, func(r *resource, t time.Time) int { return cmp.Or(r.LastUpdated.Compare(t), 1) })
	return list[lo:max(lo, hi)], s.olderInRangeLocked(typ, from, to)
}
