package scalebench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fhir-migrator/fhir-migrator/internal/azuritetest"
	"github.com/fhir-migrator/fhir-migrator/internal/fhirsim"
	"github.com/fhir-migrator/fhir-migrator/internal/localstack"
)

// The cutover benchmark: a migration of the workload with sync, verify ids and reconciliation through the real
// local stack, the source written at a steady rate while it syncs, then the cutover, with its downtime measured in
// modelled seconds. The full copy and the sync's first checks (every staged id looked up, a reconciliation pass
// over every id) run at a large time scale; then the simulators are slowed to the measured time scale, at which
// one wall second of the handler's poll timer is 30 modelled seconds, as the service's PollSchedule ticks in
// Azure; the lag is sampled over several rounds, and the cutover is asked for.

// SearchRates are the services' search and count figures the benchmark assumes (fhirsim.RateModel).
type SearchRates struct {
	// SearchRate: modelled resources per second a service reads for searches in all.
	SearchRate float64 `json:"searchRate"`
	// CountRate: modelled resources per second a service scans for counts in all; CountLatency: modelled seconds
	// each count takes besides.
	CountRate    float64 `json:"countRate"`
	CountLatency float64 `json:"countLatency"`
}

// DefaultSearchRates are the simulators' assumed figures (fhirsim.DefaultSearchRate and the rest).
func DefaultSearchRates() SearchRates {
	return SearchRates{SearchRate: fhirsim.DefaultSearchRate, CountRate: fhirsim.DefaultCountRate,
		CountLatency: fhirsim.DefaultCountLatency}
}

// WriteMix is the share of each kind of write the source takes while it syncs.
type WriteMix struct {
	Create     float64 `json:"create"`
	Update     float64 `json:"update"`
	SoftDelete float64 `json:"softDelete"`
	HardDelete float64 `json:"hardDelete"`
}

// DefaultWriteMix: half creates, four in ten updates, nine in a hundred soft deletes, one in a hundred hard deletes
// (an assumption; hard deletes are kept high on purpose, as each one is a place the cutover's counts must find).
func DefaultWriteMix() WriteMix {
	return WriteMix{Create: 0.50, Update: 0.40, SoftDelete: 0.09, HardDelete: 0.01}
}

// CutoverResourcesPerFile is the modelled resources in one exported file of a cutover run.
const CutoverResourcesPerFile = 1_000_000

// CutoverConfig is one cutover run.
type CutoverConfig struct {
	Workload Workload
	Rates    Rates
	Search   SearchRates
	// CopyScale is the time scale of the full copy and of the sync's first checks; SyncScale that of the measured
	// sync and the cutover.
	CopyScale float64
	SyncScale float64
	// CopyWriteScale is the writer's time scale while the full copy is checked and the first pass runs (phase 1):
	// that phase is bound by this machine's wall time, not by the modelled search rate, so writing at CopyScale
	// would make the writes after the first pass started stand for hundreds of modelled hours, where a pass over
	// 10^9 ids at the assumed search rate and half duty takes about 70 (10^9 ids listed on the destination and
	// looked up on the source, 2 x 10^9 / 16,000 s, times two). At 700 the five to six wall minutes of that pass
	// stand for about 70 modelled hours of writes (an assumption, as the pass's wall time varies).
	CopyWriteScale float64
	// SyncInterval and SyncMargin are the request's, in modelled time.
	SyncInterval time.Duration
	SyncMargin   time.Duration
	// WritesPerS is the source's modelled writes per second while the migration syncs, in the Mix.
	WritesPerS float64
	Mix        WriteMix
	// Rounds is how many rounds the lag is sampled over before the cutover.
	Rounds int
	// Budget bounds the whole run (wall time).
	Budget time.Duration
	// HandlerLog, when set, receives the handler's log lines of the verification's steps and its warnings.
	HandlerLog string `json:"-"`
	RepoRoot   string
	Progress   io.Writer
}

// DefaultCutoverConfig is a billion modelled resources, synced every 15 minutes with a 5-minute margin while the
// source takes 100 writes a second, cut over after 5 measured rounds.
func DefaultCutoverConfig() CutoverConfig {
	rates := DefaultRates()
	// Files of a million modelled resources (a thousand stored lines): the cutover's figures do not depend on the
	// file size, and the sync's checks read every staged file once, whose per-file cost on this machine (an
	// Azurite read, a save) would otherwise set the run's wall time.
	rates.ResourcesPerFile = CutoverResourcesPerFile
	return CutoverConfig{Workload: DefaultWorkload(), Rates: rates, Search: DefaultSearchRates(),
		CopyScale: 2000, CopyWriteScale: 700, SyncScale: 10, SyncInterval: 15 * time.Minute, SyncMargin: 5 * time.Minute,
		WritesPerS: 100, Mix: DefaultWriteMix(), Rounds: 3, Budget: 40 * time.Minute}
}

// Validate refuses a run that cannot be modelled.
func (c CutoverConfig) Validate() error {
	base := Config{Workload: c.Workload, Rates: c.Rates, TimeScale: c.CopyScale, Budget: c.Budget}
	if err := base.Validate(); err != nil {
		return err
	}
	m := c.Mix
	switch {
	case c.SyncScale <= 0 || math.IsInf(c.SyncScale, 0) || math.IsNaN(c.SyncScale) || c.SyncScale > 30:
		return fmt.Errorf("sync time scale %v is not positive and at most 30 (the handler's poll timer ticks every 30 modelled seconds, at least every wall second)", c.SyncScale)
	case c.CopyWriteScale <= 0 || math.IsInf(c.CopyWriteScale, 0) || math.IsNaN(c.CopyWriteScale):
		return fmt.Errorf("copy write scale %v is not positive", c.CopyWriteScale)
	case c.SyncInterval <= 0 || c.SyncMargin < 0:
		return errors.New("the sync interval must be positive and the margin not negative")
	case c.WritesPerS < 0 || c.Rounds < 1:
		return errors.New("writes per second must not be negative, and at least one round is measured")
	case c.Search.SearchRate <= 0 || c.Search.CountRate <= 0 || c.Search.CountLatency < 0:
		return errors.New("the search and count rates must be positive")
	case m.Create < 0 || m.Update < 0 || m.SoftDelete < 0 || m.HardDelete < 0 || math.Abs(m.Create+m.Update+m.SoftDelete+m.HardDelete-1) > 1e-9:
		return fmt.Errorf("the write mix %+v does not sum to 1", m)
	}
	return nil
}

// CutoverFigures are a cutover run's results, every time in modelled seconds.
type CutoverFigures struct {
	Resources  int64   `json:"resources"`
	WritesPerS float64 `json:"writesPerS"`
	// Writes counts the source's writes while it synced, in modelled resources, by kind.
	Writes map[string]int64 `json:"writes"`
	// DowntimeS runs from the cutover request to the migration's completion; FinalRoundS to the end of the final
	// round, ReconcileS is the reconciliation, VerifyS the rest (they add up to DowntimeS).
	DowntimeS   float64 `json:"downtimeS"`
	FinalRoundS float64 `json:"finalRoundS"`
	VerifyS     float64 `json:"verifyS"`
	ReconcileS  float64 `json:"reconcileS"`
	// LagP50S and LagP99S are the lag sampled while the measured rounds ran; LagTargetS is the interval plus the
	// margin plus RoundMaxS, the longest measured round's export and import as the migration ran it (the round's
	// start to its end in the document: its export kicked off at a poll tick, polled to its end, its files
	// imported, the import polled to its end, the destination checked for direct writes). ServiceRoundMaxS is the
	// services' part of it alone (export kick-off to the last import's end, from the simulators' records).
	LagP50S    float64 `json:"lagP50S"`
	LagP99S    float64 `json:"lagP99S"`
	LagSamples int     `json:"lagSamples"`
	LagTargetS float64 `json:"lagTargetS"`
	RoundMaxS  float64 `json:"roundMaxS"`
	// ServiceRoundMaxS: see LagTargetS.
	ServiceRoundMaxS float64 `json:"serviceRoundMaxS"`
	Rounds           int     `json:"rounds"`
	// SettleRounds are the rounds between the switch to the sync's scale and the measured ones (see RunCutover).
	SettleRounds int `json:"settleRounds"`
	// What the sync checked and the cutover compared (from the document).
	CheckedFiles   int   `json:"checkedFiles"`
	Passes         int   `json:"passes"`
	PassRemoved    int64 `json:"passRemoved"`
	Suspects       int64 `json:"suspects"`
	CompareCounts  int64 `json:"compareCounts"`
	CompareRanges  int64 `json:"compareRanges"`
	CompareListed  int64 `json:"compareListed"`
	CutoverRemove  int64 `json:"cutoverRemoved"`
	CutoverFiles   int   `json:"cutoverFiles"`
	Search         SearchRates
	CopyScale      float64 `json:"copyScale"`
	CopyWriteScale float64 `json:"copyWriteScale"`
	SyncScale      float64 `json:"syncScale"`
}

// Line is the benchmark's line: the figures the issue asks for, then what bounds them.
func (f CutoverFigures) Line() string {
	d := func(v float64) string { return strconv.FormatFloat(v, 'f', 0, 64) }
	return fmt.Sprintf("cutover: resources=%d writes_per_s=%s downtime_s=%s final_round_s=%s verify_s=%s reconcile_s=%s lag_p50_s=%s lag_p99_s=%s",
		f.Resources, d(f.WritesPerS), d(f.DowntimeS), d(f.FinalRoundS), d(f.VerifyS), d(f.ReconcileS), d(f.LagP50S), d(f.LagP99S))
}

// Detail is a second line: the targets and the rates assumed, with where they come from.
func (f CutoverFigures) Detail() string {
	return fmt.Sprintf("cutover: lag_target_s=%.0f round_max_s=%.0f service_round_max_s=%.0f rounds=%d settle_rounds=%d lag_samples=%d checked_files=%d cutover_files=%d passes=%d "+
		"pass_removed=%d suspects=%d compare_counts=%d compare_ranges=%d compare_listed=%d cutover_removed=%d "+
		"search_rate=%.0f count_rate=%.0f count_latency_s=%.3f (assumptions: see docs/sync-and-cutover.md) copy_scale=%.0f copy_write_scale=%.0f sync_scale=%.0f",
		f.LagTargetS, f.RoundMaxS, f.ServiceRoundMaxS, f.Rounds, f.SettleRounds, f.LagSamples, f.CheckedFiles, f.CutoverFiles, f.Passes, f.PassRemoved, f.Suspects,
		f.CompareCounts, f.CompareRanges, f.CompareListed, f.CutoverRemove, f.Search.SearchRate, f.Search.CountRate,
		f.Search.CountLatency, f.CopyScale, f.CopyWriteScale, f.SyncScale)
}

// Met reports whether the run met the two targets: downtime at most 600 s, and the lag's 99th percentile
// at most the interval plus the margin plus one round's export and import.
func (f CutoverFigures) Met() bool { return f.DowntimeS <= 600 && f.LagP99S <= f.LagTargetS }

// CutoverReport is what a cutover run writes.
type CutoverReport struct {
	Config  CutoverConfig  `json:"config"`
	Figures CutoverFigures `json:"figures"`
	// LagS are the lag samples, RoundsS each measured round's export and import, in modelled seconds.
	LagS    []float64 `json:"lagS"`
	RoundsS []float64 `json:"roundsS"`
	// Checks is how the sync's checks kept up with the rounds: a point each time the document's rounds or checks
	// moved, as the benchmark read it.
	Checks []CheckPoint `json:"checks"`
}

// CheckPoint is the sync's rounds and background checks at one reading of the document.
type CheckPoint struct {
	// WallS is the wall time since the run started.
	WallS float64 `json:"wallS"`
	// Rounds are the finished rounds, InFlight whether one runs.
	Rounds   int  `json:"rounds"`
	InFlight bool `json:"inFlight"`
	// NextFile is the checks' cursor, Files the checkable files when the checks last saved, CheckedRounds the
	// rounds checked in full, Passes the reconciliation passes completed.
	NextFile      int `json:"nextFile"`
	Files         int `json:"files"`
	CheckedRounds int `json:"checkedRounds"`
	Passes        int `json:"passes"`
}

// cutoverDoc is what the benchmark reads of the migration document.
type cutoverDoc struct {
	Status string `json:"status"`
	Error  *struct {
		Code, Message string
	} `json:"error"`
	Sync *struct {
		HighWater          time.Time  `json:"highWater"`
		Rounds             int        `json:"rounds"`
		CutoverRequestedAt *time.Time `json:"cutoverRequestedAt"`
		Round              *struct {
			N int `json:"n"`
		} `json:"round"`
		Recent []struct {
			N          int        `json:"n"`
			Final      bool       `json:"final"`
			StartedAt  time.Time  `json:"startedAt"`
			FinishedAt *time.Time `json:"finishedAt"`
		} `json:"recent"`
		Checks *struct {
			NextFile      int   `json:"nextFile"`
			Files         int   `json:"files"`
			CheckedRounds int   `json:"checkedRounds"`
			Passes        int   `json:"passes"`
			Removed       int64 `json:"removed"`
			Suspects      int64 `json:"suspects"`
		} `json:"checks"`
	} `json:"sync"`
	Cutover *struct {
		RequestedAt time.Time `json:"requestedAt"`
		At          time.Time `json:"at"`
	} `json:"cutover"`
	Verification *struct {
		CheckedAt *time.Time `json:"checkedAt"`
		Rows      []struct {
			Type      string `json:"type"`
			Reason    string `json:"reason"`
			Lines     int64  `json:"lines"`
			Exported  int64  `json:"exported"`
			Missing   int64  `json:"missing"`
			Extra     int64  `json:"extra"`
			Different int64  `json:"different"`
		} `json:"rows"`
		MissingCount int64 `json:"missingCount"`
		IDs          *struct {
			NextFile int `json:"nextFile"`
			FromSync int `json:"fromSync"`
		} `json:"ids"`
		Reconcile *struct {
			Removed    int64      `json:"removed"`
			StartedAt  *time.Time `json:"startedAt"`
			FinishedAt *time.Time `json:"finishedAt"`
			Compare    *struct {
				Counts int64 `json:"counts"`
				Ranges int64 `json:"ranges"`
				Listed int64 `json:"listed"`
			} `json:"compare"`
		} `json:"reconcile"`
	} `json:"verification"`
}

// RunCutover runs the cutover benchmark.
func RunCutover(ctx context.Context, cfg CutoverConfig) (*CutoverReport, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Budget)
	defer cancel()
	say := func(format string, args ...any) {
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, "bench-cutover: "+format+"\n", args...)
		}
	}
	dir, err := os.MkdirTemp("", "bench-cutover-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	say("building the handler")
	bin, err := localstack.BuildHandler(ctx, cfg.RepoRoot, dir)
	if err != nil {
		return nil, err
	}
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
	resources, _ := w.Generate()
	alive := make([]storedID, 0, len(resources))
	for _, raw := range resources {
		var head struct{ ResourceType, ID string }
		if err := json.Unmarshal(raw, &head); err != nil {
			return nil, err
		}
		alive = append(alive, storedID{typ: head.ResourceType, id: head.ID})
	}
	model := fhirsim.RateModel{Weight: w.Weight, ExportRate: cfg.Rates.ExportPerJob, ExportSlots: cfg.Rates.ExportSlots,
		ImportRate: cfg.Rates.ImportCapacity, SearchRate: cfg.Search.SearchRate, CountRate: cfg.Search.CountRate,
		CountLatency: cfg.Search.CountLatency, TimeScale: cfg.CopyScale}
	common := []fhirsim.Option{fhirsim.WithRateModel(model), fhirsim.WithJobDelay(0), fhirsim.WithPollsBeforeDone(0)}
	source := append(slices.Clone(common), fhirsim.WithRollover(int(cfg.Rates.ResourcesPerFile/w.Weight)),
		fhirsim.WithResources(resources...))
	resources = nil
	dest := append(slices.Clone(common), fhirsim.WithMaxImports(cfg.Rates.ImportSlots))
	// The handler's delays are those of the measured phase: a wall second of its timer is SyncScale modelled
	// seconds, as PollSchedule ticks every 30 s in Azure at the default SyncScale.
	scaled := func(d time.Duration) string { return (time.Duration(float64(d) / cfg.SyncScale)).String() }
	// The poll timer ticks every 30 modelled seconds, as PollSchedule does in Azure.
	tick := max(int(math.Round(30/cfg.SyncScale)), 1)
	stack, err := localstack.Start(ctx, localstack.Options{
		Storage: az.ConnectionString, RepoRoot: cfg.RepoRoot, HandlerBinary: bin,
		Source: source, Dests: [][]fhirsim.Option{dest}, QuietHost: true,
		Settings: map[string]string{
			"PollSchedule": fmt.Sprintf("*/%d * * * * *", tick), "PollInitial": scaled(5 * time.Second), "PollMax": scaled(2 * time.Minute),
			"RetryDelay": scaled(30 * time.Second), "ConfirmDelay": scaled(time.Minute), "ExportDeadline": scaled(6 * time.Hour),
			"MaxExportsPerSource": strconv.Itoa(cfg.Rates.ExportSlots), "MaxImportsPerDestination": strconv.Itoa(cfg.Rates.ImportSlots),
			"LogLevel": "info", "AzureWebJobsStorage": docs.ConnectionString,
		},
	})
	if err != nil {
		return nil, err
	}
	defer stack.Close()
	defer func() {
		// The handler's own account of the cutover, beside the run's figures.
		if cfg.HandlerLog != "" {
			var steps []string
			for l := range strings.SplitSeq(stack.Logs.String(), "\n") {
				if strings.Contains(l, "verification step") || strings.Contains(l, "msg=\"sync checks\"") || strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
					steps = append(steps, l)
				}
			}
			if err := os.MkdirAll(filepath.Dir(cfg.HandlerLog), 0o755); err == nil {
				_ = os.WriteFile(cfg.HandlerLog, []byte(strings.Join(steps, "\n")+"\n"), 0o644)
			}
		}
	}()
	dst := stack.Dests[0]
	sims := []*fhirsim.Server{stack.Source.Sim, dst.Sim}

	// The workload's types, as an operator names what the source holds (the source's CapabilityStatement lists
	// dozens more, empty here).
	var types []string
	for _, t := range w.Types {
		types = append(types, t.Type)
	}
	body, err := json.Marshal(map[string]any{"source": stack.Source.URL, "destination": dst.URL, "verify": "ids", "types": types, "exportStrategy": "system",
		"sync": true, "syncInterval": scaled(cfg.SyncInterval), "syncMargin": scaled(cfg.SyncMargin)})
	if err != nil {
		return nil, err
	}
	started := time.Now()
	status, raw, err := localstack.API(ctx, stack.Host.URL(), http.MethodPost, "/api/migrations", body)
	if err != nil || status != http.StatusAccepted {
		return nil, fmt.Errorf("start the migration: HTTP %d %s: %v", status, localstack.Truncate(raw), err)
	}
	var created struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(raw, &created); err != nil || created.ID == "" {
		return nil, fmt.Errorf("start answer %s: %v", localstack.Truncate(raw), err)
	}
	id := created.ID
	rep := &CutoverReport{Config: cfg}
	// note records the sync's rounds and checks when they moved.
	note := func(d cutoverDoc) {
		if d.Sync == nil || d.Sync.Checks == nil {
			return
		}
		c := d.Sync.Checks
		p := CheckPoint{Rounds: d.Sync.Rounds, InFlight: d.Sync.Round != nil, NextFile: c.NextFile, Files: c.Files,
			CheckedRounds: c.CheckedRounds, Passes: c.Passes}
		if n := len(rep.Checks); n > 0 {
			last := rep.Checks[n-1]
			last.WallS = 0
			if last == p {
				return
			}
		}
		p.WallS = math.Round(time.Since(started).Seconds()*10) / 10
		rep.Checks = append(rep.Checks, p)
	}
	read := func() (cutoverDoc, error) {
		var d cutoverDoc
		status, raw, err := localstack.API(ctx, stack.Host.URL(), http.MethodGet, "/api/migrations/"+id, nil)
		if err != nil {
			return d, err
		}
		if status != http.StatusOK || json.Unmarshal(raw, &d) != nil {
			return d, fmt.Errorf("read migration %s: HTTP %d %s", id, status, localstack.Truncate(raw))
		}
		if (d.Status == "failed" && !weightOnly(d, w.Weight)) || d.Status == "canceled" {
			return d, fmt.Errorf("migration %s %s: %+v", id, d.Status, d.Error)
		}
		note(d)
		return d, nil
	}
	wait := func(what string, ok func(d cutoverDoc) bool) (cutoverDoc, error) {
		last := time.Time{}
		for {
			d, err := read()
			if err != nil {
				return d, err
			}
			if ok(d) {
				return d, nil
			}
			if time.Since(last) >= 30*time.Second {
				say("%s after %s: waiting for %s", d.Status, time.Since(started).Round(time.Second), what)
				last = time.Now()
			}
			if err := localstack.Sleep(ctx, 250*time.Millisecond); err != nil {
				return d, fmt.Errorf("waiting for %s: %w", what, err)
			}
		}
	}

	// Phase 1 (CopyScale): the full copy, then the sync's first checks with the source written.
	if _, err := wait("the full copy", func(d cutoverDoc) bool { return d.Status == "syncing" }); err != nil {
		return nil, err
	}
	say("syncing after %s; the source is written from now on", time.Since(started).Round(time.Second))
	wr := &writer{base: stack.Source.URL, alive: alive, weight: w.Weight, rate: cfg.WritesPerS, mix: cfg.Mix,
		types: w.Types, rng: rand.New(rand.NewPCG(w.Seed, 77)), writes: map[string]int64{}}
	wr.setScale(cfg.CopyWriteScale)
	wctx, stopWrites := context.WithCancel(ctx)
	defer stopWrites()
	var wg sync.WaitGroup
	wg.Go(func() { wr.run(wctx) })
	if _, err := wait("the full copy's files checked and a reconciliation pass", func(d cutoverDoc) bool {
		c := d.Sync.Checks
		return c != nil && c.CheckedRounds >= 0 && c.Passes >= 1
	}); err != nil {
		return nil, err
	}

	// Phase 2 (SyncScale): the measured sync.
	switched := time.Now()
	for _, s := range sims {
		s.SetTimeScale(cfg.SyncScale)
	}
	wr.setScale(cfg.SyncScale)
	d, err := read()
	if err != nil {
		return nil, err
	}
	// Settling. The round in flight at the switch began at the old scale, and the rounds after it carry what the
	// source took at the copy's write scale (phase 1 compresses hours of writes into wall minutes): their exports,
	// imports and checks are larger than a steady sync's. The measured rounds start once two rounds have ended
	// since the switch and the checks have caught up with every finished round: the steady state of a sync at the
	// write rate. A sync whose checks never catch up never gets there, and the run ends at its budget.
	switchedAt := d.Sync.Rounds
	say("settling from %s (round %d): two rounds, and the checks caught up", time.Since(started).Round(time.Second), switchedAt)
	settled, err := wait("the sync to settle", func(d cutoverDoc) bool {
		c := d.Sync.Checks
		return d.Sync.Rounds >= switchedAt+2 && d.Sync.Round == nil && c != nil && c.CheckedRounds >= d.Sync.Rounds
	})
	if err != nil {
		return nil, err
	}
	first := settled.Sync.Rounds
	say("measured phase from %s (the rounds after round %d)", time.Since(started).Round(time.Second), first)
	sampled := settled
	// The measured rounds are those that export from a mark set in the measured phase.
	fromSince := sampled.Sync.HighWater.Add(-time.Duration(float64(cfg.SyncMargin)/cfg.SyncScale) - time.Second)
	for {
		d, err := read()
		if err != nil {
			return nil, err
		}
		rep.LagS = append(rep.LagS, time.Since(d.Sync.HighWater).Seconds()*cfg.SyncScale)
		if d.Sync.Rounds >= first+cfg.Rounds && d.Sync.Round == nil {
			break
		}
		if err := localstack.Sleep(ctx, 250*time.Millisecond); err != nil {
			return nil, err
		}
	}
	// The switch: writes stop (the in-flight ones land), then the cutover.
	stopWrites()
	wg.Wait()
	writes, writeStart, writeEnd := wr.totals()
	say("cutover after %s", time.Since(started).Round(time.Second))
	status, raw, err = localstack.API(ctx, stack.Host.URL(), http.MethodPost, "/api/migrations/"+id+"/cutover", nil)
	if err != nil || status != http.StatusAccepted {
		return nil, fmt.Errorf("cutover: HTTP %d %s: %v", status, localstack.Truncate(raw), err)
	}
	d, err = wait("the cutover", func(d cutoverDoc) bool { return d.Status == "completed" || d.Status == "failed" })
	if err != nil {
		return nil, err
	}
	if d.Cutover == nil {
		// The weight's one artifact (weightOnly): the cutover is done when its verification is.
		d.Cutover = &struct {
			RequestedAt time.Time `json:"requestedAt"`
			At          time.Time `json:"at"`
		}{RequestedAt: *d.Sync.CutoverRequestedAt, At: *d.Verification.CheckedAt}
		say("verified with every staged line standing for %d resources (the only difference: see weightOnly)", w.Weight)
	}

	f := CutoverFigures{SettleRounds: first - switchedAt, Writes: writes, Search: cfg.Search, CopyScale: cfg.CopyScale, CopyWriteScale: cfg.CopyWriteScale, SyncScale: cfg.SyncScale}
	modelled := func(a, b time.Time) float64 { return b.Sub(a).Seconds() * cfg.SyncScale }
	var total int64
	for _, n := range writes {
		total += n
	}
	// Writes at the copy scale and at the sync scale: their modelled duration is the sum of both parts.
	f.WritesPerS = float64(total) / (switched.Sub(writeStart).Seconds()*cfg.CopyWriteScale + writeEnd.Sub(switched).Seconds()*cfg.SyncScale)
	f.DowntimeS = modelled(d.Cutover.RequestedAt, d.Cutover.At)
	for _, r := range d.Sync.Recent {
		if r.Final && r.FinishedAt != nil {
			f.FinalRoundS = modelled(d.Cutover.RequestedAt, *r.FinishedAt)
		}
	}
	if rc := d.Verification.Reconcile; rc != nil && rc.StartedAt != nil && rc.FinishedAt != nil {
		f.ReconcileS = modelled(*rc.StartedAt, *rc.FinishedAt)
		f.CutoverRemove = rc.Removed
		if rc.Compare != nil {
			f.CompareCounts, f.CompareRanges, f.CompareListed = rc.Compare.Counts, rc.Compare.Ranges, rc.Compare.Listed
		}
	}
	f.VerifyS = f.DowntimeS - f.FinalRoundS - f.ReconcileS
	if c := d.Sync.Checks; c != nil {
		f.CheckedFiles, f.Passes, f.PassRemoved, f.Suspects = c.NextFile, c.Passes, c.Removed, c.Suspects
	}
	if ids := d.Verification.IDs; ids != nil {
		f.CutoverFiles = ids.NextFile - ids.FromSync
	}
	f.LagP50S, f.LagP99S, f.LagSamples = percentile(rep.LagS, 0.50), percentile(rep.LagS, 0.99), len(rep.LagS)
	rep.RoundsS = roundTimes(stack.Source.Sim.Stats(), dst.Sim.Stats(), fromSince, d.Sync.CutoverRequestedAt, cfg.SyncScale)
	if len(rep.RoundsS) > 0 {
		f.ServiceRoundMaxS = slices.Max(rep.RoundsS)
	}
	for _, r := range d.Sync.Recent {
		if r.N > first && !r.Final && r.FinishedAt != nil {
			f.Rounds++
			f.RoundMaxS = max(f.RoundMaxS, modelled(r.StartedAt, *r.FinishedAt))
		}
	}
	f.LagTargetS = (cfg.SyncInterval + cfg.SyncMargin).Seconds() + f.RoundMaxS
	if f.Resources, err = localstack.Count(ctx, dst.URL, "", nil); err != nil {
		return rep, fmt.Errorf("count the destination: %w", err)
	}
	rep.Figures = f
	return rep, nil
}

// weightOnly tells a verification that failed only because each staged line stands for weight resources: ids
// mode compares the lines its staged files hold with their manifests' counts, and under the rate model the
// manifests count weight modelled resources a line (the files hold the stored ones; files of a billion lines would
// not fit this machine). It holds when every row's only problem is staged_mismatch with exactly weight times more
// in the manifests than lines, nothing missing, extra or different, and the verification is decided.
func weightOnly(d cutoverDoc, weight int64) bool {
	v := d.Verification
	if weight <= 1 || v == nil || v.CheckedAt == nil || v.MissingCount > 0 || d.Sync == nil || d.Sync.CutoverRequestedAt == nil {
		return false
	}
	for _, r := range v.Rows {
		if r.Missing > 0 || r.Extra > 0 || r.Different > 0 || (r.Reason != "" && r.Reason != "staged_mismatch") || r.Lines*weight != r.Exported {
			return false
		}
	}
	return len(v.Rows) > 0
}

// roundTimes are the measured rounds' export and import times, in modelled seconds: from each delta export the
// source ran from a mark at or after fromSince, and created before the cutover, to the end of the last import that
// took its files.
func roundTimes(src, dst fhirsim.Stats, fromSince time.Time, cutover *time.Time, scale float64) []float64 {
	var out []float64
	for _, e := range src.Exports {
		if e.State != "completed" || e.Finished == nil || (cutover != nil && e.Created.After(*cutover)) {
			continue
		}
		q, _ := url.ParseQuery(e.Query)
		since, err := time.Parse(time.RFC3339Nano, q.Get("_since"))
		if err != nil || since.Before(fromSince) {
			continue
		}
		files := map[string]bool{}
		for _, o := range e.Output {
			files[o] = true
		}
		end := *e.Finished
		for _, i := range dst.Imports {
			if i.Finished == nil || len(i.Inputs) == 0 || !files[i.Inputs[0]] {
				continue
			}
			if i.Finished.After(end) {
				end = *i.Finished
			}
		}
		out = append(out, end.Sub(e.Created).Seconds()*scale)
	}
	return out
}

// percentile is the p-th quantile of v (nearest rank); 0 for none.
func percentile(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[max(int(math.Ceil(p*float64(len(s))))-1, 0)]
}

// storedID names one stored resource of the source.
type storedID struct{ typ, id string }

// writer writes the source at a steady modelled rate: each stored write stands for weight modelled ones.
type writer struct {
	base   string
	weight int64
	rate   float64
	mix    WriteMix
	types  []TypeShare
	rng    *rand.Rand

	mu     sync.Mutex
	scale  float64
	alive  []storedID
	writes map[string]int64
	next   int
	first  time.Time
	last   time.Time
}

func (w *writer) setScale(s float64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.scale = s
}

// run writes until ctx ends: a stored write every weight / (rate x scale) wall seconds.
func (w *writer) run(ctx context.Context) {
	if w.rate <= 0 {
		return
	}
	next := time.Now()
	for ctx.Err() == nil {
		w.mu.Lock()
		gap := time.Duration(float64(w.weight) / (w.rate * w.scale) * float64(time.Second))
		w.mu.Unlock()
		next = next.Add(gap)
		if d := time.Until(next); d > 0 {
			if localstack.Sleep(ctx, d) != nil {
				return
			}
		}
		w.one(ctx)
	}
}

// one makes one write of the mix.
func (w *writer) one(ctx context.Context) {
	w.mu.Lock()
	u := w.rng.Float64()
	var kind string
	switch m := w.mix; {
	case u < m.Create:
		kind = "create"
	case u < m.Create+m.Update:
		kind = "update"
	case u < m.Create+m.Update+m.SoftDelete:
		kind = "soft-delete"
	default:
		kind = "hard-delete"
	}
	var target storedID
	if kind == "create" || len(w.alive) == 0 {
		kind = "create"
		w.next++
		target = storedID{typ: pick(w.types, w.rng.Float64()), id: fmt.Sprintf("w%09d", w.next)}
	} else {
		i := w.rng.IntN(len(w.alive))
		target = w.alive[i]
		if kind != "update" {
			w.alive[i] = w.alive[len(w.alive)-1]
			w.alive = w.alive[:len(w.alive)-1]
		}
	}
	w.mu.Unlock()
	path := "/" + target.typ + "/" + target.id
	method, body := http.MethodPut, []byte(fmt.Sprintf(`{"resourceType":%q,"id":%q,"status":"amended"}`, target.typ, target.id))
	switch kind {
	case "soft-delete":
		method, body = http.MethodDelete, nil
	case "hard-delete":
		method, body, path = http.MethodDelete, nil, path+"?hardDelete=true"
	}
	status, _, err := localstack.Write(ctx, w.base, method, path, body)
	if err != nil || status >= 300 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if kind == "create" {
		w.alive = append(w.alive, target)
	}
	w.writes[kind] += w.weight
	now := time.Now()
	if w.first.IsZero() {
		w.first = now
	}
	w.last = now
}

// totals are the writes made, in modelled resources by kind, and when the first and the last were made.
func (w *writer) totals() (map[string]int64, time.Time, time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]int64{}
	for k, v := range w.writes {
		out[k] = v
	}
	return out, w.first, w.last
}

func pick(types []TypeShare, u float64) string {
	for _, t := range types {
		if u < t.Share {
			return t.Type
		}
		u -= t.Share
	}
	return types[len(types)-1].Type
}
