package devhost

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
)

// RunCLI is cmd/devhost: it parses the flags, runs the local host until ctx ends, and returns the first error.
func RunCLI(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("devhost", flag.ContinueOnError)
	fs.SetOutput(stderr)
	appRoot := fs.String("app-root", ".", "folder holding host.json and the function folders")
	settingsPath := fs.String("settings", "local.settings.json", "local.settings.json whose Values become the app settings")
	addr := fs.String("addr", "127.0.0.1:7071", "listen address (loopback only)")
	maxDelivery := fs.Int("max-delivery-count", 10, "Service Bus maxDeliveryCount of every queue")
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
	settings, err := LoadSettings(*settingsPath)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	h, err := New(Config{AppRoot: *appRoot, Settings: settings, Addr: *addr, MaxDeliveryCount: *maxDelivery,
		HandlerStdout: stdout, Logger: logger})
	if err != nil {
		return err
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
