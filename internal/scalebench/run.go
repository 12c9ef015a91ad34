package scalebench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/fhir-migrator/fhir-migrator/internal/azuritetest"
	"github.com/fhir-migrator/fhir-migrator/internal/fhirsim"
	"github.com/fhir-migrator/fhir-migrator/internal/localstack"
)

// Config is one scale run.
type Config struct {
	Workload Workload
	Rates    Rates
	// TimeScale divides every modelled duration: of the simulators' jobs and of the handler's delays.
	TimeScale float64
	// Budget bounds the wait for the migration (wall time).
	Budget time.Duration
	// RepoRoot holds host.json and the function folders.
	RepoRoot string
	// Progress gets a line now and then.
	Progress io.Writer
}

// azuriteMemoryMB bounds Azurite's blob content: the staged files and every written version of the documents
// until Azurite collects them.
const azuriteMemoryMB = 8192

// DefaultResourcesPerFile is the modelled resources in one exported file: about 100 MB of NDJSON, as a parallel
// export rolls its files at 64 MB and imports run best on files of 50 to 200 MB. A non-parallel export writes
// about 10,000 per file, but a billion resources in files of that size is 100,000 staged blobs, and Azurite
// looks up a blob by scanning every blob of its account (a put takes about 1.2 µs per blob already stored), so
// the staging emulator, not the product, would set the pace. The size changes neither Microsoft's schedule
// (a window of at most 100,000,000 resources fits one round of payloads either way) nor the lower bound.
const DefaultResourcesPerFile = 100_000

// DefaultRates are the simulators' default rate model, with files of DefaultResourcesPerFile.
func DefaultRates() Rates {
	return Rates{ExportPerJob: fhirsim.DefaultExportRate, ExportSlots: fhirsim.DefaultExportSlots,
		ImportCapacity: fhirsim.DefaultImportRate, ImportSlots: fhirsim.DefaultImportSlots, ResourcesPerFile: DefaultResourcesPerFile}
}

// Validate refuses a run that cannot be modelled.
func (c Config) Validate() error {
	if err := c.Workload.Validate(); err != nil {
		return err
	}
	r := c.Rates
	switch {
	case r.ExportPerJob <= 0 || r.ImportCapacity <= 0 || r.ExportSlots < 1 || r.ImportSlots < 1:
		return errors.New("rates: every rate and slot count must be positive")
	case r.ResourcesPerFile < c.Workload.Weight || r.ResourcesPerFile%c.Workload.Weight != 0:
		return fmt.Errorf("rates: %d resources per file is not a whole number of stored resources of weight %d", r.ResourcesPerFile, c.Workload.Weight)
	case c.TimeScale <= 0 || math.IsInf(c.TimeScale, 0) || math.IsNaN(c.TimeScale):
		return fmt.Errorf("time scale %v is not positive", c.TimeScale)
	case c.Budget <= 0:
		return errors.New("budget must be positive")
	}
	return nil
}

// JobSpan is one server job of the run, from the simulators' records: modelled resources, and modelled seconds
// from the start request.
type JobSpan struct {
	Kind      string   `json:"kind"`
	Types     []string `json:"types"`
	Resources int64    `json:"resources"`
	StartS    float64  `json:"startS"`
	EndS      float64  `json:"endS"`
}

// Figures are the run's results; every time in modelled seconds unless named otherwise. LowerBoundS is the least
// time of the workload under any plan (LowerBound), PlanBoundS that of the windows the run exported (PlanBound);
// LBRatio is LowerBoundS / MakespanS, so that a plan that runs slower scores lower.
type Figures struct {
	Resources       int64   `json:"resources"`
	Windows         int     `json:"windows"`
	Files           int     `json:"files"`
	MakespanS       float64 `json:"makespanS"`
	LowerBoundS     float64 `json:"lowerBoundS"`
	PlanBoundS      float64 `json:"planBoundS"`
	LBRatio         float64 `json:"lbRatio"`
	MSToolS         float64 `json:"mstoolS"`
	Speedup         float64 `json:"speedup"`
	DocMaxBytes     int64   `json:"docMaxBytes"`
	HandlerRSSMaxMB float64 `json:"handlerRssMaxMb"`
	SweepP99Ms      float64 `json:"sweepP99Ms"`
	TimeScale       float64 `json:"timeScale"`
	// CompletedS is when the migration was seen completed (verification included), PlannedS when its status
	// left planning.
	CompletedS float64 `json:"completedS"`
	PlannedS   float64 `json:"plannedS"`
}

// Report is what a run writes: enough to recompute every figure.
type Report struct {
	Rates     Rates     `json:"rates"`
	Weight    int64     `json:"weight"`
	TimeScale float64   `json:"timeScale"`
	Buckets   []Bucket  `json:"buckets"`
	Jobs      []JobSpan `json:"jobs"`
	Figures   Figures   `json:"figures"`
}

// Line is the one-line summary, every number a plain decimal.
func (f Figures) Line() string {
	d := func(v float64, prec int) string { return strconv.FormatFloat(v, 'f', prec, 64) }
	return fmt.Sprintf("scale: resources=%d windows=%d files=%d makespan_s=%s lower_bound_s=%s plan_bound_s=%s lb_ratio=%s mstool_s=%s speedup=%s doc_max_bytes=%d handler_rss_max_mb=%s sweep_p99_ms=%s time_scale=%s",
		f.Resources, f.Windows, f.Files, d(f.MakespanS, 0), d(f.LowerBoundS, 0), d(f.PlanBoundS, 0), d(f.LBRatio, 3), d(f.MSToolS, 0),
		d(f.Speedup, 2), f.DocMaxBytes, d(f.HandlerRSSMaxMB, 1), d(f.SweepP99Ms, 1), d(f.TimeScale, 0))
}

// Run builds the handler, starts Azurite, the simulators under the rate model and the local host, migrates the
// workload and measures it. Every figure comes from the stand-ins' records (the simulators' jobs, the local host's
// invocation times, the handler's process, the stored documents), none from the migration document.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	say := func(format string, args ...any) {
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, "bench-scale: "+format+"\n", args...)
		}
	}
	dir, err := os.MkdirTemp("", "bench-scale-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	say("building the handler")
	bin, err := localstack.BuildHandler(ctx, cfg.RepoRoot, dir)
	if err != nil {
		return nil, err
	}
	// In memory (on disk Azurite takes tens of milliseconds per small blob), and two accounts as in Azure: the
	// staging account for the NDJSON files, the function app's account for the documents. One Azurite process
	// uses one core: the documents do not wait behind the files.
	az, err := azuritetest.StartWithMemory(azuriteMemoryMB)
	if err != nil {
		return nil, err
	}
	defer az.Stop()
	docs, err := azuritetest.StartWithMemory(azuriteMemoryMB)
	if err != nil {
		return nil, err
	}
	defer docs.Stop()

	w := cfg.Workload
	say("generating %d stored resources standing for %d", w.Stored(), w.Resources)
	resources, buckets := w.Generate()
	model := fhirsim.RateModel{Weight: w.Weight, ExportRate: cfg.Rates.ExportPerJob, ExportSlots: cfg.Rates.ExportSlots,
		ImportRate: cfg.Rates.ImportCapacity, TimeScale: cfg.TimeScale}
	common := []fhirsim.Option{fhirsim.WithRateModel(model), fhirsim.WithJobDelay(0), fhirsim.WithPollsBeforeDone(0)}
	source := append(slices.Clone(common), fhirsim.WithRollover(int(cfg.Rates.ResourcesPerFile/w.Weight)),
		fhirsim.WithResources(resources...))
	dest := append(slices.Clone(common), fhirsim.WithMaxImports(cfg.Rates.ImportSlots))
	scaled := func(d time.Duration) string { return (time.Duration(float64(d) / cfg.TimeScale)).String() }
	stack, err := localstack.Start(ctx, localstack.Options{
		Storage: az.ConnectionString, RepoRoot: cfg.RepoRoot, HandlerBinary: bin,
		Source: source, Dests: [][]fhirsim.Option{dest}, QuietHost: true,
		Settings: map[string]string{
			// The handler's delays divided by the time scale, its timer ticking every second of wall time.
			"PollSchedule": "*/1 * * * * *", "PollInitial": scaled(5 * time.Second), "PollMax": scaled(2 * time.Minute),
			"RetryDelay": scaled(30 * time.Second), "ConfirmDelay": scaled(time.Minute), "ExportDeadline": scaled(6 * time.Hour),
			"MaxExportsPerSource": strconv.Itoa(cfg.Rates.ExportSlots), "MaxImportsPerDestination": strconv.Itoa(cfg.Rates.ImportSlots),
			"LogLevel": "warn", "AzureWebJobsStorage": docs.ConnectionString,
		},
	})
	if err != nil {
		return nil, err
	}
	defer stack.Close()
	dst := stack.Dests[0]

	body, err := json.Marshal(map[string]any{"source": stack.Source.URL, "destination": dst.URL, "verify": "counts"})
	if err != nil {
		return nil, err
	}
	started := time.Now()
	status, raw, err := localstack.API(ctx, stack.Host.URL(), http.MethodPost, "/api/migrations", body)
	if err != nil || status != http.StatusAccepted {
		return nil, fmt.Errorf("start the migration: HTTP %d %s: %v", status, localstack.Truncate(raw), err)
	}
	var doc struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil || doc.ID == "" {
		return nil, fmt.Errorf("start answer %s: %v", localstack.Truncate(raw), err)
	}
	say("migration %s started; time scale %v: a wall second is %v modelled", doc.ID, cfg.TimeScale, time.Duration(cfg.TimeScale*float64(time.Second)))

	m := &monitor{ctx: ctx, stack: stack, docs: docs, id: doc.ID, say: say}
	completed, planned, err := m.watch(started, cfg.Budget)
	if err != nil {
		return nil, err
	}
	modelled := func(t time.Time) float64 { return t.Sub(started).Seconds() * cfg.TimeScale }

	rep := &Report{Rates: cfg.Rates, Weight: w.Weight, TimeScale: cfg.TimeScale, Buckets: buckets}
	var windows []int64
	files := 0
	for _, e := range stack.Source.Sim.Stats().Exports {
		if e.State != "completed" || e.Finished == nil {
			continue
		}
		q, _ := url.ParseQuery(e.Query)
		rep.Jobs = append(rep.Jobs, JobSpan{Kind: "export", Types: strings.Split(q.Get("_type"), ","), Resources: e.Resources,
			StartS: modelled(e.Created), EndS: modelled(*e.Finished)})
		windows = append(windows, e.Resources)
		files += len(e.Output)
	}
	makespan := 0.0
	for _, i := range dst.Sim.Stats().Imports {
		if i.State != "completed" || i.Finished == nil {
			continue
		}
		rep.Jobs = append(rep.Jobs, JobSpan{Kind: "import", Types: inputTypes(i.Inputs), Resources: i.Resources,
			StartS: modelled(i.Created), EndS: modelled(*i.Finished)})
		makespan = max(makespan, modelled(*i.Finished))
	}
	arrived, err := localstack.Count(ctx, dst.URL, "", nil)
	if err != nil {
		return nil, fmt.Errorf("count the destination: %w", err)
	}
	f := Figures{Resources: arrived, Windows: len(windows), Files: files, MakespanS: makespan,
		MSToolS: MSTool(buckets, cfg.Rates), DocMaxBytes: m.docMax,
		HandlerRSSMaxMB: float64(m.rssMaxKB) / 1024, SweepP99Ms: p99ms(stack.Host.Durations("PollJob")),
		TimeScale: cfg.TimeScale, CompletedS: modelled(completed), PlannedS: modelled(planned)}
	f.judge(w, windows, cfg.Rates)
	rep.Figures = f
	if arrived != w.Resources {
		return rep, fmt.Errorf("the destination holds %d modelled resources, the workload %d", arrived, w.Resources)
	}
	return rep, nil
}

// judge sets the bounds and the ratios of a run of workload w whose exports were windows, its makespan and
// Microsoft's schedule set: the lower bound from the workload alone, so that a plan is judged by a bound it cannot
// move, and the plan's own bound beside it.
func (f *Figures) judge(w Workload, windows []int64, r Rates) {
	f.LowerBoundS, f.PlanBoundS = LowerBound(w.Resources, w.Weight, r), PlanBound(windows, r)
	f.LBRatio, f.Speedup = 0, 0
	if f.MakespanS > 0 {
		f.LBRatio, f.Speedup = f.LowerBoundS/f.MakespanS, f.MSToolS/f.MakespanS
	}
}

// inputTypes are the types of an import's input files (named {Type}-{n}.ndjson by the export).
func inputTypes(inputs []string) []string {
	var out []string
	for _, in := range inputs {
		name := in[strings.LastIndex(in, "/")+1:]
		if t, _, ok := strings.Cut(name, "-"); ok && !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	slices.Sort(out)
	return out
}

// p99ms is the 99th percentile of ds in milliseconds (nearest rank).
func p99ms(ds []time.Duration) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(0.99*float64(len(s)))) - 1
	return float64(s[max(i, 0)]) / float64(time.Millisecond)
}

// monitor follows a migration and samples what the run measures: the largest stored document and the handler's
// peak resident memory.
type monitor struct {
	ctx      context.Context
	stack    *localstack.Stack
	docs     *azuritetest.Azurite
	id       string
	say      func(string, ...any)
	docMax   int64
	rssMaxKB int64
}

// watch waits until the migration is completed, sampling every second; it answers when the status left planning
// and when it was seen completed.
func (m *monitor) watch(started time.Time, budget time.Duration) (completed, planned time.Time, err error) {
	deadline := started.Add(budget)
	lastSay := time.Time{}
	for {
		m.sample()
		status, raw, err := localstack.API(m.ctx, m.stack.Host.URL(), http.MethodGet, "/api/migrations/"+m.id, nil)
		if err != nil {
			return time.Time{}, time.Time{}, err
		}
		var doc struct {
			Status string `json:"status"`
			Error  *struct {
				Code, Message string
			} `json:"error"`
		}
		if status != http.StatusOK || json.Unmarshal(raw, &doc) != nil {
			return time.Time{}, time.Time{}, fmt.Errorf("read migration %s: HTTP %d %s", m.id, status, localstack.Truncate(raw))
		}
		now := time.Now()
		if planned.IsZero() && doc.Status != "planning" {
			planned = now
		}
		switch doc.Status {
		case "completed":
			m.sample()
			return now, planned, nil
		case "failed", "canceled":
			return time.Time{}, time.Time{}, fmt.Errorf("migration %s %s: %+v", m.id, doc.Status, doc.Error)
		}
		if now.After(deadline) {
			return time.Time{}, time.Time{}, fmt.Errorf("migration %s still %s after %s", m.id, doc.Status, budget)
		}
		if now.Sub(lastSay) >= 30*time.Second {
			m.say("%s after %s (largest document %d bytes, handler peak %d MB)", doc.Status, now.Sub(started).Round(time.Second), m.docMax, m.rssMaxKB/1024)
			lastSay = now
		}
		if err := localstack.Sleep(m.ctx, time.Second); err != nil {
			return time.Time{}, time.Time{}, err
		}
	}
}

// sample reads the sizes of the stored migration documents and the handler's peak resident memory (VmHWM).
func (m *monitor) sample() {
	if client, err := m.docs.Client(); err == nil {
		prefix := "migrations/"
		pager := client.NewListBlobsFlatPager("fhir-migrations", &container.ListBlobsFlatOptions{Prefix: &prefix})
		for pager.More() {
			page, err := pager.NextPage(m.ctx)
			if err != nil {
				break
			}
			for _, b := range page.Segment.BlobItems {
				if b.Properties != nil && b.Properties.ContentLength != nil {
					m.docMax = max(m.docMax, *b.Properties.ContentLength)
				}
			}
		}
	}
	if pid := m.stack.Host.HandlerPID(); pid > 0 {
		m.rssMaxKB = max(m.rssMaxKB, peakRSSKB(pid))
	}
}

// peakRSSKB reads a process's peak resident set size (VmHWM, kB) from /proc; 0 when it cannot.
func peakRSSKB(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}
