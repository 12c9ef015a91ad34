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
// the destination holds of the migrated types from the previous mark up to what the round holds must be a row one
// of the round's attempts staged: anything else was written directly. SearchParameters are left out (the engine
// copies them with PUTs). A round whose check cannot be done is tried again at the next sweeps, then closed as
// unchecked: the cutover checks it again, and fails openly while it cannot.

// maxListedWrites bounds the destination writes a document lists; every one is in the rounds' blobs.
const maxListedWrites = 100

// maxWritesScanned bounds the versions one check reads from the destination's history: past it the check is not
// done (never read as "nothing written").
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

// UncheckedRound is a round whose destination could not be checked for direct writes.
type UncheckedRound struct {
	Round int        `json:"round"`
	From  time.Time  `json:"from"`
	Till  *time.Time `json:"till,omitempty"`
	Error string     `json:"error"`
}

// DestinationWrites is what the rounds found written directly on the destination (every one in Blobs, the first
// in Listed), and the rounds that could not be checked; a verification after the cutover reads each again:
// Unresolved counts those the destination still holds, or that cannot be read again.
type DestinationWrites struct {
	Count      int64              `json:"count"`
	Listed     []DestinationWrite `json:"listed,omitempty"`
	Blobs      []string           `json:"blobs,omitempty"`
	Unchecked  []UncheckedRound   `json:"unchecked,omitempty"`
	Unresolved int64              `json:"unresolved"`
	CheckedAt  *time.Time         `json:"checkedAt,omitempty"`
	// Problems say why the verification could not clear a write or a round.
	Problems []string `json:"problems,omitempty"`
}

var errTooManyVersions = errors.New("too many versions to check")

// roundHeld is what a round's exports hold: the earliest of their transactionTimes (or their _till, when earlier),
// the last instant each holds by the source kind's bounds.
func roundHeld(b WindowBounds, jobs []*Job) *time.Time {
	var out *time.Time
	for _, j := range jobs {
		if j.Kind != KindExport {
			continue
		}
		held := j.TransactionTime
		if held != nil {
			held = timePtr(b.heldAt(*held))
		}
		if held == nil || (j.Till != nil && j.Till.Before(*held)) {
			held = j.Till
		}
		if held != nil && (out == nil || held.Before(*out)) {
			out = timePtr(*held)
		}
	}
	return out
}

// writesSince lists the destination's versions of the migrated types in [from, till] (till nil: open) by key, at
// most maxWritesScanned of them, or fails with errTooManyVersions.
func (s *Service) writesSince(ctx context.Context, m *Migration, dst FHIRClient, from time.Time, till *time.Time) (map[string]fhir.HistoryEntry, error) {
	types := map[string]bool{}
	for _, t := range planTypes(&m.Request, m.SourceTypes) {
		types[t] = true
	}
	hr := fhir.HistoryRange{Since: &from}
	if till != nil {
		hr.Before = timePtr(kindOf(&m.Request).Bounds().next(*till))
	}
	listed := map[string]fhir.HistoryEntry{}
	err := dst.History(ctx, "", hr, true, 1000, func(e fhir.HistoryEntry) error {
		if e.Type == typeSearchParameter || !types[e.Type] {
			return nil
		}
		if len(listed) >= maxWritesScanned {
			return errTooManyVersions
		}
		listed[e.Key()] = e
		return nil
	})
	if errors.Is(err, errTooManyVersions) {
		return nil, fmt.Errorf("the destination holds over %d versions since %s: %w", maxWritesScanned, from.Format(time.RFC3339Nano), err)
	}
	if err != nil {
		return nil, fmt.Errorf("list the destination's versions since %s: %w", from.Format(time.RFC3339Nano), err)
	}
	return listed, nil
}

// strikeStaged removes from listed every version a round's exports staged, in any of its attempts.
func (s *Service) strikeStaged(ctx context.Context, m *Migration, round int, listed map[string]fhir.HistoryEntry) error {
	for _, j := range m.Jobs {
		if j.Kind != KindExport || j.Round != round || j.State != JobDone || len(listed) == 0 {
			continue
		}
		mb, err := s.manifest(ctx, j)
		if err != nil {
			return err
		}
		for _, f := range mb.Output {
			if err := s.strikeFile(ctx, f, listed); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *Service) strikeFile(ctx context.Context, f File, listed map[string]fhir.HistoryEntry) error {
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
		delete(listed, fhir.HistoryEntry{Type: head.ResourceType, ID: head.ID, VersionID: head.Meta.VersionID, LastUpdated: at}.Key())
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", stripQuery(f.URL), err)
	}
	return nil
}

// roundWrites are the versions the destination holds in [from, till] that no attempt of the round staged.
func (s *Service) roundWrites(ctx context.Context, m *Migration, round int, from time.Time, till *time.Time) ([]DestinationWrite, error) {
	dst, err := s.cfg.FHIR(m.Request.Destination)
	if err != nil {
		return nil, fmt.Errorf("client for %s: %w", m.Request.Destination, err)
	}
	listed, err := s.writesSince(ctx, m, dst, from, till)
	if err != nil {
		return nil, err
	}
	if err := s.strikeStaged(ctx, m, round, listed); err != nil {
		return nil, fmt.Errorf("read the round's staged rows: %w", err)
	}
	out := make([]DestinationWrite, 0, len(listed))
	for _, e := range listed {
		out = append(out, DestinationWrite{Type: e.Type, ID: e.ID, Version: e.VersionID, Deleted: e.Deleted,
			LastUpdated: e.LastUpdated.UTC().Format("2006-01-02T15:04:05.000Z"), Round: round})
	}
	slices.SortFunc(out, func(a, b DestinationWrite) int {
		return strings.Compare(a.LastUpdated+a.Type+a.ID, b.LastUpdated+b.Type+b.ID)
	})
	return out, nil
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

// checkRound checks the destination for direct writes at the end of a round, from the mark the round started at
// up to what it holds (the final round: up to now), records them (every one in a blob) and closes the round. A
// check that fails is tried again at the next sweeps; after MaxAttempts the round closes unchecked, recorded.
func (s *Service) checkRound(ctx context.Context, m *Migration) (*Migration, error) {
	r := m.Sync.Round
	from := m.Sync.HighWater
	till := roundHeld(kindOf(&m.Request).Bounds(), roundJobs(m, r))
	if r.Final {
		till = nil // no later round checks what comes after it
	}
	found, checkErr := s.roundWrites(ctx, m, r.N, from, till)
	var blob string
	if checkErr == nil && len(found) > 0 {
		blob = fmt.Sprintf("%s%s/writes-%04d-a%d.json", filesPrefix, m.ID, r.N, r.Attempt)
		if err := s.putJSON(ctx, blob, found); err != nil {
			return m, fmt.Errorf("write the round's destination writes: %w", err)
		}
	}
	round, attempt := r.N, r.Attempt
	m, eff, err := s.update(ctx, m.ID, func(m *Migration) (*effects, error) {
		if !roundReadyForCheck(m) || m.Sync.Round.N != round || m.Sync.Round.Attempt != attempt {
			return nil, errUnchanged
		}
		now := s.now()
		cur := m.Sync.Round
		w := m.Sync.DestinationWrites
		if w == nil {
			w = &DestinationWrites{}
		}
		switch {
		case checkErr != nil:
			cur.CheckFailures++
			cur.CheckError = truncate(checkErr.Error(), maxErrorMessage)
			if cur.CheckFailures < s.cfg.MaxAttempts {
				return nil, nil // the next sweep tries again
			}
			w.Unchecked = append(w.Unchecked, UncheckedRound{Round: round, From: from, Till: till, Error: cur.CheckError})
		case len(found) > 0:
			w.Count += int64(len(found))
			w.Blobs = append(w.Blobs, blob)
			w.Listed = append(w.Listed, found[:min(len(found), max(maxListedWrites-len(w.Listed), 0))]...)
		}
		if w.Count > 0 || len(w.Unchecked) > 0 {
			m.Sync.DestinationWrites = w
		}
		cur.WritesChecked = timePtr(now)
		e := &effects{}
		settle(m, now, e)
		return e, nil
	})
	if err != nil {
		return nil, fmt.Errorf("save the round's destination check: %w", err)
	}
	s.perform(ctx, m.ID, eff)
	switch {
	case checkErr != nil:
		s.log.Warn("the destination could not be checked for direct writes", "migration", m.ID, "round", round, "err", checkErr)
	case len(found) > 0:
		s.log.Warn("the destination was written directly", "migration", m.ID, "round", round, "versions", len(found))
	}
	return m, nil
}

// allDestinationWrites reads every write the rounds recorded.
func (s *Service) allDestinationWrites(ctx context.Context, w *DestinationWrites) ([]DestinationWrite, error) {
	if w == nil {
		return nil, nil
	}
	var out []DestinationWrite
	for _, b := range w.Blobs {
		var list []DestinationWrite
		if err := s.getJSON(ctx, b, &list); err != nil {
			return nil, fmt.Errorf("destination writes: %w", err)
		}
		out = append(out, list...)
	}
	return out, nil
}

// recheckWrites reads again, after the cutover, every direct write the rounds found: it is resolved once the
// destination no longer holds that version (removed by hard delete, or purged). A round that could not be checked
// is checked now; while it still cannot be, it stays unresolved.
func (s *Service) recheckWrites(ctx context.Context, m *Migration, dst FHIRClient) (*DestinationWrites, error) {
	w := m.Sync.DestinationWrites
	if w == nil {
		return nil, nil
	}
	all, err := s.allDestinationWrites(ctx, w)
	if err != nil {
		return nil, err
	}
	for _, u := range w.Unchecked {
		found, err := s.roundWrites(ctx, m, u.Round, u.From, u.Till)
		if err != nil {
			return &DestinationWrites{Count: w.Count, Unchecked: w.Unchecked, CheckedAt: timePtr(s.now()), Unresolved: 1,
				Problems: []string{fmt.Sprintf("round %d could not be checked for direct writes: %s", u.Round, truncate(err.Error(), maxErrorMessage))}}, nil
		}
		all = append(all, found...)
	}
	out := &DestinationWrites{Count: int64(len(all)), CheckedAt: timePtr(s.now())}
	held := make([]bool, len(all))
	errs := make([]error, len(all))
	fanOut(len(all), s.cfg.PollConcurrency, func(i int) {
		l := all[i]
		at, ok, err := dst.VRead(ctx, l.Type, l.ID, l.Version)
		if err != nil {
			errs[i] = fmt.Errorf("read %s/%s version %s on the destination: %w", l.Type, l.ID, l.Version, err)
			return
		}
		held[i] = ok && (at.IsZero() || at.UTC().Format("2006-01-02T15:04:05.000Z") == l.LastUpdated)
	})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for i, l := range all {
		if held[i] {
			out.Unresolved++
			if len(out.Listed) < maxListedWrites {
				out.Listed = append(out.Listed, l)
			}
		}
	}
	return out, nil
}
