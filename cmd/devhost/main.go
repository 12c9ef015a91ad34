// Command devhost is the local stand-in for the Azure Functions host: it runs the custom handler from host.json
// and the function folders, serves the HTTP triggers, fires timers and runs the Service Bus queues in memory.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/fhir-migrator/fhir-migrator/internal/devhost"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := devhost.RunCLI(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "devhost:", err)
		os.Exit(1)
	}
}
