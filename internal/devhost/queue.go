package devhost

import (
	"context"
	"sort"
	"strconv"
	"sync"
	"time"
)

// duplicateWindow is the queue's duplicate detection history (Service Bus default is 10 minutes).
const duplicateWindow = 10 * time.Minute

// QueueStats counts what happened on one queue.
type QueueStats struct {
	Sent              int `json:"sent"`
	Delivered         int `json:"delivered"`
	Completed         int `json:"completed"`
	Abandoned         int `json:"abandoned"`
	DuplicatesDropped int `json:"duplicatesDropped"`
	DeadLettered      int `json:"deadLettered"`
	// DuplicatesInjected counts deliveries whose lock was lost on purpose (Config.DuplicateRate): the message was
	// delivered again while that delivery ran, and its outcome was discarded.
	DuplicatesInjected int `json:"duplicatesInjected"`
	// DropsInjected counts accepted messages lost on purpose (Config.DropRate): answered 201, never delivered.
	DropsInjected int `json:"dropsInjected"`
	// Active, Scheduled and InFlight are the messages waiting now, waiting for their time, and being delivered.
	Active    int `json:"active"`
	Scheduled int `json:"scheduled"`
	InFlight  int `json:"inFlight"`
}

// DeadLetter is a message moved to the dead-letter queue.
type DeadLetter struct {
	MessageID      string    `json:"messageId"`
	Body           string    `json:"body"`
	ContentType    string    `json:"contentType,omitempty"`
	DeliveryCount  int       `json:"deliveryCount"`
	Reason         string    `json:"reason"`
	Description    string    `json:"description,omitempty"`
	DeadLetteredAt time.Time `json:"deadLetteredAt"`
}

type message struct {
	id            string
	body          string
	contentType   string
	correlationID string
	seq           int64
	enqueuedAt    time.Time
	visibleAt     time.Time
	deliveryCount int
	lockLost      bool // a duplicate was injected for this message once; never twice
}

// settle is the outcome of one delivery.
type settle int

const (
	settleComplete settle = iota
	settleAbandon
)

// queue is an in-memory Service Bus queue with peek-lock delivery to one function.
type queue struct {
	name        string
	maxDelivery int
	maxConc     int
	now         func() time.Time
	deliver     func(ctx context.Context, d delivery) settle
	chaos       *chaos // nil: no injected faults

	mu          sync.Mutex
	ready       []*message
	scheduled   []*message // ordered by visibleAt
	inFlight    int
	seq         int64
	seen        map[string]time.Time // MessageId -> accepted at
	deadLetters []DeadLetter
	stats       QueueStats
	wake        chan struct{}
	wg          sync.WaitGroup
}

func newQueue(name string, maxDelivery, maxConc int, now func() time.Time, c *chaos, deliver func(context.Context, delivery) settle) *queue {
	return &queue{name: name, maxDelivery: maxDelivery, maxConc: maxConc, now: now, deliver: deliver, chaos: c,
		seen: map[string]time.Time{}, wake: make(chan struct{}, 1)}
}

func (q *queue) kick() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// sendOutcome is what became of a sent message; the sender is told 201 in every case, as Service Bus does.
type sendOutcome int

const (
	sendQueued sendOutcome = iota
	sendDuplicate
	sendLost
)

// send enqueues a message, unless duplicate detection or an injected drop discards it.
func (q *queue) send(id, body, contentType, correlationID string, notBefore time.Time) sendOutcome {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := q.now()
	for k, at := range q.seen {
		if now.Sub(at) >= duplicateWindow {
			delete(q.seen, k)
		}
	}
	if _, dup := q.seen[id]; dup {
		q.stats.DuplicatesDropped++
		return sendDuplicate
	}
	if q.chaos.drop() {
		// Lost before it reached the entity: not in the duplicate detection history either.
		q.stats.DropsInjected++
		return sendLost
	}
	q.seen[id] = now
	q.seq++
	m := &message{id: id, body: body, contentType: contentType, correlationID: correlationID, seq: q.seq,
		enqueuedAt: now, visibleAt: notBefore}
	q.stats.Sent++
	if notBefore.After(now) {
		m.enqueuedAt = notBefore
		i := sort.Search(len(q.scheduled), func(i int) bool { return q.scheduled[i].visibleAt.After(notBefore) })
		q.scheduled = append(q.scheduled, nil)
		copy(q.scheduled[i+1:], q.scheduled[i:])
		q.scheduled[i] = m
	} else {
		q.ready = append(q.ready, m)
	}
	q.kick()
	return sendQueued
}

// run delivers messages until ctx ends, then waits for the deliveries in flight.
func (q *queue) run(ctx context.Context) {
	defer q.wg.Wait()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		wait := q.dispatch(ctx)
		if ctx.Err() != nil {
			return
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-q.wake:
		case <-timer.C:
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// dispatch starts every delivery it may and returns how long to wait for the next scheduled message.
func (q *queue) dispatch(ctx context.Context) time.Duration {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := q.now()
	for len(q.scheduled) > 0 && !q.scheduled[0].visibleAt.After(now) {
		q.ready = append(q.ready, q.scheduled[0])
		q.scheduled = q.scheduled[1:]
	}
	for len(q.ready) > 0 && q.inFlight < q.maxConc && ctx.Err() == nil {
		m := q.ready[0]
		q.ready = q.ready[1:]
		m.deliveryCount++
		q.inFlight++
		q.stats.Delivered++
		d := delivery{MessageID: m.id, Body: m.body, ContentType: m.contentType, CorrelationID: m.correlationID,
			SequenceNumber: m.seq, DeliveryCount: m.deliveryCount, EnqueuedAt: m.enqueuedAt, LockToken: newUUID()}
		lockLost := !m.lockLost && q.chaos.duplicate()
		if lockLost {
			// The lock expires while this delivery runs: the message is visible again at once, with
			// DeliveryCount+1 on its next delivery, and this delivery's outcome cannot settle it.
			m.lockLost = true
			q.stats.DuplicatesInjected++
			q.ready = append([]*message{m}, q.ready...)
		}
		q.wg.Add(1)
		go func() {
			defer q.wg.Done()
			s := q.deliver(ctx, d)
			if lockLost {
				q.lockLostSettled()
				return
			}
			q.settle(m, s, ctx.Err() != nil)
		}()
	}
	wait := time.Minute
	if len(q.scheduled) > 0 {
		if w := q.scheduled[0].visibleAt.Sub(now); w < wait {
			wait = max(w, time.Millisecond)
		}
	}
	return wait
}

// lockLostSettled ends a delivery whose lock was lost: its complete or abandon fails, so only the slot is freed.
func (q *queue) lockLostSettled() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.inFlight--
	q.kick()
}

func (q *queue) settle(m *message, s settle, stopping bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.inFlight--
	defer q.kick()
	switch {
	case s == settleComplete:
		q.stats.Completed++
	case stopping:
		// The lock is lost with the host; the message stays for a next run.
		q.stats.Abandoned++
		q.ready = append([]*message{m}, q.ready...)
	case m.deliveryCount >= q.maxDelivery:
		q.stats.DeadLettered++
		q.deadLetters = append(q.deadLetters, DeadLetter{MessageID: m.id, Body: m.body, ContentType: m.contentType,
			DeliveryCount: m.deliveryCount, Reason: "MaxDeliveryCountExceeded",
			Description:    "Message could not be consumed after " + strconv.Itoa(m.deliveryCount) + " delivery attempts.",
			DeadLetteredAt: q.now()})
	default:
		// Abandoned: visible again at once, with no backoff, as Service Bus does.
		q.stats.Abandoned++
		q.ready = append([]*message{m}, q.ready...)
	}
}

func (q *queue) snapshot() QueueStats {
	q.mu.Lock()
	defer q.mu.Unlock()
	s := q.stats
	s.Active, s.Scheduled, s.InFlight = len(q.ready), len(q.scheduled), q.inFlight
	return s
}

func (q *queue) deadLettered() []DeadLetter {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]DeadLetter{}, q.deadLetters...)
}
