// Package azuritetest starts a real Azurite blob service on an ephemeral loopback port for tests.
//
// One instance is meant to be shared by a test package (start it in TestMain); each test then works in
// containers of its own.
package azuritetest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
)

// AccountName and AccountKey are Azurite's well-known development account (public, documented by Microsoft).
const (
	AccountName = "devstoreaccount1"
	AccountKey  = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// Azurite is a running Azurite blob service.
type Azurite struct {
	// BlobEndpoint is the account's blob endpoint, path-style: http://127.0.0.1:{port}/devstoreaccount1
	BlobEndpoint string
	// ConnectionString is the full connection string the Azure SDK for Go accepts.
	ConnectionString string

	cmd     *exec.Cmd
	done    chan struct{}
	stopped sync.Once
	logTail *tail
}

var listenRE = regexp.MustCompile(`Blob service successfully listens on (http://[0-9.]+:[0-9]+)`)

// ConnectionStringFor returns the Azurite connection string for a blob endpoint such as http://127.0.0.1:10000/devstoreaccount1.
func ConnectionStringFor(blobEndpoint string) string {
	return fmt.Sprintf("DefaultEndpointsProtocol=http;AccountName=%s;AccountKey=%s;BlobEndpoint=%s;",
		AccountName, AccountKey, strings.TrimSuffix(blobEndpoint, "/"))
}

// Binary finds the azurite-blob executable installed by scripts/install-tools.sh: $AZURITE_BLOB_BIN, or
// .tools/node_modules/.bin/azurite-blob in the working directory or any parent.
func Binary() (string, error) {
	if p := os.Getenv("AZURITE_BLOB_BIN"); p != "" {
		return p, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find azurite: %w", err)
	}
	for {
		p := filepath.Join(dir, ".tools", "node_modules", ".bin", "azurite-blob")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("azurite-blob not found: run scripts/install-tools.sh (make tools) or set AZURITE_BLOB_BIN")
		}
		dir = parent
	}
}

// Start starts Azurite's blob service in memory (at most 512 MB of blob content) on 127.0.0.1 with an ephemeral
// port and waits until it listens.
func Start() (*Azurite, error) { return StartWithMemory(512) }

// StartWithMemory is Start with at most mb megabytes of blob content in memory (for long runs that write much).
func StartWithMemory(mb int) (*Azurite, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "--blobHost", "127.0.0.1", "--blobPort", "0", "--skipApiVersionCheck", "--disableTelemetry",
		"--loose", "--silent", "--inMemoryPersistence", "--extentMemoryLimit", strconv.Itoa(mb))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("azurite stdout: %w", err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start azurite: %w", err)
	}
	a := &Azurite{cmd: cmd, done: make(chan struct{}), logTail: &tail{max: 40}}
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			a.logTail.add(line)
			if m := listenRE.FindStringSubmatch(line); m != nil && !sent {
				found <- m[1]
				sent = true
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() { _ = cmd.Wait(); close(a.done) }()

	select {
	case base := <-found:
		a.BlobEndpoint = base + "/" + AccountName
		a.ConnectionString = ConnectionStringFor(a.BlobEndpoint)
		return a, nil
	case <-a.done:
		return nil, fmt.Errorf("azurite exited before listening:\n%s", a.logTail.String())
	case <-time.After(60 * time.Second):
		a.Stop()
		return nil, fmt.Errorf("azurite did not listen within 60s:\n%s", a.logTail.String())
	}
}

// Client returns a blob service client for this Azurite.
func (a *Azurite) Client() (*azblob.Client, error) {
	c, err := azblob.NewClientFromConnectionString(a.ConnectionString, nil)
	if err != nil {
		return nil, fmt.Errorf("azurite client: %w", err)
	}
	return c, nil
}

// CreateContainer creates a container with a unique name derived from prefix and returns the name.
func (a *Azurite) CreateContainer(ctx context.Context, prefix string) (string, error) {
	c, err := a.Client()
	if err != nil {
		return "", err
	}
	name := strings.ToLower(fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano()))
	if len(name) > 63 {
		name = name[len(name)-63:]
		name = strings.TrimLeft(name, "-")
	}
	if _, err := c.CreateContainer(ctx, name, nil); err != nil {
		return "", fmt.Errorf("create container %s: %w", name, err)
	}
	return name, nil
}

// Stop ends Azurite and every process it started.
func (a *Azurite) Stop() {
	a.stopped.Do(func() {
		if a.cmd.Process != nil {
			_ = syscall.Kill(-a.cmd.Process.Pid, syscall.SIGTERM)
		}
		select {
		case <-a.done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-a.cmd.Process.Pid, syscall.SIGKILL)
			<-a.done
		}
	})
}

// tail keeps the last lines of a process's output for error messages.
type tail struct {
	mu    sync.Mutex
	lines []string
	max   int
}

func (t *tail) add(s string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lines = append(t.lines, s)
	if len(t.lines) > t.max {
		t.lines = t.lines[1:]
	}
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.lines, "\n")
}

// Main starts Azurite, stores it in *into, runs the package's tests, stops Azurite and exits.
// A test package's TestMain is just `func TestMain(m *testing.M) { azuritetest.Main(m, &azurite) }`.
func Main(m *testing.M, into **Azurite) {
	a, err := Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "azuritetest:", err)
		os.Exit(1)
	}
	*into = a
	code := m.Run()
	a.Stop()
	os.Exit(code)
}
