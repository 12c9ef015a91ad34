package migration

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/fhir"
	"github.com/fhir-migrator/fhir-migrator/internal/localstack"
)

var updateChangeLines = flag.Bool("update-change-lines", false,
	"rewrite testdata/change-lines.json from the change lines the test migrations log")

// changeLinesFile holds what the change lines of real test migrations carried. The Azure dashboard
// (infra/modules/workbook.json) may read only these: handler/infra_deploy_test.go checks its queries against it.
const changeLinesFile = "testdata/change-lines.json"

// valuedFields are the fields of change lines whose values the dashboard compares: every value they took is kept.
var valuedFields = []string{"kind", "state", "to"}

// changeLines is the content of changeLinesFile.
type changeLines struct {
	// Migrations names the test migrations the lines were captured from.
	Migrations []string `json:"migrations"`
	// Lines are, per message, the fields seen on its lines (time, level, msg and migration included) and every
	// value seen of its valuedFields.
	Lines map[string]changeLine `json:"lines"`
}

type changeLine struct {
	Fields []string            `json:"fields"`
	Values map[string][]string `json:"values,omitempty"`
}

func readChangeLines(t *testing.T) changeLines {
	t.Helper()
	data, err := os.ReadFile(filepath.FromSlash(changeLinesFile))
	require.NoError(t, err)
	var c changeLines
	require.NoError(t, json.Unmarshal(data, &c))
	return c
}

// captureMigration is one test migration: run drives it on a service configured by tune (which installs the JSON
// logger) and returns the migration's id once it reached the end it is named for.
type captureMigration struct {
	name string
	run  func(t *testing.T, tune func(*Config)) string
}

var captureMigrations = []captureMigration{
	{"completed", func(t *testing.T, tune func(*Config)) string {
		// Every kind of job (SearchParameter is copied), and an import that reports an error file (of an input it
		// does not name, its blob gone: the summary keeps the server's type): only then does "job ended" carry failed.
		h, _, dst := newFaultHarness(t, tune)
		dst.importErrors = []fhir.ImportErrorFile{{Type: "OperationOutcome", Count: 1,
			InputURL: blobBase + "/elsewhere/x.ndjson", URL: blobBase + "/fhirlogs/missing.ndjson"}}
		m := h.start(`{` + endpoints + `}`)
		done := h.drive(m.ID, time.Minute, 50)
		require.Equal(t, StatusCompleted, done.Status, "%+v", done.Error)
		return m.ID
	}},
	{"failed: an import job fails", func(t *testing.T, tune func(*Config)) string {
		h, _, dst := newFaultHarness(t, tune)
		dst.importFaults = []statusFault{{err: &fhir.Error{Op: "import status", StatusCode: 400,
			Message: "import operation failed for reason: input blob not found"}}}
		m := h.start(`{` + endpoints + `,"types":["Patient"]}`)
		done := h.drive(m.ID, 10*time.Second, 20)
		require.Equal(t, StatusFailed, done.Status)
		require.Equal(t, JobFailed, done.job("import-export-Patient-1").State)
		return m.ID
	}},
	{"failed: verification finds the destination short", func(t *testing.T, tune func(*Config)) string {
		h := newHarness(t, tune)
		h.dst.countOffset = map[string]int64{"Patient": -1}
		m := h.start(`{` + endpoints + `,"types":["Patient","Observation"]}`)
		done := h.drive(m.ID, time.Minute, 20)
		require.Equal(t, StatusFailed, done.Status)
		require.Equal(t, codeVerificationMismatch, done.Error.Code)
		return m.ID
	}},
	{"synced, then cut over", func(t *testing.T, tune func(*Config)) string {
		h := syncHarnessWith(t, nil, tune)
		m := h.start(`{` + endpoints + `,"types":["Patient"],"sync":true,"syncInterval":"1m"}`)
		h.driveUntil(m.ID, 10*time.Second, 100, "round 2", func(m *Migration) bool { return m.Sync != nil && m.Sync.Rounds == 2 })
		_, err := h.svc.Cutover(context.Background(), m.ID, CutoverRequest{})
		require.NoError(t, err)
		done := h.drive(m.ID, 10*time.Second, 100)
		require.Equal(t, StatusCompleted, done.Status, "%+v", done.Error)
		require.True(t, done.Sync.Recent[len(done.Sync.Recent)-1].Final)
		return m.ID
	}},
	{"canceled while exporting", func(t *testing.T, tune func(*Config)) string {
		h := newHarness(t, tune)
		h.src.exportPending = 100
		m := h.start(`{` + endpoints + `,"types":["Patient","Observation"]}`)
		h.poll()
		canceled, err := h.svc.Cancel(context.Background(), m.ID)
		require.NoError(t, err)
		require.Equal(t, StatusCanceled, canceled.Status)
		return m.ID
	}},
}

// The change lines the dashboard reads are captured from real migrations (one completed, two failed, one synced
// and cut over, one canceled), never listed by hand: their fields and values must be testdata/change-lines.json.
func TestChangeLinesAreTheCapturedOnes(t *testing.T) {
	t.Parallel()
	got := changeLines{Lines: map[string]changeLine{}}
	fields := map[string]map[string]bool{}
	values := map[string]map[string]map[string]bool{}
	for _, c := range captureMigrations {
		var sink localstack.SyncBuffer
		id := c.run(t, func(cfg *Config) { cfg.Logger = slog.New(slog.NewJSONHandler(&sink, nil)) })
		got.Migrations = append(got.Migrations, c.name)
		for _, l := range logLines(t, &sink) {
			msg, _ := l["msg"].(string)
			if msg != LogStatusChanged && msg != LogJobEnded && msg != LogRoundEnded {
				continue
			}
			require.Equal(t, id, l["migration"], "%s: %s", c.name, msg)
			if fields[msg] == nil {
				fields[msg], values[msg] = map[string]bool{}, map[string]map[string]bool{}
			}
			for k, v := range l {
				fields[msg][k] = true
				if slices.Contains(valuedFields, k) {
					s, ok := v.(string)
					require.True(t, ok, "%s: %s of %s is %T", c.name, k, msg, v)
					if values[msg][k] == nil {
						values[msg][k] = map[string]bool{}
					}
					values[msg][k][s] = true
				}
			}
		}
	}
	require.Len(t, fields, 3, "every change message is captured: %v", slices.Sorted(maps.Keys(fields)))
	for msg, f := range fields {
		line := changeLine{Fields: slices.Sorted(maps.Keys(f))}
		for k, vs := range values[msg] {
			if line.Values == nil {
				line.Values = map[string][]string{}
			}
			line.Values[k] = slices.Sorted(maps.Keys(vs))
		}
		got.Lines[msg] = line
	}
	slices.Sort(got.Migrations)
	captured, err := json.MarshalIndent(got, "", "  ")
	require.NoError(t, err)
	captured = append(captured, '\n')

	if *updateChangeLines {
		require.NoError(t, os.WriteFile(filepath.FromSlash(changeLinesFile), captured, 0o644))
		return
	}
	checkedIn, err := os.ReadFile(filepath.FromSlash(changeLinesFile))
	if !errors.Is(err, os.ErrNotExist) {
		require.NoError(t, err)
	}
	require.Equal(t, string(checkedIn), string(captured),
		"the change lines differ from %s: run go test ./internal/migration -run TestChangeLinesAreTheCapturedOnes -update-change-lines",
		changeLinesFile)
}
