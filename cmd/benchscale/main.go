// Command benchscale runs `make bench-scale`: a billion modelled resources migrated through the real local stack
// under the simulators' rate model, measured against the least time the services allow and against Microsoft's
// tool's schedule. It prints one line and writes the run to bench/out/scale.json.
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

func write(path string, rep *scalebench.Report) error {
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
