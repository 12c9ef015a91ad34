// Command benchscale runs `make bench-scale`: a billion modelled resources migrated through the real local stack
// under the simulators' rate model, measured against the least time the services allow and against Microsoft's
// tool's schedule. It prints one line and writes the run to bench/out/scale.json. With -cutover (`make
// bench-cutover`) it runs the same workload with sync, verify ids and reconciliation while the source is written,
// cuts over, and prints the cutover's line (bench/out/cutover.json).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/fhir-migrator/fhir-migrator/internal/localstack"
	"github.com/fhir-migrator/fhir-migrator/internal/scalebench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench-scale:", err)
		stop()
		os.Exit(1)
	}
}

func parse(args []string, stderr io.Writer) (scalebench.Config, string, error) {
	cfg := scalebench.Config{Workload: scalebench.DefaultWorkload(), Rates: scalebench.DefaultRates()}
	var out string
	fs := flag.NewFlagSet("benchscale", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Int64Var(&cfg.Workload.Resources, "resources", cfg.Workload.Resources, "modelled resources of the workload")
	fs.Int64Var(&cfg.Workload.Weight, "weight", cfg.Workload.Weight, "modelled resources each stored resource stands for")
	fs.Uint64Var(&cfg.Workload.Seed, "seed", cfg.Workload.Seed, "seed of the workload")
	fs.Float64Var(&cfg.TimeScale, "time-scale", 150, "divides every modelled duration")
	fs.DurationVar(&cfg.Budget, "budget", 17*time.Minute, "most wall time the migration may take")
	fs.Float64Var(&cfg.Rates.ExportPerJob, "export-rate", cfg.Rates.ExportPerJob, "R_e: modelled resources per second of one export job")
	fs.IntVar(&cfg.Rates.ExportSlots, "export-slots", cfg.Rates.ExportSlots, "C_e: exports at once on the source")
	fs.Float64Var(&cfg.Rates.ImportCapacity, "import-rate", cfg.Rates.ImportCapacity, "R_I: modelled resources per second of the destination")
	fs.IntVar(&cfg.Rates.ImportSlots, "import-slots", cfg.Rates.ImportSlots, "C_i: imports at once on the destination")
	fs.Int64Var(&cfg.Rates.ResourcesPerFile, "resources-per-file", cfg.Rates.ResourcesPerFile, "modelled resources in one exported file (a whole number of stored resources)")
	fs.StringVar(&out, "out", filepath.Join("bench", "out", "scale.json"), "where the run is written")
	if err := fs.Parse(args); err != nil {
		return cfg, "", err
	}
	if fs.NArg() > 0 {
		return cfg, "", fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	return cfg, out, cfg.Validate()
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if rest, ok := cutoverArgs(args); ok {
		return runCutover(ctx, rest, stdout, stderr)
	}
	cfg, out, err := parse(args, stderr)
	if err != nil {
		return err
	}
	if cfg.RepoRoot, err = localstack.RepoRoot(); err != nil {
		return err
	}
	cfg.Progress = stderr
	rep, err := scalebench.Run(ctx, cfg)
	if rep != nil {
		if werr := write(out, rep); werr != nil {
			return werr
		}
		fmt.Fprintln(stdout, rep.Figures.Line())
	}
	return err
}

// cutoverArgs tells a cutover run (-cutover among the arguments) and returns the others.
func cutoverArgs(args []string) ([]string, bool) {
	var rest []string
	found := false
	for _, a := range args {
		if a == "-cutover" || a == "--cutover" {
			found = true
			continue
		}
		rest = append(rest, a)
	}
	return rest, found
}

// parseCutover reads the flags of a cutover run (make bench-cutover).
func parseCutover(args []string, stderr io.Writer) (scalebench.CutoverConfig, string, error) {
	cfg := scalebench.DefaultCutoverConfig()
	var out string
	fs := flag.NewFlagSet("benchscale -cutover", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Int64Var(&cfg.Workload.Resources, "resources", cfg.Workload.Resources, "modelled resources of the workload")
	fs.Int64Var(&cfg.Workload.Weight, "weight", cfg.Workload.Weight, "modelled resources each stored resource stands for")
	fs.Uint64Var(&cfg.Workload.Seed, "seed", cfg.Workload.Seed, "seed of the workload and of the writes")
	fs.Float64Var(&cfg.CopyScale, "copy-scale", cfg.CopyScale, "time scale of the full copy and the sync's first checks")
	fs.Float64Var(&cfg.SyncScale, "sync-scale", cfg.SyncScale, "time scale of the measured sync and the cutover")
	fs.Float64Var(&cfg.CopyWriteScale, "copy-write-scale", cfg.CopyWriteScale, "time scale of the source's writes while the full copy is checked and the first pass runs")
	fs.DurationVar(&cfg.SyncInterval, "sync-interval", cfg.SyncInterval, "the request's syncInterval, modelled")
	fs.DurationVar(&cfg.SyncMargin, "sync-margin", cfg.SyncMargin, "the request's syncMargin, modelled")
	fs.Float64Var(&cfg.WritesPerS, "writes-per-s", cfg.WritesPerS, "modelled writes per second on the source while it syncs")
	fs.IntVar(&cfg.Rounds, "rounds", cfg.Rounds, "measured rounds before the cutover")
	fs.Int64Var(&cfg.Rates.ResourcesPerFile, "resources-per-file", cfg.Rates.ResourcesPerFile, "modelled resources in one exported file (a whole number of stored resources)")
	fs.Float64Var(&cfg.Search.SearchRate, "search-rate", cfg.Search.SearchRate, "modelled resources per second a service reads for searches")
	fs.Float64Var(&cfg.Search.CountRate, "count-rate", cfg.Search.CountRate, "modelled resources per second a service scans for counts")
	fs.Float64Var(&cfg.Search.CountLatency, "count-latency", cfg.Search.CountLatency, "modelled seconds each count takes besides")
	fs.DurationVar(&cfg.Budget, "budget", cfg.Budget, "most wall time the run may take")
	fs.StringVar(&out, "out", filepath.Join("bench", "out", "cutover.json"), "where the run is written")
	fs.StringVar(&cfg.HandlerLog, "handler-log", filepath.Join("bench", "out", "cutover-handler.log"), "where the handler's verification steps and warnings are written")
	if err := fs.Parse(args); err != nil {
		return cfg, "", err
	}
	if fs.NArg() > 0 {
		return cfg, "", fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	return cfg, out, cfg.Validate()
}

func runCutover(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, out, err := parseCutover(args, stderr)
	if err != nil {
		return err
	}
	if cfg.RepoRoot, err = localstack.RepoRoot(); err != nil {
		return err
	}
	cfg.Progress = stderr
	rep, err := scalebench.RunCutover(ctx, cfg)
	if rep != nil {
		if werr := writeAny(out, rep); werr != nil {
			return werr
		}
		fmt.Fprintln(stdout, rep.Figures.Line())
		fmt.Fprintln(stdout, rep.Figures.Detail())
	}
	if err == nil && !rep.Figures.Met() {
		return fmt.Errorf("targets missed: downtime_s %.0f (at most 600), lag_p99_s %.0f (at most %.0f)",
			rep.Figures.DowntimeS, rep.Figures.LagP99S, rep.Figures.LagTargetS)
	}
	return err
}

func write(path string, rep *scalebench.Report) error { return writeAny(path, rep) }

func writeAny(path string, rep any) error {
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("encode the run: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write the run: %w", err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("write the run: %w", err)
	}
	return nil
}
