package bus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
)

// ServiceBus sends chained messages with the Azure Service Bus SDK, which alone can set MessageId and a scheduled
// enqueue time.
type ServiceBus struct {
	client *azservicebus.Client
	clock  func() time.Time

	mu      sync.Mutex
	senders map[string]*azservicebus.Sender
}

// NewServiceBus connects to namespace (e.g. "myns.servicebus.windows.net") with an identity.
func NewServiceBus(namespace string, cred azcore.TokenCredential) (*ServiceBus, error) {
	c, err := azservicebus.NewClient(namespace, cred, nil)
	if err != nil {
		return nil, fmt.Errorf("service bus client for %s: %w", namespace, err)
	}
	return &ServiceBus{client: c, clock: time.Now, senders: map[string]*azservicebus.Sender{}}, nil
}

// NewServiceBusFromConnectionString connects with a connection string (SAS); prefer identities in Azure.
func NewServiceBusFromConnectionString(conn string) (*ServiceBus, error) {
	c, err := azservicebus.NewClientFromConnectionString(conn, nil)
	if err != nil {
		return nil, fmt.Errorf("service bus client from connection string: %w", err)
	}
	return &ServiceBus{client: c, clock: time.Now, senders: map[string]*azservicebus.Sender{}}, nil
}

// SDKMessage builds the SDK message for m: MessageID always set, the scheduled enqueue time set when m.NotBefore
// is after now.
func SDKMessage(m Message, now time.Time) *azservicebus.Message {
	id := m.ID
	ct := "application/json"
	msg := &azservicebus.Message{MessageID: &id, Body: m.Body, ContentType: &ct}
	if !m.NotBefore.IsZero() && m.NotBefore.After(now) {
		at := m.NotBefore.UTC()
		msg.ScheduledEnqueueTime = &at
	}
	return msg
}

// Send implements Sender.
func (s *ServiceBus) Send(ctx context.Context, m Message) error {
	if m.ID == "" {
		return fmt.Errorf("send to %s: message id is required", m.Queue)
	}
	sender, err := s.sender(m.Queue)
	if err != nil {
		return err
	}
	msg := SDKMessage(m, s.clock())
	if msg.ScheduledEnqueueTime != nil {
		if _, err := sender.ScheduleMessages(ctx, []*azservicebus.Message{msg}, *msg.ScheduledEnqueueTime, nil); err != nil {
			return fmt.Errorf("schedule message %s on %s: %w", m.ID, m.Queue, err)
		}
		return nil
	}
	if err := sender.SendMessage(ctx, msg, nil); err != nil {
		return fmt.Errorf("send message %s to %s: %w", m.ID, m.Queue, err)
	}
	return nil
}

func (s *ServiceBus) sender(queue string) (*azservicebus.Sender, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if snd, ok := s.senders[queue]; ok {
		return snd, nil
	}
	snd, err := s.client.NewSender(queue, nil)
	if err != nil {
		return nil, fmt.Errorf("sender for %s: %w", queue, err)
	}
	s.senders[queue] = snd
	return snd, nil
}

// Close closes the senders and the connection.
func (s *ServiceBus) Close(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for q, snd := range s.senders {
		if err := snd.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("close sender for %s: %w", q, err))
		}
		delete(s.senders, q)
	}
	if err := s.client.Close(ctx); err != nil {
		errs = append(errs, fmt.Errorf("close service bus client: %w", err))
	}
	return errors.Join(errs...)
}
