// Package bus sends the chained messages between the functions (run-import, verify-counts).
//
// Messages never go through the Functions host's output bindings: only a sender of our own can set the
// MessageId (Service Bus duplicate detection) and a scheduled enqueue time (delayed retries).
package bus

import (
	"context"
	"time"
)

// Queue names, as in the function.json files and the infrastructure.
const (
	QueueRunImport    = "run-import"
	QueueVerifyCounts = "verify-counts"
)

// Message is one chained message.
type Message struct {
	Queue string
	// ID is deterministic for the document transition that caused the message, so a duplicate send is dropped
	// by duplicate detection while a deliberate retry (new generation) is not.
	ID   string
	Body []byte
	// NotBefore, when set and in the future, schedules the message (ScheduledEnqueueTime).
	NotBefore time.Time
}

// Sender sends chained messages.
type Sender interface {
	Send(ctx context.Context, m Message) error
}
