package migration

import (
	"bufio"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/fhir"
	"github.com/fhir-migrator/fhir-migrator/internal/localstack"
)

// logLines decodes every JSON log line written to sink.
func logLines(t *testing.T, sink *localstack.SyncBuffer) []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(sink.String()))
	for sc.Scan() {
		var line map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &line), sc.Text())
		out = append(out, line)
	}
	return out
}

// Every change a step makes is one log line with the migration id: the Azure dashboard charts these lines, so
// the figures on them must be the document's.
func TestEveryChangeIsLoggedWithTheMigrationID(t *testing.T) {
	t.Parallel()
	var sink localstack.SyncBuffer
	h := newHarness(t, func(c *Config) {
		c.Logger = slog.New(slog.NewJSONHandler(&sink, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	m := h.start(`{` + endpoints + `}`)
	done := h.drive(m.ID, time.Minute, 50)
	require.Equal(t, StatusCompleted, done.Status, "%+v", done.Error)

	var statuses []string
	ended := map[string]map[string]any{}
	captured := readChangeLines(t).Lines
	for _, l := range logLines(t, &sink) {
		if line, ok := captured[l["msg"].(string)]; ok {
			for k := range l {
				require.Contains(t, line.Fields, k, "%s carries %s, which %s does not have", l["msg"], k, changeLinesFile)
			}
		}
		switch l["msg"] {
		case LogStatusChanged:
			require.Equal(t, m.ID, l["migration"])
			if len(statuses) > 0 {
				require.Equal(t, statuses[len(statuses)-1], l["from"], "a status change starts where the last ended")
			}
			statuses = append(statuses, l["to"].(string))
		case LogJobEnded:
			require.Equal(t, m.ID, l["migration"])
			id := l["job"].(string)
			require.NotContains(t, ended, id, "a job ends once")
			ended[id] = l
		}
	}
	require.Equal(t, []string{"exporting", "importing", "verifying", "completed"}, statuses)
	require.Len(t, ended, len(done.Jobs), "every job's end is logged")
	var exported, imported float64
	for _, j := range done.Jobs {
		l := ended[j.ID]
		require.NotNil(t, l, j.ID)
		require.Equal(t, string(j.Kind), l["kind"])
		require.Equal(t, string(j.State), l["state"])
		require.InDelta(t, float64(sum(j.Counts)), l["resources"], 0, j.ID)
		switch j.Kind {
		case KindExport:
			exported += l["resources"].(float64)
		case KindImport:
			imported += l["resources"].(float64)
		}
	}
	require.Positive(t, exported)
	require.Equal(t, exported-2, imported, "SearchParameters are copied, not imported")
}

func TestAFailedMigrationLogsItsCode(t *testing.T) {
	t.Parallel()
	var sink localstack.SyncBuffer
	h := newHarness(t, func(c *Config) {
		c.Logger = slog.New(slog.NewJSONHandler(&sink, nil))
	})
	h.src.kickoffErrs = []error{&fhir.Error{Op: "export kick-off", StatusCode: 400, Message: "bad request"}}
	m := h.start(`{` + endpoints + `}`)
	done := h.drive(m.ID, time.Minute, 50)
	require.Equal(t, StatusFailed, done.Status)
	require.NotNil(t, done.Error)
	var last map[string]any
	for _, l := range logLines(t, &sink) {
		if l["msg"] == LogStatusChanged {
			last = l
		}
	}
	require.NotNil(t, last)
	require.Equal(t, "failed", last["to"])
	require.Equal(t, "ERROR", last["level"])
	require.Equal(t, done.Error.Code, last["code"])
	require.Equal(t, m.ID, last["migration"])
}
