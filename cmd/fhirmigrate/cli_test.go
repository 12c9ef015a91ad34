package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/migration"
)

// TestMain runs main itself when a test starts this binary as the CLI (runMain), so that exit statuses, stdout
// and stderr are those of the real command.
func TestMain(m *testing.M) {
	if os.Getenv("FHIRMIGRATE_TEST_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// runMain runs the CLI as a process with args and the environment given (none of the caller's FHIRMIGRATE_*).
func runMain(t *testing.T, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append([]string{"FHIRMIGRATE_TEST_MAIN=1", "PATH=" + os.Getenv("PATH")}, env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode(), out.String(), errOut.String()
	}
	require.NoError(t, err)
	return 0, out.String(), errOut.String()
}

// request is one request the fake service received.
type request struct {
	method, path, query, accept, key string
	body                             string
}

// recorder is a fake service that records each request and answers with answer.
func recorder(t *testing.T, answer func(w http.ResponseWriter, r *http.Request)) (*httptest.Server, func() []request) {
	t.Helper()
	var mu sync.Mutex
	var got []request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, request{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("Accept"), r.Header.Get("x-functions-key"), string(body)})
		mu.Unlock()
		answer(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, func() []request {
		mu.Lock()
		defer mu.Unlock()
		return append([]request(nil), got...)
	}
}

// runCLI runs the CLI in this process with a fixed clock and no FHIRMIGRATE_* variables.
func runCLI(t *testing.T, args ...string) (int, string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	now := func() time.Time { return time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC) }
	code, err := runEnv(context.Background(), args, &env{out: &out, errOut: &errOut, now: now, getenv: func(string) string { return "" }})
	return code, out.String(), errOut.String(), err
}

// jsonFields are the JSON names of a request type's fields.
func jsonFields(t *testing.T, typ reflect.Type) []string {
	t.Helper()
	var names []string
	for f := range typ.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		require.NotEmpty(t, name, "%s.%s has no JSON name", typ.Name(), f.Name)
		if name != "-" {
			names = append(names, name)
		}
	}
	return names
}

// Every field of every request body of the API has a flag, and each flag reaches its field in the body, decoded by
// the API's own request type (unknown fields refused): a field added to a request type without a flag fails here.
func TestEveryRequestFieldHasAFlagThatReachesTheBody(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		cmd    string
		typ    reflect.Type
		fields []field
		path   string
	}{
		{"start", reflect.TypeFor[migration.StartRequest](), startFields, "/api/migrations"},
		{"verify", reflect.TypeFor[migration.ReverifyRequest](), verifyFields, "/api/migrations/m-1/verify"},
		{"cutover", reflect.TypeFor[migration.CutoverRequest](), cutoverFields, "/api/migrations/m-1/cutover"},
		{"cleanup", reflect.TypeFor[migration.CleanupRequest](), cleanupFields, "/api/migrations/m-1/cleanup"},
	} {
		t.Run(c.cmd, func(t *testing.T) {
			t.Parallel()
			byJSON := map[string]field{}
			for _, f := range c.fields {
				byJSON[f.json] = f
			}
			names := jsonFields(t, c.typ)
			require.ElementsMatch(t, names, keys(byJSON), "the flags of %s cover exactly the fields of %s", c.cmd, c.typ.Name())

			fs := newFlagSet(c.cmd)
			lookupCommand(c.cmd).setup(fs)
			help := lookupCommand(c.cmd).help()
			args := []string{c.cmd}
			if c.cmd != "start" {
				args = append(args, "m-1")
			}
			want := map[string]any{}
			for _, name := range names {
				f := byJSON[name]
				require.NotNil(t, fs.Lookup(f.flag), "flag --%s of field %s", f.flag, name)
				require.Contains(t, help, "--"+f.flag+" ", "the help of %s lists --%s", c.cmd, f.flag)
				require.Contains(t, help, "["+name+"]", "the help of %s names the field %s", c.cmd, name)
				switch f.kind {
				case kString:
					args = append(args, "--"+f.flag, "v-"+f.flag)
					want[name] = "v-" + f.flag
				case kBool:
					args = append(args, "--"+f.flag)
					want[name] = true
				case kInt:
					args = append(args, "--"+f.flag, "7")
					want[name] = float64(7)
				case kList:
					args = append(args, "--"+f.flag, "A,B", "--"+f.flag, "C")
					want[name] = []any{"A", "B", "C"}
				case kRepeat:
					args = append(args, "--"+f.flag, "A?x=1", "--"+f.flag, "B?y=2&z=3")
					want[name] = []any{"A?x=1", "B?y=2&z=3"}
				}
			}
			srv, got := recorder(t, func(w http.ResponseWriter, _ *http.Request) {
				_, _ = io.WriteString(w, `{"id":"m-1","status":"verifying"}`)
			})
			code, _, _, err := runCLI(t, append([]string{"--url", srv.URL}, args...)...)
			require.NoError(t, err)
			require.Equal(t, 0, code)
			reqs := got()
			require.Len(t, reqs, 1)
			require.Equal(t, c.path, reqs[0].path)
			var body map[string]any
			require.NoError(t, json.Unmarshal([]byte(reqs[0].body), &body))
			require.Equal(t, want, body)
			// The API's own type reads it, every field known and of its type.
			dec := json.NewDecoder(strings.NewReader(reqs[0].body))
			dec.DisallowUnknownFields()
			require.NoError(t, dec.Decode(reflect.New(c.typ).Interface()))
		})
	}
}

func keys(m map[string]field) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// The new start flags and the old names kept as aliases reach the body; a flag left out leaves its field out.
func TestStartFlagsReachTheBody(t *testing.T) {
	t.Parallel()
	srv, got := recorder(t, func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, `{"id":"m-1","status":"planning","request":{"source":"http://s","destination":"http://d"}}`)
	})
	code, _, _, err := runCLI(t, "start", "--url", srv.URL, "--source", "http://s", "--destination", "http://d",
		"--type-filter", "Observation?status=final", "--type-filter", "Observation?code=1234-5", "--window-target", "250000",
		"--verify", "full", "--verify-sample", "100", "--strategy", "per-type", "--types", "Observation")
	require.NoError(t, err)
	require.Equal(t, 0, code)
	require.JSONEq(t, `{"source":"http://s","destination":"http://d","types":["Observation"],
		"typeFilter":["Observation?status=final","Observation?code=1234-5"],"windowTarget":250000,"verify":"full",
		"verifySample":100,"exportStrategy":"per-type"}`, got()[0].body)

	code, _, _, err = runCLI(t, "--url", srv.URL, "verify", "m-1", "--sample", "5")
	require.NoError(t, err)
	require.Equal(t, 0, code)
	require.JSONEq(t, `{"verifySample":5}`, got()[1].body)
}

// planAnswer is a dry run's answer, as the service builds it.
func planAnswer(t *testing.T) []byte {
	t.Helper()
	at := func(s string) *time.Time {
		v, err := time.Parse(time.RFC3339Nano, s)
		require.NoError(t, err)
		return &v
	}
	p := migration.Plan{DryRun: true,
		Request: migration.Request{Source: "http://s", SourceKind: "fhir-service", Destination: "http://d", Types: []string{"Patient", "Observation"},
			ExportStrategy: "per-type", ImportMode: "IncrementalLoad", Container: "m-20261125-120000-abcdef", Verify: "counts", WindowTarget: 100000},
		Jobs: []*migration.Job{
			{ID: "export-Patient", Kind: migration.KindExport, Types: []string{"Patient"}, Till: at("2026-11-25T12:00:00Z"), Planned: 2000, State: migration.JobQueued},
			{ID: "export-Observation-1", Kind: migration.KindExport, Types: []string{"Observation"}, Till: at("2024-06-01T00:00:00Z"), Planned: 90000, State: migration.JobQueued},
			{ID: "export-Observation-2", Kind: migration.KindExport, Types: []string{"Observation"}, Since: at("2024-06-01T00:00:00.0000001Z"), Till: at("2026-11-25T12:00:00Z"), Estimated: true, State: migration.JobQueued},
		}}
	raw, err := json.Marshal(p)
	require.NoError(t, err)
	return raw
}

// A dry run answers 200 with the plan: start prints it readably and exits 0, whether dryRun came from --dry-run
// or from the --body file; flags given with --body are set on top of the file's request.
func TestDryRunPrintsThePlan(t *testing.T) {
	t.Parallel()
	plan := planAnswer(t)
	srv, got := recorder(t, func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(plan) })
	file := filepath.Join(t.TempDir(), "start.json")
	require.NoError(t, os.WriteFile(file, []byte(`{"source":"http://s","destination":"http://d","types":["Patient"],"dryRun":true}`), 0o600))

	want := `dry run: nothing was stored or started. The migration http://s -> http://d would run:
  types: Patient, Observation
  source kind fhir-service, export per-type, import IncrementalLoad, verify counts, windows of at most 100000 resources
3 export window(s), 92000 resources counted (an upper bound); 1 window(s) not counted within the dry run's time: planning counts them when the migration starts
#  WINDOW                TYPES        SINCE                         TILL                  RESOURCES
1  export-Patient        Patient      -                             2026-11-25T12:00:00Z  2000
2  export-Observation-1  Observation  -                             2024-06-01T00:00:00Z  90000
3  export-Observation-2  Observation  2024-06-01T00:00:00.0000001Z  2026-11-25T12:00:00Z  not counted
`
	for _, args := range [][]string{
		{"start", "--source", "http://s", "--destination", "http://d", "--types", "Patient,Observation", "--dry-run"},
		{"start", "--body", file, "--types", "Patient,Observation"},
	} {
		code, out, _, err := runCLI(t, append([]string{"--url", srv.URL}, args...)...)
		require.NoError(t, err, args)
		require.Equal(t, 0, code, args)
		require.Equal(t, want, out, args)
		reqs := got()
		require.JSONEq(t, `{"source":"http://s","destination":"http://d","types":["Patient","Observation"],"dryRun":true}`, reqs[len(reqs)-1].body)
	}

	code, out, _, err := runCLI(t, "--url", srv.URL, "start", "--body", file, "--json")
	require.NoError(t, err)
	require.Equal(t, 0, code)
	require.JSONEq(t, string(plan), out)
}

// start says what the service answered: planning, the id, and the command to follow it; never a count of jobs.
func TestStartPrintsTheMigrationAndTheNextCommand(t *testing.T) {
	t.Parallel()
	srv, _ := recorder(t, func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, `{"id":"m-1","status":"planning","request":{"source":"http://s","destination":"http://d"},"jobs":[]}`)
	})
	code, out, _, err := runCLI(t, "start", "--source", "http://s", "--destination", "http://d", "--url", srv.URL)
	require.NoError(t, err)
	require.Equal(t, 0, code)
	require.Equal(t, "started migration m-1 (http://s -> http://d): planning the export windows\nfollow it: fhirmigrate --url "+srv.URL+" watch m-1\n", out)
	require.NotContains(t, out, "job(s)")

	// With the URL from the environment, the next command needs no --url.
	var buf bytes.Buffer
	code, err = runEnv(context.Background(), []string{"start", "--source", "http://s", "--destination", "http://d"},
		&env{out: &buf, errOut: io.Discard, now: time.Now, getenv: func(k string) string { return map[string]string{envURL: srv.URL}[k] }})
	require.NoError(t, err)
	require.Equal(t, 0, code)
	require.Contains(t, buf.String(), "follow it: fhirmigrate watch m-1\n")
}

// --help, -h, help and help COMMAND print to stdout and exit 0 at every level; the help lists every flag.
func TestHelpExitsZeroAtEveryLevel(t *testing.T) {
	t.Parallel()
	cases := [][]string{{"--help"}, {"-h"}, {"help"}, {"--url", "http://x", "--help"}}
	for _, c := range commands() {
		cases = append(cases, []string{"help", c.name}, []string{c.name, "--help"}, []string{c.name, "-h"},
			[]string{"--key", "k", c.name, "-help"})
		if c.args != "" {
			cases = append(cases, []string{c.name, "m-1", "--help"})
		}
	}
	for _, args := range cases {
		code, out, errOut, err := runCLI(t, args...)
		require.NoError(t, err, args)
		require.Equal(t, 0, code, args)
		require.Contains(t, out, "usage: fhirmigrate", args)
		require.Contains(t, out, "--url URL", args)
		require.Contains(t, out, "FHIRMIGRATE_KEY", args)
		require.Empty(t, errOut, args)
	}
	top := usageText()
	for _, c := range commands() {
		require.Contains(t, top, "  "+c.name, "the help lists %s", c.name)
		if c.name == "help" {
			continue
		}
		fs := newFlagSet(c.name)
		c.setup(fs)
		help := c.help()
		for _, name := range fs.order {
			require.Contains(t, help, "--"+name, "the help of %s lists --%s", c.name, name)
		}
	}
	require.Contains(t, top, "x-functions-key")
	require.Contains(t, top, "az functionapp keys list")

	// The process: stdout, status 0.
	code, out, errOut := runMain(t, nil, "start", "--help")
	require.Equal(t, 0, code)
	require.Contains(t, out, "--window-target N")
	require.Empty(t, errOut)
}

// A command line the CLI cannot run exits 2 with the usage on stderr.
func TestUsageErrorsExitTwo(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		nil, {"launch"}, {"--nope"}, {"start", "--nope"}, {"list", "--top", "x"}, {"watch"}, {"status", "a", "b"},
		{"verify"}, {"verify", "--verify", "ids"}, {"help", "launch"}, {"report", "m-1", "--missing", "--html"},
		{"list", "--status", "done"},
	} {
		code, out, _, err := runCLI(t, args...)
		require.Equal(t, 2, code, args)
		var usage *usageError
		require.ErrorAs(t, err, &usage, args)
		require.Contains(t, err.Error(), "usage: fhirmigrate", args)
		require.Empty(t, out, args)
	}
	code, out, errOut := runMain(t, nil, "start", "--frobnicate")
	require.Equal(t, 2, code)
	require.Empty(t, out)
	require.True(t, strings.HasPrefix(errOut, "fhirmigrate: start: flag provided but not defined: -frobnicate\n"), errOut)
	require.Contains(t, errOut, "usage: fhirmigrate start")
	code, _, errOut = runMain(t, nil, "launch")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "fhirmigrate: unknown command \"launch\"")
	require.Contains(t, errOut, "commands:")
}

// An error the API answers is printed as "fhirmigrate: code: message (field f)" on stderr, with status 1 and
// nothing on stdout; an answer that is not one says its status (and, for 401, where the key goes).
func TestAPIErrorIsPrinted(t *testing.T) {
	t.Parallel()
	srv, got := recorder(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("x-functions-key") == "" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"error":{"code":"invalid_window_target","message":"windowTarget must be 1 or more (default 5000000)","field":"windowTarget"}}`)
	})
	code, out, errOut := runMain(t, []string{"FHIRMIGRATE_URL=" + srv.URL, "FHIRMIGRATE_KEY=secret"},
		"start", "--source", "http://s", "--destination", "http://d", "--window-target", "-1")
	require.Equal(t, 1, code)
	require.Empty(t, out)
	require.Equal(t, "fhirmigrate: invalid_window_target: windowTarget must be 1 or more (default 5000000) (field windowTarget)\n", errOut)
	require.Equal(t, "secret", got()[0].key, "the key from FHIRMIGRATE_KEY is sent as x-functions-key")

	code, out, errOut = runMain(t, []string{"FHIRMIGRATE_URL=" + srv.URL}, "status", "m-1")
	require.Equal(t, 1, code)
	require.Empty(t, out)
	require.Equal(t, "fhirmigrate: HTTP 401 Unauthorized: the Function App wants its function key: --key or FHIRMIGRATE_KEY "+
		"(and, when it signs callers in with Microsoft Entra ID, a token: --audience or FHIRMIGRATE_AUDIENCE)\n", errOut)

	// --key after the command wins over the variable.
	code, _, _ = runMain(t, []string{"FHIRMIGRATE_URL=" + srv.URL, "FHIRMIGRATE_KEY=old"}, "status", "m-1", "--key", "new")
	require.Equal(t, 1, code)
	reqs := got()
	require.Equal(t, "new", reqs[len(reqs)-1].key)
}

// summaries are three migrations of the list, served two pages.
const (
	page1 = `{"migrations":[
  {"id":"m-20261125-101500-3fa2c1","status":"completed","createdAt":"2026-11-25T10:15:00Z","updatedAt":"2026-11-25T10:17:11Z",
   "source":"https://contoso-api.azurehealthcareapis.com","destination":"https://ws-contoso.fhir.azurehealthcareapis.com/",
   "progress":{"exports":{"done":6,"total":6},"imports":{"done":5,"total":5},"copies":{"done":1,"total":1},"resourcesExported":206991,"resourcesImported":206991,"orphanedAttempts":0}},
  {"id":"m-20261125-113000-77aa01","status":"failed","createdAt":"2026-11-25T11:30:00Z","updatedAt":"2026-11-25T11:58:30Z",
   "source":"http://127.0.0.1:8081","destination":"http://127.0.0.1:8082/fhir/with/a/rather/long/path/that/goes/on",
   "progress":{"exports":{"done":1,"total":1},"imports":{"done":0,"total":1},"copies":{"done":0,"total":0},"resourcesExported":12,"resourcesImported":0,"orphanedAttempts":0},
   "error":{"code":"verification_mismatch"}}],
 "continuationToken":"tok/1+"}`
	page2 = `{"migrations":[
  {"id":"m-20261125-115900-0000ff","status":"syncing","createdAt":"2026-11-25T11:59:00Z","updatedAt":"2026-11-25T11:59:58Z",
   "source":"http://127.0.0.1:8081","destination":"http://127.0.0.1:8082",
   "progress":{"exports":{"done":0,"total":0},"imports":{"done":0,"total":0},"copies":{"done":0,"total":0},"resourcesExported":0,"resourcesImported":0,"orphanedAttempts":0}}]}`
)

// list prints an aligned table a page at a time (the next page's command on stderr), every page with --all,
// the raw summaries as a JSON array with --json.
func TestListTableAndJSON(t *testing.T) {
	t.Parallel()
	srv, got := recorder(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("continuationToken") == "tok/1+" {
			_, _ = io.WriteString(w, page2)
			return
		}
		_, _ = io.WriteString(w, page1)
	})
	code, out, errOut, err := runCLI(t, "--url", srv.URL, "list", "--top", "2")
	require.NoError(t, err)
	require.Equal(t, 0, code)
	require.Equal(t, `ID                        STATUS                          SOURCE -> DESTINATION                                       CREATED (UTC)     UPDATED    EXPORTED  IMPORTED
m-20261125-101500-3fa2c1  completed                       contoso-api -> ws-contoso.fhir                              2026-11-25 10:15  1h42m ago    206991    206991
m-20261125-113000-77aa01  failed (verification_mismatch)  127.0.0.1:8081 -> 127.0.0.1:8082/fhi...g/path/that/goes/on  2026-11-25 11:30  1m ago           12         0
`, out)
	require.Equal(t, "more migrations: fhirmigrate --url "+srv.URL+" list --top 2 --continuation-token tok/1+ (or --all)\n", errOut)
	require.Equal(t, "top=2", got()[0].query)

	code, out, errOut, err = runCLI(t, "--url", srv.URL, "list", "--all", "--status", "syncing,failed")
	require.NoError(t, err)
	require.Equal(t, 0, code)
	require.Empty(t, errOut)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	require.Len(t, lines, 3)
	require.Contains(t, lines[1], "m-20261125-113000-77aa01")
	require.Contains(t, lines[2], "m-20261125-115900-0000ff  syncing ")
	require.Contains(t, lines[2], "just now")
	for _, l := range lines[1:] {
		require.Equal(t, strings.Index(lines[0], "CREATED"), strings.Index(l, "2026-11-25 "), "aligned: %q", l)
	}
	reqs := got()
	require.Equal(t, "top=500", reqs[1].query)
	require.Equal(t, "continuationToken=tok%2F1%2B&top=500", reqs[2].query)

	code, out, _, err = runCLI(t, "--url", srv.URL, "list", "--all", "--json")
	require.NoError(t, err)
	require.Equal(t, 0, code)
	var docs []map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &docs))
	require.Len(t, docs, 3)
	require.Equal(t, "m-20261125-115900-0000ff", docs[2]["id"])
	require.Len(t, strings.Split(strings.TrimSpace(out), "\n"), 5, "one summary a line between the brackets")

	srvEmpty, _ := recorder(t, func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, `{"migrations":[]}`) })
	_, out, _, _ = runCLI(t, "--url", srvEmpty.URL, "list")
	require.Equal(t, "no migrations\n", out)
	_, out, _, _ = runCLI(t, "--url", srvEmpty.URL, "list", "--json")
	require.Equal(t, "[]\n", out)
}

// report reaches every part: Markdown, the HTML page to a file, the missing ids, the SearchParameter Bundle; and
// openapi the description. A refused report leaves no file.
func TestReportPartsAndOpenAPI(t *testing.T) {
	t.Parallel()
	srv, got := recorder(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/api/migrations/m-2/report":
			w.WriteHeader(http.StatusConflict)
			_, _ = io.WriteString(w, `{"error":{"code":"report_not_ready","message":"migration m-2 has no verification yet"}}`)
		case r.URL.Path == "/api/migrations/m-1/report" && r.Header.Get("Accept") == "text/html":
			_, _ = io.WriteString(w, "<!doctype html><title>m-1</title>")
		case r.URL.Path == "/api/migrations/m-1/report":
			_, _ = io.WriteString(w, "# Migration m-1\n")
		case r.URL.Path == "/api/migrations/m-1/report/missing":
			_, _ = io.WriteString(w, "Patient/1\nPatient/2\n")
		case r.URL.Path == "/api/migrations/m-1/report/search-parameters":
			_, _ = io.WriteString(w, `{"resourceType":"Bundle","type":"batch"}`)
		case r.URL.Path == "/api/openapi.json":
			_, _ = io.WriteString(w, `{"openapi":"3.1.0"}`)
		default:
			http.NotFound(w, r)
		}
	})
	dir := t.TempDir()
	page := filepath.Join(dir, "m-1.html")
	for _, c := range []struct {
		args []string
		out  string
	}{
		{[]string{"report", "m-1"}, "# Migration m-1\n"},
		{[]string{"report", "--html", "m-1", "--out", page}, ""},
		{[]string{"report", "m-1", "--missing"}, "Patient/1\nPatient/2\n"},
		{[]string{"report", "m-1", "--search-parameters"}, `{"resourceType":"Bundle","type":"batch"}`},
		{[]string{"openapi"}, `{"openapi":"3.1.0"}`},
	} {
		code, out, _, err := runCLI(t, append([]string{"--url", srv.URL}, c.args...)...)
		require.NoError(t, err, c.args)
		require.Equal(t, 0, code, c.args)
		require.Equal(t, c.out, out, c.args)
	}
	html, err := os.ReadFile(page)
	require.NoError(t, err)
	require.Equal(t, "<!doctype html><title>m-1</title>", string(html))
	reqs := got()
	require.Equal(t, "text/markdown", reqs[0].accept)
	require.Equal(t, "text/html", reqs[1].accept)

	refused := filepath.Join(dir, "m-2.md")
	code, _, _, err := runCLI(t, "--url", srv.URL, "report", "m-2", "--out", refused)
	require.Equal(t, 1, code)
	require.EqualError(t, err, "report_not_ready: migration m-2 has no verification yet")
	require.NoFileExists(t, refused)
}

// The actions that answer the migration say what it does now and how to follow it (--json: the answer as it is);
// cleanup says what it deleted (or, dry, would delete).
func TestActionsSayWhatTheMigrationDoes(t *testing.T) {
	t.Parallel()
	doc := `{"id":"m-1","status":"verifying","request":{"source":"http://s","destination":"http://d"}}`
	srv, got := recorder(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/cleanup"):
			_, _ = io.WriteString(w, `{"dryRun":true,"container":"m-1","blobs":[{"name":"m-1/export-system/Patient-1.ndjson","size":1200}],"bytes":1200}`)
		case r.Method == http.MethodDelete:
			_, _ = io.WriteString(w, `{"id":"m-1","status":"canceled"}`)
		default:
			w.WriteHeader(http.StatusAccepted)
			_, _ = io.WriteString(w, doc)
		}
	})
	for _, c := range []struct {
		args []string
		out  string
	}{
		{[]string{"verify", "m-1", "--verify", "ids"}, "migration m-1: verifying again (status verifying)\nfollow it: fhirmigrate watch m-1\n"},
		{[]string{"repair", "m-1"}, "migration m-1: repairing, then verifying again (status verifying)\nfollow it: fhirmigrate watch m-1\n"},
		{[]string{"cutover", "m-1"}, "migration m-1: cutover requested: one final round, then verification (status verifying)\nfollow it: fhirmigrate watch m-1\n"},
		{[]string{"cancel", "m-1"}, "migration m-1: canceled (status canceled)\n"},
		{[]string{"verify", "m-1", "--json"}, doc + "\n"},
		{[]string{"cleanup", "m-1", "--dry-run", "--error-files"}, "dry run: cleanup would delete 1 staged file(s) and 0 import error file(s), 1200 bytes, of container m-1\n        1200  m-1/export-system/Patient-1.ndjson\n"},
	} {
		var out, errOut bytes.Buffer
		code, err := runEnv(context.Background(), append([]string{"--url", srv.URL}, c.args...), &env{out: &out, errOut: &errOut, now: time.Now,
			getenv: func(k string) string { return map[string]string{envURL: srv.URL}[k] }})
		require.NoError(t, err, c.args)
		require.Equal(t, 0, code, c.args)
		require.Equal(t, strings.ReplaceAll(c.out, "fhirmigrate watch", "fhirmigrate --url "+srv.URL+" watch"), out.String(), c.args)
	}
	reqs := got()
	require.Equal(t, []string{"POST /api/migrations/m-1/verify", "POST /api/migrations/m-1/repair", "POST /api/migrations/m-1/cutover",
		"DELETE /api/migrations/m-1", "POST /api/migrations/m-1/verify", "POST /api/migrations/m-1/cleanup"},
		func() (s []string) {
			for _, r := range reqs {
				s = append(s, r.method+" "+r.path)
			}
			return s
		}())
	require.Empty(t, reqs[2].body, "a cutover without --accept sends no body")
	require.JSONEq(t, `{"dryRun":true,"force":false,"errorFiles":true}`, reqs[5].body)
}
