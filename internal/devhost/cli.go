package devhost

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"strings"
)

// RunCLI is cmd/devhost: it parses the flags, runs the local host until ctx ends, and returns the first error.
func RunCLI(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("devhost", flag.ContinueOnError)
	fs.SetOutput(stderr)
	appRoot := fs.String("app-root", ".", "folder holding host.json and the function folders")
	settingsPath := fs.String("settings", "local.settings.json", "local.settings.json whose Values become the app settings")
	addr := fs.String("addr", "127.0.0.1:7071", "listen address (loopback only)")
	maxDelivery := fs.Int("max-delivery-count", 10, "Service Bus maxDeliveryCount of every queue")
	duplicateRate := fs.Float64("duplicate-rate", 0, "chaos: probability that a delivery loses its lock and the message is delivered again")
	dropRate := fs.Float64("drop-rate", 0, "chaos: probability that a message accepted by the send API is lost (201, never delivered)")
	chaosSeed := fs.Int64("chaos-seed", 0, "chaos: seed of the rolls (0: from the time)")
	principalFlag := fs.String("principal", os.Getenv("DEVHOST_PRINCIPAL"), "the signed-in caller put on every request, as App Service authentication "+
		"does in Azure (X-MS-CLIENT-PRINCIPAL): name:Role1,Role2 or JSON {\"objectId\",\"name\",\"roles\"} (env DEVHOST_PRINCIPAL; local only)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if err := checkLoopback(*addr); err != nil {
		return err
	}
	for _, r := range []struct {
		flag string
		p    float64
	}{{"--duplicate-rate", *duplicateRate}, {"--drop-rate", *dropRate}} {
		if math.IsNaN(r.p) || r.p < 0 || r.p > 1 {
			return fmt.Errorf("%s %v: want a probability in [0,1]", r.flag, r.p)
		}
	}
	principal, err := ParsePrincipal(*principalFlag)
	if err != nil {
		return fmt.Errorf("--principal: %w", err)
	}
	settings, err := LoadSettings(*settingsPath)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	h, err := New(Config{AppRoot: *appRoot, Settings: settings, Addr: *addr, MaxDeliveryCount: *maxDelivery,
		HandlerStdout: stdout, Logger: logger, DuplicateRate: *duplicateRate, DropRate: *dropRate, ChaosSeed: *chaosSeed,
		Principal: principal})
	if err != nil {
		return err
	}
	if principal != nil {
		logger.Info("every request is signed in as this principal (local host only)", "name", principal.Name,
			"objectId", principal.ObjectID, "roles", strings.Join(principal.Roles, ","))
	}
	if err := h.Start(ctx); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "devhost: listening on %s\n", h.URL())
	<-ctx.Done()
	logger.Info("stopping")
	return h.Close()
}

// checkLoopback refuses listen addresses outside the machine: the local host enforces no keys.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--addr %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return errors.New("--addr must be a loopback address (127.0.0.1, ::1 or localhost): the local host enforces no keys")
	}
	return nil
}
