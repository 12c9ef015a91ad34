// Command handler is the Azure Functions custom handler of the FHIR migration service. The Functions host (or
// the local stand-in, cmd/devhost) starts it with FUNCTIONS_CUSTOMHANDLER_PORT and the app settings in the
// environment; the same binary runs in both places.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "handler:", err)
		os.Exit(1)
	}
}

// run wires the handler from the settings and serves until ctx ends.
func run(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	cfg, err := LoadConfig(getenv)
	if err != nil {
		return err
	}
	logger := cfg.NewLogger(stdout)
	if w := platformAuthWarning(cfg.Auth, getenv); w != "" {
		logger.Warn(w)
	}
	// Storage is reached at start-up (the document container is created when missing); an unreachable account
	// must fail the start with a clear error instead of hanging the host's readiness wait.
	startCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	app, err := newApp(startCtx, cfg, logger)
	cancel()
	if err != nil {
		return err
	}
	defer app.Close()

	ln, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.ListenAddr, err)
	}
	srv := &http.Server{
		Handler:           app.Routes(),
		ReadHeaderTimeout: 10 * time.Second,
		// In-flight invocations finish during the graceful shutdown instead of being canceled by the signal.
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	logger.Info("handler listening", "addr", cfg.ListenAddr, "messaging", app.messaging)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}
