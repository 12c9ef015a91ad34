package bus

import (
	"context"
	"sync"
)

// Memory records sent messages, for unit tests of logic.
type Memory struct {
	mu   sync.Mutex
	sent []Message
	// Err, when set, is returned by Send (and nothing is recorded).
	Err error
}

// Send implements Sender.
func (m *Memory) Send(_ context.Context, msg Message) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.Err != nil {
		return m.Err
	}
	msg.Body = append([]byte(nil), msg.Body...)
	m.sent = append(m.sent, msg)
	return nil
}

// Sent returns a copy of every message sent so far, in order.
func (m *Memory) Sent() []Message {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Message(nil), m.sent...)
}

// Take returns the messages sent so far and forgets them.
func (m *Memory) Take() []Message {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := m.sent
	m.sent = nil
	return out
}
