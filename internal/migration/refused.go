package migration

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fhir-migrator/fhir-migrator/internal/fhir"
	"github.com/fhir-migrator/fhir-migrator/internal/staging"
)

// Every line the destination's $import refused is read back from the service's own records: the import jobs'
// error files (OperationOutcome lines whose diagnostics name the line, "Failed to process resource at line: N with
// stream start offset: O", and whose details the reason: fhir-server ImportErrorSerializer.cs) and the staged rows
// they point at. The SQL store refuses a row as a duplicate (another row of the resource at the same millisecond
// in its batch of 1,000) or a version conflict (a version stored already, or one whose order disagrees with its
// time: SqlServerFhirDataStore.ImportResourcesAsync), which a Cosmos write race on the source produces (two
// versions at one millisecond, or a version before the one it replaced: fhir-server issue 3998), and so does a
// resource hard-deleted and created again on the source (its new version 1 is stored already). When the refused
// version is a resource's newest, the destination holds older content: stale, never passed, until repaired.

// Reasons of a refused line.
const (
	refusedDuplicate = "duplicate"
	refusedConflict  = "version conflict"
	refusedOther     = "refused"
)

// acceptRefusedVersions is the accept value that lets refused versions that are not a resource's newest pass
// (the newest ones must be repaired).
const acceptRefusedVersions = "refused-versions"

// Bounds of the refused-versions check: lines read in one verification, and entries the document lists.
const (
	maxRefusedLines  = 100_000
	maxListedRefused = 100
)

// RefusedLine is one staged row the destination refused, as its error file and the staged file say.
type RefusedLine struct {
	Type        string `json:"type"`
	ID          string `json:"id"`
	Version     string `json:"version,omitempty"`
	LastUpdated string `json:"lastUpdated,omitempty"`
	Deleted     bool   `json:"deleted,omitempty"`
	// Reason is duplicate, version conflict, or refused (another answer, quoted in Message).
	Reason  string `json:"reason"`
	Message string `json:"message"`
	// Input is the staged file, Line its line (from the stream start offset Offset).
	Input  string `json:"input"`
	Line   int64  `json:"line"`
	Offset int64  `json:"offset,omitempty"`
}

func (l RefusedLine) key() string {
	return l.Type + "/" + l.ID + "/" + l.Version + "/" + l.LastUpdated
}

// RefusedResource is a resource with refused versions, as both servers hold it now.
type RefusedResource struct {
	Type string `json:"type"`
	ID   string `json:"id"`
	// Versions are its refused versions, oldest first.
	Versions []RefusedLine `json:"versions"`
	// SourceStatus and DestinationStatus are the reads' answers (200, 404, 410), with the current versions.
	SourceStatus       int    `json:"sourceStatus"`
	SourceVersion      string `json:"sourceVersion,omitempty"`
	DestinationStatus  int    `json:"destinationStatus"`
	DestinationVersion string `json:"destinationVersion,omitempty"`
	// Stale: the destination does not hold what the source holds now (its newest version was refused); the
	// repair writes it. Repaired: a repair wrote it, and the destination still holds that write.
	Stale    bool `json:"stale,omitempty"`
	Repaired bool `json:"repaired,omitempty"`
}

// RefusedSummary is the refused-versions part of a verification: the report blob lists every resource.
type RefusedSummary struct {
	// Versions counts the refused versions the destination still does not hold, per type in ByType; Stale the
	// resources whose newest version is among them (per type in StaleByType), Repaired those a repair wrote.
	Versions    int64            `json:"versions"`
	ByType      map[string]int64 `json:"byType,omitempty"`
	Stale       int64            `json:"stale"`
	StaleByType map[string]int64 `json:"staleByType,omitempty"`
	Repaired    int64            `json:"repaired,omitempty"`
	// OlderByType counts, per type, the refused versions of resources neither stale nor repaired: they pass only
	// when accepted.
	OlderByType map[string]int64 `json:"olderByType,omitempty"`
	// Unread counts error lines beyond maxRefusedLines, or whose row could not be read (counted, not classified),
	// per type in UnreadByType: they pass only when accepted.
	Unread       int64            `json:"unread,omitempty"`
	UnreadByType map[string]int64 `json:"unreadByType,omitempty"`
	// Accepted: the operator accepted the refused versions that are not a resource's newest.
	Accepted  bool              `json:"accepted,omitempty"`
	Resources []RefusedResource `json:"resources,omitempty"`
	Report    string            `json:"report,omitempty"`
}

var (
	errorLinePattern = regexp.MustCompile(`line: (\d+) with stream start offset: (\d+)`)
	errorIDPattern   = regexp.MustCompile(`resource id: ([A-Za-z0-9\-.]{1,64})`)
)

// refusedEntry is one error line read: where its row is, and what the service said.
type refusedEntry struct {
	typ, input, message string
	line, offset        int64
	id                  string
}

// readRefused reads every error line of the migration's finished imports and the staged row each names.
func (s *Service) readRefused(ctx context.Context, m *Migration) ([]RefusedLine, map[string]int64, error) {
	var entries []refusedEntry
	unread := map[string]int64{}
	for _, j := range m.Jobs {
		if j.Kind != KindImport || j.State != JobDone || j.ErrorFiles == "" {
			continue
		}
		files, err := s.importErrorFilesOf(ctx, j)
		if err != nil {
			return nil, nil, err
		}
		for _, f := range files {
			if f.URL == "" {
				unread[f.Type] += f.Count
				continue
			}
			got, err := s.readErrorFile(ctx, f, maxRefusedLines-len(entries))
			if err != nil {
				return nil, nil, err
			}
			entries = append(entries, got...)
			unread[f.Type] += max(f.Count-int64(len(got)), 0)
		}
	}
	byInput := map[string][]refusedEntry{}
	for _, e := range entries {
		byInput[e.input] = append(byInput[e.input], e)
	}
	var out []RefusedLine
	for _, input := range slices.Sorted(maps.Keys(byInput)) {
		lines, err := s.refusedRows(ctx, input, byInput[input])
		if err != nil {
			return nil, nil, err
		}
		out = append(out, lines...)
	}
	return out, unread, nil
}

// readErrorFile reads at most limit lines of one error file.
func (s *Service) readErrorFile(ctx context.Context, f ErrorFile, limit int) ([]refusedEntry, error) {
	if limit <= 0 {
		return nil, nil
	}
	rc, err := s.cfg.Staging.Open(ctx, stripQuery(f.URL))
	if errors.Is(err, staging.ErrBlobNotFound) {
		// Deleted (cleanup with errorFiles): its lines count as unread.
		s.log.Warn("an import error file is gone", "url", stripQuery(f.URL))
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("error file of %s: %w", f.Type, err)
	}
	defer func() { _ = rc.Close() }()
	sc := bufio.NewScanner(rc)
	sc.Buffer(make([]byte, 0, 64<<10), maxErrorFileLine)
	var out []refusedEntry
	for sc.Scan() && len(out) < limit {
		text := strings.TrimSpace(sc.Text())
		if text == "" {
			continue
		}
		var oo struct {
			Issue []struct {
				Diagnostics string `json:"diagnostics"`
				Details     struct {
					Text string `json:"text"`
				} `json:"details"`
			} `json:"issue"`
		}
		e := refusedEntry{typ: f.Type, input: stripQuery(f.InputURL), message: outcomeText([]byte(text))}
		all := text
		if json.Unmarshal([]byte(text), &oo) == nil {
			var parts []string
			for _, is := range oo.Issue {
				parts = append(parts, is.Diagnostics, is.Details.Text)
				if t := strings.TrimSpace(is.Details.Text); t != "" {
					e.message = truncate(t, maxErrorMessage)
				}
			}
			all = strings.Join(parts, " ")
		}
		if m := errorLinePattern.FindStringSubmatch(all); m != nil {
			e.line, _ = strconv.ParseInt(m[1], 10, 64)
			e.offset, _ = strconv.ParseInt(m[2], 10, 64)
		}
		if m := errorIDPattern.FindStringSubmatch(all); m != nil {
			e.id = m[1]
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("error file of %s: %w", f.Type, err)
	}
	return out, nil
}

// refusedRows reads the staged rows the error lines of one input name: line N counted from 1 at the stream start
// offset, whose first, partial line is skipped (fhir-server ImportResourceLoader.ReadLines).
func (s *Service) refusedRows(ctx context.Context, input string, entries []refusedEntry) ([]RefusedLine, error) {
	byOffset := map[int64]map[int64][]refusedEntry{}
	for _, e := range entries {
		if byOffset[e.offset] == nil {
			byOffset[e.offset] = map[int64][]refusedEntry{}
		}
		byOffset[e.offset][e.line] = append(byOffset[e.offset][e.line], e)
	}
	var out []RefusedLine
	for _, offset := range slices.Sorted(maps.Keys(byOffset)) {
		wanted := byOffset[offset]
		rows, err := s.stagedLines(ctx, input, offset, wanted)
		if err != nil {
			return nil, err
		}
		for line, es := range wanted {
			for _, e := range es {
				r := RefusedLine{Type: e.typ, ID: e.id, Reason: refusedReason(e.message), Message: e.message,
					Input: input, Line: line, Offset: offset}
				if row, ok := rows[line]; ok {
					readRow(row, &r)
				}
				out = append(out, r)
			}
		}
	}
	slices.SortFunc(out, func(a, b RefusedLine) int {
		return cmp.Or(cmp.Compare(a.Offset, b.Offset), cmp.Compare(a.Line, b.Line))
	})
	return out, nil
}

// stagedLines reads the lines of a staged file wanted, from a stream start offset.
func (s *Service) stagedLines(ctx context.Context, input string, offset int64, wanted map[int64][]refusedEntry) (map[int64][]byte, error) {
	rc, err := s.cfg.Staging.Open(ctx, input)
	if errors.Is(err, staging.ErrBlobNotFound) {
		// Cleaned up: the lines keep what their error text names (an id, or nothing), and those naming nothing
		// are counted as unread.
		s.log.Warn("the staged file of refused lines is gone", "input", input)
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", input, err)
	}
	defer func() { _ = rc.Close() }()
	rd := bufio.NewReaderSize(rc, 64<<10)
	if offset > 0 {
		if _, err := io.CopyN(io.Discard, rd, offset); err != nil {
			return nil, fmt.Errorf("read %s to offset %d: %w", input, offset, err)
		}
		if _, err := rd.ReadBytes('\n'); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("read %s: %w", input, err)
		}
	}
	last := slices.Max(slices.Collect(maps.Keys(wanted)))
	rows := map[int64][]byte{}
	// Lines are numbered from 1 as the service reads them: an empty line is skipped, not numbered
	// (ImportResourceLoader.ReadLines).
	for n := int64(1); n <= last; {
		line, err := rd.ReadBytes('\n')
		if content := bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r")); len(content) > 0 {
			if _, ok := wanted[n]; ok {
				rows[n] = content
			}
			n++
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read %s line %d: %w", input, n, err)
		}
		if len(line) > maxResourceLine {
			return nil, fmt.Errorf("%s line %d is over %d bytes", input, n, maxResourceLine)
		}
	}
	return rows, nil
}

// readRow fills a refused line from its staged row.
func readRow(row []byte, r *RefusedLine) {
	var head struct {
		ResourceType string `json:"resourceType"`
		ID           string `json:"id"`
		Meta         struct {
			VersionID   string `json:"versionId"`
			LastUpdated string `json:"lastUpdated"`
		} `json:"meta"`
	}
	if json.Unmarshal(row, &head) != nil {
		return
	}
	if head.ResourceType != "" {
		r.Type = head.ResourceType
	}
	if head.ID != "" {
		r.ID = head.ID
	}
	r.Version = head.Meta.VersionID
	if at, err := time.Parse(time.RFC3339Nano, head.Meta.LastUpdated); err == nil {
		r.LastUpdated = at.UTC().Truncate(time.Millisecond).Format("2006-01-02T15:04:05.000Z")
	}
	r.Deleted = deletionStub(row)
}

func refusedReason(message string) string {
	m := strings.ToLower(message)
	switch {
	case strings.Contains(m, "duplicate"):
		return refusedDuplicate
	case strings.Contains(m, "version conflict"):
		return refusedConflict
	}
	return refusedOther
}

// checkRefused judges the refused lines against both servers now: a version the destination holds after all (a
// later import stored it) is dropped; each resource left is read on both servers, and is stale when the
// destination does not hold what the source holds now, unless a repair wrote it and the destination still holds
// that write. The report blob lists every resource; the summary the first of them.
func (s *Service) checkRefused(ctx context.Context, m *Migration, src, dst FHIRClient, generation int, accepted bool) (*RefusedSummary, error) {
	if m.Request.Sync && (m.Sync == nil || m.Sync.CutoverRequestedAt == nil || m.Sync.Round != nil) {
		return nil, nil // a live source: judged at the cutover, once writes stopped
	}
	lines, unread, err := s.readRefused(ctx, m)
	if err != nil {
		return nil, fmt.Errorf("read the refused lines: %w", err)
	}
	var unreadN int64
	for _, n := range unread {
		unreadN += n
	}
	if len(lines) == 0 && unreadN == 0 {
		return nil, nil
	}
	distinct := map[string]RefusedLine{}
	for _, l := range lines {
		k := l.key()
		switch {
		case l.ID == "":
			unread[l.Type]++ // no row and no id to name: counted, not classified
			unreadN++
			continue
		case l.Version == "":
			k = fmt.Sprintf("%s/%s/?%s:%d:%d", l.Type, l.ID, l.Input, l.Offset, l.Line) // its version unknown
		}
		if _, ok := distinct[k]; !ok {
			distinct[k] = l
		}
	}
	keys := slices.Sorted(maps.Keys(distinct))
	held := make([]bool, len(keys))
	errs := make([]error, len(keys))
	fanOut(len(keys), s.cfg.PollConcurrency, func(i int) {
		l := distinct[keys[i]]
		if l.Version == "" {
			return
		}
		at, ok, err := dst.VRead(ctx, l.Type, l.ID, l.Version)
		if err != nil {
			errs[i] = fmt.Errorf("read %s/%s version %s on the destination: %w", l.Type, l.ID, l.Version, err)
			return
		}
		held[i] = ok && (at.IsZero() || at.UTC().Truncate(time.Millisecond).Format("2006-01-02T15:04:05.000Z") == l.LastUpdated)
	})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	byResource := map[string]*RefusedResource{}
	for i, k := range keys {
		if held[i] {
			continue
		}
		l := distinct[k]
		rk := l.Type + "/" + l.ID
		if byResource[rk] == nil {
			byResource[rk] = &RefusedResource{Type: l.Type, ID: l.ID}
		}
		byResource[rk].Versions = append(byResource[rk].Versions, l)
	}
	repaired, err := s.repairedResources(ctx, m)
	if err != nil {
		return nil, err
	}
	resources := slices.Collect(maps.Values(byResource))
	slices.SortFunc(resources, func(a, b *RefusedResource) int { return strings.Compare(a.Type+"/"+a.ID, b.Type+"/"+b.ID) })
	till := migratedTill(m)
	errs = make([]error, len(resources))
	fanOut(len(resources), s.cfg.PollConcurrency, func(i int) {
		errs[i] = judgeRefusedResource(ctx, src, dst, resources[i], repaired, till)
	})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	sum := &RefusedSummary{ByType: map[string]int64{}, StaleByType: map[string]int64{}, OlderByType: map[string]int64{},
		Unread: unreadN, UnreadByType: unread, Accepted: accepted}
	all := make([]RefusedResource, 0, len(resources))
	for _, r := range resources {
		slices.SortFunc(r.Versions, func(a, b RefusedLine) int { return strings.Compare(a.LastUpdated, b.LastUpdated) })
		n := int64(len(r.Versions))
		sum.Versions += n
		sum.ByType[r.Type] += n
		switch {
		case r.Stale:
			sum.Stale++
			sum.StaleByType[r.Type]++
			sum.OlderByType[r.Type] += n - 1 // its newest is the one to repair; the others are older versions
		case r.Repaired:
			sum.Repaired++
			sum.OlderByType[r.Type] += n - 1
		default:
			sum.OlderByType[r.Type] += n
		}
		all = append(all, *r)
	}
	if len(all) > 0 {
		sum.Report = refusedReportName(m.ID, generation)
		if err := s.putJSON(ctx, sum.Report, all); err != nil {
			return nil, fmt.Errorf("write the refused versions' report: %w", err)
		}
	}
	sum.Resources = all[:min(len(all), maxListedRefused)]
	return sum, nil
}

func refusedReportName(id string, generation int) string {
	return fmt.Sprintf("%s%s-refused/%d.json", reportPrefix, id, generation)
}

// sourceAt reads a resource on the source as the migrated range ends: its current version, or, when that is
// later than the range (a source still written), the newest version before the range's end.
func sourceAt(ctx context.Context, src FHIRClient, typ, id string, till *time.Time) (fhir.ReadResult, error) {
	cur, err := src.Read(ctx, typ, id)
	if err != nil || till == nil || cur.Status != 200 || !laterThan(cur.LastUpdated, *till) {
		if err != nil {
			err = fmt.Errorf("read %s/%s on the source: %w", typ, id, err)
		}
		return cur, err
	}
	at, err := src.VersionBefore(ctx, typ, id, till.Add(instant))
	if err != nil {
		return at, fmt.Errorf("read %s/%s on the source as of %s: %w", typ, id, till.Format(time.RFC3339Nano), err)
	}
	return at, nil
}

func laterThan(lastUpdated string, t time.Time) bool {
	at, err := time.Parse(time.RFC3339Nano, lastUpdated)
	return err == nil && at.After(t)
}

// judgeRefusedResource reads one resource on both servers and says whether the destination is stale: it does not
// hold what the source held when the migrated range ends.
func judgeRefusedResource(ctx context.Context, src, dst FHIRClient, r *RefusedResource, repaired map[string]Repair, till *time.Time) error {
	s, err := sourceAt(ctx, src, r.Type, r.ID, till)
	if err != nil {
		return err
	}
	d, err := dst.Read(ctx, r.Type, r.ID)
	if err != nil {
		return fmt.Errorf("read %s/%s on the destination: %w", r.Type, r.ID, err)
	}
	r.SourceStatus, r.SourceVersion = s.Status, s.VersionID
	r.DestinationStatus, r.DestinationVersion = d.Status, d.VersionID
	if rep, ok := repaired[r.Type+"/"+r.ID]; ok && rep.DestinationStatus == d.Status && rep.DestinationVersion == d.VersionID {
		r.Repaired = true
		return nil
	}
	switch s.Status {
	case 200:
		// The same version number with another time is another chain of versions (the source's started again
		// after a hard delete).
		r.Stale = d.Status != 200 || d.VersionID != s.VersionID || !sameInstant(d.LastUpdated, s.LastUpdated)
	default: // deleted (410) or gone (404) on the source: the destination must not serve it
		r.Stale = d.Status == 200
	}
	return nil
}

// sameInstant compares two lastUpdated values as instants (to the millisecond, as the services keep them).
func sameInstant(a, b string) bool {
	ta, errA := time.Parse(time.RFC3339Nano, a)
	tb, errB := time.Parse(time.RFC3339Nano, b)
	if errA != nil || errB != nil {
		return a == b
	}
	return ta.Truncate(time.Millisecond).Equal(tb.Truncate(time.Millisecond))
}

// Repair is what a repair wrote of one resource on the destination: the source's current version by PUT (its
// versionId and lastUpdated on the destination are new), after a hard delete when the source's chain of versions
// started again, or a deletion.
type Repair struct {
	Type          string `json:"type"`
	ID            string `json:"id"`
	Action        string `json:"action"`
	SourceVersion string `json:"sourceVersion,omitempty"`
	// DestinationStatus and DestinationVersion are what a read of the destination answers after the repair;
	// DestinationLastUpdated the new time of a PUT.
	DestinationStatus      int    `json:"destinationStatus"`
	DestinationVersion     string `json:"destinationVersion,omitempty"`
	DestinationLastUpdated string `json:"destinationLastUpdated,omitempty"`
	At                     string `json:"at"`
}

// Repair actions.
const (
	repairNone       = "none" // the destination held it already
	repairPut        = "put"
	repairRecreate   = "hard-delete-and-put"
	repairDelete     = "delete"
	repairHardDelete = "hard-delete"
)

// repairedResources reads every repair written so far, the latest per resource.
func (s *Service) repairedResources(ctx context.Context, m *Migration) (map[string]Repair, error) {
	out := map[string]Repair{}
	if m.Repairs == nil {
		return out, nil
	}
	for _, name := range m.Repairs.Blobs {
		var list []Repair
		if err := s.getJSON(ctx, name, &list); err != nil {
			return nil, fmt.Errorf("repairs: %w", err)
		}
		for _, r := range list {
			out[r.Type+"/"+r.ID] = r
		}
	}
	return out, nil
}

// Repairs records the repairs of a migration: how many resources, and the blobs listing them.
type Repairs struct {
	Resources int      `json:"resources"`
	Blobs     []string `json:"blobs"`
}

// repairStale writes on the destination the source's current version of every stale resource of a report, by
// PUT in batches of idsPerSearch (a hard delete first when the destination's version is not below the source's:
// the source's chain started again, so a PUT would add to the old one), a deletion when the source deleted it.
func (s *Service) repairStale(ctx context.Context, m *Migration, report string, generation int) ([]Repair, string, error) {
	var all []RefusedResource
	if err := s.getJSON(ctx, report, &all); err != nil {
		return nil, "", fmt.Errorf("read the report to repair from: %w", err)
	}
	src, err := s.sourceClient(&m.Request)
	if err != nil {
		return nil, "", fmt.Errorf("client for %s: %w", m.Request.Source, err)
	}
	dst, err := s.cfg.FHIR(m.Request.Destination)
	if err != nil {
		return nil, "", fmt.Errorf("client for %s: %w", m.Request.Destination, err)
	}
	var stale []RefusedResource
	for _, r := range all {
		if r.Stale {
			stale = append(stale, r)
		}
	}
	repairs := make([]Repair, len(stale))
	bodies := make([][]byte, len(stale))
	var mu sync.Mutex
	errs := make([]error, len(stale))
	now := s.now().UTC().Format(time.RFC3339)
	till := migratedTill(m)
	fanOut(len(stale), s.cfg.PollConcurrency, func(i int) {
		r := stale[i]
		rep := Repair{Type: r.Type, ID: r.ID, At: now}
		cur, err := sourceAt(ctx, src, r.Type, r.ID, till)
		if err != nil {
			errs[i] = err
			return
		}
		d, err := dst.Read(ctx, r.Type, r.ID)
		if err != nil {
			errs[i] = fmt.Errorf("read %s/%s on the destination: %w", r.Type, r.ID, err)
			return
		}
		rep.SourceVersion = cur.VersionID
		switch {
		case cur.Status != 200 && d.Status != 200:
			// Already gone from the destination (an earlier run of this repair, or the reconciliation).
			rep.Action, rep.DestinationStatus, rep.DestinationVersion = repairNone, d.Status, d.VersionID
		case cur.Status == 410:
			rep.Action, errs[i] = repairDelete, dst.Delete(ctx, r.Type, r.ID, false)
		case cur.Status == 404:
			rep.Action, errs[i] = repairHardDelete, dst.Delete(ctx, r.Type, r.ID, true)
		case d.Status == 200 && sameContent(cur.Resource, d.Resource):
			// Written already (an earlier run of this repair that did not record itself): nothing to do twice.
			rep.Action, rep.DestinationStatus, rep.DestinationVersion, rep.DestinationLastUpdated = repairNone, d.Status, d.VersionID, d.LastUpdated
		default:
			rep.Action = repairPut
			if dv, sv := versionOf(d.VersionID), versionOf(cur.VersionID); d.Status != 404 && dv >= sv {
				// The destination's chain is not below the source's: the source's started again (hard-deleted and
				// created anew), and a PUT would add to the old one.
				rep.Action = repairRecreate
				if err := dst.Delete(ctx, r.Type, r.ID, true); err != nil {
					errs[i] = fmt.Errorf("hard-delete %s/%s on the destination: %w", r.Type, r.ID, err)
					return
				}
			}
			mu.Lock()
			bodies[i] = cur.Resource
			mu.Unlock()
		}
		repairs[i] = rep
	})
	if err := errors.Join(errs...); err != nil {
		return nil, "", fmt.Errorf("repair: %w", err)
	}
	if err := s.putRepairs(ctx, dst, stale, bodies, repairs); err != nil {
		return nil, "", err
	}
	name := fmt.Sprintf("%s%s/repairs-%d.json", filesPrefix, m.ID, generation)
	if err := s.putJSON(ctx, name, repairs); err != nil {
		return nil, "", fmt.Errorf("write the repairs: %w", err)
	}
	return repairs, name, nil
}

// putRepairs PUTs the bodies in batches and records each one's new version and time.
func (s *Service) putRepairs(ctx context.Context, dst FHIRClient, stale []RefusedResource, bodies [][]byte, repairs []Repair) error {
	var idx []int
	for i, b := range bodies {
		if b != nil {
			idx = append(idx, i)
		}
	}
	for start := 0; start < len(idx); start += idsPerSearch {
		chunk := idx[start:min(start+idsPerSearch, len(idx))]
		entries := make([]fhir.BatchEntry, len(chunk))
		for k, i := range chunk {
			entries[k] = fhir.BatchEntry{Type: stale[i].Type, ID: stale[i].ID, Resource: bodies[i]}
		}
		res, err := dst.Batch(ctx, entries)
		if err != nil {
			return fmt.Errorf("repair by PUT: %w", err)
		}
		for k, i := range chunk {
			if st := res.Status[k]; !strings.HasPrefix(st, "200") && !strings.HasPrefix(st, "201") {
				return fmt.Errorf("repair %s/%s by PUT: the destination answered %s", stale[i].Type, stale[i].ID, st)
			}
			repairs[i].DestinationStatus = 200
			if k < len(res.Version) {
				repairs[i].DestinationVersion = res.Version[k]
				repairs[i].DestinationLastUpdated = res.LastUpdated[k]
			}
		}
	}
	for i := range repairs {
		switch repairs[i].Action {
		case repairDelete:
			d, err := dst.Read(ctx, repairs[i].Type, repairs[i].ID)
			if err != nil {
				return fmt.Errorf("read %s/%s on the destination: %w", repairs[i].Type, repairs[i].ID, err)
			}
			repairs[i].DestinationStatus, repairs[i].DestinationVersion = d.Status, d.VersionID
		case repairHardDelete:
			repairs[i].DestinationStatus = 404
		}
	}
	return nil
}

// sameContent reports whether two versions of a resource hold the same, their meta aside.
func sameContent(a, b []byte) bool {
	paths, err := differences(a, b, map[string]bool{"meta": true})
	return err == nil && len(paths) == 0
}

// versionOf is a versionId as a number (0 when it is not one).
func versionOf(v string) int {
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0
	}
	return n
}
