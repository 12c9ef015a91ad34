package devhost

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/funcs"
)

func TestChaosDuplicateDelivery(t *testing.T) {
	t.Parallel()
	th := startHost(t, hostOptions{
		spec:          appSpec{hostJSON: hostJSONWith(true, 1), functions: map[string]string{"Worker": fnQueueWork}},
		answer:        messageAnswer,
		duplicateRate: 1,
		chaosSeed:     5,
	})
	th.send(t, "work", "m-dup", `{"migrationId":"m-1"}`, "")
	waitFor(t, "completion", func() bool { return th.Stats().Queues["work"].Completed == 1 })

	// The same message, same MessageId, delivered a second time with DeliveryCount+1; once only.
	require.Equal(t, []int64{1, 2}, deliveriesOf(t, th, "m-dup"))
	for _, m := range seenMessages(t, th) {
		require.Equal(t, `{"migrationId":"m-1"}`, m.Body)
	}
	st := th.Stats()
	require.Equal(t, QueueStats{Sent: 1, Delivered: 2, Completed: 1, DuplicatesInjected: 1}, st.Queues["work"])
	require.EqualValues(t, 5, st.ChaosSeed)
}

func TestChaosDuplicateOfAFailedDelivery(t *testing.T) {
	t.Parallel()
	th := startHost(t, hostOptions{
		spec:          appSpec{hostJSON: hostJSONWith(true, 1), functions: map[string]string{"Worker": fnQueueWork}},
		answer:        messageAnswer,
		duplicateRate: 1,
		maxDelivery:   3,
	})
	// The first delivery fails, but its lock was already lost: its abandon does not count, the duplicate settles.
	th.send(t, "work", "m-fail-once", `{"fail":1}`, "")
	waitFor(t, "completion", func() bool { return th.Stats().Queues["work"].Completed == 1 })
	require.Equal(t, []int64{1, 2}, deliveriesOf(t, th, "m-fail-once"))
	require.Zero(t, th.Stats().Queues["work"].Abandoned)
}

func TestChaosDropRate(t *testing.T) {
	t.Parallel()
	th := startHost(t, hostOptions{
		spec:     appSpec{hostJSON: hostJSONWith(true, 1), functions: map[string]string{"Worker": fnQueueWork}},
		answer:   messageAnswer,
		dropRate: 1,
	})
	th.send(t, "work", "m-lost", `{}`, "") // still answered 201
	require.NoError(t, th.Send("work", "m-lost-too", `{}`, "application/json", time.Time{}))
	// send decides synchronously: a kept message would be active, in flight or delivered by now.
	q := th.Stats().Queues["work"]
	require.Equal(t, QueueStats{DropsInjected: 2}, q)
	require.Empty(t, th.rec.calls("/Worker"))
}

// recordingDeliver is a queue consumer that records deliveries and completes them.
type recordingDeliver struct {
	mu   sync.Mutex
	seen []delivery
}

func (r *recordingDeliver) deliver(_ context.Context, d delivery) settle {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, d)
	return settleComplete
}

func TestChaosDropsAreSeededAndLeaveNoDuplicateHistory(t *testing.T) {
	t.Parallel()
	outcomes := func(seed int64) []sendOutcome {
		c, err := newChaos(0, 0.5, seed)
		require.NoError(t, err)
		q := newQueue("work", 10, 1, time.Now, c, (&recordingDeliver{}).deliver)
		var out []sendOutcome
		for i := range 32 {
			out = append(out, q.send("m-"+strconv.Itoa(i), "{}", "", "", time.Time{}))
		}
		return out
	}
	a := outcomes(11)
	require.Equal(t, a, outcomes(11))
	require.Contains(t, a, sendLost)
	require.Contains(t, a, sendQueued)
	require.NotEqual(t, a, outcomes(12))

	// A lost message is not in the duplicate detection history: sending it again delivers it.
	c, err := newChaos(0, 1, 1)
	require.NoError(t, err)
	q := newQueue("work", 10, 1, time.Now, c, (&recordingDeliver{}).deliver)
	require.Equal(t, sendLost, q.send("m-1", "{}", "", "", time.Time{}))
	c.dropRate = 0
	require.Equal(t, sendQueued, q.send("m-1", "{}", "", "", time.Time{}))
	require.Equal(t, sendDuplicate, q.send("m-1", "{}", "", "", time.Time{}))
}

func TestChaosRatesAreValidated(t *testing.T) {
	t.Parallel()
	root := writeApp(t, appSpec{functions: map[string]string{"Worker": fnQueueWork}})
	for _, cfg := range []Config{{DuplicateRate: 1.5}, {DropRate: -0.1}} {
		cfg.AppRoot, cfg.Settings, cfg.Logger = root, map[string]string{"MySetting": "x"}, discardLogger()
		_, err := New(cfg)
		require.ErrorContains(t, err, "not a probability")
	}
	for _, args := range [][]string{{"--duplicate-rate", "2"}, {"--drop-rate", "NaN"}} {
		err := RunCLI(t.Context(), append([]string{"--addr", "127.0.0.1:0"}, args...), io.Discard, io.Discard)
		require.ErrorContains(t, err, args[0])
	}
}

func TestKillHandler(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var releaseOnce sync.Once
	th := startHost(t, hostOptions{
		spec: appSpec{hostJSON: hostJSONWith(true, 1), functions: map[string]string{"Worker": fnQueueWork}},
		answer: func(inv invocation) reply {
			req, err := funcs.DecodeInvokeRequest([]byte(inv.Body))
			if err == nil {
				if msg, err := req.ServiceBusMessage("msg"); err == nil && msg.DeliveryCount == 1 {
					<-release // the first delivery is in flight until the handler is killed
				}
			}
			return reply{Status: 200, Body: `{"Outputs":{},"Logs":[],"ReturnValue":null}`}
		},
	})
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })

	th.send(t, "work", "m-inflight", `{}`, "")
	waitFor(t, "the first delivery", func() bool { return len(th.rec.calls("/Worker")) == 1 })

	resp, body := th.do(t, http.MethodPost, "/admin/handler/kill", "")
	require.Equal(t, http.StatusAccepted, resp.StatusCode, body)

	// The in-flight invocation failed, the host restarted the handler, and the message was redelivered.
	waitFor(t, "redelivery and completion", func() bool { return th.Stats().Queues["work"].Completed == 1 })
	releaseOnce.Do(func() { close(release) })
	require.Equal(t, []int64{1, 2}, deliveriesOf(t, th, "m-inflight"))
	st := th.Stats()
	require.Equal(t, 1, st.HandlerKills)
	require.Len(t, st.KillTimes, 1)
	require.WithinDuration(t, time.Now(), st.KillTimes[0], time.Minute)
	require.Equal(t, 1, st.HandlerRestarts)
	require.Equal(t, 1, st.Queues["work"].Abandoned)
	started := th.rec.startedEvents()
	require.Len(t, started, 2)
	require.NotEqual(t, started[0].PID, started[1].PID)

	// The stats endpoint reports the kill.
	resp, body = th.do(t, http.MethodGet, "/admin/stats", "")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var reported Stats
	require.NoError(t, json.NewDecoder(bytes.NewReader([]byte(body))).Decode(&reported))
	require.Equal(t, 1, reported.HandlerKills)
	require.Equal(t, st.KillTimes, reported.KillTimes)
}

func TestKillHandlerBeforeStart(t *testing.T) {
	t.Parallel()
	root := writeApp(t, appSpec{functions: map[string]string{"Worker": fnQueueWork}})
	h, err := New(Config{AppRoot: root, Settings: map[string]string{"MySetting": "x"}, Logger: discardLogger()})
	require.NoError(t, err)
	require.ErrorContains(t, h.KillHandler(), "not started")
}
