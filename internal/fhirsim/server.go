// Package fhirsim is a strict, in-memory simulator of the two FHIR services the migration talks to: Azure API for
// FHIR (the source, with $export) and the Azure Health Data Services FHIR service (the destination, with $import).
//
// It rejects what the real services reject (see shared/reference/fhir-bulk-protocol.md), writes and reads NDJSON in
// a real blob account (Azurite locally), and shares no code with the project's FHIR client.
package fhirsim

import (
	"cmp"
	"context"
	"crypto"
	"encoding/base64"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
)

// Flavor selects which real service the simulator behaves as.
type Flavor string

const (
	// FlavorAPIForFHIR is Azure API for FHIR: $export, no $import.
	FlavorAPIForFHIR Flavor = "api-for-fhir"
	// FlavorAHDS is the Azure Health Data Services FHIR service: $import.
	FlavorAHDS Flavor = "ahds"
)

// ParseFlavor accepts "api-for-fhir", "ahds" or "bulk-data".
func ParseFlavor(s string) (Flavor, error) {
	switch f := Flavor(s); f {
	case FlavorAPIForFHIR, FlavorAHDS, FlavorBulkData:
		return f, nil
	}
	return "", fmt.Errorf("unknown flavor %q (want %q, %q or %q)", s, FlavorAPIForFHIR, FlavorAHDS, FlavorBulkData)
}

// Defaults of the options.
const (
	DefaultPollsBeforeDone = 2
	DefaultRollover        = 1000
	DefaultJobDelay        = 200 * time.Millisecond
	DefaultErrorContainer  = "fhirlogs"
)

type config struct {
	flavor            Flavor
	storage           string
	seedPatients      int
	seed              int64
	pollsBeforeDone   int
	rollover          int
	jobDelay          time.Duration
	errorContainer    string
	initialImportMode bool
	auth              bool
	logger            *slog.Logger
	now               func() time.Time
	faults            Faults
	faultSeed         int64
	faultSeedSet      bool
	importHold        time.Duration
	maxImports        int
	rates             RateModel
	resources         [][]byte
	knobs             knobs // knobs.go
	// The bulk-data flavor's (bulkdata.go).
	smartClients     map[string]crypto.PublicKey
	tokenLifetime    time.Duration
	downloadCuts     int
	revokeAfterFiles int
	exportErrors     []string
	declaredUntil    bool
}

// Option configures a Server.
type Option func(*config)

// WithFlavor sets the service the simulator behaves as (default FlavorAPIForFHIR).
func WithFlavor(f Flavor) Option { return func(c *config) { c.flavor = f } }

// WithStorage sets the blob account (a full connection string) used for export output and import input.
// Without it $export and $import answer 400 as a service with no storage configured does.
func WithStorage(connectionString string) Option {
	return func(c *config) { c.storage = connectionString }
}

// WithSeed fills the store with a deterministic synthetic data set of the given number of patients (default none).
func WithSeed(patients int, seed int64) Option {
	return func(c *config) { c.seedPatients, c.seed = patients, seed }
}

// WithResources adds resources as they are, each with its meta.versionId and meta.lastUpdated (a test's data on
// chosen instants); one that is not valid is logged and left out.
func WithResources(resources ...[]byte) Option {
	return func(c *config) { c.resources = append(c.resources, resources...) }
}

// WithPollsBeforeDone sets how many status polls at least answer 202 before a job reports done (default 2).
func WithPollsBeforeDone(n int) Option { return func(c *config) { c.pollsBeforeDone = max(n, 0) } }

// WithRollover sets the number of resources per exported NDJSON file (default 1000).
func WithRollover(n int) Option {
	return func(c *config) {
		if n > 0 {
			c.rollover = n
		}
	}
}

// WithJobDelay sets the least time a job's background work takes (default 200ms).
func WithJobDelay(d time.Duration) Option { return func(c *config) { c.jobDelay = max(d, 0) } }

// WithErrorContainer sets the container that receives import error files (default "fhirlogs").
func WithErrorContainer(name string) Option { return func(c *config) { c.errorContainer = name } }

// WithInitialImportMode turns on the service's initial import mode, the only state in which InitialLoad is accepted
// (default off).
func WithInitialImportMode(on bool) Option { return func(c *config) { c.initialImportMode = on } }

// WithAuth turns bearer-token checking on or off (default on).
func WithAuth(on bool) Option { return func(c *config) { c.auth = on } }

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// WithClock sets the clock used for lastUpdated, transaction times and export windows (default time.Now).
func WithClock(now func() time.Time) Option { return func(c *config) { c.now = now } }

// Stats counts what the simulator has served; GET /_sim/stats answers it as JSON.
type Stats struct {
	// ExportJobs and ImportJobs count the jobs created (distinct job ids).
	ExportJobs int `json:"exportJobs"`
	ImportJobs int `json:"importJobs"`
	// Requests counts answered requests by HTTP status code (answers cut by drop-conn are not counted).
	Requests map[int]int `json:"requests"`
	// Writes counts the write requests answered 2xx: PUT, POST, PATCH and DELETE of resources, batches, $purge-history
	// (kick-offs of $export and $import, and DELETEs of jobs, are counted as jobs: isWrite).
	Writes int `json:"writes"`
	// FaultSeed is the seed of the fault rolls: WithFaultSeed(FaultSeed) replays them.
	FaultSeed int64 `json:"faultSeed"`
	// FaultsInjected counts injected faults by name; job faults count when assigned at kick-off.
	FaultsInjected map[string]int `json:"faultsInjected"`
	// ImportsThrottled counts $import kick-offs answered 429 by the WithMaxImports limit.
	ImportsThrottled int `json:"importsThrottled"`
	// DroppedResources are the "Type/id" keys import-drop left out while reporting them imported, sorted.
	DroppedResources []string `json:"droppedResources"`
	// Exports and Imports describe every job created, in creation order: what a chaos run checks the engine's
	// bookkeeping against (never the engine's own documents).
	Exports []ExportJobStats `json:"exports"`
	Imports []ImportJobStats `json:"imports"`
	// ExportedVersions counts the resource versions export jobs wrote, each once; ExportedTwice lists, sorted, the
	// "Type/id/_history/version" keys more than one export job wrote.
	ExportedVersions int      `json:"exportedVersions"`
	ExportedTwice    []string `json:"exportedTwice"`
}

// JobStats is what the simulator saw of one job.
type JobStats struct {
	ID      string    `json:"id"`
	Created time.Time `json:"created"`
	State   string    `json:"state"`
	// Gets and Deletes count the status GETs and DELETEs the job's Content-Location received.
	Gets    int `json:"gets"`
	Deletes int `json:"deletes"`
	// Finished is when the job completed, failed or was canceled (absent while it runs).
	Finished *time.Time `json:"finished,omitempty"`
	// Resources are the resources it wrote (an export's manifest counts) or imported (an import's output counts),
	// as its answer reports them (modelled ones under a rate model).
	Resources int64 `json:"resources"`
}

// ExportJobStats is one export job: its kick-off query (sorted: equal for equal requests), its injected job fault,
// and the files it wrote.
type ExportJobStats struct {
	JobStats
	Query  string   `json:"query"`
	Fault  string   `json:"fault,omitempty"`
	Output []string `json:"output"`
}

// ImportJobStats is one import job and the files it imported (its inputs).
type ImportJobStats struct {
	JobStats
	Inputs []string `json:"inputs"`
}

// Server is the simulator; it is an http.Handler.
type Server struct {
	cfg       config
	log       *slog.Logger
	resources *resourceStore
	blobs     *blobAccount // nil when no storage is configured
	blobsErr  error

	ctx    context.Context // cancelled by Close: stops job workers
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	exports map[string]*exportJob
	imports map[string]*importJob
	// importKeys maps a canonicalised $import body to its job id: registration is idempotent.
	importKeys map[string]string
	stats      Stats
	// exported counts, by "Type/id/_history/version", the export jobs that wrote each version.
	exported map[string]int

	faults *injector
	// exportGate and importMeter are the rate model's (nil without one).
	exportGate  exportGate
	importMeter *importMeter
	// bulk is the bulk-data flavor's tokens, files and records.
	bulk *bulkState
	// searchMeter and countMeter share the service's search and count rates among running requests (nil without
	// them); scale holds the time scale as float64 bits (SetTimeScale changes it).
	searchMeter, countMeter *importMeter
	scale                   atomic.Uint64
}

// New builds a simulator. Invalid storage configuration is reported by $export/$import as the real service would.
func New(opts ...Option) *Server {
	cfg := config{
		flavor:          FlavorAPIForFHIR,
		pollsBeforeDone: DefaultPollsBeforeDone,
		rollover:        DefaultRollover,
		jobDelay:        DefaultJobDelay,
		errorContainer:  DefaultErrorContainer,
		auth:            true,
		now:             time.Now,
		importHold:      DefaultImportHold,
		tokenLifetime:   DefaultTokenLifetime,
	}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.logger == nil {
		cfg.logger = slog.New(slog.DiscardHandler)
	}
	if !cfg.faultSeedSet {
		cfg.faultSeed = time.Now().UnixNano()
	}
	faults := Faults{}
	for name, p := range cfg.faults {
		if err := (Faults{name: p}).Validate(); err != nil {
			cfg.logger.Error("fault ignored", "err", err)
			continue
		}
		faults[name] = p
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg:        cfg,
		log:        cfg.logger.With("flavor", string(cfg.flavor)),
		resources:  newResourceStore(),
		ctx:        ctx,
		cancel:     cancel,
		exports:    map[string]*exportJob{},
		imports:    map[string]*importJob{},
		importKeys: map[string]string{},
		exported:   map[string]int{},
		stats:      Stats{Requests: map[int]int{}},
		faults:     newInjector(faults, cfg.faultSeed),
		bulk:       newBulkState(cfg),
	}
	if len(faults) > 0 || cfg.maxImports > 0 {
		s.log.Info("fault injection on", "faults", faults.String(), "fault_seed", cfg.faultSeed,
			"import_hold", cfg.importHold, "max_imports", cfg.maxImports)
	}
	if err := cfg.rates.Validate(); err != nil {
		s.log.Error("rate model ignored", "err", err)
		s.cfg.rates = RateModel{}
	}
	s.scale.Store(math.Float64bits(s.cfg.rates.scale()))
	if r := s.cfg.rates; r != (RateModel{}) {
		if r.ExportSlots > 0 {
			s.exportGate = make(exportGate, r.ExportSlots)
		}
		s.importMeter = newImportMeter(r, time.Now)
		s.searchMeter = newShareMeter(r.SearchRate, r.scale(), time.Now)
		s.countMeter = newShareMeter(r.CountRate, r.scale(), time.Now)
		s.log.Info("rate model on", "weight", r.weight(), "export_rate", r.ExportRate, "export_slots", r.ExportSlots,
			"import_rate", r.ImportRate, "search_rate", r.SearchRate, "count_rate", r.CountRate,
			"count_latency", r.CountLatency, "max_imports", cfg.maxImports, "time_scale", r.TimeScale)
	}
	if cfg.storage != "" {
		s.blobs, s.blobsErr = newBlobAccount(cfg.storage)
	}
	var initial [][]byte
	if cfg.seedPatients > 0 {
		for _, raw := range Generate(cfg.seedPatients, cfg.seed) {
			initial = append(initial, raw)
		}
	}
	for _, raw := range append(initial, cfg.resources...) {
		p, err := parseResource(raw)
		if err == nil {
			var r *resource
			if r, err = storedFrom(p); err == nil {
				s.resources.put(r)
			}
		}
		if err != nil {
			s.log.Error("initial resource rejected", "err", err)
		}
	}
	return s
}

// Close stops the background job workers and waits for them; held status calls are released. Jobs kicked off
// afterwards fail at once.
func (s *Server) Close() {
	// Cancelled under s.mu, so startLocked never adds a worker while wg.Wait runs.
	s.mu.Lock()
	s.cancel()
	s.mu.Unlock()
	s.wg.Wait()
}

// Stats returns a copy of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.stats
	out.Requests = maps.Clone(s.stats.Requests)
	s.faults.fill(&out)
	out.Exports, out.Imports = []ExportJobStats{}, []ImportJobStats{}
	for _, j := range s.exports {
		st := ExportJobStats{JobStats: j.stats(), Query: j.query, Fault: j.fault, Output: []string{}}
		for _, f := range j.output {
			st.Output = append(st.Output, f.URL)
			st.Resources += int64(f.Count)
		}
		out.Exports = append(out.Exports, st)
	}
	for _, j := range s.imports {
		st := ImportJobStats{JobStats: j.stats(), Inputs: []string{}}
		for _, in := range j.spec.Inputs {
			st.Inputs = append(st.Inputs, in.URL)
		}
		for _, o := range j.output {
			st.Resources += int64(o.Count)
		}
		out.Imports = append(out.Imports, st)
	}
	out.ExportedVersions, out.ExportedTwice = len(s.exported), []string{}
	for key, n := range s.exported {
		if n > 1 {
			out.ExportedTwice = append(out.ExportedTwice, key)
		}
	}
	slices.Sort(out.ExportedTwice)
	slices.SortFunc(out.Exports, func(a, b ExportJobStats) int { return cmp.Or(a.Created.Compare(b.Created), cmp.Compare(a.ID, b.ID)) })
	slices.SortFunc(out.Imports, func(a, b ImportJobStats) int { return cmp.Or(a.Created.Compare(b.Created), cmp.Compare(a.ID, b.ID)) })
	return out
}

// DevToken returns the local development token for an audience such as http://127.0.0.1:8081.
func DevToken(audience string) string {
	return "dev." + base64.RawURLEncoding.EncodeToString([]byte(audience))
}

// statusRecorder remembers the status code written, for Stats.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (w *statusRecorder) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection's writer (a bulk-data download cut flushes first).
func (w *statusRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusRecorder) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// isWrite reports whether a request may change the resources the server holds: any method but GET and HEAD, except
// the bulk operations' kick-offs and their jobs' cancelations (ExportJobs, ImportJobs), which change none by
// themselves.
func isWrite(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		return false
	}
	p := strings.Trim(r.URL.Path, "/")
	return p != "$export" && p != "$import" && !strings.HasPrefix(p, "_operations/")
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == simStatsPath {
		s.handleSimStats(w, r)
		return
	}
	var code int
	if s.faults.enabled(FaultDropConn) {
		buf := newBufferedResponse()
		s.route(buf, r)
		code = buf.status()
		// A 4xx stays intact: faults never hide the answer to a bad request.
		if code/100 != 4 && s.faults.roll(FaultDropConn) {
			s.log.Info("fault injected", "fault", FaultDropConn, "method", r.Method, "path", r.URL.Path, "status", code)
			s.dropConnection(w, buf)
			return
		}
		buf.writeTo(w)
	} else {
		rec := &statusRecorder{ResponseWriter: w}
		s.route(rec, r)
		code = cmp.Or(rec.code, http.StatusOK)
	}
	s.mu.Lock()
	s.stats.Requests[code]++
	if code/100 == 2 && isWrite(r) {
		s.stats.Writes++
	}
	s.mu.Unlock()
	s.log.Debug("request", "method", r.Method, "path", r.URL.Path, "status", code)
}

// simStatsPath serves Stats as JSON to tools on this machine (a chaos runner driving the binaries); no token.
const simStatsPath = "/_sim/stats"

func (s *Server) handleSimStats(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		writeOutcome(w, http.StatusMethodNotAllowed, "not-supported", "method %s is not allowed on %s", r.Method, simStatsPath)
		return
	}
	writeJSON(w, http.StatusOK, "application/json", s.Stats())
}

func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	if s.initialImportLock(w, r) { // knobs.go
		return
	}
	path := r.URL.Path
	if path == "/metadata" {
		if r.Method != http.MethodGet {
			writeOutcome(w, http.StatusMethodNotAllowed, "not-supported", "method %s is not allowed on /metadata", r.Method)
			return
		}
		s.handleMetadata(w, r)
		return
	}
	if s.cfg.flavor == FlavorBulkData && s.routeBulkPublic(w, r) {
		return
	}
	if s.cfg.flavor == FlavorBulkData && !s.bulkAuthorized(w, r) || s.cfg.flavor != FlavorBulkData && !s.authorized(w, r) {
		return
	}
	segs := strings.Split(strings.Trim(path, "/"), "/")
	if path == "/" {
		segs = nil
	}
	if s.cfg.flavor == FlavorBulkData && s.routeBulk(w, r, segs) {
		return
	}
	switch {
	case len(segs) == 0 && r.Method == http.MethodGet:
		s.handleSearch(w, r, "")
	case len(segs) == 0 && r.Method == http.MethodPost:
		s.handleBatch(w, r)
	case len(segs) == 1 && segs[0] == "$export" && r.Method == http.MethodGet:
		s.handleExportKickOff(w, r)
	case len(segs) == 1 && segs[0] == "$import" && r.Method == http.MethodPost:
		s.handleImportKickOff(w, r)
	case len(segs) == 3 && segs[0] == "_operations" && segs[1] == "export":
		s.handleExportJob(w, r, segs[2])
	case len(segs) == 3 && segs[0] == "_operations" && segs[1] == "import":
		s.handleImportJob(w, r, segs[2])
	case len(segs) >= 2 && strings.HasPrefix(segs[len(segs)-1], "$export"):
		writeOutcome(w, http.StatusBadRequest, "not-supported",
			"the simulator supports system-level $export only, not %s", path)
	case len(segs) == 1 && r.Method == http.MethodGet && !strings.HasPrefix(segs[0], "$") && !strings.HasPrefix(segs[0], "_"):
		if !knownType(segs[0]) {
			writeOutcome(w, http.StatusNotFound, "not-found", "resource type %q is not supported", segs[0])
			return
		}
		s.handleSearch(w, r, segs[0])
	case len(segs) == 2 && r.Method == http.MethodGet && knownType(segs[0]) && segs[1] == "_history":
		s.handleHistory(w, r, segs[0], "")
	case len(segs) == 1 && r.Method == http.MethodGet && segs[0] == "_history":
		s.handleHistory(w, r, "", "")
	case len(segs) == 3 && r.Method == http.MethodGet && knownType(segs[0]) && segs[2] == "_history":
		s.handleHistory(w, r, segs[0], segs[1])
	case len(segs) == 2 && r.Method == http.MethodGet && knownType(segs[0]):
		s.handleRead(w, segs[0], segs[1])
	case len(segs) == 4 && r.Method == http.MethodGet && knownType(segs[0]) && segs[2] == "_history":
		s.handleVRead(w, segs[0], segs[1], segs[3])
	case len(segs) == 2 && r.Method == http.MethodPut && knownType(segs[0]) && resourceIDRE.MatchString(segs[1]):
		s.handlePut(w, r, segs[0], segs[1])
	case len(segs) == 2 && r.Method == http.MethodDelete && knownType(segs[0]) && resourceIDRE.MatchString(segs[1]):
		s.handleDelete(w, r, segs[0], segs[1])
	case len(segs) == 3 && r.Method == http.MethodDelete && knownType(segs[0]) && resourceIDRE.MatchString(segs[1]) && segs[2] == "$purge-history":
		s.handlePurgeHistory(w, segs[0], segs[1])
	case len(segs) == 1 && r.Method == http.MethodPost && knownType(segs[0]):
		s.handlePost(w, r, segs[0])
	case len(segs) == 1 && strings.HasPrefix(segs[0], "$"):
		writeOutcome(w, http.StatusBadRequest, "not-supported",
			"the requested %q operation is not enabled on %s", segs[0], s.cfg.flavor)
	default:
		writeOutcome(w, http.StatusNotFound, "not-found", "the requested route %s %s was not found", r.Method, path)
	}
}

// authorized checks the development bearer token: its audience must be this server's own base URL, port included.
func (s *Server) authorized(w http.ResponseWriter, r *http.Request) bool {
	if !s.cfg.auth {
		return true
	}
	h := r.Header.Get("Authorization")
	token, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || token == "" {
		w.Header().Set("WWW-Authenticate", "Bearer")
		writeOutcome(w, http.StatusUnauthorized, "login", "authentication failed: no bearer token")
		return false
	}
	if token != DevToken(baseURL(r)) {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		writeOutcome(w, http.StatusUnauthorized, "login", "authentication failed: the token's audience is not %s", baseURL(r))
		return false
	}
	return true
}

// baseURL is the simulator's own base URL as its caller addresses it.
func baseURL(r *http.Request) string { return "http://" + r.Host }

// requestURL is the absolute URL of the request, as reported in manifests.
func requestURL(r *http.Request) string { return baseURL(r) + r.URL.RequestURI() }

func (s *Server) now() time.Time { return s.cfg.now().UTC() }

// storage returns the blob account, or writes the 400 the real service gives when none is configured.
func (s *Server) storage(w http.ResponseWriter, op string) (*blobAccount, bool) {
	if s.blobs == nil {
		msg := "no storage account is configured"
		if s.blobsErr != nil {
			msg = "the storage account configuration is invalid"
			s.log.Error("storage configuration", "err", s.blobsErr)
		}
		writeOutcome(w, http.StatusBadRequest, "not-supported", "the requested %q operation is not enabled: %s", op, msg)
		return nil, false
	}
	return s.blobs, true
}

func newBlobAccount(connectionString string) (*blobAccount, error) {
	c, err := azblob.NewClientFromConnectionString(connectionString, nil)
	if err != nil {
		return nil, fmt.Errorf("blob client from connection string: %w", err)
	}
	return &blobAccount{client: c, endpoint: strings.TrimSuffix(c.URL(), "/")}, nil
}
