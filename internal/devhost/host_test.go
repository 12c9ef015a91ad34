package devhost

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fhir-migrator/fhir-migrator/internal/funcs"
	"github.com/stretchr/testify/require"
)

func decodeEnvelope(t *testing.T, inv invocation) *funcs.InvokeRequest {
	t.Helper()
	req, err := funcs.DecodeInvokeRequest([]byte(inv.Body))
	require.NoError(t, err)
	return req
}

func requireInvocationHeaders(t *testing.T, inv invocation) {
	t.Helper()
	require.NotEmpty(t, inv.Header.Get("X-Azure-Functions-InvocationId"))
	require.Equal(t, HostVersion, inv.Header.Get("X-Azure-Functions-HostVersion"))
}

func TestStartWaitsForReadinessAndPassesEnvironment(t *testing.T) {
	t.Parallel()
	th := startHost(t, hostOptions{
		spec:     appSpec{functions: map[string]string{"Worker": fnQueueWork}},
		settings: map[string]string{"STANDIN_START_DELAY": "300ms"},
	})
	// Start returned, so the handler had already reported that it listens.
	started := th.rec.startedEvents()
	require.Len(t, started, 1)
	ev := started[0]
	require.NotEmpty(t, ev.Env["FUNCTIONS_CUSTOMHANDLER_PORT"])
	require.NotEmpty(t, ev.Env["FUNCTIONS_CUSTOMHANDLER_WORKER_ID"])
	require.Equal(t, th.root, ev.Env["FUNCTIONS_APP_ROOT_PATH"])
	require.Equal(t, th.URL(), ev.Env["DEVHOST_URL"])
	require.Equal(t, "from-settings", ev.Env["MySetting"])
	require.Equal(t, []string{"--flag=from-settings"}, ev.Args)
	require.Equal(t, th.root, ev.Dir)
	require.Zero(t, th.Stats().HandlerRestarts)
}

func TestStartFailsWhenHandlerExits(t *testing.T) {
	t.Parallel()
	rec := newRecorder(t, nil)
	root := writeApp(t, appSpec{functions: map[string]string{"Worker": fnQueueWork}})
	h, err := New(Config{AppRoot: root, Addr: "127.0.0.1:0", ExecutablePath: "/bin/false",
		Settings: map[string]string{"MySetting": "x", "RECORDER_URL": rec.srv.URL}, HandlerStdout: &syncBuffer{},
		Logger: discardLogger()})
	require.NoError(t, err)
	err = h.Start(t.Context())
	require.ErrorContains(t, err, "exited before answering")
	require.NoError(t, h.Close())
}

func TestHTTPForwarding(t *testing.T) {
	t.Parallel()
	th := startHost(t, hostOptions{
		spec: appSpec{functions: map[string]string{
			"Migrations":     `{"bindings":[{"type":"httpTrigger","direction":"in","name":"req","authLevel":"function","methods":["get","delete"],"route":"migrations/{id?}"},{"type":"http","direction":"out","name":"res"}]}`,
			"StartMigration": `{"bindings":[{"type":"httpTrigger","direction":"in","name":"req","authLevel":"function","methods":["post"],"route":"migrations"},{"type":"http","direction":"out","name":"res"}]}`,
			"Cleanup":        `{"bindings":[{"type":"httpTrigger","direction":"in","name":"req","methods":["post"],"route":"migrations/{id}/cleanup"},{"type":"http","direction":"out","name":"res"}]}`,
		}},
		answer: func(inv invocation) reply {
			return reply{Status: 207, Body: "handled " + inv.Method + " " + inv.Path, Header: map[string]string{"X-Handler": "yes"}}
		},
	})
	tests := []struct {
		method, path string
		wantStatus   int
		wantPath     string
	}{
		{http.MethodGet, "/api/migrations/m-1?verbose=true", 207, "/api/migrations/m-1"},
		{http.MethodGet, "/api/migrations", 207, "/api/migrations"},
		{http.MethodDelete, "/api/migrations/m-1", 207, "/api/migrations/m-1"},
		{http.MethodPost, "/api/migrations", 207, "/api/migrations"},
		{http.MethodPost, "/api/migrations/m-1/cleanup", 207, "/api/migrations/m-1/cleanup"},
		{http.MethodPost, "/api/migrations/m-1", http.StatusNotFound, ""},  // method filter
		{http.MethodGet, "/api/migrations/m-1/x", http.StatusNotFound, ""}, // no route
		{http.MethodGet, "/migrations", http.StatusNotFound, ""},           // outside the prefix
	}
	for _, tt := range tests {
		before := len(th.rec.calls(""))
		resp, body := th.do(t, tt.method, tt.path, "")
		require.Equal(t, tt.wantStatus, resp.StatusCode, "%s %s: %s", tt.method, tt.path, body)
		calls := th.rec.calls("")
		if tt.wantPath == "" {
			require.Len(t, calls, before, "%s %s reached the handler", tt.method, tt.path)
			continue
		}
		require.Len(t, calls, before+1)
		inv := calls[len(calls)-1]
		require.Equal(t, tt.wantPath, inv.Path)
		require.Equal(t, tt.method, inv.Method)
		require.Equal(t, "handled "+tt.method+" "+tt.wantPath, body)
		require.Equal(t, "yes", resp.Header.Get("X-Handler"))
		requireInvocationHeaders(t, inv)
		if strings.Contains(tt.path, "?") {
			require.Equal(t, "verbose=true", inv.RawQuery)
		}
	}
	stats := th.Stats()
	require.Equal(t, 3, stats.Invocations["Migrations"])
	require.Equal(t, 1, stats.Invocations["StartMigration"])
}

// TestHTTPRoutingAsTheHost: routes tried in the order of the function names, a method a route does not take
// falling through to a later catch-all, paths routed as sent (no redirect for "//"), dot segments resolved, and a
// request no route takes answered 404 with no body, as the real host answers it.
func TestHTTPRoutingAsTheHost(t *testing.T) {
	t.Parallel()
	migrations := `{"bindings":[{"type":"httpTrigger","direction":"in","name":"req","authLevel":"function","methods":["get","delete"],"route":"migrations/{id?}"},{"type":"http","direction":"out","name":"res"}]}`
	catchAll := `{"bindings":[{"type":"httpTrigger","direction":"in","name":"req","authLevel":"function","route":"{*path}"},{"type":"http","direction":"out","name":"res"}]}`
	answer := func(inv invocation) reply { return reply{Status: 200, Body: inv.Method + " " + inv.Path} }
	th := startHost(t, hostOptions{spec: appSpec{functions: map[string]string{"Migrations": migrations, "ZzFallback": catchAll}}, answer: answer})
	tests := []struct {
		method, path string
		function     string // "": no function, a bare 404
		wantPath     string
	}{
		{http.MethodGet, "/api/migrations/m-1", "Migrations", "/api/migrations/m-1"},
		{http.MethodGet, "/API/Migrations/", "Migrations", "/API/Migrations/"},
		{http.MethodPut, "/api/migrations/m-1", "ZzFallback", "/api/migrations/m-1"},
		{http.MethodHead, "/api/migrations", "ZzFallback", "/api/migrations"},
		{http.MethodGet, "/api/migrations/m-1/x", "ZzFallback", "/api/migrations/m-1/x"},
		{http.MethodGet, "/api/migrations//x", "ZzFallback", "/api/migrations//x"},
		{http.MethodGet, "/api/migrations/a%2Fb", "Migrations", "/api/migrations/a%2Fb"},
		{http.MethodGet, "/api/x/../migrations/./m-1", "Migrations", "/api/migrations/m-1"},
		{http.MethodGet, "/api", "ZzFallback", "/api"},
		{http.MethodGet, "/api//migrations", "", ""},
		{http.MethodGet, "/elsewhere", "", ""},
	}
	for _, tt := range tests {
		before := th.Stats().Invocations[tt.function]
		calls := len(th.rec.calls(""))
		resp, body := th.do(t, tt.method, tt.path, "")
		if tt.function == "" {
			require.Equal(t, http.StatusNotFound, resp.StatusCode, "%s %s", tt.method, tt.path)
			require.Empty(t, body, "%s %s: the host's 404 has no body", tt.method, tt.path)
			require.Empty(t, resp.Header.Get("Content-Type"))
			require.Len(t, th.rec.calls(""), calls, "%s %s reached the handler", tt.method, tt.path)
			continue
		}
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s %s: %s", tt.method, tt.path, body)
		require.Equal(t, before+1, th.Stats().Invocations[tt.function], "%s %s is %s's", tt.method, tt.path, tt.function)
		got := th.rec.calls("")
		require.Len(t, got, calls+1)
		require.Equal(t, tt.method, got[len(got)-1].Method)
		require.Equal(t, tt.wantPath, got[len(got)-1].RawPath, "%s %s", tt.method, tt.path)
	}

	// Named before Migrations, a catch-all takes its requests too: the host orders routes by function name only.
	shadow := startHost(t, hostOptions{spec: appSpec{functions: map[string]string{"Migrations": migrations, "Fallback": catchAll}}, answer: answer})
	resp, body := shadow.do(t, http.MethodGet, "/api/migrations/m-1", "")
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.Equal(t, 1, shadow.Stats().Invocations["Fallback"])
	require.Zero(t, shadow.Stats().Invocations["Migrations"])
}

func TestHTTPPayloadMode(t *testing.T) {
	t.Parallel()
	th := startHost(t, hostOptions{
		spec: appSpec{hostJSON: hostJSONWith(false, 16), functions: map[string]string{
			"Items": `{"bindings":[{"type":"httpTrigger","direction":"in","name":"req","methods":["post"],"route":"items/{id}"},{"type":"http","direction":"out","name":"res"}]}`,
		}},
		answer: func(inv invocation) reply {
			return reply{Status: 200, Body: `{"Outputs":{"res":{"statusCode":"201","body":"{\"ok\":true}","headers":{"Content-Type":"application/json","Location":"/api/items/42"}}},"Logs":["made it"],"ReturnValue":null}`}
		},
	})
	resp, body := th.do(t, http.MethodPost, "/api/items/42?q=v", `{"name":"x"}`)
	require.Equal(t, http.StatusCreated, resp.StatusCode, body)
	require.Equal(t, `{"ok":true}`, body)
	require.Equal(t, "/api/items/42", resp.Header.Get("Location"))

	calls := th.rec.calls("/Items")
	require.Len(t, calls, 1)
	inv := calls[0]
	require.Equal(t, http.MethodPost, inv.Method)
	requireInvocationHeaders(t, inv)
	require.Equal(t, "Azure-Functions-Host/"+HostVersion, inv.Header.Get("User-Agent"))
	req := decodeEnvelope(t, inv)
	data, err := req.HTTPRequest("req")
	require.NoError(t, err)
	require.Equal(t, http.MethodPost, data.Method)
	require.Equal(t, map[string]string{"id": "42"}, data.Params)
	require.Equal(t, map[string]string{"q": "v"}, data.Query)
	require.Equal(t, `{"name":"x"}`, data.Body)
	require.Equal(t, []string{"application/json"}, data.Headers["Content-Type"])
	require.True(t, strings.HasSuffix(data.URL, "/api/items/42?q=v"), data.URL)
	sys, err := req.Sys()
	require.NoError(t, err)
	require.Equal(t, "Items", sys.MethodName)

	// A failing invocation is a 500 for the caller.
	th.rec.mu.Lock()
	th.rec.answer = func(invocation) reply { return reply{Status: 500, Body: `{"Logs":["boom"]}`} }
	th.rec.mu.Unlock()
	resp, _ = th.do(t, http.MethodPost, "/api/items/1", "")
	require.Equal(t, http.StatusInternalServerError, resp.StatusCode)
}

func TestTimerFiresAsSingleton(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var inFlight, maxInFlight atomic.Int32
	var first sync.Once
	th := startHost(t, hostOptions{
		spec: appSpec{functions: map[string]string{"Tick": fnTimerTick}},
		answer: func(inv invocation) reply {
			n := inFlight.Add(1)
			defer inFlight.Add(-1)
			for {
				m := maxInFlight.Load()
				if n <= m || maxInFlight.CompareAndSwap(m, n) {
					break
				}
			}
			first.Do(func() { <-release })
			return reply{Status: 200, Body: `{"Outputs":{},"Logs":[],"ReturnValue":null}`}
		},
	})
	waitFor(t, "the first tick", func() bool { return len(th.rec.calls("/Tick")) == 1 })
	held := time.Now()
	// While the first invocation runs, later ticks are skipped, not stacked.
	waitFor(t, "a skipped tick", func() bool { return th.Stats().TimerSkips["Tick"] >= 1 })
	heldFor := time.Since(held)
	close(release)
	waitFor(t, "a later tick", func() bool { return len(th.rec.calls("/Tick")) >= 2 })
	require.EqualValues(t, 1, maxInFlight.Load())
	// The host records how long each invocation took: the first at least as long as it was held.
	waitFor(t, "the durations", func() bool { return len(th.Durations("Tick")) >= 2 })
	require.GreaterOrEqual(t, th.Durations("Tick")[0], heldFor)
	require.Positive(t, th.HandlerPID())

	calls := th.rec.calls("/Tick")
	firstTimer, err := decodeEnvelope(t, calls[0]).Timer("timer")
	require.NoError(t, err)
	require.Nil(t, firstTimer.ScheduleStatus)
	require.False(t, firstTimer.IsPastDue)
	second, err := decodeEnvelope(t, calls[1]).Timer("timer")
	require.NoError(t, err)
	require.NotNil(t, second.ScheduleStatus)
	require.False(t, second.ScheduleStatus.Last.IsZero())
	require.True(t, second.ScheduleStatus.Next.After(second.ScheduleStatus.Last))
	requireInvocationHeaders(t, calls[1])
}

func TestAdminTriggersTimer(t *testing.T) {
	t.Parallel()
	th := startHost(t, hostOptions{
		spec:     appSpec{functions: map[string]string{"Tick": fnTimerTick}},
		settings: map[string]string{"TickSchedule": "0 0 0 1 1 *"}, // once a year: only the admin call fires it
	})
	resp, body := th.do(t, http.MethodPost, "/admin/functions/Tick", `{"input":""}`)
	require.Equal(t, http.StatusAccepted, resp.StatusCode, body)
	waitFor(t, "the admin-triggered invocation", func() bool { return len(th.rec.calls("/Tick")) == 1 })
	timer, err := decodeEnvelope(t, th.rec.calls("/Tick")[0]).Timer("timer")
	require.NoError(t, err)
	require.False(t, timer.IsPastDue)

	resp, _ = th.do(t, http.MethodPost, "/admin/functions/Nope", `{}`)
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
}

// messageAnswer answers queue deliveries by the body's "fail" count: fail the first n deliveries.
func messageAnswer(inv invocation) reply {
	req, err := funcs.DecodeInvokeRequest([]byte(inv.Body))
	if err != nil {
		return reply{Status: 400}
	}
	msg, err := req.ServiceBusMessage("msg")
	if err != nil {
		return reply{Status: 400}
	}
	var body struct {
		Fail  int64 `json:"fail"`
		Crash bool  `json:"crash"`
	}
	_ = json.Unmarshal(msg.Body, &body)
	if body.Crash && msg.DeliveryCount == 1 {
		return reply{Crash: true}
	}
	if msg.DeliveryCount <= body.Fail {
		return reply{Status: 500, Body: `{"Outputs":{},"Logs":["transient"],"ReturnValue":null}`}
	}
	return reply{Status: 200, Body: `{"Outputs":{},"Logs":[],"ReturnValue":null}`}
}

type seenMessage struct {
	ID            string
	DeliveryCount int64
	Body          string
	Enqueued      time.Time
}

func seenMessages(t *testing.T, th *testHost) []seenMessage {
	t.Helper()
	var out []seenMessage
	for _, inv := range th.rec.calls("/Worker") {
		msg, err := decodeEnvelope(t, inv).ServiceBusMessage("msg")
		require.NoError(t, err)
		out = append(out, seenMessage{ID: msg.MessageID, DeliveryCount: msg.DeliveryCount, Body: string(msg.Body), Enqueued: msg.EnqueuedTimeUtc})
	}
	return out
}

func deliveriesOf(t *testing.T, th *testHost, id string) []int64 {
	t.Helper()
	var counts []int64
	for _, m := range seenMessages(t, th) {
		if m.ID == id {
			counts = append(counts, m.DeliveryCount)
		}
	}
	return counts
}

func TestQueuePeekLock(t *testing.T) {
	t.Parallel()
	th := startHost(t, hostOptions{
		spec:        appSpec{hostJSON: hostJSONWith(true, 1), functions: map[string]string{"Worker": fnQueueWork}},
		answer:      messageAnswer,
		maxDelivery: 3,
	})
	q := func() QueueStats { return th.Stats().Queues["work"] }

	// Completed on 2xx, with the body and metadata the handler's decoder reads.
	th.send(t, "work", "m-ok", `{"migrationId":"m-1","jobId":"j-1"}`, "")
	waitFor(t, "completion", func() bool { return q().Completed == 1 })
	seen := seenMessages(t, th)
	require.Len(t, seen, 1)
	require.Equal(t, seenMessage{ID: "m-ok", DeliveryCount: 1, Body: `{"migrationId":"m-1","jobId":"j-1"}`, Enqueued: seen[0].Enqueued}, seen[0])
	requireInvocationHeaders(t, th.rec.calls("/Worker")[0])

	// Abandoned on non-2xx and redelivered at once with DeliveryCount+1.
	th.send(t, "work", "m-retry", `{"fail":2}`, "")
	waitFor(t, "completion after retries", func() bool { return q().Completed == 2 })
	require.Equal(t, []int64{1, 2, 3}, deliveriesOf(t, th, "m-retry"))

	// Dead-lettered after MaxDeliveryCount deliveries.
	th.send(t, "work", "m-poison", `{"fail":99}`, "")
	waitFor(t, "dead-lettering", func() bool { return q().DeadLettered == 1 })
	require.Equal(t, []int64{1, 2, 3}, deliveriesOf(t, th, "m-poison"))
	resp, body := th.do(t, http.MethodGet, "/admin/servicebus/queues/work/deadletters", "")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var dead []DeadLetter
	require.NoError(t, json.Unmarshal([]byte(body), &dead))
	require.Len(t, dead, 1)
	require.Equal(t, "m-poison", dead[0].MessageID)
	require.Equal(t, `{"fail":99}`, dead[0].Body)
	require.Equal(t, 3, dead[0].DeliveryCount)
	require.Equal(t, "MaxDeliveryCountExceeded", dead[0].Reason)

	// A MessageId seen in the window is dropped (and still answered 201); a marker sent after it proves it was
	// never delivered, since the queue delivers in order one at a time.
	th.send(t, "work", "m-ok", `{"migrationId":"m-1","jobId":"j-1"}`, "")
	th.send(t, "work", "m-marker", `{}`, "")
	waitFor(t, "the marker", func() bool { return q().Completed == 3 })
	require.Equal(t, []int64{1}, deliveriesOf(t, th, "m-marker"))
	require.Equal(t, []int64{1}, deliveriesOf(t, th, "m-ok"))

	stats := q()
	require.Equal(t, QueueStats{Sent: 4, Delivered: 8, Completed: 3, Abandoned: 4, DuplicatesDropped: 1, DeadLettered: 1}, stats)
	resp, body = th.do(t, http.MethodGet, "/admin/servicebus/queues", "")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var all map[string]QueueStats
	require.NoError(t, json.Unmarshal([]byte(body), &all))
	require.Equal(t, stats, all["work"])
}

func TestScheduledMessageWaitsForItsTime(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	th := startHost(t, hostOptions{
		spec:   appSpec{hostJSON: hostJSONWith(true, 1), functions: map[string]string{"Worker": fnQueueWork}},
		answer: messageAnswer,
		clock:  clock.now,
	})
	due := clock.now().Add(time.Hour)
	th.send(t, "work", "later", `{}`, due.Format(time.RFC3339))
	th.send(t, "work", "now", `{}`, "")
	waitFor(t, "the immediate message", func() bool { return len(deliveriesOf(t, th, "now")) == 1 })
	require.Empty(t, deliveriesOf(t, th, "later"))
	require.Equal(t, 1, th.Stats().Queues["work"].Scheduled)

	clock.advance(time.Hour)
	th.kickQueues()
	waitFor(t, "the scheduled message", func() bool { return len(deliveriesOf(t, th, "later")) == 1 })
	for _, m := range seenMessages(t, th) {
		if m.ID == "later" {
			require.True(t, due.Equal(m.Enqueued), "enqueued %s", m.Enqueued)
		}
	}
}

func TestHandlerRestarts(t *testing.T) {
	t.Parallel()
	th := startHost(t, hostOptions{
		spec:   appSpec{functions: map[string]string{"Worker": fnQueueWork}},
		answer: messageAnswer,
	})
	// A deliberate restart: a new process answers before RestartHandler returns.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	require.NoError(t, th.RestartHandler(ctx))
	require.Len(t, th.rec.startedEvents(), 2)
	require.Equal(t, 1, th.Stats().HandlerRestarts)

	// A crash mid-invocation: the message is abandoned, the handler restarted, the message redelivered.
	th.send(t, "work", "m-crash", `{"crash":true}`, "")
	waitFor(t, "completion after the crash", func() bool { return th.Stats().Queues["work"].Completed == 1 })
	require.Equal(t, []int64{1, 2}, deliveriesOf(t, th, "m-crash"))
	require.Len(t, th.rec.startedEvents(), 3)
	require.Equal(t, 2, th.Stats().HandlerRestarts)
	started := th.rec.startedEvents()
	require.NotEqual(t, started[1].PID, started[2].PID)
	require.NotEqual(t, started[1].Env["FUNCTIONS_CUSTOMHANDLER_WORKER_ID"], started[2].Env["FUNCTIONS_CUSTOMHANDLER_WORKER_ID"])
}

func TestAdminAPIErrors(t *testing.T) {
	t.Parallel()
	th := startHost(t, hostOptions{spec: appSpec{functions: map[string]string{"Worker": fnQueueWork}}})
	tests := []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"unknown queue", http.MethodPost, "/admin/servicebus/queues/nope/messages", `{"messageId":"a","body":"{}"}`, 404, "queue_not_found"},
		{"bad body", http.MethodPost, "/admin/servicebus/queues/work/messages", `{"messageId":`, 400, "invalid_body"},
		{"wrong type", http.MethodPost, "/admin/servicebus/queues/work/messages", `{"messageId":1}`, 400, "invalid_body"},
		{"bad schedule", http.MethodPost, "/admin/servicebus/queues/work/messages", `{"messageId":"a","scheduledEnqueueTimeUtc":"tomorrow"}`, 400, "invalid_scheduled_time"},
		{"long id", http.MethodPost, "/admin/servicebus/queues/work/messages", fmt.Sprintf(`{"messageId":%q}`, strings.Repeat("x", 129)), 400, "invalid_message_id"},
		{"unknown dead-letter queue", http.MethodGet, "/admin/servicebus/queues/nope/deadletters", "", 404, "queue_not_found"},
	}
	for _, tt := range tests {
		resp, body := th.do(t, tt.method, tt.path, tt.body)
		require.Equal(t, tt.status, resp.StatusCode, tt.name)
		var e apiError
		require.NoError(t, json.Unmarshal([]byte(body), &e), tt.name)
		require.Equal(t, tt.code, e.Error.Code, tt.name)
	}
	require.Zero(t, th.Stats().Queues["work"].Sent)
}
