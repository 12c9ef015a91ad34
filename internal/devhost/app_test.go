package devhost

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestNewValidatesTheApp(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		functions map[string]string
		settings  map[string]string
		wantErr   string
	}{
		{name: "unknown trigger", functions: map[string]string{"F": `{"bindings":[{"type":"queueTrigger","direction":"in","name":"q","queueName":"x"}]}`},
			wantErr: `trigger type "queueTrigger" is not supported`},
		{name: "missing schedule setting", functions: map[string]string{"Tick": fnTimerTick}, settings: map[string]string{},
			wantErr: "TickSchedule"},
		{name: "bad schedule", functions: map[string]string{"Tick": fnTimerTick}, settings: map[string]string{"TickSchedule": "* * * * *"},
			wantErr: "6-field NCRONTAB"},
		{name: "cardinality many", functions: map[string]string{"W": `{"bindings":[{"type":"serviceBusTrigger","direction":"in","name":"msg","queueName":"work","cardinality":"many"}]}`},
			wantErr: `cardinality "many"`},
		{name: "no trigger", functions: map[string]string{"W": `{"bindings":[{"type":"http","direction":"out","name":"res"}]}`},
			wantErr: "exactly one trigger"},
		{name: "two consumers", functions: map[string]string{"A": fnQueueWork, "B": fnQueueWork}, wantErr: `queue "work" already triggers`},
		{name: "output binding", functions: map[string]string{"W": `{"bindings":[{"type":"timerTrigger","direction":"in","name":"t","schedule":"* * * * * *"},{"type":"serviceBus","direction":"out","name":"out","queueName":"x"}]}`},
			wantErr: `binding type "serviceBus" is not supported`},
		{name: "bad route", functions: map[string]string{"H": `{"bindings":[{"type":"httpTrigger","direction":"in","name":"req","route":"a/{id?}/b"}]}`},
			wantErr: "may only be the last segment"},
		{name: "no functions", functions: map[string]string{}, wantErr: "no function.json"},
		{name: "valid", functions: map[string]string{"Tick": fnTimerTick, "Worker": fnQueueWork}, settings: map[string]string{"TickSchedule": "*/5 * * * * *"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			root := writeApp(t, appSpec{functions: tt.functions})
			settings := map[string]string{"MySetting": "x"}
			for k, v := range tt.settings {
				settings[k] = v
			}
			_, err := New(Config{AppRoot: root, Settings: settings, Logger: discardLogger()})
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

// TestNewReadsTheRealApp loads the repository's own host.json and function folders.
func TestNewReadsTheRealApp(t *testing.T) {
	t.Parallel()
	root, err := filepath.Abs("../..")
	require.NoError(t, err)
	_, err = os.Stat(filepath.Join(root, "host.json"))
	require.NoError(t, err, "the repository's host.json")
	_, err = New(Config{AppRoot: root, Settings: map[string]string{}, Logger: discardLogger()})
	require.ErrorContains(t, err, "PollSchedule", "a missing %Setting% is named")

	h, err := New(Config{AppRoot: root, Settings: map[string]string{"PollSchedule": "*/2 * * * * *"}, Logger: discardLogger()})
	require.NoError(t, err)
	require.Equal(t, filepath.Join(root, "bin/handler"), h.app.Executable)
	require.Equal(t, "api", h.app.RoutePrefix)
	require.Equal(t, 10*time.Minute, h.app.FunctionTimeout)
	require.Equal(t, 16, h.app.MaxConcurrentCalls)
	require.Contains(t, h.queues, "run-import")
	require.Contains(t, h.queues, "verify-counts")
	require.Contains(t, h.timers, "PollJob")
	for _, fn := range h.app.HTTPFunctions {
		require.True(t, fn.Forward, "%s is forwarded", fn.Name)
	}
}

// TestTheRealAppsRoutesInTheHostsOrder: the repository's HTTP functions in the order the host tries them (by name,
// ignoring case), the catch-all last, so that it takes only what no other function takes.
func TestTheRealAppsRoutesInTheHostsOrder(t *testing.T) {
	t.Parallel()
	root, err := filepath.Abs("../..")
	require.NoError(t, err)
	h, err := New(Config{AppRoot: root, Settings: map[string]string{"PollSchedule": "*/2 * * * * *"}, Logger: discardLogger()})
	require.NoError(t, err)
	var names []string
	for i, r := range h.app.Routes {
		names = append(names, r.Name)
		require.Equal(t, r.Name, h.app.HTTPFunctions[i].Name)
		require.Equal(t, r.Template.IsCatchAll(), i == len(h.app.Routes)-1, "%s: only the last route is a catch-all", r.Name)
	}
	require.True(t, slices.IsSortedFunc(names, func(a, b string) int { return strings.Compare(strings.ToUpper(a), strings.ToUpper(b)) }))
	for _, tt := range []struct{ method, path, want string }{
		{"POST", "/api/migrations", "StartMigration"},
		{"GET", "/api/migrations/", "Migrations"},
		{"GET", "/api/migrations/m-1/report", "MigrationReport"},
		{"POST", "/api/migrations/m-1/report", "MigrationActions"},
		{"GET", "/api/openapi.json", "OpenAPI"},
		{"POST", "/api/assessments", "Assessments"},
		{"GET", "/api/assessments/a-1", "Assessments"},
		{"GET", "/api/assessments/a-1/report", "AssessmentReport"},
		{"DELETE", "/api/assessments/a-1", "ZzFallback"},
		{"POST", "/api/assessments/a-1/report", "ZzFallback"},
		{"PUT", "/api/migrations/m-1", "ZzFallback"},
		{"GET", "/api/migrations/m-1/verify", "ZzFallback"},
		{"POST", "/api/migrations/m-1/v3rify", "ZzFallback"},
		{"GET", "/api/nothing/here", "ZzFallback"},
	} {
		got, _, ok := h.app.Routes.Route(tt.method, tt.path)
		require.True(t, ok, "%s %s", tt.method, tt.path)
		require.Equal(t, tt.want, got.Name, "%s %s", tt.method, tt.path)
	}
}

func TestBuiltInRoutesAreRefused(t *testing.T) {
	t.Parallel()
	root := writeApp(t, appSpec{functions: map[string]string{
		"Sneaky": `{"bindings":[{"type":"httpTrigger","direction":"in","name":"req","route":"Admin/functions"},{"type":"http","direction":"out","name":"res"}]}`,
	}})
	_, err := New(Config{AppRoot: root, Settings: map[string]string{"MySetting": "x"}, Logger: discardLogger()})
	require.ErrorContains(t, err, "built-in routes")
}

func TestExpandSettingsAndTimeSpan(t *testing.T) {
	t.Parallel()
	got, err := expandSettings("%A% and %B%", map[string]string{"A": "1", "B": "2"})
	require.NoError(t, err)
	require.Equal(t, "1 and 2", got)
	_, err = expandSettings("%A% %Missing%", map[string]string{"A": "1"})
	require.ErrorContains(t, err, "Missing")

	for in, want := range map[string]time.Duration{"00:10:00": 10 * time.Minute, "1.02:00:00": 26 * time.Hour, "00:00:01.5": 1500 * time.Millisecond} {
		d, err := parseTimeSpan(in)
		require.NoError(t, err, in)
		require.Equal(t, want, d, in)
	}
	_, err = parseTimeSpan("ten minutes")
	require.Error(t, err)
}

func TestLoadSettings(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "local.settings.json")
	require.NoError(t, os.WriteFile(path, []byte(`{"IsEncrypted":false,"Values":{"PollSchedule":"*/2 * * * * *"}}`), 0o600))
	got, err := LoadSettings(path)
	require.NoError(t, err)
	require.Equal(t, map[string]string{"PollSchedule": "*/2 * * * * *"}, got)

	require.NoError(t, os.WriteFile(path, []byte(`{"Values":{"N":1}}`), 0o600))
	_, err = LoadSettings(path)
	require.Error(t, err)
	_, err = LoadSettings(filepath.Join(dir, "absent.json"))
	require.Error(t, err)
}

func TestCLIRefusesNonLoopback(t *testing.T) {
	t.Parallel()
	for addr, ok := range map[string]bool{"127.0.0.1:7071": true, "[::1]:0": true, "localhost:7071": true,
		"0.0.0.0:7071": false, ":7071": false, "10.0.0.1:80": false, "nonsense": false} {
		err := checkLoopback(addr)
		require.Equal(t, ok, err == nil, "%s: %v", addr, err)
	}
	var stderr bytes.Buffer
	err := RunCLI(t.Context(), []string{"--addr", "0.0.0.0:7071"}, io.Discard, &stderr)
	require.ErrorContains(t, err, "loopback")
}
