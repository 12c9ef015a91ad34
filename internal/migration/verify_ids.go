package migration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// idsPerSearch is how many ids one _id search asks for.
const idsPerSearch = 100

// fileCheck is what checking one file, or a run of files, found.
type fileCheck struct {
	types map[string]*IDTally
	// missing lists missing ids (as many as the document keeps, when files are merged); missingCount counts all.
	missing      []string
	missingCount int64
	diffs        []Difference
}

func newFileCheck() *fileCheck { return &fileCheck{types: map[string]*IDTally{}} }

func (f *fileCheck) tally(t string) *IDTally {
	if f.types[t] == nil {
		f.types[t] = &IDTally{}
	}
	return f.types[t]
}

// add merges another check into f, keeping only as many missing ids and differences as the document lists.
func (f *fileCheck) add(o *fileCheck) {
	for t, n := range o.types {
		f.tally(t).add(n)
	}
	f.missingCount += o.missingCount
	f.missing = append(f.missing, o.missing[:min(len(o.missing), max(maxListedMissing-len(f.missing), 0))]...)
	f.diffs = append(f.diffs, o.diffs[:min(len(o.diffs), max(maxListedDifferences-len(f.diffs), 0))]...)
}

func (t *IDTally) add(n *IDTally) {
	t.Lines += n.Lines
	t.Checked += n.Checked
	t.Missing += n.Missing
	t.Duplicates += n.Duplicates
	t.Compared += n.Compared
	t.Different += n.Different
	t.Extra += n.Extra
}

// checkpointEvery is how much checking work one save of the cursor covers: a killed invocation redoes at most
// that much, and a check of many small files does not rewrite the document once per file.
const checkpointEvery = 5 * time.Second

// checkIDs checks the files from the saved cursor on, saving the cursor and tallies every checkpointEvery (and at
// the end); when the budget is spent it sends the next message and returns false. It returns true once every file
// is checked.
func (s *Service) checkIDs(ctx context.Context, m *Migration, generation int) (bool, error) {
	total := exportedFileCount(m)
	client, err := s.cfg.FHIR(m.Request.Destination)
	if err != nil {
		return false, fmt.Errorf("client for %s: %w", m.Request.Destination, err)
	}
	// With history or deletes a staged line may be an older version or a deletion stub: which ids the
	// destination must hold is what the source holds now, asked of the source itself.
	var source FHIRClient
	if m.Request.associated() {
		if source, err = s.sourceClient(&m.Request); err != nil {
			return false, fmt.Errorf("client for %s: %w", m.Request.Source, err)
		}
	}
	held, err := s.heldFiles(ctx, m)
	if err != nil {
		return false, err
	}
	// A repaired resource's versionId and lastUpdated on the destination are new: its content is compared without
	// them.
	repairs, err := s.repairedResources(ctx, m)
	if err != nil {
		return false, err
	}
	repaired := make(map[string]bool, len(repairs))
	for k := range repairs {
		repaired[k] = true
	}
	started := s.now()
	next := 0
	if m.Verification.IDs != nil {
		next = m.Verification.IDs.NextFile
	}
	var types []string // compared in full mode
	if verifyMode(m) == VerifyModeFull {
		for _, j := range m.Jobs {
			if j.Kind == KindExport && j.State == JobDone {
				for t := range j.Counts {
					if !slices.Contains(types, t) {
						types = append(types, t)
					}
				}
			}
		}
	}
	// done is what this invocation checked (for the comparison budget); pending what is not saved yet, from file
	// from on.
	done, pending := newFileCheck(), newFileCheck()
	from, lastSave := next, started
	finished, stopped := false, false
	// In counts mode only the types counts cannot prove are looked up (overlapTypes).
	overlap := overlapTypes(m)
	err = s.exportedFiles(ctx, m, next, func(i int, f File) (bool, error) {
		res := newFileCheck()
		if verifyMode(m) != VerifyModeCounts || overlap[f.Type] {
			var err error
			res, err = s.checkFile(ctx, client, source, f, compareBudget(m, types, done), comparison{importMode: m.Request.ImportMode,
				repaired: repaired}, !held[stripQuery(f.URL)], s.cfg.PollConcurrency)
			if err != nil {
				return false, err
			}
		}
		if len(res.missing) > 0 {
			var b strings.Builder
			for _, id := range res.missing {
				b.WriteString(id)
				b.WriteByte('\n')
			}
			if err := s.putReport(ctx, missingPartName(m.ID, generation, i), []byte(b.String())); err != nil {
				return false, fmt.Errorf("write missing ids of file %d: %w", i, err)
			}
		}
		done.add(res)
		pending.add(res)
		now := s.now()
		last := i+1 == total
		more := !last && now.Sub(started) >= verifyBudget
		if !last && !more && now.Sub(lastSave) < checkpointEvery {
			return true, nil
		}
		saved, err := s.saveFileCheck(ctx, m.ID, generation, from, i+1, total, pending, more)
		if err != nil || !saved {
			stopped = true
			return false, err
		}
		if more {
			s.log.Info("verification continues in a new message", "migration", m.ID, "nextFile", i+1, "files", total)
			stopped = true
			return false, nil
		}
		from, pending, lastSave = i+1, newFileCheck(), now
		finished = last
		return true, nil
	})
	if err != nil || stopped {
		return false, err
	}
	if !finished && next < total {
		return false, fmt.Errorf("the manifests list fewer files than their jobs count (%d)", total)
	}
	return true, nil
}

// compareBudget is, per type, how many more resources a full check compares (-1: all), given those compared
// before this invocation and by it.
func compareBudget(m *Migration, types []string, done *fileCheck) map[string]int64 {
	compare := make(map[string]int64, len(types))
	sample := int64(verifySample(m))
	for _, t := range types {
		compare[t] = -1
		if sample > 0 {
			compared := done.tally(t).Compared
			if ids := m.Verification.IDs; ids != nil && ids.Types[t] != nil {
				compared += ids.Types[t].Compared
			}
			compare[t] = max(sample-compared, 0)
		}
	}
	return compare
}

// saveFileCheck adds the results of files [from, to) and moves the cursor to to; false means another invocation
// got there first (a re-sent message), and this one stops.
func (s *Service) saveFileCheck(ctx context.Context, id string, generation, from, to, files int, res *fileCheck, more bool) (bool, error) {
	saved := false
	_, eff, err := s.update(ctx, id, func(m *Migration) (*effects, error) {
		saved = false
		if !verifiable(m, generation) {
			return nil, errUnchanged
		}
		v := m.Verification
		if v.IDs == nil {
			v.IDs = &IDCheck{Types: map[string]*IDTally{}}
		}
		if v.IDs.NextFile != from {
			return nil, errUnchanged
		}
		saved = true
		v.IDs.NextFile, v.IDs.Files = to, files
		for t, n := range res.types {
			cur := v.IDs.Types[t]
			if cur == nil {
				cur = &IDTally{}
				v.IDs.Types[t] = cur
			}
			cur.add(n)
		}
		v.MissingCount += res.missingCount
		if res.missingCount > 0 {
			v.MissingReport = missingReportPrefix(m.ID, generation)
		}
		v.Missing = append(v.Missing, res.missing[:min(len(res.missing), max(maxListedMissing-len(v.Missing), 0))]...)
		v.Differences = append(v.Differences, res.diffs[:min(len(res.diffs), max(maxListedDifferences-len(v.Differences), 0))]...)
		// Progress is a heartbeat: the sweep re-sends verify-counts only when nothing moved for a while; the
		// faults counted so far were overcome.
		v.DispatchAt = s.now()
		v.Failures, v.LastError = 0, ""
		if !more {
			return nil, nil
		}
		e := &effects{}
		v.Dispatch++
		e.send(verifyMessage(m.ID, generation, v.Dispatch, time.Time{}))
		return e, nil
	})
	if err != nil {
		return false, fmt.Errorf("save verification progress: %w", err)
	}
	if saved {
		s.perform(ctx, id, eff)
	}
	return saved, nil
}

// comparison says what a full check leaves out of a comparison: meta.versionId and meta.lastUpdated where the
// import changes them (InitialLoad, SearchParameters) and for repaired resources ("Type/id").
type comparison struct {
	importMode string
	repaired   map[string]bool
}

func (c comparison) ignored(typ, id string) map[string]bool {
	if c.repaired[typ+"/"+id] {
		return map[string]bool{"meta.versionId": true, "meta.lastUpdated": true}
	}
	return ignoredPaths(typ, c.importMode)
}

// idBatch is up to idsPerSearch resources of one type looked up with one search.
type idBatch struct {
	typ string
	ids []string
	// raw holds the exported lines of resources to compare (full mode), by id.
	raw map[string][]byte
}

// checkFile streams one exported file and looks its ids up in batches, workers searches at a time (on each server).
// Only the batches in flight and the file's ids (for duplicates) are held in memory.
// With source set (history or deletes), the ids are looked up on both servers and compared with each other.
func (s *Service) checkFile(ctx context.Context, searcher, source FHIRClient, f File, compare map[string]int64, cmp comparison, lookup bool,
	workers int) (*fileCheck, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	res := newFileCheck()
	var mu sync.Mutex
	batches := make(chan *idBatch)
	var wg sync.WaitGroup
	for range max(workers, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range batches {
				var missing, extra []string
				var compared int
				var diffs []Difference
				var err error
				if source != nil {
					missing, extra, compared, diffs, err = lookUpOnBoth(ctx, source, searcher, b, cmp)
				} else {
					missing, compared, diffs, err = lookUp(ctx, searcher, b, cmp)
				}
				if err != nil {
					cancel(err)
					continue
				}
				mu.Lock()
				t := res.tally(b.typ)
				t.Different += int64(len(diffs))
				t.Extra += int64(len(extra))
				for _, id := range extra { // listed with the differences, counted apart
					diffs = append(diffs, Difference{Resource: id, Paths: []string{"(deleted on the source, present in the destination)"}})
				}
				t.Missing += int64(len(missing))
				t.Compared += int64(compared)
				res.missing = append(res.missing, missing...)
				res.diffs = append(res.diffs, diffs...)
				mu.Unlock()
			}
		}()
	}
	readErr := s.readIDs(ctx, f, compare, lookup, source != nil, res, &mu, batches)
	close(batches)
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return nil, err
	}
	if readErr != nil {
		return nil, readErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	res.missingCount = int64(len(res.missing))
	return res, nil
}

// readIDs reads the file line by line and hands full batches to the workers; without lookup it only counts the
// lines (a file whose resources were held back, not written).
// With versions (history or deletes), an id on several lines is several versions, not a duplicate.
func (s *Service) readIDs(ctx context.Context, f File, compare map[string]int64, lookup, versions bool, res *fileCheck, mu *sync.Mutex, out chan<- *idBatch) error {
	rc, err := s.cfg.Staging.Open(ctx, stripQuery(f.URL))
	if err != nil {
		return fmt.Errorf("open %s: %w", stripQuery(f.URL), err)
	}
	defer func() { _ = rc.Close() }()
	sc := bufio.NewScanner(rc)
	sc.Buffer(make([]byte, 0, 64<<10), maxResourceLine)
	seen := map[string]struct{}{}
	pending := map[string]*idBatch{}
	send := func(b *idBatch) error {
		select {
		case out <- b:
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	line := 0
	for sc.Scan() {
		line++
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 {
			continue
		}
		var head struct {
			ResourceType string `json:"resourceType"`
			ID           string `json:"id"`
		}
		typ := f.Type
		if err := json.Unmarshal(text, &head); err == nil && head.ResourceType != "" {
			typ = head.ResourceType
		}
		mu.Lock()
		res.tally(f.Type).Lines++ // per manifest type: compared with the manifest's count
		if !lookup {
			mu.Unlock()
			continue
		}
		valid := idPattern.MatchString(head.ID) && typePattern.MatchString(typ)
		key := typ + "/" + head.ID
		_, dup := seen[key]
		t := res.tally(typ)
		switch {
		case !valid:
			t.Checked++
			t.Missing++
			res.missing = append(res.missing, fmt.Sprintf("%s/%s (line %d has no valid id)", typ, head.ID, line))
		case dup && !versions:
			t.Checked++
			t.Duplicates++
		case !dup:
			t.Checked++
		}
		mu.Unlock()
		if !valid || dup {
			continue
		}
		seen[key] = struct{}{}
		b := pending[typ]
		if b == nil {
			b = &idBatch{typ: typ}
			pending[typ] = b
		}
		b.ids = append(b.ids, head.ID)
		if n := compare[typ]; n != 0 {
			if b.raw == nil {
				b.raw = map[string][]byte{}
			}
			b.raw[head.ID] = bytes.Clone(text)
			if n > 0 {
				compare[typ] = n - 1
			}
		}
		if len(b.ids) == idsPerSearch {
			delete(pending, typ)
			if err := send(b); err != nil {
				return err
			}
		}
	}
	if err := sc.Err(); errors.Is(err, bufio.ErrTooLong) {
		return permanent(fmt.Errorf("%s line %d is over %d bytes", stripQuery(f.URL), line+1, maxResourceLine))
	} else if err != nil {
		return fmt.Errorf("read %s after line %d: %w", stripQuery(f.URL), line, err)
	}
	for _, b := range pending {
		if err := send(b); err != nil {
			return err
		}
	}
	return nil
}

// lookUpOnBoth searches one batch of ids on the source and the destination: an id the source holds must be in
// the destination (missing otherwise), one it does not hold (deleted there) must not be (extra otherwise), and the
// contents compared (full) are the two current versions. It returns ids as Type/id.
func lookUpOnBoth(ctx context.Context, source, dest FHIRClient, b *idBatch, cmp comparison) (missing, extra []string, compared int, diffs []Difference, err error) {
	fetch := func(c FHIRClient) (map[string]json.RawMessage, error) {
		q := url.Values{"_id": {strings.Join(b.ids, ",")}, "_count": {strconv.Itoa(len(b.ids))}}
		if len(b.raw) == 0 {
			q.Set("_elements", "id")
		}
		found := make(map[string]json.RawMessage, len(b.ids))
		err := c.Search(ctx, b.typ, q, func(r json.RawMessage) error {
			var head struct {
				ResourceType string `json:"resourceType"`
				ID           string `json:"id"`
			}
			if err := json.Unmarshal(r, &head); err == nil && head.ResourceType == b.typ {
				found[head.ID] = r
			}
			return nil
		})
		return found, err
	}
	// The two servers are asked at once: each answers from its own capacity, so the batch takes the longer of the
	// two, not their sum (the cutover's checks of what is new are downtime).
	var src, dst map[string]json.RawMessage
	var srcErr, dstErr error
	var wg sync.WaitGroup
	wg.Go(func() { src, srcErr = fetch(source) })
	dst, dstErr = fetch(dest)
	wg.Wait()
	if srcErr != nil {
		return nil, nil, 0, nil, fmt.Errorf("look up %d %s ids on the source: %w", len(b.ids), b.typ, srcErr)
	}
	if dstErr != nil {
		return nil, nil, 0, nil, fmt.Errorf("look up %d %s ids on the destination: %w", len(b.ids), b.typ, dstErr)
	}
	for _, id := range b.ids {
		s, inSource := src[id]
		d, inDest := dst[id]
		switch {
		case inSource && !inDest:
			missing = append(missing, b.typ+"/"+id)
		case !inSource && inDest:
			extra = append(extra, b.typ+"/"+id)
		case inSource && b.raw[id] != nil:
			compared++
			paths, err := differences(s, d, cmp.ignored(b.typ, id))
			if err != nil {
				return nil, nil, 0, nil, fmt.Errorf("compare %s/%s: %w", b.typ, id, err)
			}
			if len(paths) > 0 {
				diffs = append(diffs, Difference{Resource: b.typ + "/" + id, Paths: paths})
			}
		}
	}
	return missing, extra, compared, diffs, nil
}

// lookUp searches one batch of ids; it returns the ids not found (as Type/id) and the differing contents.
func lookUp(ctx context.Context, searcher FHIRClient, b *idBatch, cmp comparison) ([]string, int, []Difference, error) {
	q := url.Values{"_id": {strings.Join(b.ids, ",")}, "_count": {strconv.Itoa(len(b.ids))}}
	if len(b.raw) == 0 {
		q.Set("_elements", "id")
	}
	found := make(map[string]bool, len(b.ids))
	var diffs []Difference
	compared := 0
	err := searcher.Search(ctx, b.typ, q, func(r json.RawMessage) error {
		var head struct {
			ResourceType string `json:"resourceType"`
			ID           string `json:"id"`
		}
		if err := json.Unmarshal(r, &head); err != nil || head.ResourceType != b.typ {
			return nil
		}
		if exported, ok := b.raw[head.ID]; ok && !found[head.ID] {
			compared++
			paths, err := differences(exported, r, cmp.ignored(b.typ, head.ID))
			if err != nil {
				return fmt.Errorf("compare %s/%s: %w", b.typ, head.ID, err)
			}
			if len(paths) > 0 {
				diffs = append(diffs, Difference{Resource: b.typ + "/" + head.ID, Paths: paths})
			}
		}
		found[head.ID] = true
		return nil
	})
	if err != nil {
		return nil, 0, nil, fmt.Errorf("look up %d %s ids: %w", len(b.ids), b.typ, err)
	}
	var missing []string
	for _, id := range b.ids {
		if !found[id] {
			missing = append(missing, b.typ+"/"+id)
		}
	}
	return missing, compared, diffs, nil
}
