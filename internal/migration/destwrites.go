package migration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/fhir-migrator/fhir-migrator/internal/fhir"
)

// A synced destination must be written by the rounds' imports alone: a version written there directly takes a
// version number and a time slot a later import then conflicts with, and differs from the source. IncrementalLoad
// keeps the source's versionId and lastUpdated, so at the end of every round, before its mark moves, each version
// the destination holds from the previous mark on must be a row this round staged (or an older round's, before
// the mark): anything else was written directly. SearchParameters are left out (the engine copies them with PUTs).

// maxListedWrites bounds the destination writes a document lists; the count goes on.
const maxListedWrites = 100

// maxWritesScanned bounds the versions one check reads from the destination's history.
const maxWritesScanned = 200_000

// DestinationWrite is one version found on the destination that no round imported.
type DestinationWrite struct {
	Type        string `json:"type"`
	ID          string `json:"id"`
	Version     string `json:"version"`
	LastUpdated string `json:"lastUpdated"`
	Deleted     bool   `json:"deleted,omitempty"`
	// Round is the round at whose end it was found.
	Round int `json:"round"`
}

// DestinationWrites is what the rounds found written directly on the destination, checked again at each
// verification after the cutover: Unresolved counts those the destination still holds.
type DestinationWrites struct {
	Count      int64              `json:"count"`
	Listed     []DestinationWrite `json:"listed,omitempty"`
	Unresolved int64              `json:"unresolved"`
	CheckedAt  *time.Time         `json:"checkedAt,omitempty"`
}

// roundStaged reads the rows a round's exports staged, as keys Type/id/versionId/lastUpdated (to the millisecond).
func (s *Service) roundStaged(ctx context.Context, m *Migration, r *SyncRound) (map[string]bool, error) {
	keys := map[string]bool{}
	for _, j := range roundJobs(m, r) {
		if j.Kind != KindExport || j.State != JobDone {
			continue
		}
		mb, err := s.manifest(ctx, j)
		if err != nil {
			return nil, err
		}
		for _, f := range mb.Output {
			if err := s.stagedKeys(ctx, f, keys); err != nil {
				return nil, err
			}
		}
	}
	return keys, nil
}

func (s *Service) stagedKeys(ctx context.Context, f File, keys map[string]bool) error {
	rc, err := s.cfg.Staging.Open(ctx, stripQuery(f.URL))
	if err != nil {
		return fmt.Errorf("open %s: %w", stripQuery(f.URL), err)
	}
	defer func() { _ = rc.Close() }()
	sc := bufio.NewScanner(rc)
	sc.Buffer(make([]byte, 0, 64<<10), maxResourceLine)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var head struct {
			ResourceType string `json:"resourceType"`
			ID           string `json:"id"`
			Meta         struct {
				VersionID   string `json:"versionId"`
				LastUpdated string `json:"lastUpdated"`
			} `json:"meta"`
		}
		if json.Unmarshal(line, &head) != nil {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, head.Meta.LastUpdated)
		if err != nil {
			continue
		}
		keys[fhir.HistoryEntry{Type: head.ResourceType, ID: head.ID, VersionID: head.Meta.VersionID, LastUpdated: at}.Key()] = true
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", stripQuery(f.URL), err)
	}
	return nil
}

var errEnoughWrites = errors.New("enough versions read")

// checkRoundWrites lists the destination's versions from the mark on (the round imported those of its own rows)
// and answers those no row of the round stands for, and how many there are. The round's staged rows are read only
// when the destination holds versions since the mark.
func (s *Service) checkRoundWrites(ctx context.Context, m *Migration, r *SyncRound) ([]DestinationWrite, int64, error) {
	dst, err := s.cfg.FHIR(m.Request.Destination)
	if err != nil {
		return nil, 0, fmt.Errorf("client for %s: %w", m.Request.Destination, err)
	}
	since := m.Sync.HighWater
	var versions []fhir.HistoryEntry
	err = dst.History(ctx, "", fhir.HistoryRange{Since: &since}, true, 1000, func(e fhir.HistoryEntry) error {
		if len(versions) >= maxWritesScanned {
			return errEnoughWrites
		}
		if e.Type != typeSearchParameter {
			versions = append(versions, e)
		}
		return nil
	})
	if err != nil && !errors.Is(err, errEnoughWrites) {
		return nil, 0, fmt.Errorf("list the destination's versions since %s: %w", since.Format(time.RFC3339Nano), err)
	}
	if len(versions) == 0 {
		return nil, 0, nil
	}
	staged, err := s.roundStaged(ctx, m, r)
	if err != nil {
		return nil, 0, fmt.Errorf("read the round's staged rows: %w", err)
	}
	var found []DestinationWrite
	var n int64
	for _, e := range versions {
		if staged[e.Key()] {
			continue
		}
		n++
		if len(found) < maxListedWrites {
			found = append(found, DestinationWrite{Type: e.Type, ID: e.ID, Version: e.VersionID, Deleted: e.Deleted,
				LastUpdated: e.LastUpdated.UTC().Format("2006-01-02T15:04:05.000Z"), Round: r.N})
		}
	}
	return found, n, nil
}

// roundReadyForCheck reports whether the round in flight has every job done and its destination not yet checked.
func roundReadyForCheck(m *Migration) bool {
	if m.Status != StatusSyncing || m.Sync == nil || m.Sync.Round == nil || m.Sync.Round.WritesChecked != nil {
		return false
	}
	for _, j := range roundJobs(m, m.Sync.Round) {
		if j.State != JobDone {
			return false
		}
	}
	return true
}

// checkRound checks the destination for direct writes at the end of a round and records them; the round then
// closes (settleSync waits for the check).
func (s *Service) checkRound(ctx context.Context, m *Migration) (*Migration, error) {
	r := m.Sync.Round
	found, n, err := s.checkRoundWrites(ctx, m, r)
	if err != nil {
		return m, err
	}
	round, attempt := r.N, r.Attempt
	m, eff, err := s.update(ctx, m.ID, func(m *Migration) (*effects, error) {
		if !roundReadyForCheck(m) || m.Sync.Round.N != round || m.Sync.Round.Attempt != attempt {
			return nil, errUnchanged
		}
		now := s.now()
		m.Sync.Round.WritesChecked = timePtr(now)
		if n > 0 {
			w := m.Sync.DestinationWrites
			if w == nil {
				w = &DestinationWrites{}
				m.Sync.DestinationWrites = w
			}
			w.Count += n
			w.Unresolved += n
			w.Listed = append(w.Listed, found[:min(len(found), max(maxListedWrites-len(w.Listed), 0))]...)
		}
		e := &effects{}
		settle(m, now, e)
		return e, nil
	})
	if err != nil {
		return nil, fmt.Errorf("save the round's destination check: %w", err)
	}
	s.perform(ctx, m.ID, eff)
	if n > 0 {
		s.log.Warn("the destination was written directly", "migration", m.ID, "round", round, "versions", n)
	}
	return m, nil
}

// recheckWrites reads again each direct write found: it is resolved once the destination no longer holds that
// version (removed by hard delete, or purged). Writes beyond the listed ones cannot be read again and stay
// unresolved.
func recheckWrites(ctx context.Context, dst FHIRClient, w *DestinationWrites, now time.Time) (*DestinationWrites, error) {
	if w == nil || w.Count == 0 {
		return nil, nil
	}
	out := &DestinationWrites{Count: w.Count, CheckedAt: timePtr(now), Unresolved: w.Count - int64(len(w.Listed))}
	for _, l := range w.Listed {
		at, held, err := dst.VRead(ctx, l.Type, l.ID, l.Version)
		if err != nil {
			return nil, fmt.Errorf("read %s/%s version %s on the destination: %w", l.Type, l.ID, l.Version, err)
		}
		if held && (at.IsZero() || at.UTC().Format("2006-01-02T15:04:05.000Z") == l.LastUpdated) {
			out.Unresolved++
			out.Listed = append(out.Listed, l)
		}
	}
	slices.SortFunc(out.Listed, func(a, b DestinationWrite) int { return strings.Compare(a.LastUpdated, b.LastUpdated) })
	return out, nil
}
