package main

// Every query the deployment ships (the workbook's tiles and parameter queries) is parsed and analysed by
// Microsoft's own KQL parser (npm @kusto/language-service-next, installed by scripts/install-tools.sh and run by
// scripts/kql-check.js) against the Application Insights `traces` table. Any diagnostic fails: a keyword used as a
// name (`to`, `kind`, `last`: KS228, KS006), an unknown column (KS142), a workbook placeholder left unreplaced
// (KS213). The portal runs the same parser, so what fails here fails on the dashboard.

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// tracesColumns is the Application Insights `traces` table as a workbook on the component queries it (Microsoft
// Learn, "Application Insights telemetry data model" and the AppTraces table reference, whose columns it mirrors
// under their classic names).
var tracesColumns = [][2]string{
	{"timestamp", "datetime"}, {"message", "string"}, {"severityLevel", "int"}, {"itemType", "string"},
	{"customDimensions", "dynamic"}, {"customMeasurements", "dynamic"}, {"operation_Name", "string"},
	{"operation_Id", "string"}, {"operation_ParentId", "string"}, {"operation_SyntheticSource", "string"},
	{"session_Id", "string"}, {"user_Id", "string"}, {"user_AuthenticatedId", "string"}, {"user_AccountId", "string"},
	{"application_Version", "string"}, {"client_Type", "string"}, {"client_Model", "string"}, {"client_OS", "string"},
	{"client_IP", "string"}, {"client_City", "string"}, {"client_StateOrProvince", "string"},
	{"client_CountryOrRegion", "string"}, {"client_Browser", "string"}, {"cloud_RoleName", "string"},
	{"cloud_RoleInstance", "string"}, {"appId", "string"}, {"appName", "string"}, {"iKey", "string"},
	{"sdkVersion", "string"}, {"itemId", "string"}, {"itemCount", "int"},
}

type kqlQuery struct {
	Name string `json:"name"`
	Text string `json:"text"`
}

type kqlDiagnostic struct {
	Code     string `json:"code"`
	Severity string `json:"severity"`
	Message  string `json:"message"`
	Line     int    `json:"line"`
	Column   int    `json:"column"`
	Snippet  string `json:"snippet"`
}

type kqlResult struct {
	Errors  int `json:"errors"`
	Results []struct {
		Name        string          `json:"name"`
		Diagnostics []kqlDiagnostic `json:"diagnostics"`
	} `json:"results"`
}

// workbookParameter is a parameter of the workbook's parameters step.
type workbookParameter struct {
	Name        string `json:"name"`
	Type        int    `json:"type"`
	MultiSelect bool   `json:"multiSelect"`
	Quote       string `json:"quote"`
	Delimiter   string `json:"delimiter"`
	Query       string `json:"query"`
}

// workbookQueries reads every query of workbook.json (tiles and parameter queries) and the text each workbook
// parameter expands to in a query.
func workbookQueries(t *testing.T, text string) ([]kqlQuery, map[string]string) {
	t.Helper()
	var wb struct {
		Items []struct {
			Type    int             `json:"type"`
			Name    string          `json:"name"`
			Content json.RawMessage `json:"content"`
		} `json:"items"`
	}
	require.NoError(t, json.Unmarshal([]byte(text), &wb))
	var queries []kqlQuery
	params := map[string]string{}
	for _, it := range wb.Items {
		switch it.Type {
		case 3: // a query tile
			var c struct{ Query string }
			require.NoError(t, json.Unmarshal(it.Content, &c))
			require.NotEmpty(t, c.Query, it.Name)
			queries = append(queries, kqlQuery{Name: it.Name, Text: c.Query})
		case 9: // the parameters step
			var c struct{ Parameters []workbookParameter }
			require.NoError(t, json.Unmarshal(it.Content, &c))
			for _, p := range c.Parameters {
				switch p.Type {
				case 2: // a drop-down: the picked values, quoted and joined as the parameter says
					values := []string{"m-20261204-1", "m-20261204-2"}
					if !p.MultiSelect {
						values = values[:1]
					}
					for i := range values {
						values[i] = p.Quote + values[i] + p.Quote
					}
					params[p.Name] = strings.Join(values, p.Delimiter)
				case 4: // a time range: used as a tile's time context, never inside a query's text
				default:
					require.Failf(t, "unknown workbook parameter type", "%s has type %d: say what it expands to", p.Name, p.Type)
				}
				if p.Query != "" {
					queries = append(queries, kqlQuery{Name: "parameter " + p.Name, Text: p.Query})
				}
			}
		}
	}
	return queries, params
}

// checkKQL runs scripts/kql-check.js over the queries against the traces table and returns its verdict.
func checkKQL(t *testing.T, queries []kqlQuery, params map[string]string) kqlResult {
	t.Helper()
	node, err := exec.LookPath("node")
	require.NoError(t, err, "node (Node 20) runs Microsoft's KQL parser")
	var columns []map[string]string
	for _, c := range tracesColumns {
		columns = append(columns, map[string]string{"name": c[0], "type": c[1]})
	}
	input, err := json.Marshal(map[string]any{
		"tables":     []any{map[string]any{"name": "traces", "columns": columns}},
		"parameters": params,
		"queries":    queries,
	})
	require.NoError(t, err)
	in := filepath.Join(t.TempDir(), "queries.json")
	require.NoError(t, os.WriteFile(in, input, 0o600))
	cmd := exec.Command(node, filepath.Join(repoRoot, "scripts", "kql-check.js"), in)
	cmd.Stderr = &strings.Builder{}
	out, err := cmd.Output()
	var exit *exec.ExitError
	if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 1) {
		require.FailNow(t, "kql-check did not run", "%v: %s (scripts/install-tools.sh installs the parser)", err, cmd.Stderr)
	}
	var res kqlResult
	require.NoError(t, json.Unmarshal(out, &res), string(out))
	require.Len(t, res.Results, len(queries))
	return res
}

func TestDashboardQueriesParseWithMicrosoftsKQLParser(t *testing.T) {
	t.Parallel()
	queries, params := workbookQueries(t, readRepoFile(t, "infra/modules/workbook.json"))
	require.GreaterOrEqual(t, len(queries), 8, "seven tiles and the migrations picker")
	res := checkKQL(t, queries, params)
	for _, r := range res.Results {
		for _, d := range r.Diagnostics {
			t.Errorf("%s: line %d col %d: %s %s %q: %s", r.Name, d.Line, d.Column, d.Severity, d.Code, d.Snippet, d.Message)
		}
	}
	require.Zero(t, res.Errors)
}

// The check itself must be able to fail: the keywords the parser refuses as bare names, an unknown column, and a
// placeholder left in the text, each with the code Microsoft's parser gives.
func TestKQLCheckFindsWhatThePortalRefuses(t *testing.T) {
	t.Parallel()
	bad := []kqlQuery{
		{Name: "keyword to", Text: "traces | extend l = parse_json(message) | extend to = tostring(l.to) | project to"},
		{Name: "keyword kind", Text: "traces | extend kind = tostring(message) | summarize c = count() by kind"},
		{Name: "keyword last", Text: "traces | summarize last = max(timestamp) | order by last desc"},
		{Name: "unknown column", Text: "traces | where nosuchcolumn == 1"},
		{Name: "placeholder", Text: "traces | where message in ({Unreplaced})"},
		{Name: "bracketed", Text: "traces | extend l = parse_json(message) | extend ['to'] = tostring(l['to']), ['kind'] = tostring(l['kind']) | summarize ['last'] = max(timestamp), n = sum(itemCount) by ['to'], ['kind'] | order by ['last'] desc"},
	}
	res := checkKQL(t, bad, nil)
	want := map[string]string{"keyword to": "KS228", "keyword kind": "KS228", "keyword last": "KS228",
		"unknown column": "KS142", "placeholder": "KS213"}
	for _, r := range res.Results {
		codes := map[string]bool{}
		for _, d := range r.Diagnostics {
			codes[d.Code] = true
		}
		if r.Name == "bracketed" {
			require.Empty(t, r.Diagnostics, "bracketed names parse")
			continue
		}
		require.True(t, codes[want[r.Name]], "%s: want %s, got %v", r.Name, want[r.Name], r.Diagnostics)
	}
}

// Counts are of telemetry items, and sampling keeps one item for several: every count or sum of lines weighs each
// row by itemCount (Microsoft Learn, "Sampling in Application Insights": "use sum(itemCount)"), and host.json keeps
// traces out of sampling so that no status change or ended job is dropped from a list.
func TestDashboardCountsSurviveSampling(t *testing.T) {
	t.Parallel()
	queries, _ := workbookQueries(t, readRepoFile(t, "infra/modules/workbook.json"))
	for _, q := range queries {
		require.NotRegexp(t, regexp.MustCompile(`\bcount\(\)`), q.Text, "%s: count() counts sampled items: sum(itemCount)", q.Name)
	}
	var host struct {
		Logging struct {
			ApplicationInsights struct {
				SamplingSettings struct {
					IsEnabled     *bool  `json:"isEnabled"`
					ExcludedTypes string `json:"excludedTypes"`
				} `json:"samplingSettings"`
			} `json:"applicationInsights"`
		} `json:"logging"`
	}
	require.NoError(t, json.Unmarshal([]byte(readRepoFile(t, "host.json")), &host))
	s := host.Logging.ApplicationInsights.SamplingSettings
	excluded := strings.Split(s.ExcludedTypes, ";")
	require.True(t, (s.IsEnabled != nil && !*s.IsEnabled) || containsFold(excluded, "Trace"),
		"host.json must keep traces out of sampling (excludedTypes holds Trace, or sampling is off)")
}

func containsFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(strings.TrimSpace(v), s) {
			return true
		}
	}
	return false
}
