package migration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/fhir-migrator/fhir-migrator/internal/store"
)

// Slot kinds in a host document.
const (
	slotExport = "export"
	slotImport = "import"
)

// hostSlots is the document "hosts/{host_port}.json": the jobs running on one FHIR host, across all migrations,
// as {kind: {holder: acquiredAt}} with holder "{migrationId}/{jobId}".
type hostSlots map[string]map[string]time.Time

// hostDocName names the slot document of the host of a FHIR base URL.
func hostDocName(baseURL string) (string, error) {
	u, err := url.Parse(baseURL)
	if err != nil || u.Hostname() == "" {
		return "", fmt.Errorf("host of %q: not an absolute URL", baseURL)
	}
	port := u.Port()
	if port == "" {
		port = "443"
		if strings.EqualFold(u.Scheme, "http") {
			port = "80"
		}
	}
	host := strings.NewReplacer(":", "-", "/", "-").Replace(strings.ToLower(u.Hostname()))
	return "hosts/" + host + "_" + port + ".json", nil
}

func (s *Service) loadSlots(ctx context.Context, name string) (hostSlots, string, error) {
	data, etag, err := s.cfg.Store.Get(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return hostSlots{}, "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("load %s: %w", name, err)
	}
	slots := hostSlots{}
	if err := json.Unmarshal(data, &slots); err != nil {
		return nil, "", fmt.Errorf("decode %s: %w", name, err)
	}
	return slots, etag, nil
}

func (s *Service) saveSlots(ctx context.Context, name string, slots hostSlots, etag string) error {
	data, err := json.Marshal(slots)
	if err != nil {
		return fmt.Errorf("encode %s: %w", name, err)
	}
	if _, err := s.cfg.Store.Put(ctx, name, data, etag, nil); err != nil {
		return fmt.Errorf("save %s: %w", name, err)
	}
	return nil
}

// acquireSlot takes one of limit slots of kind on the host of baseURL for holder; it is idempotent for the same
// holder. When the host is full, holders that have not been running for RedriveAfter are checked against their
// migration documents and evicted when their job no longer runs (a slot leaked by a crash).
func (s *Service) acquireSlot(ctx context.Context, baseURL, kind, holder string, limit int) (bool, error) {
	name, err := hostDocName(baseURL)
	if err != nil {
		return false, err
	}
	var stale map[string]bool
	for range maxConflictRetries {
		slots, etag, err := s.loadSlots(ctx, name)
		if err != nil {
			return false, err
		}
		held := slots[kind]
		if held == nil {
			held = map[string]time.Time{}
			slots[kind] = held
		}
		if _, ok := held[holder]; ok {
			return true, nil
		}
		if len(held) >= limit {
			if stale == nil {
				stale = s.staleHolders(ctx, held)
			}
			for h := range stale {
				delete(held, h)
			}
			if len(held) >= limit {
				return false, nil
			}
		}
		held[holder] = s.now()
		err = s.saveSlots(ctx, name, slots, etag)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return false, err
		}
		return true, nil
	}
	return false, fmt.Errorf("acquire %s slot on %s: %w", kind, name, store.ErrConflict)
}

// staleHolders are the holders older than RedriveAfter whose job is not starting or running.
func (s *Service) staleHolders(ctx context.Context, held map[string]time.Time) map[string]bool {
	stale := map[string]bool{}
	cutoff := s.now().Add(-s.cfg.RedriveAfter)
	for h, at := range held {
		if at.After(cutoff) {
			continue
		}
		migrationID, jobID, ok := strings.Cut(h, "/")
		if !ok {
			stale[h] = true
			continue
		}
		m, _, err := s.load(ctx, migrationID)
		if errors.Is(err, store.ErrNotFound) {
			stale[h] = true
			continue
		}
		if err != nil {
			continue // unknown: keep the slot
		}
		j := m.job(jobID)
		if m.Status.Terminal() || j == nil || (j.State != JobStarting && j.State != JobRunning) {
			s.log.Warn("evicting a leaked slot", "migration", migrationID, "job", jobID, "holder", h, "acquiredAt", at)
			stale[h] = true
		}
	}
	return stale
}

// releaseSlots frees the holders' slots of kind on the host of baseURL; absent holders are ignored.
func (s *Service) releaseSlots(ctx context.Context, baseURL, kind string, holders []string) error {
	name, err := hostDocName(baseURL)
	if err != nil {
		return err
	}
	for range maxConflictRetries {
		slots, etag, err := s.loadSlots(ctx, name)
		if err != nil {
			return err
		}
		changed := false
		for _, h := range holders {
			if _, ok := slots[kind][h]; ok {
				delete(slots[kind], h)
				changed = true
			}
		}
		if !changed {
			return nil
		}
		err = s.saveSlots(ctx, name, slots, etag)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		return err
	}
	return fmt.Errorf("release %s slots on %s: %w", kind, name, store.ErrConflict)
}

// freeSlots is how many slots of kind are free on the host of baseURL, after evicting leaked holders (as
// acquireSlot does) when none is.
func (s *Service) freeSlots(ctx context.Context, baseURL, kind string, limit int) (int, error) {
	name, err := hostDocName(baseURL)
	if err != nil {
		return 0, err
	}
	for range maxConflictRetries {
		slots, etag, err := s.loadSlots(ctx, name)
		if err != nil {
			return 0, err
		}
		held := slots[kind]
		if len(held) < limit {
			return limit - len(held), nil
		}
		stale := s.staleHolders(ctx, held)
		if len(stale) == 0 {
			return 0, nil
		}
		for h := range stale {
			delete(held, h)
		}
		err = s.saveSlots(ctx, name, slots, etag)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return 0, err
		}
		return max(limit-len(held), 0), nil
	}
	return 0, fmt.Errorf("free %s slots on %s: %w", kind, name, store.ErrConflict)
}
