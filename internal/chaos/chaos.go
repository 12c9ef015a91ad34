// Package chaos runs several migrations at once on the local stack while everything around the handler
// misbehaves: faulty FHIR simulators, a local host that duplicates and drops messages, and a handler process
// killed at random moments. At the end it checks every completed migration resource by resource and reports a
// one-line summary.
package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fhir-migrator/fhir-migrator/internal/azuritetest"
	"github.com/fhir-migrator/fhir-migrator/internal/devhost"
	"github.com/fhir-migrator/fhir-migrator/internal/fhirsim"
	"github.com/fhir-migrator/fhir-migrator/internal/localstack"
)

// DefaultFaults are the faults of a chaos run: each is answered by the handler without losing data. Faults
// that lose data on purpose (import-drop, import-line-errors) end a migration failed and may be added.
const DefaultFaults = "kickoff-429=0.15,status-500=0.05,status-503=0.05,drop-conn=0.02,export-fail=0.05," +
	"export-stall=0.05,export-cancel=0.1,early-200=0.2,import-hold=0.1,import-busy=0.1"

// Options shape one chaos run; zero values take the defaults.
type Options struct {
	// Migrations run at once, each into a destination simulator of its own (default 3).
	Migrations int
	// Patients seeds the source (about 100 resources each; default 10).
	Patients int
	// Faults is the fault spec of every simulator (fhirsim.ParseFaults; default DefaultFaults; "none" for none).
	Faults string
	// Seed drives the fault rolls, the host's chaos rolls and the kill times (0: from the time).
	Seed int64
	// Kills is the least number of handler kills (default 5); kills go on every KillEvery until the end.
	Kills int
	// KillEvery is the mean time between kills (default 2s); each wait is drawn in [KillEvery/2, 3*KillEvery/2].
	KillEvery time.Duration
	// DuplicateRate and DropRate are the local host's chaos rates (default 0.3 and 0.15; negative for none).
	DuplicateRate float64
	DropRate      float64
	// Timeout bounds the wait for every migration to end (default 4m).
	Timeout time.Duration
	// RepoRoot holds host.json and the function folders (default: found upwards from the working directory).
	RepoRoot string
	// HandlerBinary is a built handler (default: built from RepoRoot into a temporary folder).
	HandlerBinary string
	// Azurite is a running Azurite to use (default: one is started and stopped).
	Azurite *azuritetest.Azurite
	// Progress receives progress lines (default: discarded); HandlerLog the handler's output (default: kept in
	// memory and written to Progress when the run fails).
	Progress   io.Writer
	HandlerLog io.Writer
}

// Summary is what a chaos run found.
type Summary struct {
	Migrations int `json:"migrations"`
	Completed  int `json:"completed"`
	Failed     int `json:"failed"`
	// Unfinished counts migrations still running at the timeout (or canceled).
	Unfinished int `json:"unfinished"`
	Kills      int `json:"kills"`
	Duplicates int `json:"duplicates"`
	Dropped    int `json:"dropped"`
	Faults     int `json:"faults"`
	// Orphaned counts recorded kick-off attempts whose Content-Location was never saved.
	Orphaned int `json:"orphaned"`
	// DuplicateKickoffs counts server jobs created beyond one per recorded kick-off attempt.
	DuplicateKickoffs int `json:"duplicateKickoffs"`
	// Missing counts source resources absent from the destination of a completed migration; Different those
	// present with other content; Extra destination resources the source (in scope) does not have.
	Missing   int `json:"missing"`
	Different int `json:"different"`
	Extra     int `json:"extra"`
	// FaultsByName and Reasons (migration id -> status and error) explain the outcome.
	FaultsByName map[string]int    `json:"faultsByName"`
	Reasons      map[string]string `json:"reasons"`
	Seed         int64             `json:"seed"`
}

// String is the summary line.
func (s Summary) String() string {
	return fmt.Sprintf("chaos: migrations=%d completed=%d failed=%d kills=%d duplicates=%d dropped=%d faults=%d orphaned=%d duplicate_kickoffs=%d missing=%d",
		s.Migrations, s.Completed, s.Failed, s.Kills, s.Duplicates, s.Dropped, s.Faults, s.Orphaned, s.DuplicateKickoffs, s.Missing)
}

// OK reports whether the run proved what it must: nothing lost or altered, no duplicate kick-off, every
// migration ended.
func (s Summary) OK() bool {
	return s.Missing == 0 && s.Different == 0 && s.DuplicateKickoffs == 0 && s.Unfinished == 0
}

// migrationShapes are the start requests the runner cycles through (source and destination are added).
var migrationShapes = []map[string]any{
	{"types": []string{"Patient", "Observation", "SearchParameter"}},
	{},
	{"types": []string{"Encounter", "Condition", "MedicationRequest"}, "exportStrategy": "system"},
}

func (o *Options) defaults() error {
	if o.Migrations <= 0 {
		o.Migrations = 3
	}
	if o.Patients <= 0 {
		o.Patients = 10
	}
	if o.Faults == "" {
		o.Faults = DefaultFaults
	}
	if o.Faults == "none" {
		o.Faults = ""
	}
	if o.Seed == 0 {
		o.Seed = time.Now().UnixNano() % 1_000_000_000
	}
	if o.Kills <= 0 {
		o.Kills = 5
	}
	if o.KillEvery <= 0 {
		o.KillEvery = 2 * time.Second
	}
	if o.DuplicateRate == 0 {
		o.DuplicateRate = 0.3
	}
	if o.DropRate == 0 {
		o.DropRate = 0.15
	}
	o.DuplicateRate, o.DropRate = max(o.DuplicateRate, 0), max(o.DropRate, 0)
	if o.Timeout <= 0 {
		o.Timeout = 4 * time.Minute
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.RepoRoot == "" {
		root, err := localstack.RepoRoot()
		if err != nil {
			return err
		}
		o.RepoRoot = root
	}
	return nil
}

// Run performs one chaos run. An error means the run itself could not be carried out; what it found, good or
// bad, is in the Summary.
func Run(ctx context.Context, opts Options) (Summary, error) {
	if err := opts.defaults(); err != nil {
		return Summary{}, err
	}
	faults, err := fhirsim.ParseFaults(opts.Faults)
	if err != nil {
		return Summary{}, fmt.Errorf("fault spec: %w", err)
	}
	r := &run{opts: opts, faults: faults, progress: &lockedWriter{w: opts.Progress}}
	defer r.close()
	if err := r.setUp(ctx); err != nil {
		if r.logs != nil {
			fmt.Fprintf(r.progress, "handler log:\n%s\n", r.logs.String())
		}
		return Summary{}, err
	}
	sum, err := r.execute(ctx)
	if (err != nil || !sum.OK()) && r.logs != nil && opts.HandlerLog == nil {
		fmt.Fprintf(r.progress, "handler log (last 200 lines):\n%s\n", lastLines(r.logs.String(), 200))
	}
	return sum, err
}

type run struct {
	opts     Options
	faults   fhirsim.Faults
	progress io.Writer

	azurite  *azuritetest.Azurite
	source   *localstack.Simulator
	dests    []*localstack.Simulator
	host     *devhost.Host
	logs     *localstack.SyncBuffer
	cleanups []func()
}

func (r *run) logf(format string, args ...any) {
	fmt.Fprintf(r.progress, "chaos: "+format+"\n", args...)
}

func (r *run) close() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
}

func (r *run) setUp(ctx context.Context) error {
	o := r.opts
	r.azurite = o.Azurite
	if r.azurite == nil {
		a, err := azuritetest.Start()
		if err != nil {
			return fmt.Errorf("start azurite: %w", err)
		}
		r.azurite = a
		r.cleanups = append(r.cleanups, a.Stop)
	}
	bin := o.HandlerBinary
	if bin == "" {
		dir, err := os.MkdirTemp("", "chaos-handler-")
		if err != nil {
			return fmt.Errorf("temporary folder: %w", err)
		}
		r.cleanups = append(r.cleanups, func() { _ = os.RemoveAll(dir) })
		if bin, err = localstack.BuildHandler(ctx, o.RepoRoot, dir); err != nil {
			return err
		}
	}
	quiet := slog.New(slog.DiscardHandler)
	dests := make([][]fhirsim.Option, o.Migrations)
	for i := range dests {
		dests[i] = []fhirsim.Option{fhirsim.WithFaults(r.faults), fhirsim.WithFaultSeed(o.Seed + int64(i) + 1),
			fhirsim.WithImportHold(2 * time.Second), fhirsim.WithMaxImports(2), fhirsim.WithLogger(quiet)}
	}
	r.logs = &localstack.SyncBuffer{}
	st, err := localstack.Start(ctx, localstack.Options{
		Storage: r.azurite.ConnectionString, RepoRoot: o.RepoRoot, HandlerBinary: bin,
		Source: []fhirsim.Option{fhirsim.WithSeed(o.Patients, 7), fhirsim.WithRollover(300),
			fhirsim.WithFaults(r.faults), fhirsim.WithFaultSeed(o.Seed), fhirsim.WithLogger(quiet)},
		Dests: dests,
		Settings: map[string]string{
			"MigrationContainer": fmt.Sprintf("chaos-docs-%d", o.Seed),
			"RedriveAfter":       "8s",
			"ExportDeadline":     "20s",
			"ConfirmDelay":       "2s",
			"MaxReexports":       "4",
		},
		Logs: r.logs, HandlerLog: o.HandlerLog, HostLog: true,
		DuplicateRate: o.DuplicateRate, DropRate: o.DropRate, ChaosSeed: o.Seed,
	})
	if err != nil {
		return err
	}
	r.cleanups = append(r.cleanups, st.Close)
	r.source, r.dests, r.host = st.Source, st.Dests, st.Host
	r.logf("stack up: source %s, %d destinations, host %s, faults %q, seed %d", r.source.URL, len(r.dests), r.host.URL(), r.faults.String(), o.Seed)
	return nil
}

func (r *run) execute(ctx context.Context) (Summary, error) {
	o := r.opts
	sum := Summary{Migrations: o.Migrations, Reasons: map[string]string{}, Seed: o.Seed}
	ids := make([]string, 0, o.Migrations)
	for i, d := range r.dests {
		req := map[string]any{"source": r.source.URL, "destination": d.URL}
		for k, v := range migrationShapes[i%len(migrationShapes)] {
			req[k] = v
		}
		id, err := r.start(ctx, req)
		if err != nil {
			return sum, fmt.Errorf("start migration %d: %w", i+1, err)
		}
		r.logf("started %s into %s", id, d.URL)
		ids = append(ids, id)
	}

	runCtx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	killer := r.startKiller(runCtx)
	docs, waitErr := r.await(runCtx, ids)
	killer.stop()
	if waitErr != nil && !errors.Is(waitErr, context.DeadlineExceeded) {
		return sum, waitErr
	}

	hs := r.host.Stats()
	sum.Kills = hs.HandlerKills
	for _, q := range hs.Queues {
		sum.Duplicates += q.DuplicatesInjected
		sum.Dropped += q.DropsInjected
	}
	sum.FaultsByName = map[string]int{}
	var exportAttempts int
	srcStats := r.source.Sim.Stats()
	addFaults(&sum, srcStats)
	for i, id := range ids {
		d, ok := docs[id]
		if !ok {
			sum.Unfinished++
			sum.Reasons[id] = "no document read"
			continue
		}
		dstStats := r.dests[i].Sim.Stats()
		addFaults(&sum, dstStats)
		var importAttempts int
		for _, j := range d.Jobs {
			for _, a := range j.Attempts {
				if a.Orphaned {
					sum.Orphaned++
				}
			}
			switch j.Kind {
			case "export":
				exportAttempts += len(j.Attempts)
			case "import":
				importAttempts += len(j.Attempts)
			}
		}
		sum.DuplicateKickoffs += max(0, dstStats.ImportJobs-importAttempts)
		switch d.Status {
		case "completed":
			sum.Completed++
		case "failed":
			sum.Failed++
			sum.Reasons[id] = "failed: " + d.errorText()
		default:
			sum.Unfinished++
			sum.Reasons[id] = d.Status
		}
	}
	sum.DuplicateKickoffs += max(0, srcStats.ExportJobs-exportAttempts)

	if err := r.compare(ctx, ids, docs, &sum); err != nil {
		return sum, err
	}
	for _, id := range ids {
		if why, ok := sum.Reasons[id]; ok {
			r.logf("%s %s", id, why)
		}
	}
	r.logf("faults injected: %v; content differences=%d extra=%d unfinished=%d", sum.FaultsByName, sum.Different, sum.Extra, sum.Unfinished)
	return sum, nil
}

func addFaults(sum *Summary, st fhirsim.Stats) {
	for name, n := range st.FaultsInjected {
		sum.Faults += n
		sum.FaultsByName[name] += n
	}
}

// start posts one start request through the local host, retrying while the handler is not answering.
func (r *run) start(ctx context.Context, req map[string]any) (string, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return "", fmt.Errorf("encode start request: %w", err)
	}
	var last error
	for range 20 {
		status, raw, err := r.api(ctx, http.MethodPost, "/api/migrations", body)
		switch {
		case err != nil:
			last = err
		case status == http.StatusAccepted:
			var d document
			if err := json.Unmarshal(raw, &d); err != nil || d.ID == "" {
				return "", fmt.Errorf("start answer %s: %v", localstack.Truncate(raw), err)
			}
			return d.ID, nil
		case status >= 500:
			last = fmt.Errorf("HTTP %d: %s", status, localstack.Truncate(raw))
		default:
			return "", fmt.Errorf("start refused: HTTP %d: %s", status, localstack.Truncate(raw))
		}
		if err := localstack.Sleep(ctx, 500*time.Millisecond); err != nil {
			return "", err
		}
	}
	return "", last
}

func (r *run) api(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return localstack.API(ctx, r.host.URL(), method, path, body)
}

// killer kills the handler at random moments until stopped.
type killer struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (k *killer) stop() {
	k.cancel()
	<-k.done
}

func (r *run) startKiller(ctx context.Context) *killer {
	ctx, cancel := context.WithCancel(ctx)
	k := &killer{cancel: cancel, done: make(chan struct{})}
	rng := rand.New(rand.NewPCG(uint64(r.opts.Seed), 0x5eed))
	every := r.opts.KillEvery
	go func() {
		defer close(k.done)
		for {
			wait := every/2 + time.Duration(rng.Int64N(int64(every)))
			if localstack.Sleep(ctx, wait) != nil {
				return
			}
			if err := r.host.KillHandler(); err != nil {
				r.logf("kill: %v", err)
			}
		}
	}()
	return k
}

// await polls every migration until each has ended and at least Kills kills happened, or ctx ends; it returns
// the last document read of each.
func (r *run) await(ctx context.Context, ids []string) (map[string]*document, error) {
	docs := map[string]*document{}
	for {
		ended := 0
		for _, id := range ids {
			if d := docs[id]; d != nil && d.terminal() {
				ended++
				continue
			}
			status, raw, err := r.api(ctx, http.MethodGet, "/api/migrations/"+id, nil)
			if err != nil || status != http.StatusOK {
				continue // the handler is being restarted
			}
			var d document
			if json.Unmarshal(raw, &d) == nil {
				docs[id] = &d
				if d.terminal() {
					r.logf("%s ended %s", id, d.Status)
					ended++
				}
			}
		}
		if ended == len(ids) && r.host.Stats().HandlerKills >= r.opts.Kills {
			return docs, nil
		}
		if err := localstack.Sleep(ctx, 500*time.Millisecond); err != nil {
			return docs, err
		}
	}
}

// document is the part of a migration document the runner reads.
type document struct {
	ID      string `json:"id"`
	Status  string `json:"status"`
	Request struct {
		Types []string `json:"types"`
	} `json:"request"`
	Jobs []struct {
		ID       string `json:"id"`
		Kind     string `json:"kind"`
		State    string `json:"state"`
		Attempts []struct {
			ContentLocation string `json:"contentLocation"`
			Orphaned        bool   `json:"orphaned"`
		} `json:"attempts"`
	} `json:"jobs"`
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func (d *document) terminal() bool {
	return d.Status == "completed" || d.Status == "failed" || d.Status == "canceled"
}

func (d *document) errorText() string {
	if d.Error == nil {
		return ""
	}
	return d.Error.Code + ": " + d.Error.Message
}

// compare checks each completed migration resource by resource: every source resource of its types is in its
// destination with the same content (SearchParameters, copied by PUT, without meta).
func (r *run) compare(ctx context.Context, ids []string, docs map[string]*document, sum *Summary) error {
	source, err := localstack.Resources(ctx, r.source.URL)
	if err != nil {
		return fmt.Errorf("read the source: %w", err)
	}
	for i, id := range ids {
		d := docs[id]
		if d == nil || d.Status != "completed" {
			continue
		}
		dest, err := localstack.Resources(ctx, r.dests[i].URL)
		if err != nil {
			return fmt.Errorf("read destination of %s: %w", id, err)
		}
		var missing, different []string
		inScope := func(key string) bool {
			typ, _, _ := strings.Cut(key, "/")
			return len(d.Request.Types) == 0 || slices.Contains(d.Request.Types, typ)
		}
		for key, want := range source {
			if !inScope(key) {
				continue
			}
			got, ok := dest[key]
			if !ok {
				missing = append(missing, key)
				continue
			}
			if !sameResource(key, want, got) {
				different = append(different, key)
			}
		}
		for key := range dest {
			if _, ok := source[key]; !ok || !inScope(key) {
				sum.Extra++
			}
		}
		sum.Missing += len(missing)
		sum.Different += len(different)
		if len(missing)+len(different) > 0 {
			slices.Sort(missing)
			slices.Sort(different)
			sum.Reasons[id] = fmt.Sprintf("completed but missing %d (%s), different %d (%s)", len(missing),
				strings.Join(first(missing, 5), " "), len(different), strings.Join(first(different, 5), " "))
		}
	}
	return nil
}

func first(s []string, n int) []string { return s[:min(n, len(s))] }

// sameResource compares two resources as JSON; SearchParameters get a new meta from the PUT that copied them.
func sameResource(key string, a, b json.RawMessage) bool {
	var x, y map[string]any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	if strings.HasPrefix(key, "SearchParameter/") {
		delete(x, "meta")
		delete(y, "meta")
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// lockedWriter lets the killer and the main loop write progress lines to one writer.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
