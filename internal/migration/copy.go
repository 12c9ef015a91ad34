package migration

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/fhir-migrator/fhir-migrator/internal/fhir"
)

// reindexNote is added once a copy job wrote SearchParameter resources to the destination.
const reindexNote = "SearchParameter resources were copied to the destination: run $reindex there before relying on them in searches"

// searchParameterBundle names the batch Bundle of a copy job that could not write (InitialLoad).
func searchParameterBundle(id, jobID string) string {
	return fmt.Sprintf("%s%s-search-parameters/%s.json", reportPrefix, id, jobID)
}

// heldNote tells the operator what to do with SearchParameters a destination in initial import mode refused.
func heldNote(m *Migration, n int64) string {
	return fmt.Sprintf("%d SearchParameter resources were not copied: the destination is in initial import mode, where "+
		"it refuses every write but $import (423). Once initial import mode is off, POST the batch Bundle from "+
		"GET /api/migrations/%s/report/search-parameters to %s, then run $reindex there", n, m.ID, m.Request.Destination)
}

// runCopy writes the SearchParameter resources of a copy job to the destination with batch PUTs. A destination in
// initial import mode refuses every write but $import, so for an InitialLoad migration the batch is kept in the
// document store instead, and the notes say how to send it later.
func (s *Service) runCopy(ctx context.Context, migrationID, jobID string) error {
	attempt, m, err := s.startAttempt(ctx, migrationID, jobID, false)
	if err != nil || attempt == 0 {
		return err
	}
	var tally *copyTally
	bundle := ""
	ins, err := s.inputs(ctx, m, m.job(jobID))
	switch {
	case err != nil:
	case m.Request.ImportMode == ModeInitial:
		bundle = searchParameterBundle(m.ID, jobID)
		tally, err = s.keepResources(ctx, m, ins, bundle)
	default:
		tally, err = s.copyResources(ctx, m, ins)
	}
	_, eff, uerr := s.update(ctx, migrationID, func(m *Migration) (*effects, error) {
		e := &effects{}
		now := s.now()
		s.applyKickoff(m, &Job{ID: jobID, Kind: KindCopy}, attempt, "", err, now, e)
		if err != nil {
			return e, nil
		}
		cj := m.job(jobID)
		if cj == nil || cj.State != JobRunning {
			return e, nil
		}
		cj.Counts = tally.written
		cj.ErrorSummary = tally.summary()
		finishJob(m, cj, JobDone, now, e)
		note := reindexNote
		if bundle != "" {
			cj.Bundle = bundle
			note = heldNote(m, tally.held)
		}
		m.Notes = appendNote(m.Notes, note)
		settle(m, now, e)
		return e, nil
	})
	if uerr != nil {
		return fmt.Errorf("save copy result: %w", uerr)
	}
	s.perform(ctx, migrationID, eff)
	if err != nil {
		s.log.Warn("copy failed", "migration", migrationID, "job", jobID, "err", err)
	}
	return nil
}

// copyTally counts the entries of a copy job.
type copyTally struct {
	written map[string]int64
	failed  map[string]int64
	reasons map[string]string
	// held counts the entries kept in a batch Bundle instead of written.
	held int64
}

func newCopyTally() *copyTally {
	return &copyTally{written: map[string]int64{}, failed: map[string]int64{}, reasons: map[string]string{}}
}

func (t *copyTally) fail(typ, reason string) {
	t.failed[typ]++
	if _, ok := t.reasons[typ]; !ok {
		t.reasons[typ] = reason
	}
}

// summary digests the failed entries: per type, with the first reason of each.
func (t *copyTally) summary() *ErrorSummary {
	if len(t.failed) == 0 {
		return nil
	}
	sum := &ErrorSummary{ByType: maps.Clone(t.failed)}
	for _, typ := range slices.Sorted(maps.Keys(t.failed)) {
		sum.First = append(sum.First, ErrorLine{Type: typ, Message: t.reasons[typ]})
	}
	return sum
}

// keepResources reads a copy job's files into one batch Bundle and writes it to the document store as name.
func (s *Service) keepResources(ctx context.Context, m *Migration, ins []Input, name string) (*copyTally, error) {
	tally := newCopyTally()
	var entries []fhir.BatchEntry
	for _, in := range ins {
		if err := s.readResources(ctx, in, tally, func(e fhir.BatchEntry) error {
			entries = append(entries, e)
			return nil
		}); err != nil {
			return nil, err
		}
	}
	if m.Request.associated() {
		entries = newestOnly(entries)
	}
	tally.held = int64(len(entries))
	if len(entries) == 0 {
		return tally, nil
	}
	body, err := fhir.BatchBody(entries)
	if err != nil {
		return nil, permanent(fmt.Errorf("batch of %d SearchParameters: %w", len(entries), err))
	}
	if err := s.putReport(ctx, name, body); err != nil {
		return nil, fmt.Errorf("keep the SearchParameter batch of %s: %w", m.ID, err)
	}
	return tally, nil
}

func (s *Service) copyResources(ctx context.Context, m *Migration, ins []Input) (*copyTally, error) {
	tally := newCopyTally()
	client, err := s.cfg.FHIR(m.Request.Destination)
	if err != nil {
		return nil, fmt.Errorf("client for %s: %w", m.Request.Destination, err)
	}
	var batch []fhir.BatchEntry
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		res, err := client.Batch(ctx, batch)
		if err != nil {
			return fmt.Errorf("batch of %d: %w", len(batch), err)
		}
		for i, e := range batch {
			status := ""
			if res != nil && i < len(res.Status) {
				status = res.Status[i]
			}
			if strings.HasPrefix(status, "2") {
				tally.written[e.Type]++
			} else {
				tally.fail(e.Type, fmt.Sprintf("PUT %s/%s: %q", e.Type, e.ID, status))
			}
		}
		batch = batch[:0]
		return nil
	}
	add := func(e fhir.BatchEntry) error {
		batch = append(batch, e)
		if len(batch) == maxBatchEntries {
			return flush()
		}
		return nil
	}
	// With versions and deletion stubs in the files, the resources are gathered first and only each one's newest
	// line is written (SearchParameters are few).
	var gathered []fhir.BatchEntry
	for _, in := range ins {
		each := add
		if m.Request.associated() {
			each = func(e fhir.BatchEntry) error { gathered = append(gathered, e); return nil }
		}
		if err := s.readResources(ctx, in, tally, each); err != nil {
			return nil, err
		}
	}
	for _, e := range newestOnly(gathered) {
		if err := add(e); err != nil {
			return nil, err
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return tally, nil
}

// newestOnly keeps, per resource, its newest line of an export with versions (the highest versionId; the later
// line on a tie) and drops a resource whose newest line is a deletion stub: a batch PUT would store the stub as a
// resource, and an older version PUT after a newer one would become current. Lines keep their first order.
func newestOnly(entries []fhir.BatchEntry) []fhir.BatchEntry {
	type newest struct {
		at      int
		version int
	}
	best := map[string]newest{}
	for i, e := range entries {
		key := e.Type + "/" + e.ID
		v := lineVersion(e.Resource)
		if b, ok := best[key]; !ok || v >= b.version {
			best[key] = newest{at: i, version: v}
		}
	}
	var out []fhir.BatchEntry
	for i, e := range entries {
		if b := best[e.Type+"/"+e.ID]; b.at == i && !deletionStub(e.Resource) {
			out = append(out, e)
		}
	}
	return out
}

// lineVersion is a line's meta.versionId as an integer, 0 when it has none.
func lineVersion(raw []byte) int {
	var h struct {
		Meta struct {
			VersionID string `json:"versionId"`
		} `json:"meta"`
	}
	if json.Unmarshal(raw, &h) != nil {
		return 0
	}
	n, err := strconv.Atoi(h.Meta.VersionID)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// deletionStub reports whether a line is the stub of a deleted resource, as an export with _deleted writes it.
func deletionStub(raw []byte) bool {
	type extension struct {
		URL         string `json:"url"`
		ValueString string `json:"valueString"`
	}
	var h struct {
		Meta struct {
			Extension []extension `json:"extension"`
		} `json:"meta"`
	}
	if json.Unmarshal(raw, &h) != nil {
		return false
	}
	return slices.Contains(h.Meta.Extension,
		extension{URL: "http://azurehealthcareapis.com/data-extensions/deleted-state", ValueString: "soft-deleted"})
}

// readResources streams one NDJSON file, one resource per line.
func (s *Service) readResources(ctx context.Context, in Input, tally *copyTally, emit func(fhir.BatchEntry) error) error {
	rc, err := s.cfg.Staging.Open(ctx, in.URL)
	if err != nil {
		return fmt.Errorf("open %s: %w", in.URL, err)
	}
	defer func() { _ = rc.Close() }()
	sc := bufio.NewScanner(rc)
	sc.Buffer(make([]byte, 0, 64<<10), maxResourceLine)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" {
			continue
		}
		entry, ok := parseResourceLine(text)
		if !ok {
			tally.fail(in.Type, fmt.Sprintf("%s line %d is not a resource with resourceType and id", in.URL, line))
			continue
		}
		if err := emit(entry); err != nil {
			return err
		}
	}
	if err := sc.Err(); errors.Is(err, bufio.ErrTooLong) {
		return permanent(fmt.Errorf("%s line %d is over %d bytes", in.URL, line+1, maxResourceLine))
	} else if err != nil {
		return fmt.Errorf("read %s after line %d: %w", in.URL, line, err)
	}
	return nil
}

// parseResourceLine reads one NDJSON line as a resource to PUT: a JSON object whose resourceType and id are
// valid FHIR names (they become the request path).
func parseResourceLine(text string) (fhir.BatchEntry, bool) {
	var head struct {
		ResourceType string `json:"resourceType"`
		ID           string `json:"id"`
	}
	if err := json.Unmarshal([]byte(text), &head); err != nil ||
		!typePattern.MatchString(head.ResourceType) || !idPattern.MatchString(head.ID) {
		return fhir.BatchEntry{}, false
	}
	return fhir.BatchEntry{Type: head.ResourceType, ID: head.ID, Resource: []byte(text)}, true
}
