package devhost

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// readinessTimeout is how long the host waits for a new handler process to answer HTTP.
const readinessTimeout = 60 * time.Second

// worker runs the custom handler process as the Functions host does: started with its port in the environment,
// polled until it answers HTTP, and restarted (with a small backoff) whenever it exits.
type worker struct {
	app    *app
	env    []string // machine env + app settings + DEVHOST_URL; the per-process variables are added at launch
	out    io.Writer
	log    *slog.Logger
	client *http.Client

	mu         sync.Mutex
	base       string        // http://127.0.0.1:{port} while the current process is ready
	readyCh    chan struct{} // closed when the next process is ready
	cmd        *exec.Cmd
	done       chan struct{} // closed when cmd has exited
	startedAt  time.Time
	restarts   int
	kills      int
	killTimes  []time.Time
	deliberate bool
	closing    bool
	stop       chan struct{}
	supervised chan struct{}
}

func newWorker(a *app, env []string, out io.Writer, log *slog.Logger) *worker {
	return &worker{app: a, env: env, out: out, log: log, client: &http.Client{Timeout: time.Second},
		readyCh: make(chan struct{}), stop: make(chan struct{}), supervised: make(chan struct{})}
}

// start launches the first handler process and waits for it to answer; then it keeps it running.
func (w *worker) start(ctx context.Context) error {
	port, done, err := w.launch()
	if err != nil {
		close(w.supervised)
		return err
	}
	if err := w.waitReady(ctx, port, done); err != nil {
		w.killGroup(syscall.SIGKILL)
		<-done
		close(w.supervised)
		return err
	}
	w.markReady(port)
	go w.supervise()
	return nil
}

// launch starts one handler process on a fresh port.
func (w *worker) launch() (int, chan struct{}, error) {
	port, err := freePort()
	if err != nil {
		return 0, nil, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closing {
		return 0, nil, errors.New("local host is closing")
	}
	cmd := exec.Command(w.app.Executable, w.app.Arguments...)
	cmd.Dir = w.app.WorkingDir
	cmd.Env = append(append([]string{}, w.env...),
		"FUNCTIONS_CUSTOMHANDLER_PORT="+strconv.Itoa(port),
		"FUNCTIONS_CUSTOMHANDLER_WORKER_ID="+newUUID(),
		"FUNCTIONS_APP_ROOT_PATH="+w.app.Root,
	)
	cmd.Stdout, cmd.Stderr = w.out, w.out
	// Its own process group, so stopping it also stops whatever it started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		return 0, nil, fmt.Errorf("start handler %s: %w", w.app.Executable, err)
	}
	done := make(chan struct{})
	go func() {
		err := cmd.Wait()
		w.log.Info("handler exited", "pid", cmd.Process.Pid, "status", exitStatus(err))
		close(done)
	}()
	w.cmd, w.done, w.startedAt = cmd, done, time.Now()
	w.log.Info("handler started", "pid", cmd.Process.Pid, "port", port, "executable", w.app.Executable)
	return port, done, nil
}

func exitStatus(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// waitReady polls GET / until any HTTP answer, as the host does.
func (w *worker) waitReady(ctx context.Context, port int, done chan struct{}) error {
	deadline := time.NewTimer(readinessTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	url := "http://127.0.0.1:" + strconv.Itoa(port) + "/"
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("readiness probe: %w", err)
		}
		if resp, err := w.client.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for handler on port %d: %w", port, ctx.Err())
		case <-done:
			return fmt.Errorf("handler exited before answering on port %d", port)
		case <-w.stop:
			return errors.New("local host is closing")
		case <-deadline.C:
			return fmt.Errorf("handler did not answer on port %d within %s", port, readinessTimeout)
		case <-tick.C:
		}
	}
}

func (w *worker) markReady(port int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.base = "http://127.0.0.1:" + strconv.Itoa(port)
	close(w.readyCh)
}

// suspect is told that a call to base failed at the transport level: when that process turns out to have
// exited, later calls wait for its replacement instead of hitting a dead port.
func (w *worker) suspect(base string) {
	w.mu.Lock()
	current, done := w.base, w.done
	w.mu.Unlock()
	if current != base || done == nil {
		return
	}
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		return
	case <-w.stop:
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.base == base {
		w.base = ""
		w.readyCh = make(chan struct{})
	}
}

// markDown makes invocations wait for the next process.
func (w *worker) markDown() chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.base != "" {
		w.base = ""
		w.readyCh = make(chan struct{})
	}
	return w.readyCh
}

// supervise restarts the handler whenever it exits, until close.
func (w *worker) supervise() {
	defer close(w.supervised)
	failures := 0
	for {
		w.mu.Lock()
		done := w.done
		w.mu.Unlock()
		select {
		case <-done:
		case <-w.stop:
			return
		}
		w.markDown()
		w.mu.Lock()
		if w.closing {
			w.mu.Unlock()
			return
		}
		deliberate := w.deliberate
		w.deliberate = false
		if time.Since(w.startedAt) > 10*time.Second {
			failures = 0
		}
		w.restarts++
		w.mu.Unlock()
		if !deliberate {
			backoff := min(100*time.Millisecond<<min(failures, 6), 5*time.Second)
			failures++
			w.log.Warn("handler exited unexpectedly; restarting", "backoff", backoff)
			select {
			case <-time.After(backoff):
			case <-w.stop:
				return
			}
		}
		port, done, err := w.launch()
		if err != nil {
			w.log.Error("restart handler", "err", err)
			// Keep supervising: a fake closed channel makes the loop try again after a backoff.
			w.mu.Lock()
			w.done = closedChan()
			w.mu.Unlock()
			continue
		}
		if err := w.waitReady(context.Background(), port, done); err != nil {
			w.log.Error("restarted handler is not ready", "err", err)
			w.killGroup(syscall.SIGKILL)
			continue
		}
		w.markReady(port)
	}
}

func closedChan() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

// endpoint returns the base URL of a ready handler process, waiting for one if it is restarting.
func (w *worker) endpoint(ctx context.Context) (string, error) {
	for {
		w.mu.Lock()
		base, ready := w.base, w.readyCh
		w.mu.Unlock()
		if base != "" {
			return base, nil
		}
		select {
		case <-ready:
		case <-ctx.Done():
			return "", fmt.Errorf("wait for the handler: %w", ctx.Err())
		case <-w.stop:
			return "", errors.New("local host is closing")
		}
	}
}

// restart kills the handler process group and waits until a new process answers.
func (w *worker) restart(ctx context.Context) error {
	w.mu.Lock()
	if w.closing || w.cmd == nil {
		w.mu.Unlock()
		return errors.New("handler is not running")
	}
	w.deliberate = true
	w.mu.Unlock()
	w.markDown()
	w.killGroup(syscall.SIGKILL)
	_, err := w.endpoint(ctx)
	return err
}

// killGroup signals the current process group while its leader is still running (an exited leader's id may be
// reused).
func (w *worker) killGroup(sig syscall.Signal) {
	w.mu.Lock()
	cmd, done := w.cmd, w.done
	w.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	if err := syscall.Kill(-cmd.Process.Pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		_ = cmd.Process.Signal(sig)
	}
}

// kill SIGKILLs the running handler's process group without telling the supervisor: it sees an unexpected exit.
func (w *worker) kill() (pid int, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closing || w.cmd == nil || w.cmd.Process == nil {
		return 0, errors.New("handler is not running")
	}
	select {
	case <-w.done:
		return 0, errors.New("handler is not running: it is being restarted")
	default:
	}
	pid = w.cmd.Process.Pid
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil {
		return 0, fmt.Errorf("kill handler process group %d: %w", pid, err)
	}
	w.kills++
	w.killTimes = append(w.killTimes, time.Now().UTC())
	return pid, nil
}

func (w *worker) killedAt() []time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.killTimes)
}

func (w *worker) killCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.kills
}

func (w *worker) pid() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cmd == nil || w.cmd.Process == nil {
		return 0
	}
	return w.cmd.Process.Pid
}

func (w *worker) restartCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.restarts
}

// close stops the supervisor and the handler's process group (SIGTERM, then SIGKILL after a grace period).
func (w *worker) close() {
	w.mu.Lock()
	if w.closing {
		w.mu.Unlock()
		<-w.supervised
		return
	}
	w.closing = true
	close(w.stop)
	w.mu.Unlock()
	<-w.supervised
	w.mu.Lock()
	done := w.done
	w.mu.Unlock()
	if done == nil {
		return
	}
	w.killGroup(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		w.killGroup(syscall.SIGKILL)
		<-done
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port for the handler: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// baseEnv is the handler's environment before the per-process variables.
func baseEnv(settings map[string]string, devhostURL string) []string {
	env := os.Environ()
	for k, v := range settings {
		env = append(env, k+"="+v)
	}
	return append(env, "DEVHOST_URL="+devhostURL)
}
