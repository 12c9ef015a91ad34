package fhirsim

import (
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Fault names (a contract: scripts, the chaos runner and tests spell them this way).
const (
	// FaultKickoff429 answers an $export or $import kick-off 429 with Retry-After; no job is created. Per request.
	FaultKickoff429 = "kickoff-429"
	// FaultStatus500 answers a job status GET 500 with an OperationOutcome. Per request.
	FaultStatus500 = "status-500"
	// FaultStatus503 answers a job status GET 503 with an OperationOutcome, every other time with Retry-After. Per request.
	FaultStatus503 = "status-503"
	// FaultDropConn resets the connection part-way through the response, after the request took effect. Per request.
	FaultDropConn = "drop-conn"
	// FaultExportFail makes the export job fail (status 500 "export operation failed for reason: ..."). Per job.
	FaultExportFail = "export-fail"
	// FaultExportStall makes the export job run forever (202 until canceled). Per job.
	FaultExportStall = "export-stall"
	// FaultExportCancel cancels the job server-side half-way; it answers 200 with what it wrote. Per job.
	FaultExportCancel = "export-cancel"
	// FaultEarly200 answers 200 once with a short manifest, then the full one. Per job.
	FaultEarly200 = "early-200"
	// FaultImportHold holds a completed import's status answer for the import hold (WithImportHold). Per request.
	FaultImportHold = "import-hold"
	// FaultImportLineErrors fails NDJSON lines into the error files. Per line.
	FaultImportLineErrors = "import-line-errors"
	// FaultImportBusy answers $import 423 Locked. Per request.
	FaultImportBusy = "import-busy"
	// FaultImportDrop leaves a line's resource out while counting it as imported (see Stats.DroppedResources). Per line.
	FaultImportDrop = "import-drop"
	// FaultWriteRace stamps an update 1 to 5 ms before the version it replaces, as concurrent writers on Azure API
	// for FHIR's Cosmos DB store can (fhir-server issue 3998); api-for-fhir only. Per write.
	FaultWriteRace = "write-race"
)

// FaultNames lists every fault name, sorted.
func FaultNames() []string {
	names := []string{FaultKickoff429, FaultStatus500, FaultStatus503, FaultDropConn, FaultExportFail, FaultExportStall,
		FaultExportCancel, FaultEarly200, FaultImportHold, FaultImportLineErrors, FaultImportBusy, FaultImportDrop, FaultWriteRace}
	slices.Sort(names)
	return names
}

// DefaultImportHold is how long FaultImportHold holds a completed import's status call, as the real service does.
const DefaultImportHold = 60 * time.Second

// Faults maps a fault name to its probability in [0,1]: per request, per job or per line, as each name says.
type Faults map[string]float64

// ParseFaults reads "name=p,name=p"; an empty spec is no faults.
func ParseFaults(spec string) (Faults, error) {
	f := Faults{}
	if strings.TrimSpace(spec) == "" {
		return f, nil
	}
	for entry := range strings.SplitSeq(spec, ",") {
		entry = strings.TrimSpace(entry)
		name, value, ok := strings.Cut(entry, "=")
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		if !ok || name == "" {
			return nil, fmt.Errorf("fault %q: want name=probability", entry)
		}
		if !slices.Contains(FaultNames(), name) {
			return nil, fmt.Errorf("unknown fault %q (known: %s)", name, strings.Join(FaultNames(), ", "))
		}
		if _, dup := f[name]; dup {
			return nil, fmt.Errorf("fault %q is given twice", name)
		}
		p, err := strconv.ParseFloat(value, 64)
		if err != nil || math.IsNaN(p) || p < 0 || p > 1 {
			return nil, fmt.Errorf("fault %q: probability %q is not a number in [0,1]", name, value)
		}
		f[name] = p
	}
	return f, nil
}

// Validate reports the first unknown name or probability outside [0,1].
func (f Faults) Validate() error {
	for _, name := range slices.Sorted(maps.Keys(f)) {
		if !slices.Contains(FaultNames(), name) {
			return fmt.Errorf("unknown fault %q", name)
		}
		if p := f[name]; math.IsNaN(p) || p < 0 || p > 1 {
			return fmt.Errorf("fault %q: probability %v is not in [0,1]", name, p)
		}
	}
	return nil
}

// String is the spec ParseFaults reads back, names sorted.
func (f Faults) String() string {
	parts := make([]string, 0, len(f))
	for _, name := range slices.Sorted(maps.Keys(f)) {
		parts = append(parts, name+"="+strconv.FormatFloat(f[name], 'g', -1, 64))
	}
	return strings.Join(parts, ",")
}

// WithFaults injects faults with the given probabilities (default none). Unknown names are logged and ignored.
func WithFaults(f Faults) Option {
	return func(c *config) {
		c.faults = Faults{}
		for k, v := range f {
			c.faults[k] = v
		}
	}
}

// WithFaultSeed makes the fault rolls deterministic (default: seeded from the time).
func WithFaultSeed(seed int64) Option {
	return func(c *config) { c.faultSeed, c.faultSeedSet = seed, true }
}

// SetFault changes one fault's probability while the simulator runs (a test holding kick-offs back, say).
func (s *Server) SetFault(name string, p float64) error {
	if err := (Faults{name: p}).Validate(); err != nil {
		return err
	}
	s.faults.set(name, p)
	s.log.Info("fault set", "fault", name, "p", p)
	return nil
}

// WithImportHold sets how long FaultImportHold holds a completed import's status call (default 60s).
func WithImportHold(d time.Duration) Option { return func(c *config) { c.importHold = max(d, 0) } }

// WithMaxImports makes $import answer 429 with Retry-After while n imports run (default 0: no limit).
func WithMaxImports(n int) Option { return func(c *config) { c.maxImports = max(n, 0) } }

// injector rolls the faults and remembers what it injected; it has its own lock so it can be used under Server.mu.
type injector struct {
	mu        sync.Mutex
	p         Faults
	seed      int64
	rng       *rand.Rand
	injected  map[string]int
	dropped   map[string]bool
	throttled int
	// alternation counters: Retry-After forms, 503 with or without Retry-After, where a dropped answer is cut.
	retryAfters, unavailable, drops int
}

func newInjector(p Faults, seed int64) *injector {
	return &injector{p: p, seed: seed, rng: rand.New(rand.NewPCG(uint64(seed), 0x9e3779b97f4a7c15)),
		injected: map[string]int{}, dropped: map[string]bool{}}
}

// enabled reports whether the fault can fire at all (no roll, nothing counted).
func (in *injector) enabled(name string) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.p[name] > 0
}

// set changes one fault's probability (0 turns it off).
func (in *injector) set(name string, p float64) {
	in.mu.Lock()
	defer in.mu.Unlock()
	next := maps.Clone(in.p)
	if next == nil {
		next = Faults{}
	}
	next[name] = p
	in.p = next
}

// roll draws for one request, job or line and counts a hit.
func (in *injector) roll(name string) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	p := in.p[name]
	if p <= 0 {
		return false
	}
	if p < 1 && in.rng.Float64() >= p {
		return false
	}
	in.injected[name]++
	return true
}

// intn draws a number in [0, n) from the fault rolls' source.
func (in *injector) intn(n int) int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.rng.IntN(n)
}

// retryAfter returns the Retry-After value, alternating between delay-seconds and an HTTP-date, as both occur.
func (in *injector) retryAfter(now time.Time) string {
	in.mu.Lock()
	in.retryAfters++
	n := in.retryAfters
	in.mu.Unlock()
	if n%2 == 1 {
		return "1"
	}
	// An HTTP-date has whole seconds: two seconds ahead keeps it at least one second away.
	return now.Add(2 * time.Second).UTC().Format(http.TimeFormat)
}

// nextUnavailableHasRetryAfter alternates: the first 503 carries Retry-After, the second not, and so on.
func (in *injector) nextUnavailableHasRetryAfter() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.unavailable++
	return in.unavailable%2 == 1
}

// nextDropCutsHeaders alternates where a dropped answer is cut: in its headers, then in its body.
func (in *injector) nextDropCutsHeaders() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.drops++
	return in.drops%2 == 1
}

func (in *injector) recordDropped(key string) {
	in.mu.Lock()
	in.dropped[key] = true
	in.mu.Unlock()
}

func (in *injector) countThrottled() {
	in.mu.Lock()
	in.throttled++
	in.mu.Unlock()
}

// fill copies the injector's counters into st.
func (in *injector) fill(st *Stats) {
	in.mu.Lock()
	defer in.mu.Unlock()
	st.FaultSeed = in.seed
	st.FaultsInjected = make(map[string]int, len(in.injected))
	for k, v := range in.injected {
		st.FaultsInjected[k] = v
	}
	st.DroppedResources = slices.Sorted(maps.Keys(in.dropped))
	if st.DroppedResources == nil {
		st.DroppedResources = []string{}
	}
	st.ImportsThrottled = in.throttled
}

// writeThrottled answers 429 as the real services do when throttling: Retry-After and x-ms-retry-after-ms.
func (s *Server) writeThrottled(w http.ResponseWriter, op string) {
	w.Header().Set("Retry-After", s.faults.retryAfter(s.now()))
	w.Header().Set("x-ms-retry-after-ms", "1000")
	writeOutcome(w, http.StatusTooManyRequests, "throttled", "the %s request was throttled: too many requests, retry later", op)
}

// statusFault answers a job status GET with an injected 500 or 503 and reports whether it did.
func (s *Server) statusFault(w http.ResponseWriter, kind, id string) bool {
	switch {
	case s.faults.roll(FaultStatus500):
		s.log.Info("fault injected", "fault", FaultStatus500, "kind", kind, "job_id", id)
		writeOutcome(w, http.StatusInternalServerError, "exception",
			"an internal error occurred while reading the status of %s job %s", kind, id)
		return true
	case s.faults.roll(FaultStatus503):
		s.log.Info("fault injected", "fault", FaultStatus503, "kind", kind, "job_id", id)
		if s.faults.nextUnavailableHasRetryAfter() {
			w.Header().Set("Retry-After", s.faults.retryAfter(s.now()))
		}
		writeOutcome(w, http.StatusServiceUnavailable, "transient", "the service is temporarily unavailable")
		return true
	}
	return false
}

// exportJobFault picks at most one job fault for a new export job: the first of fail, stall, cancel, early-200 that
// its roll hits.
func (s *Server) exportJobFault() string {
	for _, name := range []string{FaultExportFail, FaultExportStall, FaultExportCancel, FaultEarly200} {
		if s.faults.roll(name) {
			return name
		}
	}
	return ""
}
