// Command fhirsim serves the FHIR simulator for the local stack: the source (Azure API for FHIR) on 127.0.0.1:8081
// or the destination (AHDS FHIR service) on 127.0.0.1:8082. It listens on loopback addresses only.
package main

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"

	"github.com/fhir-migrator/fhir-migrator/internal/fhirsim"
)

// storageEnv names the environment variable that supplies --storage by default.
const storageEnv = "FHIRSIM_STORAGE_CONNECTION_STRING"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "fhirsim:", err)
		stop()
		os.Exit(1)
	}
}

type options struct {
	addr              string
	flavor            fhirsim.Flavor
	storage           string
	seedPatients      int
	seed              int64
	pollsBeforeDone   int
	rollover          int
	jobDelay          time.Duration
	initialImportMode bool
	logLevel          slog.Level
	faults            fhirsim.Faults
	faultSeed         int64
	faultSeedSet      bool
	importHold        time.Duration
	maxImports        int
	rates             *fhirsim.RateModel
	fhirVersion       string
	importDisabled    bool
	// The bulk-data flavor's.
	smartClientID  string
	smartPublicKey crypto.PublicKey
	tokenLifetime  time.Duration
	downloadCuts   int
}

func parseOptions(args []string, stderr io.Writer) (options, error) {
	var o options
	var flavor, faults string
	fs := flag.NewFlagSet("fhirsim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.addr, "addr", "127.0.0.1:8081", "loopback address to listen on")
	fs.StringVar(&flavor, "flavor", string(fhirsim.FlavorAPIForFHIR), "service to behave as: api-for-fhir, ahds or bulk-data")
	fs.StringVar(&o.storage, "storage", os.Getenv(storageEnv), "blob storage connection string (default $"+storageEnv+")")
	fs.IntVar(&o.seedPatients, "seed-patients", 0, "number of synthetic patients to generate (about 100 resources each)")
	fs.Int64Var(&o.seed, "seed", 1, "seed of the synthetic data")
	fs.IntVar(&o.pollsBeforeDone, "polls-before-done", fhirsim.DefaultPollsBeforeDone, "status polls answered 202 at least before a job reports done")
	fs.IntVar(&o.rollover, "rollover", fhirsim.DefaultRollover, "resources per exported NDJSON file")
	fs.DurationVar(&o.jobDelay, "job-delay", fhirsim.DefaultJobDelay, "least time a background job takes")
	fs.BoolVar(&o.initialImportMode, "initial-import-mode", false, "accept InitialLoad imports (and lock API writes)")
	fs.StringVar(&o.fhirVersion, "fhir-version", fhirsim.DefaultFHIRVersion, "the fhirVersion of the CapabilityStatement (3.0.2: a service created for STU3)")
	fs.BoolVar(&o.importDisabled, "import-disabled", false, "ahds: the service's import is not enabled ($import answers 400 \"not enabled\"); without --storage, $export and $import have no storage configured")
	fs.TextVar(&o.logLevel, "log-level", slog.LevelInfo, "log level: debug, info, warn, error")
	fs.StringVar(&faults, "faults", "", "faults to inject, name=probability,... (names: "+strings.Join(fhirsim.FaultNames(), ", ")+")")
	fs.Int64Var(&o.faultSeed, "fault-seed", 0, "seed of the fault rolls (default: from the time)")
	fs.DurationVar(&o.importHold, "import-hold", fhirsim.DefaultImportHold, "how long import-hold holds a completed import's status call")
	fs.IntVar(&o.maxImports, "max-imports", 0, "running imports beyond which $import answers 429 (0: no limit; "+strconv.Itoa(fhirsim.DefaultImportSlots)+" with --rate-model)")
	var smartKeyFile, smartGenerate string
	fs.StringVar(&o.smartClientID, "smart-client-id", "", "bulk-data: the SMART Backend Services client_id registered with the token endpoint")
	fs.StringVar(&smartKeyFile, "smart-public-key", "", "bulk-data: PEM file of the client's public key (RSA for RS384, P-384 for ES384)")
	fs.StringVar(&smartGenerate, "smart-generate-key", "", "bulk-data, the local stack: write a new RSA private key (PEM, mode 0600) for the client to this `PATH` and register its public half (with --smart-client-id)")
	fs.DurationVar(&o.tokenLifetime, "token-lifetime", fhirsim.DefaultTokenLifetime, "bulk-data: lifetime of the tokens the token endpoint issues")
	fs.IntVar(&o.downloadCuts, "download-cuts", 0, "bulk-data: whole-file downloads cut half-way before the rest are served whole")
	model := fhirsim.DefaultRateModel()
	rateModel := fs.Bool("rate-model", false, "take the time the real services take (the flags below); off: jobs take --job-delay")
	fs.Int64Var(&model.Weight, "weight", model.Weight, "with --rate-model: modelled resources each stored resource stands for in counts, manifests and import results")
	fs.Float64Var(&model.ExportRate, "export-rate", model.ExportRate, "with --rate-model: modelled resources per second of one running export job (R_e)")
	fs.IntVar(&model.ExportSlots, "export-slots", model.ExportSlots, "with --rate-model: export jobs running at once; more wait, answering 202 (C_e)")
	fs.Float64Var(&model.ImportRate, "import-rate", model.ImportRate, "with --rate-model: modelled resources per second the destination imports, shared by its running imports (R_I)")
	fs.Float64Var(&model.SearchRate, "search-rate", model.SearchRate, "with --rate-model: modelled resources per second searches read in all, shared by the running searches (0: no time; "+
		strconv.Itoa(fhirsim.DefaultSearchRate)+" is what make bench-cutover assumes)")
	fs.Float64Var(&model.CountRate, "count-rate", model.CountRate, "with --rate-model: modelled resources per second counts scan in all, shared by the running counts (0: no time; "+
		strconv.Itoa(fhirsim.DefaultCountRate)+" is what make bench-cutover assumes)")
	fs.Float64Var(&model.CountLatency, "count-latency", model.CountLatency, "with --rate-model: modelled seconds each count takes besides (0: none)")
	fs.Float64Var(&model.TimeScale, "time-scale", model.TimeScale, "with --rate-model: divides every modelled duration (S)")
	if err := fs.Parse(args); err != nil {
		return options{}, err
	}
	if fs.NArg() > 0 {
		return options{}, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	fs.Visit(func(f *flag.Flag) { o.faultSeedSet = o.faultSeedSet || f.Name == "fault-seed" })
	var err error
	if o.flavor, err = fhirsim.ParseFlavor(flavor); err != nil {
		return options{}, err
	}
	if o.faults, err = fhirsim.ParseFaults(faults); err != nil {
		return options{}, fmt.Errorf("--faults: %w", err)
	}
	if o.importHold < 0 {
		return options{}, errors.New("--import-hold must not be negative")
	}
	if o.maxImports < 0 {
		return options{}, errors.New("--max-imports must not be negative")
	}
	if *rateModel {
		if model.Weight < 1 || model.ExportRate <= 0 || model.ExportSlots < 1 || model.ImportRate <= 0 || model.TimeScale <= 0 {
			return options{}, errors.New("--rate-model: --weight and --export-slots must be at least 1, --export-rate, --import-rate and --time-scale positive")
		}
		if err := model.Validate(); err != nil {
			return options{}, err
		}
		o.rates = &model
		if o.maxImports == 0 {
			o.maxImports = fhirsim.DefaultImportSlots
		}
	}
	if err := requireLoopback(o.addr); err != nil {
		return options{}, err
	}
	if smartKeyFile != "" && smartGenerate != "" {
		return options{}, errors.New("--smart-public-key and --smart-generate-key exclude each other")
	}
	if (o.smartClientID == "") != (smartKeyFile == "" && smartGenerate == "") {
		return options{}, errors.New("--smart-client-id goes with --smart-public-key or --smart-generate-key")
	}
	if smartGenerate != "" {
		if o.smartPublicKey, err = generateClientKey(smartGenerate); err != nil {
			return options{}, fmt.Errorf("--smart-generate-key: %w", err)
		}
	}
	if smartKeyFile != "" {
		if o.smartPublicKey, err = readPublicKey(smartKeyFile); err != nil {
			return options{}, fmt.Errorf("--smart-public-key: %w", err)
		}
	}
	if o.storage != "" {
		if _, err := azblob.NewClientFromConnectionString(o.storage, nil); err != nil {
			return options{}, errors.New("--storage is not a valid storage connection string")
		}
	}
	return o, nil
}

// generateClientKey writes a new 2048-bit RSA private key (PKCS #8 PEM) to path for the SMART client of the local
// stack, and returns its public half.
func generateClientKey(path string) (crypto.PublicKey, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("generate: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	return &key.PublicKey, nil
}

// readPublicKey reads a PEM "PUBLIC KEY" (PKIX) file holding an RSA or ECDSA key.
func readPublicKey(path string) (crypto.PublicKey, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	block, _ := pem.Decode(raw)
	if block == nil || block.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("%s holds no PEM PUBLIC KEY block", path)
	}
	key, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	return key, nil
}

// requireLoopback refuses any address a machine other than this one could reach.
func requireLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--addr %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("--addr %q: the simulator listens on loopback addresses only", addr)
	}
	return nil
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	o, err := parseOptions(args, os.Stderr)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: o.logLevel}))
	opts := []fhirsim.Option{
		fhirsim.WithFlavor(o.flavor),
		fhirsim.WithStorage(o.storage),
		fhirsim.WithSeed(o.seedPatients, o.seed),
		fhirsim.WithPollsBeforeDone(o.pollsBeforeDone),
		fhirsim.WithRollover(o.rollover),
		fhirsim.WithJobDelay(o.jobDelay),
		fhirsim.WithInitialImportMode(o.initialImportMode),
		fhirsim.WithLogger(logger),
		fhirsim.WithFaults(o.faults),
		fhirsim.WithImportHold(o.importHold),
		fhirsim.WithMaxImports(o.maxImports),
		fhirsim.WithFHIRVersion(o.fhirVersion),
		fhirsim.WithImportDisabled(o.importDisabled),
		fhirsim.WithTokenLifetime(o.tokenLifetime),
		fhirsim.WithDownloadCuts(o.downloadCuts),
	}
	if o.smartClientID != "" {
		opts = append(opts, fhirsim.WithSMARTClient(o.smartClientID, o.smartPublicKey))
	}
	if o.faultSeedSet {
		opts = append(opts, fhirsim.WithFaultSeed(o.faultSeed))
	}
	if o.rates != nil {
		opts = append(opts, fhirsim.WithRateModel(*o.rates))
	}
	sim := fhirsim.New(opts...)
	defer sim.Close()

	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", o.addr, err)
	}
	srv := &http.Server{Handler: sim, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	if _, err := fmt.Fprintf(stdout, "fhirsim: %s listening on http://%s\n", o.flavor, ln.Addr()); err != nil {
		_ = srv.Close()
		return fmt.Errorf("announce: %w", err)
	}
	logger.Info("fhirsim started", "addr", ln.Addr().String(), "seed_patients", o.seedPatients, "storage", o.storage != "")

	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	// Stopping the simulator first releases status calls it holds (import-hold), which Shutdown would wait for.
	sim.Close()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	logger.Info("fhirsim stopped")
	return nil
}
