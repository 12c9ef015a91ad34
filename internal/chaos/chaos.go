// Package chaos runs migrations on the local stack while everything around the handler misbehaves: faulty FHIR
// simulators, a local host that duplicates and drops messages, and a handler process killed at random moments.
// It keeps starting rounds of migrations until every configured fault kind has fired, then checks every migration
// against the stand-ins' own records and reports a one-line summary. Of a migration's document it reads only the
// outcome: the status and error it must explain (and which problems its verification claims), never a figure: a
// failure counts only when the faults that hit the migration's own jobs produce it (excuse.go).
package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"

	"github.com/fhir-migrator/fhir-migrator/internal/azuritetest"
	"github.com/fhir-migrator/fhir-migrator/internal/fhirsim"
	"github.com/fhir-migrator/fhir-migrator/internal/localstack"
)

// DefaultFaults are the faults of a chaos run: every kind the simulators inject. The handler answers each without
// losing data, except the lossy kinds (import-drop, import-line-errors), which lose data on purpose and are
// given only to every LossyEvery-th migration's destination: those migrations must never complete with anything
// missing (they fail, and the summary names the injected cause).
const DefaultFaults = "kickoff-429=0.15,status-500=0.05,status-503=0.05,drop-conn=0.02,export-fail=0.1," +
	"export-stall=0.05,export-cancel=0.1,early-200=0.2,import-hold=0.15,import-busy=0.1," +
	"import-line-errors=0.002,import-drop=0.002"

// lossyFaults lose resources on purpose.
var lossyFaults = []string{fhirsim.FaultImportDrop, fhirsim.FaultImportLineErrors}

// Options shape one chaos run; zero values take the defaults.
type Options struct {
	// Migrations run at once in each round, each into a destination simulator of its own (default 3).
	Migrations int
	// Patients seeds the source (about 110 resources each; default 30).
	Patients int
	// Faults is the fault spec of every simulator (fhirsim.ParseFaults; default DefaultFaults; "none" for none).
	Faults string
	// LossyEvery gives the lossy faults to every LossyEvery-th migration's destination only (default 3).
	LossyEvery int
	// MinResources is the least number of resources (of its scope) every completed migration's destination must
	// hold (default 2000).
	MinResources int
	// Budget bounds when rounds start: rounds are started until every configured fault kind fired and Kills kills
	// landed while a migration ran, or the budget is spent (default 20m); the last round then runs to its end, so
	// the whole run takes at most Budget + Timeout.
	Budget time.Duration
	// Seed drives the fault rolls, the host's chaos rolls and the kill times (0: from the time).
	Seed int64
	// Kills is the least number of handler kills that must land while a migration runs (default 5); kills go
	// on every KillEvery until the end.
	Kills int
	// KillEvery is the mean time between kills (default 5s); each wait is drawn in [KillEvery/2, 3*KillEvery/2].
	// The host restarts a handler that keeps dying with a growing backoff, so kills much closer than the
	// handler's start-up keep it down rather than test it.
	KillEvery time.Duration
	// DuplicateRate and DropRate are the local host's chaos rates (default 0.3 and 0.15; negative for none).
	DuplicateRate float64
	DropRate      float64
	// Timeout bounds the wait for one round's migrations to end (default 6m).
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

// Summary is what a chaos run found. Every figure comes from the simulators' and the local host's records or from
// comparing the servers' contents; none from the migration documents but each migration's status and error.
type Summary struct {
	Seed       int64 `json:"seed"`
	Migrations int   `json:"migrations"`
	Completed  int   `json:"completed"`
	Failed     int   `json:"failed"`
	// Injected counts the failed migrations whose failure the faults that hit their own jobs explain (named in
	// Reasons): the source's export jobs of their container, their own destination.
	Injected int `json:"injected"`
	// Unfinished counts migrations still running at their round's timeout (or canceled).
	Unfinished int `json:"unfinished"`
	// Kills counts handler kills that landed while a migration ran; AllKills every kill.
	Kills    int `json:"kills"`
	AllKills int `json:"allKills"`
	// Duplicates and Dropped count the messages the local host duplicated and lost.
	Duplicates int `json:"duplicates"`
	Dropped    int `json:"dropped"`
	// Faults counts injected faults; FaultKinds the configured kinds that fired, of FaultKindsConfigured.
	Faults               int `json:"faults"`
	FaultKinds           int `json:"faultKinds"`
	FaultKindsConfigured int `json:"faultKindsConfigured"`
	// Orphaned counts server jobs (export or import) never polled nor canceled by the engine; LostKickoffs the
	// kick-offs whose answer a drop-conn cut (the simulators' fault logs). Each orphan needs one of them or a kill.
	Orphaned     int `json:"orphaned"`
	LostKickoffs int `json:"lostKickoffs"`
	// DuplicateKickoffs counts server export jobs of one engine job (the same kick-off request) beyond the first
	// whose files were imported, plus staged files imported by more than one import job.
	DuplicateKickoffs int `json:"duplicateKickoffs"`
	// Missing counts source resources absent from the destination of a completed migration; Different those
	// present with other content; Extra destination resources the source (in scope) does not have.
	Missing   int `json:"missing"`
	Different int `json:"different"`
	Extra     int `json:"extra"`
	// Smallest is the number of resources (of its scope) the destination of the smallest completed migration
	// holds: counted on the destination, so that a migration that moved little proves little.
	Smallest int `json:"smallest"`
	// FaultsByName, Reasons (migration id -> outcome) and Problems (why the run is not OK) explain the outcome.
	FaultsByName map[string]int    `json:"faultsByName"`
	Reasons      map[string]string `json:"reasons"`
	Problems     []string          `json:"problems,omitempty"`
}

// String is the summary line.
func (s Summary) String() string {
	return fmt.Sprintf("chaos: seed=%d migrations=%d completed=%d failed=%d injected=%d kills=%d duplicates=%d dropped=%d "+
		"faults=%d fault_kinds=%d/%d orphaned=%d lost_kickoffs=%d duplicate_kickoffs=%d missing=%d extra=%d different=%d "+
		"smallest=%d",
		s.Seed, s.Migrations, s.Completed, s.Failed, s.Injected, s.Kills, s.Duplicates, s.Dropped, s.Faults,
		s.FaultKinds, s.FaultKindsConfigured, s.Orphaned, s.LostKickoffs, s.DuplicateKickoffs, s.Missing, s.Extra,
		s.Different, s.Smallest)
}

// OK reports whether the run proved what it must: no problem found (see Problems).
func (s Summary) OK() bool { return len(s.Problems) == 0 }

// judge lists what keeps the run from passing: every migration must complete or fail for a cause the faults
// that hit its own jobs explain, the completed ones without loss and of the least size, no work done twice, no
// server job orphaned beyond the kick-offs whose answer was lost and the kills, and every fault kind fired.
func (s *Summary) judge(o Options) {
	var p []string
	add := func(cond bool, format string, args ...any) {
		if cond {
			p = append(p, fmt.Sprintf(format, args...))
		}
	}
	add(s.Unfinished > 0, "%d migrations did not end", s.Unfinished)
	add(s.Failed > s.Injected, "%d migrations failed for a reason no injected fault explains", s.Failed-s.Injected)
	add(s.Missing > 0, "%d resources missing from completed migrations", s.Missing)
	add(s.Extra > 0, "%d resources the source does not hold in completed migrations' destinations", s.Extra)
	add(s.Different > 0, "%d resources with other content in completed migrations' destinations", s.Different)
	add(s.DuplicateKickoffs > 0, "%d duplicate kick-offs", s.DuplicateKickoffs)
	add(s.Orphaned > s.LostKickoffs+s.Kills, "%d server jobs orphaned, more than the %d kick-offs whose answer was lost "+
		"plus the %d kills that landed", s.Orphaned, s.LostKickoffs, s.Kills)
	add(s.Kills < o.Kills, "%d kills landed while a migration ran, fewer than %d", s.Kills, o.Kills)
	add(s.FaultKinds < s.FaultKindsConfigured, "%d of %d fault kinds fired", s.FaultKinds, s.FaultKindsConfigured)
	add(s.Migrations < 3, "%d migrations, fewer than 3", s.Migrations)
	add(s.Completed == 0, "no migration completed: none was checked for loss")
	add(s.Completed > 0 && s.Smallest < o.MinResources, "the smallest completed migration's destination holds %d resources, "+
		"fewer than %d", s.Smallest, o.MinResources)
	s.Problems = p
}

// migrationShapes are the start requests the runner cycles through (source and destination are added); a
// shape's types (none: every type) are what its destination must hold.
var migrationShapes = []map[string]any{
	{},
	{"types": []string{"Patient", "Encounter", "Observation", "Condition", "MedicationRequest"}},
	// Over its window target, a system export is planned per type, and Observations in several windows.
	{"types": []string{"Patient", "Observation", "SearchParameter"}, "exportStrategy": "system", "verify": "ids",
		"windowTarget": 600},
}

func (o *Options) defaults() error {
	if o.Migrations <= 0 {
		o.Migrations = 3
	}
	if o.Patients <= 0 {
		o.Patients = 30
	}
	if o.Faults == "" {
		o.Faults = DefaultFaults
	}
	if o.Faults == "none" {
		o.Faults = ""
	}
	if o.LossyEvery <= 0 {
		o.LossyEvery = 3
	}
	if o.MinResources == 0 {
		o.MinResources = 2000
	}
	if o.Budget <= 0 {
		o.Budget = 20 * time.Minute
	}
	if o.Seed == 0 {
		o.Seed = time.Now().UnixNano() % 1_000_000_000
	}
	if o.Kills <= 0 {
		o.Kills = 5
	}
	if o.KillEvery <= 0 {
		o.KillEvery = 5 * time.Second
	}
	if o.DuplicateRate == 0 {
		o.DuplicateRate = 0.3
	}
	if o.DropRate == 0 {
		o.DropRate = 0.15
	}
	o.DuplicateRate, o.DropRate = max(o.DuplicateRate, 0), max(o.DropRate, 0)
	if o.Timeout <= 0 {
		o.Timeout = 6 * time.Minute
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

	azurite *azuritetest.Azurite
	stack   *localstack.Stack
	logs    *localstack.SyncBuffer
	// srcFaults keeps the faults the source logs.
	srcFaults *faultLog
	cleanups  []func()
	// migrations are every migration started, in order.
	migrations []*migration
}

// migration is one migration of the run, as the runner saw it from outside.
type migration struct {
	id      string
	dest    *localstack.Simulator
	lossy   bool
	request map[string]any
	// faults keeps the faults its destination logs.
	faults  *faultLog
	started time.Time
	ended   time.Time // when the runner first saw it end; zero while it runs
	doc     *document
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
	r.logs = &localstack.SyncBuffer{}
	r.srcFaults = &faultLog{}
	st, err := localstack.Start(ctx, localstack.Options{
		Storage: r.azurite.ConnectionString, RepoRoot: o.RepoRoot, HandlerBinary: bin,
		Source: []fhirsim.Option{fhirsim.WithSeed(o.Patients, 7), fhirsim.WithRollover(300),
			fhirsim.WithFaults(r.faults), fhirsim.WithFaultSeed(o.Seed), fhirsim.WithLogger(r.srcFaults.logger())},
		Settings: map[string]string{
			"MigrationContainer": fmt.Sprintf("chaos-docs-%d", o.Seed),
			"RedriveAfter":       "8s",
			"ExportDeadline":     exportDeadline.String(),
			"ConfirmDelay":       "2s",
			"MaxReexports":       "4",
		},
		Logs: r.logs, HandlerLog: o.HandlerLog, HostLog: true,
		DuplicateRate: o.DuplicateRate, DropRate: o.DropRate, ChaosSeed: o.Seed,
	})
	if err != nil {
		return err
	}
	r.stack = st
	r.cleanups = append(r.cleanups, st.Close)
	r.logf("stack up: source %s, host %s, faults %q, seed %d", st.Source.URL, st.Host.URL(), r.faults.String(), o.Seed)
	return nil
}

// destFaults are the faults of the n-th migration's destination: the lossy kinds only on every LossyEvery-th.
func (r *run) destFaults(n int) (fhirsim.Faults, bool) {
	lossy := (n+1)%r.opts.LossyEvery == 0
	f := fhirsim.Faults{}
	for name, p := range r.faults {
		if lossy || !slices.Contains(lossyFaults, name) {
			f[name] = p
		}
	}
	return f, lossy && slices.ContainsFunc(lossyFaults, func(name string) bool { return r.faults[name] > 0 })
}

func (r *run) execute(ctx context.Context) (Summary, error) {
	o := r.opts
	runCtx, cancel := context.WithTimeout(ctx, o.Budget)
	defer cancel()
	killer := r.startKiller(runCtx)
	defer killer.stop()
	for round := 1; ; round++ {
		if err := r.startRound(runCtx, round); err != nil {
			return Summary{}, err
		}
		// The budget bounds when rounds start; a round that started gets its whole timeout, so that no migration
		// is cut off half-way by the budget and counted as unfinished.
		roundCtx, cancelRound := context.WithTimeout(ctx, o.Timeout)
		err := r.await(roundCtx)
		cancelRound()
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return Summary{}, err
		}
		fired, configured := r.kindsFired()
		landed, _ := r.landedKills()
		r.logf("round %d done: %d/%d fault kinds fired (not yet: %v), %d kills landed while a migration ran", round, fired,
			configured, r.kindsNotFired(), landed)
		if fired == configured && landed >= o.Kills || runCtx.Err() != nil || err != nil {
			break
		}
	}
	killer.stop()
	sum, err := r.summarise(ctx)
	if err != nil {
		return sum, err
	}
	sum.judge(o)
	for _, m := range r.migrations {
		if why, ok := sum.Reasons[m.id]; ok {
			r.logf("%s %s", m.id, why)
		}
	}
	r.logf("faults injected: %v", sum.FaultsByName)
	for _, p := range sum.Problems {
		r.logf("problem: %s", p)
	}
	return sum, nil
}

// startRound starts Migrations migrations, each into a new destination.
func (r *run) startRound(ctx context.Context, round int) error {
	for range r.opts.Migrations {
		n := len(r.migrations)
		faults, lossy := r.destFaults(n)
		log := &faultLog{}
		dest, err := r.stack.AddDestination([]fhirsim.Option{fhirsim.WithFaults(faults),
			fhirsim.WithFaultSeed(r.opts.Seed + int64(n) + 1), fhirsim.WithImportHold(2 * time.Second),
			fhirsim.WithMaxImports(2), fhirsim.WithLogger(log.logger())})
		if err != nil {
			return fmt.Errorf("destination of migration %d: %w", n+1, err)
		}
		req := map[string]any{"source": r.stack.Source.URL, "destination": dest.URL}
		maps.Copy(req, migrationShapes[n%len(migrationShapes)])
		began := time.Now()
		id, err := r.start(ctx, req)
		if err != nil {
			return fmt.Errorf("start migration %d: %w", n+1, err)
		}
		r.migrations = append(r.migrations, &migration{id: id, dest: dest, lossy: lossy, request: req, faults: log,
			started: began})
		r.logf("round %d: started %s into %s%s", round, id, dest.URL, map[bool]string{true: " (lossy faults)"}[lossy])
	}
	return nil
}

// kindsFired counts the configured fault kinds that fired on any simulator.
func (r *run) kindsFired() (fired, configured int) {
	byName := r.faultsByName()
	for name, p := range r.faults {
		if p <= 0 {
			continue
		}
		configured++
		if byName[name] > 0 {
			fired++
		}
	}
	return fired, configured
}

// kindsNotFired lists the configured fault kinds that have not fired yet.
func (r *run) kindsNotFired() []string {
	byName := r.faultsByName()
	var out []string
	for name, p := range r.faults {
		if p > 0 && byName[name] == 0 {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

func (r *run) faultsByName() map[string]int {
	out := map[string]int{}
	for _, sim := range r.simulators() {
		for name, n := range sim.Sim.Stats().FaultsInjected {
			out[name] += n
		}
	}
	return out
}

func (r *run) simulators() []*localstack.Simulator {
	sims := []*localstack.Simulator{r.stack.Source}
	for _, m := range r.migrations {
		sims = append(sims, m.dest)
	}
	return sims
}

// landedKills counts the host's kills that landed while some migration ran, and all of them.
func (r *run) landedKills() (landed, all int) {
	times := r.stack.Host.Stats().KillTimes
	for _, t := range times {
		for _, m := range r.migrations {
			if !t.Before(m.started) && (m.ended.IsZero() || t.Before(m.ended)) {
				landed++
				break
			}
		}
	}
	return landed, len(times)
}

// summarise computes every figure from the stand-ins' records and the servers' contents.
func (r *run) summarise(ctx context.Context) (Summary, error) {
	sum := Summary{Seed: r.opts.Seed, Migrations: len(r.migrations), Reasons: map[string]string{}}
	hs := r.stack.Host.Stats()
	for _, q := range hs.Queues {
		sum.Duplicates += q.DuplicatesInjected
		sum.Dropped += q.DropsInjected
	}
	sum.Kills, sum.AllKills = r.landedKills()
	sum.FaultsByName = r.faultsByName()
	for _, n := range sum.FaultsByName {
		sum.Faults += n
	}
	sum.FaultKinds, sum.FaultKindsConfigured = r.kindsFired()

	srcStats := r.stack.Source.Sim.Stats()
	srcFaults := r.srcFaults.records()
	destStats := make([]fhirsim.Stats, len(r.migrations))
	sum.LostKickoffs = lostKickoffs(srcFaults)
	for i, m := range r.migrations {
		destStats[i] = m.dest.Sim.Stats()
		sum.LostKickoffs += lostKickoffs(m.faults.records())
	}
	sum.Orphaned, sum.DuplicateKickoffs = serverJobFigures(srcStats, destStats)

	source, err := localstack.Resources(ctx, r.stack.Source.URL)
	if err != nil {
		return sum, fmt.Errorf("read the source: %w", err)
	}
	kills := r.stack.Host.Stats().KillTimes
	all := make([]*facts, len(r.migrations))
	for i, m := range r.migrations {
		f := &facts{id: m.id, container: m.id, lossy: m.lossy, doc: m.doc, srcURL: r.stack.Source.URL, destURL: m.dest.URL,
			started: m.started, ended: m.ended, dest: destStats[i], srcFaults: srcFaults, destFaults: m.faults.records()}
		if c, ok := m.request["container"].(string); ok && c != "" {
			f.container = c // the staging container is the migration's id unless the request names one
		}
		for _, j := range srcStats.Exports {
			if containerOf(j.Query) == f.container {
				f.exports = append(f.exports, j)
			}
		}
		for _, t := range kills {
			if !t.Before(m.started) && (m.ended.IsZero() || t.Before(m.ended)) {
				f.kills = append(f.kills, t)
			}
		}
		if m.doc != nil && m.doc.terminal() {
			inScope := scope(m.request)
			f.missing, f.extra, f.different, f.held, err = compare(ctx, source, m.dest.URL, inScope)
			if err != nil {
				return sum, fmt.Errorf("read destination of %s: %w", m.id, err)
			}
			f.compared = true
		}
		if m.doc != nil && m.doc.Status == "failed" && m.lossy {
			f.refused, f.refusedErr = r.refusedLines(ctx, destStats[i])
		}
		all[i] = f
	}
	sum.add(all)
	return sum, nil
}

// add judges every migration's facts into the summary's counts, figures and reasons.
func (s *Summary) add(all []*facts) {
	smallest := -1
	for _, f := range all {
		v := judgeMigration(f)
		if v.why != "" {
			s.Reasons[f.id] = v.why
		}
		switch v.state {
		case "unfinished":
			s.Unfinished++
		case "failed":
			s.Failed++
			if v.excuse != "" {
				s.Injected++
			}
		case "completed":
			s.Completed++
			s.Missing += len(f.missing)
			s.Extra += len(f.extra)
			s.Different += len(f.different)
			if smallest < 0 || f.held < smallest {
				smallest = f.held
			}
		}
	}
	s.Smallest = max(smallest, 0)
}

// refusedLines reads back the resources of the lines a destination refused: the simulator writes the failed
// lines of each import job's input to an error file of the error container, named after the job and the input,
// each line naming the input line it refused.
func (r *run) refusedLines(ctx context.Context, dest fhirsim.Stats) ([]string, error) {
	jobs := map[string][]string{}
	for _, j := range dest.Imports {
		jobs[j.ID] = j.Inputs
	}
	client, err := r.azurite.Client()
	if err != nil {
		return nil, err
	}
	endpoint := strings.TrimSuffix(client.URL(), "/") + "/"
	download := func(container, name string) ([]byte, error) {
		resp, err := client.DownloadStream(ctx, container, name, nil)
		if err != nil {
			return nil, fmt.Errorf("download %s/%s: %w", container, name, err)
		}
		defer func() { _ = resp.Body.Close() }()
		return io.ReadAll(resp.Body)
	}
	var out []string
	pager := client.NewListBlobsFlatPager(fhirsim.DefaultErrorContainer, nil)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if bloberror.HasCode(err, bloberror.ContainerNotFound) {
			return nil, nil // nothing was refused anywhere
		}
		if err != nil {
			return out, fmt.Errorf("list %s: %w", fhirsim.DefaultErrorContainer, err)
		}
		for _, b := range page.Segment.BlobItems {
			job, input, ok := errorFileInput(*b.Name, jobs)
			if !ok {
				continue // another destination's
			}
			errs, err := download(fhirsim.DefaultErrorContainer, *b.Name)
			if err != nil {
				return out, err
			}
			rest, ok := strings.CutPrefix(jobs[job][input], endpoint)
			container, escaped, _ := strings.Cut(rest, "/")
			name, perr := url.PathUnescape(escaped)
			if !ok || perr != nil || name == "" {
				return out, fmt.Errorf("input %s of import job %s is not a blob of the account", jobs[job][input], job)
			}
			in, err := download(container, name)
			if err != nil {
				return out, err
			}
			keys, err := refusedKeys(errs, in)
			out = append(out, keys...)
			if err != nil {
				return out, fmt.Errorf("%s: %w", *b.Name, err)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// serverJobFigures reads the simulators' job records: jobs no one ever asked about (orphaned), and work done
// twice: export jobs of one kick-off request beyond the first whose files were imported, and staged files
// imported by more than one import job.
func serverJobFigures(src fhirsim.Stats, dests []fhirsim.Stats) (orphaned, duplicates int) {
	importedBy := map[string]map[string]bool{} // staged file -> import jobs (destination index/job id)
	for i, d := range dests {
		for _, j := range d.Imports {
			if j.Gets == 0 && j.Deletes == 0 {
				orphaned++
			}
			for _, u := range j.Inputs {
				if importedBy[u] == nil {
					importedBy[u] = map[string]bool{}
				}
				importedBy[u][fmt.Sprintf("%d/%s", i, j.ID)] = true
			}
		}
	}
	for _, jobs := range importedBy {
		duplicates += len(jobs) - 1
	}
	imported := map[string]int{} // kick-off query -> its server jobs with files imported
	for _, j := range src.Exports {
		if j.Gets == 0 && j.Deletes == 0 {
			orphaned++
		}
		if slices.ContainsFunc(j.Output, func(u string) bool { return importedBy[u] != nil }) {
			imported[j.Query]++
		}
	}
	for _, n := range imported {
		duplicates += n - 1
	}
	return orphaned, duplicates
}

// scope tells whether a source resource ("Type/id") belongs to a migration of req.
func scope(req map[string]any) func(key string) bool {
	types, _ := req["types"].([]string)
	return func(key string) bool {
		typ, _, _ := strings.Cut(key, "/")
		return len(types) == 0 || slices.Contains(types, typ)
	}
}

// compare reads a destination and lists the source resources in scope it lacks or holds with other content, and
// what it holds that the source (in scope) does not; held counts the source resources in scope it holds.
func compare(ctx context.Context, source map[string]json.RawMessage, destURL string, inScope func(string) bool) (missing, extra, different []string, held int, err error) {
	dest, err := localstack.Resources(ctx, destURL)
	if err != nil {
		return nil, nil, nil, 0, err
	}
	for key, want := range source {
		if !inScope(key) {
			continue
		}
		got, ok := dest[key]
		if ok {
			held++
		}
		switch {
		case !ok:
			missing = append(missing, key)
		case !sameResource(key, want, got):
			different = append(different, key)
		}
	}
	for key := range dest {
		if _, ok := source[key]; !ok || !inScope(key) {
			extra = append(extra, key)
		}
	}
	slices.Sort(missing)
	slices.Sort(extra)
	slices.Sort(different)
	return missing, extra, different, held, nil
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
	return localstack.API(ctx, r.stack.Host.URL(), method, path, body)
}

// killer kills the handler at random moments until stopped.
type killer struct {
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

func (k *killer) stop() {
	k.once.Do(func() {
		k.cancel()
		<-k.done
	})
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
			if err := r.stack.Host.KillHandler(); err != nil {
				r.logf("kill: %v", err)
			}
		}
	}()
	return k
}

// await polls every unfinished migration until each has ended or ctx ends, recording when each was first seen
// ended.
func (r *run) await(ctx context.Context) error {
	for {
		running := 0
		for _, m := range r.migrations {
			if !m.ended.IsZero() {
				continue
			}
			status, raw, err := r.api(ctx, http.MethodGet, "/api/migrations/"+m.id, nil)
			if err != nil || status != http.StatusOK {
				running++
				continue // the handler is being restarted
			}
			var d document
			if json.Unmarshal(raw, &d) != nil {
				running++
				continue
			}
			m.doc = &d
			if !d.terminal() {
				running++
				continue
			}
			m.ended = time.Now()
			r.logf("%s ended %s", m.id, d.Status)
		}
		if running == 0 {
			return nil
		}
		if err := localstack.Sleep(ctx, 500*time.Millisecond); err != nil {
			return err
		}
	}
}

// document is the part of a migration document the runner reads: its outcome, nothing it counts (the reasons of
// its verification's rows only say which problems a failure claims, so that a destination fault never excuses
// one it cannot cause).
type document struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Error  *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	Verification *struct {
		Rows []documentRow `json:"rows"`
	} `json:"verification"`
}

// documentRow is one verification row: its type and the reason it did not pass ("" when it did).
type documentRow struct {
	Type   string `json:"type"`
	Reason string `json:"reason"`
}

// Rows are the verification's rows (none before a verification).
func (d *document) Rows() []documentRow {
	if d == nil || d.Verification == nil {
		return nil
	}
	return d.Verification.Rows
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
