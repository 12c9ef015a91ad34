package fhirsim

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
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

// storedFrom turns a parsed resource whose meta is complete into a stored one.
func storedFrom(p parsedResource) (*resource, error) {
	r, err := parseFHIRTime(p.LastUpdated)
	if err != nil {
		return nil, fmt.Errorf("meta.lastUpdated: %w", err)
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

// resourceStore keeps the current version of every resource, by type and id.
type resourceStore struct {
	mu     sync.RWMutex
	byType map[string]map[string]*resource
}

func newResourceStore() *resourceStore {
	return &resourceStore{byType: map[string]map[string]*resource{}}
}

func (s *resourceStore) put(r *resource) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.putLocked(r)
}

func (s *resourceStore) putLocked(r *resource) {
	m := s.byType[r.Type]
	if m == nil {
		m = map[string]*resource{}
		s.byType[r.Type] = m
	}
	m[r.ID] = r
}

func (s *resourceStore) get(typ, id string) *resource {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.byType[typ][id]
}

// update replaces the resource typ/id with what decide returns (nil: keep), atomically.
func (s *resourceStore) update(typ, id string, decide func(existing *resource) (*resource, error)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	next, err := decide(s.byType[typ][id])
	if err != nil {
		return err
	}
	if next != nil {
		s.putLocked(next)
	}
	return nil
}

// types lists the resource types that have resources, sorted.
func (s *resourceStore) types() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]string, 0, len(s.byType))
	for t, m := range s.byType {
		if len(m) > 0 {
			out = append(out, t)
		}
	}
	slices.Sort(out)
	return out
}

// list returns the resources of one type (every type when typ is "") that keep passes, sorted by type and id.
func (s *resourceStore) list(typ string, keep func(*resource) bool) []*resource {
	s.mu.RLock()
	var out []*resource
	for t, m := range s.byType {
		if typ != "" && t != typ {
			continue
		}
		for _, r := range m {
			if keep(r) {
				out = append(out, r)
			}
		}
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b *resource) int {
		return cmp.Or(cmp.Compare(a.Type, b.Type), cmp.Compare(a.ID, b.ID))
	})
	return out
}
