// Package devhost is the local stand-in for the Azure Functions host: it reads host.json and every
// */function.json, starts the real custom handler binary exactly as the host does, serves the HTTP triggers
// (forwarded or in payload form), fires timers, and runs the Service Bus queues in memory with peek-lock
// semantics, duplicate detection and scheduled messages. The same handler binary runs unchanged in Azure.
package devhost

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/robfig/cron/v3"
)

// HostVersion is the Functions host version the local host claims to be.
const HostVersion = "4.1040.300.0"

// Config configures the local host; see New.
type Config struct {
	AppRoot          string            // folder holding host.json and the function folders
	Settings         map[string]string // app settings ("Values" of local.settings.json), given to the handler as env vars
	Addr             string            // listen address, default 127.0.0.1:7071; tests use 127.0.0.1:0
	ExecutablePath   string            // optional override of customHandler.description.defaultExecutablePath
	MaxDeliveryCount int               // default 10 (Service Bus default)
	HandlerStdout    io.Writer         // where the handler's stdout/stderr go (default os.Stdout)
	Logger           *slog.Logger
	Clock            func() time.Time // optional; stamps envelopes and decides when scheduled messages are due

	// Chaos hooks (default off). DuplicateRate: probability that a delivery loses its lock, so the same message
	// (same MessageId) is delivered again with DeliveryCount+1. DropRate: probability that a message accepted by the
	// send API is lost (201, never delivered). ChaosSeed seeds both rolls (0: seeded from the time).
	DuplicateRate float64
	DropRate      float64
	ChaosSeed     int64

	// Principal is the signed-in caller put on every request to a function, as App Service authentication would
	// (principal.go); nil: none. Local only: the local host listens on loopback alone.
	Principal *Principal
}

// Stats is what the host has done so far.
type Stats struct {
	Queues          map[string]QueueStats `json:"queues"`
	HandlerRestarts int                   `json:"handlerRestarts"`
	Invocations     map[string]int        `json:"invocations"`
	// TimerSkips counts ticks skipped because the previous invocation of the timer function still ran.
	TimerSkips map[string]int `json:"timerSkips"`
	// HandlerKills counts KillHandler calls (POST /admin/handler/kill) that killed a running handler; KillTimes
	// says when each landed.
	HandlerKills int         `json:"handlerKills"`
	KillTimes    []time.Time `json:"killTimes"`
	// ChaosSeed is the seed of the chaos rolls: Config.ChaosSeed with it replays them.
	ChaosSeed int64 `json:"chaosSeed"`
}

// Host is a running local Functions host.
type Host struct {
	cfg    Config
	app    *app
	log    *slog.Logger
	now    func() time.Time
	queues map[string]*queue // by queue name
	chaos  *chaos
	timers map[string]*timerState
	client *http.Client

	ln     net.Listener
	srv    *http.Server
	worker *worker
	cron   *cron.Cron
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// principal is the caller put on each request to a function (SetPrincipal).
	principal atomic.Pointer[Principal]

	mu          sync.Mutex
	invocations map[string]int
	// durations are the latest invocation times of each non-HTTP function (at most maxDurations each).
	durations map[string][]time.Duration
	started   bool
	closed    bool
}

// LoadSettings reads the "Values" of a local.settings.json file.
func LoadSettings(path string) (map[string]string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read settings: %w", err)
	}
	var file struct {
		IsEncrypted bool              `json:"IsEncrypted"`
		Values      map[string]string `json:"Values"`
	}
	if err := json.Unmarshal(raw, &file); err != nil {
		return nil, fmt.Errorf("parse settings %s: %w", path, err)
	}
	if file.IsEncrypted {
		return nil, fmt.Errorf("settings %s are encrypted; the local host reads plain values only", path)
	}
	if file.Values == nil {
		file.Values = map[string]string{}
	}
	return file.Values, nil
}

// New reads and validates the app; nothing runs until Start.
func New(cfg Config) (*Host, error) {
	if cfg.AppRoot == "" {
		cfg.AppRoot = "."
	}
	root, err := absPath(cfg.AppRoot)
	if err != nil {
		return nil, err
	}
	cfg.AppRoot = root
	if cfg.Settings == nil {
		cfg.Settings = map[string]string{}
	}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:7071"
	}
	if cfg.MaxDeliveryCount <= 0 {
		cfg.MaxDeliveryCount = 10
	}
	if cfg.HandlerStdout == nil {
		cfg.HandlerStdout = os.Stdout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.ChaosSeed == 0 {
		cfg.ChaosSeed = time.Now().UnixNano()
	}
	ch, err := newChaos(cfg.DuplicateRate, cfg.DropRate, cfg.ChaosSeed)
	if err != nil {
		return nil, err
	}
	a, err := loadApp(cfg.AppRoot, cfg.ExecutablePath, cfg.Settings)
	if err != nil {
		return nil, err
	}
	if cfg.DuplicateRate > 0 || cfg.DropRate > 0 {
		cfg.Logger.Info("chaos hooks on", "duplicateRate", cfg.DuplicateRate, "dropRate", cfg.DropRate,
			"chaosSeed", cfg.ChaosSeed)
	}
	h := &Host{cfg: cfg, app: a, log: cfg.Logger, now: cfg.Clock, queues: map[string]*queue{}, chaos: ch,
		timers: map[string]*timerState{}, invocations: map[string]int{}, durations: map[string][]time.Duration{},
		client: &http.Client{Timeout: a.FunctionTimeout}}
	h.principal.Store(cfg.Principal)
	for _, fn := range a.Functions {
		switch fn.Kind {
		case triggerServiceBus:
			h.queues[fn.Queue] = newQueue(fn.Queue, cfg.MaxDeliveryCount, a.MaxConcurrentCalls, cfg.Clock, ch,
				func(ctx context.Context, d delivery) settle { return h.deliverMessage(ctx, fn, d) })
		case triggerTimer:
			h.timers[fn.Name] = &timerState{fn: fn}
		}
	}
	return h, nil
}

// Start listens, starts the handler and waits until it answers, then starts the timers and queue pumps.
func (h *Host) Start(ctx context.Context) error {
	h.mu.Lock()
	if h.started {
		h.mu.Unlock()
		return errors.New("local host already started")
	}
	h.started = true
	h.mu.Unlock()

	ln, err := net.Listen("tcp", h.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", h.cfg.Addr, err)
	}
	h.ln = ln
	h.ctx, h.cancel = context.WithCancel(context.Background())
	h.srv = &http.Server{Handler: h.routes(), ReadHeaderTimeout: 10 * time.Second,
		BaseContext: func(net.Listener) context.Context { return h.ctx }}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		if err := h.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			h.log.Error("local host listener stopped", "err", err)
		}
	}()

	h.worker = newWorker(h.app, baseEnv(h.cfg.Settings, h.URL()), h.cfg.HandlerStdout, h.log)
	if err := h.worker.start(ctx); err != nil {
		h.cancel()
		_ = h.srv.Close()
		h.wg.Wait()
		return fmt.Errorf("start handler: %w", err)
	}

	for _, q := range h.queues {
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			q.run(h.ctx)
		}()
	}
	h.startTimers()
	h.log.Info("local host ready", "url", h.URL(), "functions", len(h.app.Functions))
	return nil
}

// URL is the host's base URL, http://127.0.0.1:{port}.
func (h *Host) URL() string {
	if h.ln == nil {
		return ""
	}
	return "http://" + h.ln.Addr().String()
}

// RestartHandler kills the handler's process group and waits until a new process answers.
func (h *Host) RestartHandler(ctx context.Context) error {
	if h.worker == nil {
		return errors.New("local host not started")
	}
	return h.worker.restart(ctx)
}

// Stats reports the queues, handler restarts and invocations per function.
func (h *Host) Stats() Stats {
	s := Stats{Queues: map[string]QueueStats{}, Invocations: map[string]int{}, TimerSkips: map[string]int{}}
	for name, q := range h.queues {
		s.Queues[name] = q.snapshot()
	}
	if h.worker != nil {
		s.HandlerRestarts = h.worker.restartCount()
		s.HandlerKills = h.worker.killCount()
		s.KillTimes = h.worker.killedAt()
	}
	s.ChaosSeed = h.cfg.ChaosSeed
	h.mu.Lock()
	for k, v := range h.invocations {
		s.Invocations[k] = v
	}
	h.mu.Unlock()
	for name, ts := range h.timers {
		ts.mu.Lock()
		s.TimerSkips[name] = ts.skips
		ts.mu.Unlock()
	}
	return s
}

// DeadLetters lists the dead-lettered messages of a queue.
func (h *Host) DeadLetters(queueName string) ([]DeadLetter, error) {
	q, ok := h.queues[queueName]
	if !ok {
		return nil, fmt.Errorf("queue %q does not exist", queueName)
	}
	return q.deadLettered(), nil
}

// Send enqueues a message as the Service Bus SDK would; a duplicate MessageId within the window is dropped.
func (h *Host) Send(queueName, messageID, body, contentType string, notBefore time.Time) error {
	q, ok := h.queues[queueName]
	if !ok {
		return fmt.Errorf("queue %q does not exist", queueName)
	}
	h.enqueue(q, messageID, body, contentType, "", notBefore)
	return nil
}

// enqueue sends a message to q, naming it when the sender did not, and returns its MessageId.
func (h *Host) enqueue(q *queue, messageID, body, contentType, correlationID string, notBefore time.Time) string {
	if messageID == "" {
		messageID = newUUID()
	}
	switch q.send(messageID, body, contentType, correlationID, notBefore) {
	case sendDuplicate:
		h.log.Info("duplicate message dropped", "queue", q.name, "messageId", messageID)
	case sendLost:
		h.log.Warn("chaos: accepted message lost", "queue", q.name, "messageId", messageID)
	}
	return messageID
}

// KillHandler SIGKILLs the handler's process group now, as a crash would: in-flight invocations fail (their
// messages are redelivered) and the host restarts the handler as after any unexpected exit.
func (h *Host) KillHandler() error {
	if h.worker == nil {
		return errors.New("local host not started")
	}
	pid, err := h.worker.kill()
	if err != nil {
		return err
	}
	h.log.Warn("chaos: handler killed", "pid", pid)
	return nil
}

// kickQueues makes the pumps look again at their scheduled messages (after the clock moved).
func (h *Host) kickQueues() {
	for _, q := range h.queues {
		q.kick()
	}
}

// Close stops timers, pumps, the handler's process group and the listener.
func (h *Host) Close() error {
	h.mu.Lock()
	if h.closed || !h.started {
		h.closed = true
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	h.mu.Unlock()
	if h.cancel != nil {
		h.cancel()
	}
	if h.cron != nil {
		<-h.cron.Stop().Done()
	}
	var err error
	if h.srv != nil {
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if e := h.srv.Shutdown(shutdownCtx); e != nil {
			err = fmt.Errorf("stop listener: %w", e)
			_ = h.srv.Close()
		}
		cancel()
	}
	if h.worker != nil {
		h.worker.close()
	}
	h.wg.Wait()
	return err
}

// invoke posts an envelope to /{FunctionName} on the handler; a transport failure is an error.
func (h *Host) invoke(ctx context.Context, fn *function, envelope []byte) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, h.app.FunctionTimeout)
	defer cancel()
	base, err := h.worker.endpoint(ctx)
	if err != nil {
		return 0, nil, err
	}
	id := newUUID()
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/"+fn.Name, bytes.NewReader(envelope))
	if err != nil {
		return 0, nil, fmt.Errorf("invoke %s: %w", fn.Name, err)
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	setInvocationHeaders(req.Header, id)
	h.countInvocation(fn.Name)
	resp, err := h.client.Do(req)
	if err != nil {
		h.worker.suspect(base)
		h.log.Warn("invocation failed", "function", fn.Name, "invocationId", id, "err", err,
			"duration", time.Since(start).Round(time.Millisecond))
		return 0, nil, fmt.Errorf("invoke %s: %w", fn.Name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxHTTPBody))
	level := slog.LevelInfo
	if resp.StatusCode/100 != 2 {
		level = slog.LevelWarn
	}
	took := time.Since(start)
	h.recordDuration(fn.Name, took)
	h.log.Log(ctx, level, "invocation", "function", fn.Name, "invocationId", id, "status", resp.StatusCode,
		"duration", took.Round(time.Millisecond))
	h.logHandlerLogs(fn.Name, id, body)
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("read %s response: %w", fn.Name, err)
	}
	return resp.StatusCode, body, nil
}

func setInvocationHeaders(hdr http.Header, invocationID string) {
	hdr.Set("X-Azure-Functions-InvocationId", invocationID)
	hdr.Set("X-Azure-Functions-HostVersion", HostVersion)
	hdr.Set("User-Agent", "Azure-Functions-Host/"+HostVersion)
}

func (h *Host) countInvocation(name string) {
	h.mu.Lock()
	h.invocations[name]++
	h.mu.Unlock()
}

// maxDurations bounds the invocation times kept per function.
const maxDurations = 100_000

func (h *Host) recordDuration(name string, d time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ds := h.durations[name]
	if len(ds) >= maxDurations {
		ds = ds[1:]
	}
	h.durations[name] = append(ds, d)
}

// Durations are the times of the latest answered invocations of a timer or queue function, oldest first: how
// long the handler took, as the host saw it.
func (h *Host) Durations(name string) []time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.durations[name])
}

// HandlerPID is the process id of the running handler (0 when none runs).
func (h *Host) HandlerPID() int {
	if h.worker == nil {
		return 0
	}
	return h.worker.pid()
}

// logHandlerLogs relays the Logs of an invocation response, as the host writes them to its own log.
func (h *Host) logHandlerLogs(function, invocationID string, body []byte) {
	var resp struct {
		Logs []string `json:"Logs"`
	}
	if json.Unmarshal(body, &resp) != nil {
		return
	}
	for _, line := range resp.Logs {
		h.log.Debug("handler log", "function", function, "invocationId", invocationID, "log", line)
	}
}

// deliverMessage delivers one queued message; 2xx completes it, anything else abandons it.
func (h *Host) deliverMessage(ctx context.Context, fn *function, d delivery) settle {
	env, err := encodeServiceBus(fn.Name, fn.Trigger.Name, d, h.now())
	if err != nil {
		h.log.Error("encode message", "queue", fn.Queue, "messageId", d.MessageID, "err", err)
		return settleAbandon
	}
	status, _, err := h.invoke(ctx, fn, env)
	if err != nil || status/100 != 2 {
		h.log.Warn("message abandoned", "queue", fn.Queue, "messageId", d.MessageID, "deliveryCount", d.DeliveryCount,
			"status", status)
		return settleAbandon
	}
	return settleComplete
}

func absPath(p string) (string, error) {
	if p == "" {
		p = "."
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("app root %s: %w", p, err)
	}
	st, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("app root: %w", err)
	}
	if !st.IsDir() {
		return "", fmt.Errorf("app root %s is not a folder", abs)
	}
	return abs, nil
}
