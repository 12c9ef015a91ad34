// Command chaos runs rounds of migrations against faulty simulators while the local host duplicates and drops
// messages and the handler is killed at random, until every fault kind fired; it prints a summary line computed
// from the stand-ins' records and exits non-zero unless nothing was lost, no work was done twice, no server job
// was orphaned beyond the kick-offs whose answer was lost and the kills, and every migration completed or failed
// for a cause the faults that hit its own jobs explain.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/fhir-migrator/fhir-migrator/internal/chaos"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o chaos.Options
	fs.IntVar(&o.Migrations, "migrations", 3, "migrations started at once in each round, each into a destination of its own")
	fs.IntVar(&o.Patients, "patients", 30, "patients in the source's seed (about 110 resources each)")
	fs.StringVar(&o.Faults, "faults", chaos.DefaultFaults, `fault spec of every simulator, name=probability,... ("none" for none)`)
	fs.IntVar(&o.LossyEvery, "lossy-every", 3, "only every n-th migration's destination gets the lossy faults (import-drop, import-line-errors)")
	fs.IntVar(&o.MinResources, "min-resources", 2000, "least number of resources every completed migration's destination must hold")
	fs.DurationVar(&o.Budget, "budget", 20*time.Minute, "rounds start until every fault kind fired and enough kills landed, or this long (the last round then runs to its end)")
	fs.Int64Var(&o.Seed, "seed", 0, "seed of the fault rolls, the host's chaos and the kill times (0: from the time)")
	fs.IntVar(&o.Kills, "kills", 5, "least number of handler kills that must land while a migration runs")
	fs.DurationVar(&o.KillEvery, "kill-every", 5*time.Second, "mean time between handler kills")
	fs.Float64Var(&o.DuplicateRate, "duplicate-rate", 0.3, "probability that a delivery is duplicated (negative: none)")
	fs.Float64Var(&o.DropRate, "drop-rate", 0.15, "probability that a sent message is lost (negative: none)")
	fs.DurationVar(&o.Timeout, "timeout", 6*time.Minute, "longest wait for one round's migrations to end")
	fs.StringVar(&o.HandlerBinary, "handler", "", "a built handler to run (default: built from ./handler)")
	verbose := fs.Bool("v", false, "also print the handler's and the local host's output")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	o.Progress = stderr
	if *verbose {
		o.HandlerLog = stderr
	}
	sum, err := chaos.Run(ctx, o)
	if err != nil {
		fmt.Fprintln(stderr, "chaos:", err)
		return 1
	}
	fmt.Fprintln(stdout, sum.String())
	if !sum.OK() {
		for _, p := range sum.Problems {
			fmt.Fprintln(stderr, "chaos: FAILED:", p)
		}
		return 1
	}
	return 0
}
