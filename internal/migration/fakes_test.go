package migration

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/bus"
	"github.com/fhir-migrator/fhir-migrator/internal/fhir"
	"github.com/fhir-migrator/fhir-migrator/internal/staging"
	"github.com/fhir-migrator/fhir-migrator/internal/store"
)

var _ FHIRClient = (*fhir.Client)(nil)
var _ URLPolicy = (*fhir.HostPolicy)(nil)

const (
	srcBase  = "https://src.azurehealthcareapis.com"
	dstBase  = "https://ws-dst.fhir.azurehealthcareapis.com"
	blobBase = "https://acct.blob.core.windows.net"
)

// fakeServer is a scripted FHIR server: exports finish after exportPending 202s with one manifest file per entry
// of files[type]; imports finish after importPending 202s and add what they imported to the destination counts.
type fakeServer struct {
	mu    sync.Mutex
	base  string
	types []string
	// typesErr fails Capabilities; fhirVersion is the version it answers ("": 4.0.1).
	typesErr    error
	fhirVersion string
	// files: per type, the resource count of each exported file.
	files map[string][]int64
	// filesFor, when set, answers the files of an export instead of files (an export that reads its window).
	filesFor func(r fhir.ExportRequest, typ string) []int64
	// exportPending / importPending: 202s answered before the 200.
	exportPending, importPending int
	// exportPendingByType overrides exportPending for exports of exactly that one type.
	exportPendingByType map[string]int
	// kickoffErrs are returned by the next kick-offs (export or import), one per call; nil entries succeed.
	kickoffErrs []error
	// onKickoff runs inside a kick-off after the server registered the job (crash simulation).
	onKickoff func() error
	// registry shares file counts between the source (writes) and the destination (imports).
	registry *fileRegistry

	nextID         int
	exports        map[string]*fakeJob
	imports        map[string]*fakeJob
	importByBody   map[string]string
	exportKickoffs []fhir.ExportRequest
	importKickoffs []fhir.ImportRequest
	canceled       []string
	batches        [][]fhir.BatchEntry
	counts         map[string]int64
	putIDs         map[string]bool
	countErr       error
	countOffset    map[string]int64
	// changed answers counts of resources changed since a time, per type.
	changed map[string]int64
	// cancelErrs are returned by the next DELETEs, one per call (nil entries succeed); cancelCalls counts them.
	cancelErrs  []error
	cancelCalls int
	running     int
	maxRunning  int
	// now, when set, is the server's clock (the manifests' transactionTime); else a fixed time.
	now func() time.Time
	// countFor, when set and answering true, answers a count instead of the files' totals.
	countFor func(typ string, q url.Values) (int64, bool)
	// historyCounts answer HistoryCount per type; a type absent there has one version per current resource.
	historyCounts map[string]int64
	historyCalls  int
}

type fakeJob struct {
	polls   int
	pending int
	done    bool
	gone    bool
	// at is the kick-off's time on the server's clock (the manifest's transactionTime).
	at      time.Time
	export  fhir.ExportRequest
	imp     fhir.ImportRequest
	counted bool
}

// fileRegistry maps a staged file URL (without query) to its resource count and NDJSON content.
type fileRegistry struct {
	mu      sync.Mutex
	counts  map[string]int64
	content map[string]string
}

func newFakeServer(base string, types []string, reg *fileRegistry) *fakeServer {
	return &fakeServer{base: base, types: types, registry: reg, files: map[string][]int64{},
		exports: map[string]*fakeJob{}, imports: map[string]*fakeJob{}, importByBody: map[string]string{},
		counts: map[string]int64{}, putIDs: map[string]bool{}, exportPendingByType: map[string]int{}}
}

func (f *fakeServer) BaseURL() string { return f.base }

func (f *fakeServer) Capabilities(context.Context) (fhir.Capabilities, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.typesErr != nil {
		return fhir.Capabilities{}, f.typesErr
	}
	return fhir.Capabilities{Types: slices.Clone(f.types), FHIRVersion: cmp.Or(f.fhirVersion, "4.0.1")}, nil
}

func (f *fakeServer) popErr() error {
	if len(f.kickoffErrs) == 0 {
		return nil
	}
	err := f.kickoffErrs[0]
	f.kickoffErrs = f.kickoffErrs[1:]
	return err
}

func (f *fakeServer) ExportKickoff(_ context.Context, r fhir.ExportRequest) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.exportKickoffs = append(f.exportKickoffs, r)
	if err := f.popErr(); err != nil {
		return "", err
	}
	f.nextID++
	cl := fmt.Sprintf("%s/_operations/export/%d", f.base, f.nextID)
	pending := f.exportPending
	if len(r.Types) == 1 {
		if p, ok := f.exportPendingByType[r.Types[0]]; ok {
			pending = p
		}
	}
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if f.now != nil {
		at = f.now()
	}
	f.exports[cl] = &fakeJob{export: r, pending: pending, at: at}
	f.running++
	f.maxRunning = max(f.maxRunning, f.running)
	if f.onKickoff != nil {
		if err := f.onKickoff(); err != nil {
			return "", err
		}
	}
	return cl, nil
}

func (f *fakeServer) ExportStatus(_ context.Context, cl string) (*fhir.ExportStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	j := f.exports[cl]
	if j == nil || j.gone {
		return nil, &fhir.Error{Op: "export status", StatusCode: 404, Message: "export job not found"}
	}
	j.polls++
	if j.polls <= j.pending {
		return &fhir.ExportStatus{}, nil
	}
	if !j.done {
		j.done = true
		f.running--
	}
	types := j.export.Types
	if len(types) == 0 {
		for t := range f.files {
			types = append(types, t)
		}
		slices.Sort(types)
	}
	man := &fhir.Manifest{TransactionTime: j.at.UTC().Format(time.RFC3339Nano), Request: f.base + "/$export"}
	for _, t := range types {
		files := f.files[t]
		if f.filesFor != nil {
			files = f.filesFor(j.export, t)
		}
		for n, c := range files {
			u := fmt.Sprintf("%s/%s/%s/%s-%d.ndjson", blobBase, j.export.Container, strings.TrimPrefix(cl, f.base+"/_operations/export/"), t, n+1)
			f.registry.add(u, c, t)
			man.Output = append(man.Output, fhir.ManifestFile{Type: t, URL: u + "?sv=sas", Count: c})
		}
	}
	return &fhir.ExportStatus{Done: true, Manifest: man}, nil
}

func (f *fakeServer) ImportKickoff(_ context.Context, r fhir.ImportRequest) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.importKickoffs = append(f.importKickoffs, r)
	if err := f.popErr(); err != nil {
		return "", err
	}
	body, _ := json.Marshal(r)
	if cl, ok := f.importByBody[string(body)]; ok {
		return cl, nil // registration is idempotent for an identical body
	}
	for _, in := range r.Inputs {
		if strings.Contains(in.URL, "?") || in.Type == typeSearchParameter {
			return "", &fhir.Error{Op: "import kick-off", StatusCode: 400, Message: "bad input " + in.URL}
		}
	}
	f.nextID++
	cl := fmt.Sprintf("%s/_operations/import/%d", f.base, f.nextID)
	f.importByBody[string(body)] = cl
	f.imports[cl] = &fakeJob{imp: r, pending: f.importPending}
	if f.onKickoff != nil {
		if err := f.onKickoff(); err != nil {
			return "", err
		}
	}
	return cl, nil
}

func (f *fakeServer) ImportStatus(_ context.Context, cl string) (*fhir.ImportStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	j := f.imports[cl]
	if j == nil || j.gone {
		return nil, &fhir.Error{Op: "import status", StatusCode: 404, Message: "import job not found"}
	}
	j.polls++
	if j.polls <= j.pending {
		return &fhir.ImportStatus{}, nil
	}
	res := &fhir.ImportResult{Request: f.base + "/$import"}
	for _, in := range j.imp.Inputs {
		n := f.registry.count(in.URL)
		res.Output = append(res.Output, fhir.ImportOutput{Type: in.Type, Count: n, InputURL: in.URL})
		if !j.counted {
			f.counts[in.Type] += n
		}
	}
	j.counted = true
	return &fhir.ImportStatus{Done: true, Result: res}, nil
}

func (f *fakeServer) CancelJob(_ context.Context, cl string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cancelCalls++
	if len(f.cancelErrs) > 0 {
		err := f.cancelErrs[0]
		f.cancelErrs = f.cancelErrs[1:]
		if err != nil {
			return err
		}
	}
	f.canceled = append(f.canceled, cl)
	for _, m := range []map[string]*fakeJob{f.exports, f.imports} {
		if j := m[cl]; j != nil {
			if !j.done && !j.gone && strings.Contains(cl, "/export/") {
				f.running--
			}
			j.gone = true
			return nil
		}
	}
	return &fhir.Error{Op: "cancel", StatusCode: 404}
}

// Count answers a source (a server with files) from what it holds, unless setCount fixed a type's count, and a
// destination from what it imported. A query for resources changed after a time ("_lastUpdated=gt...") answers
// changed[t].
func (f *fakeServer) Count(_ context.Context, t string, q url.Values) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.countErr != nil {
		return 0, f.countErr
	}
	for _, v := range q["_lastUpdated"] {
		if strings.HasPrefix(v, "gt") {
			return f.changed[t], nil
		}
		if strings.HasPrefix(v, "lt") && len(q["_lastUpdated"]) == 1 {
			return 0, nil // before the migrated range: the fake holds nothing there
		}
	}
	if f.countFor != nil {
		if n, ok := f.countFor(t, q); ok {
			return n, nil
		}
	}
	n, fixed := f.counts[t]
	if !fixed && len(f.files) > 0 {
		for typ, files := range f.files {
			if t == "" || typ == t {
				for _, c := range files {
					n += c
				}
			}
		}
	}
	return n + f.countOffset[t], nil
}

func (f *fakeServer) HistoryCount(ctx context.Context, t string, _ fhir.HistoryRange) (int64, error) {
	f.mu.Lock()
	f.historyCalls++
	n, ok := f.historyCounts[t]
	f.mu.Unlock()
	if ok {
		return n, nil
	}
	return f.Count(ctx, t, nil)
}

func (f *fakeServer) ResourceHistoryCount(context.Context, string, string) (int64, error) {
	return 0, &fhir.Error{Op: "history count", StatusCode: 400, Message: "this fake server counts no resource's history"}
}

// History lists nothing: the fake keeps no versions.
func (f *fakeServer) History(context.Context, string, fhir.HistoryRange, bool, int, func(fhir.HistoryEntry) error) error {
	return nil
}

// SearchPage lists no resource: the fake keeps no ids (the cutover's reconciliation finds nothing to do).
func (f *fakeServer) SearchPage(context.Context, string, url.Values, string) ([]json.RawMessage, string, error) {
	return nil, "", nil
}

func (f *fakeServer) Read(context.Context, string, string) (fhir.ReadResult, error) {
	return fhir.ReadResult{}, &fhir.Error{Op: "read", StatusCode: 400, Message: "this fake server does not read"}
}

func (f *fakeServer) VersionBefore(context.Context, string, string, time.Time) (fhir.ReadResult, error) {
	return fhir.ReadResult{}, &fhir.Error{Op: "history", StatusCode: 400, Message: "this fake server keeps no versions"}
}

func (f *fakeServer) VRead(context.Context, string, string, string) (time.Time, bool, error) {
	return time.Time{}, false, &fhir.Error{Op: "vread", StatusCode: 400, Message: "this fake server does not read versions"}
}

func (f *fakeServer) Delete(context.Context, string, string, bool) error {
	return &fhir.Error{Op: "delete", StatusCode: 400, Message: "this fake server does not delete"}
}

func (f *fakeServer) PurgeHistory(context.Context, string, string) error {
	return &fhir.Error{Op: "purge history", StatusCode: 400, Message: "this fake server does not purge"}
}

// Search is refused: only the searchDest fake (verify_test.go) looks ids up.
func (f *fakeServer) Search(context.Context, string, url.Values, func(json.RawMessage) error) error {
	return &fhir.Error{Op: "search", StatusCode: 400, Message: "this fake server does not search"}
}

func (f *fakeServer) Batch(_ context.Context, entries []fhir.BatchEntry) (*fhir.BatchResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.batches = append(f.batches, slices.Clone(entries))
	res := &fhir.BatchResult{}
	for _, e := range entries {
		key := e.Type + "/" + e.ID
		if !f.putIDs[key] {
			f.putIDs[key] = true
			f.counts[e.Type]++
		}
		res.Status = append(res.Status, "201")
	}
	return res, nil
}

func (f *fakeServer) clearCount(t string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.counts, t)
}

func (f *fakeServer) snapshot() (exportKickoffs, importKickoffs int, canceled []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.exportKickoffs), len(f.importKickoffs), slices.Clone(f.canceled)
}

func (r *fileRegistry) add(u string, n int64, typ string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.counts[u] = n
	if typ == typeSearchParameter {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, `{"resourceType":"SearchParameter","id":"sp-%s-%d","url":"http://example.org/sp/%d"}`+"\n", u[len(u)-12:], i, i)
		}
		r.content[u] = b.String()
	}
}

func (r *fileRegistry) count(u string) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.counts[u]
}

// fakeStaging is the whole staging account in memory: it claims containers, serves the registry's SearchParameter
// files, and lists and deletes containers for cleanup.
type fakeStaging struct {
	mu      sync.Mutex
	owners  map[string]string
	reg     *fileRegistry
	deleted []string
	extra   map[string][]staging.BlobInfo // container -> blobs the test put there
	// onList runs when a container is listed (e.g. a request racing the cleanup).
	onList func()
}

var _ Staging = (*fakeStaging)(nil)

func (s *fakeStaging) ClaimContainer(_ context.Context, c, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if o, ok := s.owners[c]; ok && o != id {
		return fmt.Errorf("%w: owned by %s", staging.ErrContainerTaken, o)
	}
	s.owners[c] = id
	return nil
}

func (s *fakeStaging) ReleaseContainer(_ context.Context, c, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.owners[c] != id {
		return fmt.Errorf("%s is not %s's", c, id)
	}
	delete(s.owners, c)
	return nil
}

func (s *fakeStaging) Open(_ context.Context, u string) (io.ReadCloser, error) {
	s.reg.mu.Lock()
	defer s.reg.mu.Unlock()
	c, ok := s.reg.content[u]
	if !ok {
		return nil, fmt.Errorf("%w: %s", staging.ErrBlobNotFound, u)
	}
	return io.NopCloser(strings.NewReader(c)), nil
}

func (s *fakeStaging) ListContainer(_ context.Context, c, id string) ([]staging.BlobInfo, error) {
	if s.onList != nil {
		s.onList()
	}
	if owner := s.claimed()[c]; owner != id {
		return nil, fmt.Errorf("%w: %s", staging.ErrNotOwned, owner)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if slices.Contains(s.deleted, c) {
		return nil, nil
	}
	return slices.Clone(s.extra[c]), nil
}

func (s *fakeStaging) DeleteContainer(_ context.Context, c, id string) error {
	if owner := s.claimed()[c]; owner != id {
		return staging.ErrNotOwned
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deleted = append(s.deleted, c)
	return nil
}

func (s *fakeStaging) BlobSize(context.Context, string) (int64, error) { return 10, nil }
func (s *fakeStaging) DeleteBlob(context.Context, string) error        { return nil }

func (s *fakeStaging) claimed() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]string{}
	for k, v := range s.owners {
		out[k] = v
	}
	return out
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// hookStore wraps a store: failPuts refuses every write (a dying process), and conflictOnce makes the next
// write of a migration document lose a real race (someone else writes first).
type hookStore struct {
	store.Store
	mu           sync.Mutex
	failPuts     bool
	conflictOnce bool
	conflicts    int
	// docPuts counts the writes of migration documents.
	docPuts int
}

func (h *hookStore) Put(ctx context.Context, name string, data []byte, etag string, md map[string]string) (string, error) {
	h.mu.Lock()
	fail, conflict := h.failPuts, h.conflictOnce && etag != "" && strings.HasPrefix(name, migrationPrefix)
	if strings.HasPrefix(name, migrationPrefix) {
		h.docPuts++
	}
	if conflict {
		h.conflictOnce = false
		h.conflicts++
	}
	h.mu.Unlock()
	if fail {
		return "", errors.New("process died")
	}
	if conflict {
		cur, curTag, err := h.Store.Get(ctx, name)
		if err != nil {
			return "", err
		}
		var meta map[string]string
		items, _ := h.Store.List(ctx, name)
		if len(items) > 0 {
			meta = items[0].Metadata
		}
		if _, err := h.Store.Put(ctx, name, cur, curTag, meta); err != nil {
			return "", err
		}
	}
	return h.Store.Put(ctx, name, data, etag, md)
}

func (h *hookStore) set(fn func(h *hookStore)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	fn(h)
}

// harness is one engine with scripted servers, an in-memory store and bus, and a manual clock.
type harness struct {
	t       testing.TB
	svc     *Service
	store   *hookStore
	bus     *bus.Memory
	clock   *fakeClock
	src     *fakeServer
	dst     *fakeServer
	staging *fakeStaging
	// pending messages not yet delivered; delivered IDs are dropped when sent again (duplicate detection).
	pending   []bus.Message
	delivered map[string]bool
	// hold, when set, keeps the messages it matches from their function: they wait in held, for the test to run.
	hold func(bus.Message) bool
	held []bus.Message
}

func newHarness(t testing.TB, tune func(*Config)) *harness {
	reg := &fileRegistry{counts: map[string]int64{}, content: map[string]string{}}
	types := []string{"Observation", "Patient", "SearchParameter"}
	h := &harness{
		t:         t,
		store:     &hookStore{Store: store.NewMemory()},
		bus:       &bus.Memory{},
		clock:     &fakeClock{now: h0()},
		src:       newFakeServer(srcBase, types, reg),
		dst:       newFakeServer(dstBase, types, reg),
		staging:   &fakeStaging{owners: map[string]string{}, reg: reg, extra: map[string][]staging.BlobInfo{}},
		delivered: map[string]bool{},
	}
	h.src.files = map[string][]int64{"Patient": {3, 2}, "Observation": {7}, "SearchParameter": {2}}
	policy, err := fhir.ParseHostPolicy("")
	require.NoError(t, err)
	seq := 0
	cfg := Config{Tuning: DefaultTuning(),
		Store: h.store, Bus: h.bus, Policy: policy, Staging: h.staging, Clock: h.clock.Now,
		Random: func() float64 { return 1 },
		NewID: func() string {
			seq++
			return fmt.Sprintf("m-test-%d", seq)
		},
		FHIR: func(base string) (FHIRClient, error) {
			switch base {
			case srcBase:
				return h.src, nil
			case dstBase:
				return h.dst, nil
			}
			return nil, fmt.Errorf("no server %s", base)
		},
	}
	if tune != nil {
		tune(&cfg)
	}
	h.svc, err = NewService(cfg)
	require.NoError(t, err)
	return h
}

func (h *harness) start(body string) *Migration {
	h.t.Helper()
	res, err := h.svc.Start(context.Background(), decode[StartRequest](h.t, body))
	require.NoError(h.t, err)
	require.NotNil(h.t, res.Migration)
	require.Nil(h.t, res.Plan)
	return res.Migration
}

// decode reads a request body as the API does (strictly) into T; an empty body is T's zero value.
func decode[T any](t testing.TB, body string) T {
	t.Helper()
	var v T
	if strings.TrimSpace(body) == "" {
		return v
	}
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&v), body)
	return v
}

// inputs are the files an import or copy job of m carries, read as the engine reads them.
func (h *harness) inputs(m *Migration, jobID string) []Input {
	h.t.Helper()
	ins, err := h.svc.inputs(context.Background(), m, m.job(jobID))
	require.NoError(h.t, err)
	return ins
}

// exported are the output files of m's finished exports, in the order an ids check walks them.
func (h *harness) exported(m *Migration) []File {
	h.t.Helper()
	var out []File
	require.NoError(h.t, h.svc.exportedFiles(context.Background(), m, 0, func(_ int, f File) (bool, error) {
		out = append(out, f)
		return true, nil
	}))
	require.Len(h.t, out, exportedFileCount(m))
	return out
}

func (h *harness) get(id string) *Migration {
	h.t.Helper()
	m, err := h.svc.Get(context.Background(), id)
	require.NoError(h.t, err)
	return m
}

func (h *harness) poll() {
	h.t.Helper()
	require.NoError(h.t, h.svc.Poll(context.Background()))
}

// deliver hands every due message to its function, like the queue would; it returns how many it delivered.
func (h *harness) deliver() int {
	h.t.Helper()
	for _, m := range h.bus.Take() {
		if h.delivered[m.ID] {
			continue
		}
		h.delivered[m.ID] = true
		h.pending = append(h.pending, m)
	}
	n := 0
	for {
		var due *bus.Message
		for i, m := range h.pending {
			if !m.NotBefore.After(h.clock.Now()) {
				due = &m
				h.pending = slices.Delete(h.pending, i, i+1)
				break
			}
		}
		if due == nil {
			return n
		}
		if h.hold != nil && h.hold(*due) {
			h.held = append(h.held, *due)
			continue
		}
		n++
		h.handle(*due)
		for _, m := range h.bus.Take() {
			if !h.delivered[m.ID] {
				h.delivered[m.ID] = true
				h.pending = append(h.pending, m)
			}
		}
	}
}

func (h *harness) handle(m bus.Message) {
	h.t.Helper()
	var err error
	switch m.Queue {
	case bus.QueueRunImport:
		err = h.svc.RunImport(context.Background(), m.Body)
	case bus.QueueVerifyCounts:
		err = h.svc.Verify(context.Background(), m.Body)
	default:
		h.t.Fatalf("message to unknown queue %q", m.Queue)
	}
	require.NoError(h.t, err, "message %s", m.ID)
}

// drive advances the clock, sweeps and delivers until the migration is terminal.
func (h *harness) drive(id string, step time.Duration, maxSteps int) *Migration {
	h.t.Helper()
	for range maxSteps {
		h.deliver()
		if m := h.get(id); m.Status.Terminal() {
			return m
		}
		h.clock.Advance(step)
		h.poll()
	}
	m := h.get(id)
	h.t.Fatalf("migration %s not finished after %d steps: %s", id, maxSteps, m.Status)
	return nil
}

func (h *harness) hostSlots(base string) hostSlots {
	h.t.Helper()
	name, err := hostDocName(base)
	require.NoError(h.t, err)
	slots, _, err := h.svc.loadSlots(context.Background(), name)
	require.NoError(h.t, err)
	return slots
}

// h0 is the harness's start time.
func h0() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }
