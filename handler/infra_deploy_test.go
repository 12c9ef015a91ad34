package main

// The deployment fixes a first real run needs (README "Deploy to Azure"), pinned against the Bicep text and the
// function folders, since no Bicep compiler or Azure is reachable here.

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/robfig/cron/v3"
	"github.com/stretchr/testify/require"
)

// Two environments deploying at once must not overwrite each other's deployment records: every module deployment
// name carries the environment's token (main.bicep) or the suffix main.bicep passes down (nested modules).
func TestModuleDeploymentNamesCarryTheEnvironmentToken(t *testing.T) {
	t.Parallel()
	decl := regexp.MustCompile(`(?m)^module (\w+) '[^']+' = [^\n{]*\{`)
	nameLine := regexp.MustCompile(`(?m)^  name: (.+)$`)
	modules := 0
	for file, src := range bicepFiles(t) {
		for _, m := range decl.FindAllStringSubmatchIndex(src, -1) {
			modules++
			symbol := src[m[2]:m[3]]
			name := nameLine.FindStringSubmatch(block(t, src, m[1]-1))
			require.NotNil(t, name, "%s: module %s has no name", file, symbol)
			want := "${resourceToken}"
			if file != "infra/main.bicep" {
				want = "${deploymentSuffix}"
				require.Contains(t, src, "param deploymentSuffix string", file)
			}
			require.Contains(t, name[1], want, "%s: module %s: deployment name %s", file, symbol, name[1])
		}
	}
	require.GreaterOrEqual(t, modules, 10)
	main := bicepFiles(t)["infra/main.bicep"]
	require.Contains(t, main, "deploymentSuffix: resourceToken", "main.bicep passes its token to storage-wiring")
}

// Elastic Premium: the content share exists before the site, and the site is created with its two settings (a
// later sites/config step alone leaves the share uncreated and the host unable to start). The later full set
// carries them too, since it replaces every setting.
func TestElasticPremiumContentShareIsThereAtCreation(t *testing.T) {
	t.Parallel()
	var share, site, settings *bicepResource
	for _, r := range resources(t) {
		if r.file != "infra/modules/function-app.bicep" {
			continue
		}
		switch r.typ {
		case "Microsoft.Storage/storageAccounts/fileServices/shares":
			share = &r
		case "Microsoft.Web/sites":
			site = &r
		case "Microsoft.Web/sites/config":
			settings = &r
		}
	}
	require.NotNil(t, share, "function-app.bicep creates the content share")
	require.NotNil(t, site)
	require.NotNil(t, settings)
	src := bicepFiles(t)["infra/modules/function-app.bicep"]
	require.Regexp(t, `resource contentShare '[^']+' = if \(!isFlex\) \{`, src, "the share is Elastic Premium's only")
	require.Contains(t, share.body, "name: contentShareName")
	premium := namedObject(t, src, "premiumSettings")
	require.Equal(t, "contentShareName", premium["WEBSITE_CONTENTSHARE"], "the setting names the share created")
	require.Equal(t, "contentConnection", premium["WEBSITE_CONTENTAZUREFILECONNECTIONSTRING"])

	require.Regexp(t, `(?s)dependsOn: \[\s*contentShare\s*\]`, site.body, "the site waits for its share")
	i := strings.Index(site.body, "appSettings: isFlex ? [] : [")
	require.NotEqual(t, -1, i, "the site is created with the Elastic Premium settings")
	atCreation := block(t, site.body, i+len("appSettings: isFlex ? [] : "))
	for name, value := range map[string]string{
		"WEBSITE_CONTENTSHARE":                     "contentShareName",
		"WEBSITE_CONTENTAZUREFILECONNECTIONSTRING": "contentConnection",
		"FUNCTIONS_EXTENSION_VERSION":              "'~4'",
		"FUNCTIONS_WORKER_RUNTIME":                 "'custom'",
	} {
		require.Regexp(t, `name: '`+name+`'\s+value: `+regexp.QuoteMeta(value), atCreation, name)
		require.Equal(t, value, premium[name], "%s: the same value at creation and in the full set", name)
	}
	require.Contains(t, settings.body, "properties: union(appSettings, premiumSettings)", "the full set keeps them")
}

// A timer firing more than once a minute runs without schedule monitoring (the host's own default for such
// schedules): monitoring would write a status blob on every tick for nothing, since a missed sweep is made up by
// the next one.
func TestPollTimerIsNotMonitoredAtItsSchedules(t *testing.T) {
	t.Parallel()
	var fn struct {
		Bindings []struct {
			Type       string `json:"type"`
			Schedule   string `json:"schedule"`
			UseMonitor *bool  `json:"useMonitor"`
		} `json:"bindings"`
	}
	require.NoError(t, json.Unmarshal([]byte(readRepoFile(t, "PollJob/function.json")), &fn))
	require.Len(t, fn.Bindings, 1)
	b := fn.Bindings[0]
	require.Equal(t, "timerTrigger", b.Type)
	require.Equal(t, "%PollSchedule%", b.Schedule)
	require.NotNil(t, b.UseMonitor, "useMonitor is set explicitly")

	schedules := map[string]string{}
	m := regexp.MustCompile(`(?m)^param pollSchedule string = '([^']+)'$`).FindStringSubmatch(bicepFiles(t)["infra/main.bicep"])
	require.NotNil(t, m)
	schedules["infra/main.bicep"] = m[1]
	var local struct{ Values map[string]string }
	require.NoError(t, json.Unmarshal([]byte(readRepoFile(t, "local.settings.json.example")), &local))
	schedules["local.settings.json.example"] = local.Values["PollSchedule"]
	parser := cron.NewParser(cron.Second | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow)
	for where, text := range schedules {
		s, err := parser.Parse(text)
		require.NoError(t, err, where)
		from := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		first := s.Next(from)
		require.Less(t, s.Next(first).Sub(first), time.Minute, "%s: %q fires more than once a minute", where, text)
	}
	require.False(t, *b.UseMonitor, "schedules firing more than once a minute run unmonitored")
}

// The dashboard is deployed on the Application Insights component, and its queries read only what the engine
// logged in real test migrations (internal/migration/testdata/change-lines.json): its change lines, the fields
// seen on them, and the values seen of those fields.
func TestDashboardQueriesReadOnlyWhatTheHandlerLogs(t *testing.T) {
	t.Parallel()
	files := bicepFiles(t)
	require.Regexp(t, `(?m)^module dashboard 'modules/dashboard\.bicep' = \{`, files["infra/main.bicep"])
	require.Contains(t, files["infra/main.bicep"], "applicationInsightsId: monitoring.outputs.applicationInsightsId")
	dash := files["infra/modules/dashboard.bicep"]
	for _, want := range []string{"'Microsoft.Insights/workbooks@", "kind: 'shared'", "category: 'workbook'",
		"sourceId: applicationInsightsId", "serializedData: loadTextContent('workbook.json')", "name: guid("} {
		require.Contains(t, dash, want)
	}
	require.Contains(t, files["infra/main.bicep"], "LogFormat: 'json'", "the dashboard parses JSON lines")

	var wb struct {
		Version string `json:"version"`
		Items   []struct {
			Type    int             `json:"type"`
			Name    string          `json:"name"`
			Content json.RawMessage `json:"content"`
		} `json:"items"`
	}
	require.NoError(t, json.Unmarshal([]byte(readRepoFile(t, "infra/modules/workbook.json")), &wb))
	require.Equal(t, "Notebook/1.0", wb.Version)

	// What the engine's change lines carried in real test migrations (completed, failed, synced, canceled), captured
	// by internal/migration's TestChangeLinesAreTheCapturedOnes: per message, the fields seen and the values seen of
	// to, state and kind.
	var captured struct {
		Lines map[string]struct {
			Fields []string
			Values map[string][]string
		}
	}
	require.NoError(t, json.Unmarshal([]byte(readRepoFile(t, "internal/migration/testdata/change-lines.json")), &captured))
	require.NotEmpty(t, captured.Lines)
	// And the handler's audit lines, captured by TestEveryStateChangeIsAudited.
	var audit struct {
		Lines map[string]struct {
			Fields []string
			Values map[string][]string
		}
	}
	require.NoError(t, json.Unmarshal([]byte(readRepoFile(t, "handler/testdata/audit-lines.json")), &audit))
	require.Contains(t, audit.Lines, "audit")
	captured.Lines["audit"] = audit.Lines["audit"]
	var everyLine []string // the fields seen on every captured line
	for msg, l := range captured.Lines {
		for _, f := range []string{"time", "level", "msg", "migration"} {
			require.Contains(t, l.Fields, f, "%q: every change line carries %s", msg, f)
		}
		if everyLine == nil {
			everyLine = l.Fields
		}
		everyLine = slices.DeleteFunc(slices.Clone(everyLine), func(f string) bool { return !slices.Contains(l.Fields, f) })
	}
	msgLiteral := regexp.MustCompile(`msg == "([^"]*)"`)
	// A field is read as l.name, or l['name'] when its name is a KQL keyword (to, kind).
	fieldRef := regexp.MustCompile(`\bl(?:\.(\w+)|\['(\w+)'\])`)
	compared := regexp.MustCompile(`tostring\(l(?:\.(\w+)|\['(\w+)'\])\) == "([^"]*)"`)
	inList := regexp.MustCompile(`\['(\w+)'\] in \(([^)]*)\)`)
	queries := 0
	for _, it := range wb.Items {
		if it.Type != 3 {
			continue
		}
		queries++
		var c struct {
			Query, ResourceType      string
			TimeContextFromParameter string
		}
		require.NoError(t, json.Unmarshal(it.Content, &c))
		require.Equal(t, "microsoft.insights/components", c.ResourceType, it.Name)
		require.Equal(t, "TimeRange", c.TimeContextFromParameter, it.Name)
		require.Contains(t, c.Query, "migration in ({Migration})", "%s: filtered by the migrations picked", it.Name)
		// A query reads the fields, and compares the values, seen on the lines of the messages it picks.
		allowed := map[string]bool{}
		values := map[string][]string{}
		msgs := msgLiteral.FindAllStringSubmatch(c.Query, -1)
		require.NotEmpty(t, msgs, it.Name)
		for _, m := range msgs {
			l, ok := captured.Lines[m[1]]
			require.True(t, ok, "%s: %q is not a line the engine wrote in the test migrations", it.Name, m[1])
			for _, name := range l.Fields {
				allowed[name] = true
			}
			for name, vs := range l.Values {
				values[name] = append(values[name], vs...)
			}
		}
		fieldsRead := 0
		for _, m := range fieldRef.FindAllStringSubmatch(c.Query, -1) {
			name := m[1] + m[2]
			fieldsRead++
			require.True(t, allowed[name], "%s: l.%s is on none of the captured lines it reads", it.Name, name)
		}
		require.NotZero(t, fieldsRead, it.Name)
		for _, m := range compared.FindAllStringSubmatch(c.Query, -1) {
			name := m[1] + m[2]
			require.Contains(t, values[name], m[3], "%s: %s was never %q on the captured lines", it.Name, name, m[3])
		}
		for _, m := range inList.FindAllStringSubmatch(c.Query, -1) {
			for _, v := range regexp.MustCompile(`"([^"]*)"`).FindAllStringSubmatch(m[2], -1) {
				require.Contains(t, values[m[1]], v[1], "%s: %s was never %q on the captured lines", it.Name, m[1], v[1])
			}
		}
	}
	// The migrations picker reads lines of any message: only what every captured change line carries.
	all, _ := workbookQueries(t, readRepoFile(t, "infra/modules/workbook.json"))
	pickers := 0
	for _, q := range all {
		if !strings.HasPrefix(q.Name, "parameter ") {
			continue
		}
		pickers++
		for _, m := range fieldRef.FindAllStringSubmatch(q.Text, -1) {
			require.Contains(t, everyLine, m[1]+m[2], "%s: l.%s is not on every captured change line", q.Name, m[1]+m[2])
		}
	}
	require.NotZero(t, pickers, "the migrations picker")
	require.GreaterOrEqual(t, queries, 4, "status, resources per hour, jobs, failures")
}
