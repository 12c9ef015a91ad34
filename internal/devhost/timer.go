package devhost

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/robfig/cron/v3"
)

// timerState is one timer function: a singleton (a tick is skipped while the previous invocation runs) with the
// schedule status the host's monitor would remember.
type timerState struct {
	fn      *function
	running sync.Mutex

	mu          sync.Mutex
	last        time.Time
	lastUpdated time.Time
	skips       int
}

func (h *Host) startTimers() {
	h.cron = cron.New(cron.WithLocation(time.UTC), cron.WithParser(ncrontab))
	for _, ts := range h.timers {
		if spec, ok := ts.fn.Schedule.(*cron.SpecSchedule); ok {
			// NCRONTAB schedules are in UTC.
			spec.Location = time.UTC
		}
		h.cron.Schedule(ts.fn.Schedule, cron.FuncJob(func() { h.fireTimer(h.ctx, ts, false) }))
		h.log.Info("timer scheduled", "function", ts.fn.Name, "schedule", ts.fn.ScheduleText,
			"next", ts.fn.Schedule.Next(time.Now()).UTC())
		if ts.fn.Trigger.RunOnStartup {
			h.wg.Add(1)
			go func() {
				defer h.wg.Done()
				h.fireTimer(h.ctx, ts, true)
			}()
		}
	}
	h.cron.Start()
}

// fireTimer invokes a timer function once; with wait false a tick that finds the previous invocation still
// running is skipped, as the host runs a timer function as a singleton.
func (h *Host) fireTimer(ctx context.Context, ts *timerState, wait bool) {
	if wait {
		ts.running.Lock()
	} else if !ts.running.TryLock() {
		h.log.Info("timer tick skipped: previous invocation still running", "function", ts.fn.Name)
		ts.mu.Lock()
		ts.skips++
		ts.mu.Unlock()
		return
	}
	defer ts.running.Unlock()
	if ctx.Err() != nil {
		return
	}
	now := h.now().UTC()
	ts.mu.Lock()
	var status *timerStatus
	if !ts.last.IsZero() {
		status = &timerStatus{Last: ts.last, Next: ts.fn.Schedule.Next(now).UTC(), LastUpdated: ts.lastUpdated}
	}
	ts.mu.Unlock()
	env, err := encodeTimer(ts.fn.Name, ts.fn.Trigger.Name, status, false, now)
	if err != nil {
		h.log.Error("encode timer", "function", ts.fn.Name, "err", err)
		return
	}
	// The monitor records the occurrence whatever the outcome; failures are in the invocation log.
	_, _, _ = h.invoke(ctx, ts.fn, env)
	ts.mu.Lock()
	ts.last, ts.lastUpdated = now, h.now().UTC()
	ts.mu.Unlock()
}

// triggerNow runs a non-HTTP function once with input, as the host's admin API does.
func (h *Host) triggerNow(name, input string) error {
	fn, ok := h.app.Functions[name]
	if !ok {
		return errFunctionNotFound
	}
	switch fn.Kind {
	case triggerTimer:
		ts := h.timers[name]
		h.goTracked(func() { h.fireTimer(h.ctx, ts, true) })
	case triggerServiceBus:
		d := delivery{MessageID: newUUID(), Body: input, ContentType: "application/json", DeliveryCount: 1,
			EnqueuedAt: h.now(), LockToken: newUUID()}
		h.goTracked(func() { h.deliverMessage(h.ctx, fn, d) })
	default:
		return fmt.Errorf("function %s has an HTTP trigger: call its route instead", name)
	}
	return nil
}

func (h *Host) goTracked(f func()) {
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		f()
	}()
}
