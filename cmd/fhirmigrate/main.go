// Command fhirmigrate is the operator's client of the migration service's HTTP API: start a migration (or plan one
// with a dry run), watch it to the end, list, show, verify, repair, cut over, clean up or cancel migrations, and
// read their reports. It speaks only the public HTTP API, so it works the same against the local stack and a
// Function App in Azure (pass the function key there: --key or FHIRMIGRATE_KEY). `fhirmigrate help` lists it all.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"golang.org/x/term"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code, err := run(ctx, os.Args[1:], os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fhirmigrate:", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// Connection defaults and the variables that override them.
const (
	defaultURL = "http://127.0.0.1:7071"
	envURL     = "FHIRMIGRATE_URL"
	envKey     = "FHIRMIGRATE_KEY"
)

// env is what a run reads and writes besides its arguments.
type env struct {
	out, errOut io.Writer
	// now is the clock: watch reads the time from it (a test replays a recording at its own times).
	now    func() time.Time
	getenv func(string) string
	// credential makes the sign-in's credential (nil: newCredential, azidentity's; a test gives a fake).
	credential func(signIn) (azcore.TokenCredential, error)
}

// run executes one command and returns the process exit code.
func run(ctx context.Context, args []string, out io.Writer) (int, error) {
	return runAt(ctx, args, out, time.Now)
}

// runAt is run with a clock.
func runAt(ctx context.Context, args []string, out io.Writer, now func() time.Time) (int, error) {
	return runEnv(ctx, args, &env{out: out, errOut: os.Stderr, now: now, getenv: os.Getenv})
}

// conn are the connection options.
type conn struct {
	url, key                   *string
	interval                   *time.Duration
	audience, tenant, clientID *string
	deviceCode                 *bool
}

// connFlags defines the connection options on fs with their defaults d: the environment's for the options before
// the command, those options' values for the command's own.
func connFlags(fs *flagSet, d conn) conn {
	return conn{
		url:        fs.String("url", *d.url, "the Function App's base URL"),
		key:        fs.String("key", *d.key, "the function key (x-functions-key)"),
		interval:   fs.Duration("interval", *d.interval, "poll interval of watch"),
		audience:   fs.String("audience", *d.audience, "sign in with Microsoft Entra ID for this app scope (api://<client-id>/.default)"),
		tenant:     fs.String("tenant", *d.tenant, "the Microsoft Entra tenant to sign in to"),
		clientID:   fs.String("client-id", *d.clientID, "the public client application a device code sign-in uses"),
		deviceCode: fs.Bool("device-code", *d.deviceCode, "sign in with a device code instead of the Azure CLI's sign-in"),
	}
}

// envConn are the connection options' defaults from the environment.
func envConn(getenv func(string) string) conn {
	url, key, audience, tenant, clientID := envOr(getenv, envURL, defaultURL), getenv(envKey), getenv(envAudience), getenv(envTenant), getenv(envClientID)
	interval := time.Second
	device := false
	switch strings.ToLower(strings.TrimSpace(getenv(envDeviceCode))) {
	case "1", "true", "yes":
		device = true
	}
	return conn{url: &url, key: &key, interval: &interval, audience: &audience, tenant: &tenant, clientID: &clientID, deviceCode: &device}
}

// runEnv parses the command line and runs its command. Help (fhirmigrate --help, help [COMMAND], COMMAND --help)
// goes to stdout with status 0; a command line it cannot run returns status 2 and a usageError.
func runEnv(ctx context.Context, args []string, e *env) (int, error) {
	global := newFlagSet("fhirmigrate")
	globalConn := connFlags(global, envConn(e.getenv))
	if err := global.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			_, _ = io.WriteString(e.out, usageText())
			return 0, nil
		}
		return 2, &usageError{err.Error(), usageText()}
	}
	if global.NArg() == 0 {
		return 2, &usageError{"no command", usageText()}
	}
	name, rest := global.Arg(0), global.Args()[1:]
	if name == "help" {
		if len(rest) == 0 || (len(rest) == 1 && isHelpFlag(rest[0])) {
			_, _ = io.WriteString(e.out, usageText())
			return 0, nil
		}
		c := lookupCommand(rest[0])
		if c == nil || len(rest) > 1 {
			return 2, &usageError{fmt.Sprintf("help: unknown command %q", strings.Join(rest, " ")), usageText()}
		}
		_, _ = io.WriteString(e.out, c.help())
		return 0, nil
	}
	cmd := lookupCommand(name)
	if cmd == nil {
		return 2, &usageError{fmt.Sprintf("unknown command %q", name), usageText()}
	}
	fs := newFlagSet(name)
	cc := connFlags(fs, globalConn)
	runCmd := cmd.setup(fs)
	pos, err := fs.parse(rest)
	switch {
	case errors.Is(err, flag.ErrHelp):
		_, _ = io.WriteString(e.out, cmd.help())
		return 0, nil
	case err != nil:
		return 2, &usageError{name + ": " + err.Error(), cmd.help()}
	}
	want := len(strings.Fields(cmd.args))
	switch {
	case len(pos) < want:
		return 2, &usageError{fmt.Sprintf("%s: missing %s", name, cmd.args), cmd.help()}
	case len(pos) > want:
		return 2, &usageError{fmt.Sprintf("%s: unexpected argument %q", name, pos[want]), cmd.help()}
	}
	prog := "fhirmigrate"
	if global.set("url") || fs.set("url") {
		prog += " --url " + *cc.url
	}
	c := &client{base: strings.TrimSuffix(*cc.url, "/"), key: *cc.key, http: &http.Client{Timeout: 60 * time.Second}, now: e.now}
	if scope := scopeOf(*cc.audience); scope != "" {
		newCred := e.credential
		if newCred == nil {
			newCred = newCredential
		}
		cred, err := newCred(signIn{scope: scope, deviceCode: *cc.deviceCode, tenant: *cc.tenant, clientID: *cc.clientID, prompt: e.errOut})
		if err != nil {
			return 1, fmt.Errorf("sign in: %w", err)
		}
		c.token = &tokenSource{cred: cred, scope: scope}
	} else if *cc.deviceCode {
		return 2, &usageError{name + ": --device-code signs in for an app: give its scope too (--audience or " + envAudience + ")", cmd.help()}
	}
	return runCmd(ctx, &invocation{env: e, c: c, args: pos, interval: *cc.interval, prog: prog})
}

func isHelpFlag(arg string) bool {
	switch arg {
	case "-h", "--h", "-help", "--help":
		return true
	}
	return false
}

// migrationPath is the API path of one migration; the id is one path segment whatever it holds.
func migrationPath(id string) string { return "/api/migrations/" + url.PathEscape(id) }

func envOr(getenv func(string) string, name, def string) string {
	if v := getenv(name); v != "" {
		return v
	}
	return def
}

// writeRaw writes an answer as it came, ending with a newline.
func writeRaw(out io.Writer, raw []byte) {
	_, _ = out.Write(raw)
	if len(raw) > 0 && raw[len(raw)-1] != '\n' {
		_, _ = io.WriteString(out, "\n")
	}
}

type client struct {
	base string
	key  string
	// token, when the CLI signs in (--audience), gives the bearer token of every request.
	token *tokenSource
	http  *http.Client
	now   func() time.Time
}

// do sends a request and reads its answer, whatever its status.
func (c *client) do(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
	resp, err := c.open(ctx, c.http, method, path, body, "")
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	return resp.StatusCode, raw, nil
}

// send sends a request and returns a 2xx answer's body; any other answer is an *apiError.
func (c *client) send(ctx context.Context, method, path string, body []byte) ([]byte, int, error) {
	status, raw, err := c.do(ctx, method, path, body)
	if err != nil {
		return nil, 0, err
	}
	if status/100 != 2 {
		return nil, status, newAPIError(status, raw)
	}
	return raw, status, nil
}

// downloadTimeout bounds a streamed answer, which may be long (every missing id of a large migration).
const downloadTimeout = 30 * time.Minute

// stream sends a GET and copies a 2xx answer's body to out as it arrives.
func (c *client) stream(ctx context.Context, path, accept string, out io.Writer) error {
	h := *c.http
	h.Timeout = downloadTimeout
	resp, err := c.open(ctx, &h, http.MethodGet, path, nil, accept)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return newAPIError(resp.StatusCode, raw)
	}
	if _, err := io.Copy(out, resp.Body); err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	return nil
}

func (c *client) open(ctx context.Context, h *http.Client, method, path string, body []byte, accept string) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	if c.key != "" {
		req.Header.Set("x-functions-key", c.key)
	}
	if c.token != nil {
		tok, err := c.token.token(ctx)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := h.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the method and URL are said below, once
		}
		return nil, fmt.Errorf("%s %s%s: %w (is the service running there? --url or %s)", method, c.base, path, err, envURL)
	}
	return resp, nil
}

// apiError is an answer other than 2xx: the API's error {code, message, field}, or the status and body of an
// answer that is not one (a gateway's, or the host's 401 without a function key).
type apiError struct {
	Status               int
	Code, Message, Field string
	Body                 string
}

func newAPIError(status int, raw []byte) *apiError {
	var e struct {
		Error struct{ Code, Message, Field string } `json:"error"`
	}
	if json.Unmarshal(raw, &e) == nil && e.Error.Code != "" {
		return &apiError{Status: status, Code: e.Error.Code, Message: e.Error.Message, Field: e.Error.Field}
	}
	return &apiError{Status: status, Body: excerpt(raw)}
}

// Error is "code: message (field f)", the way the CLI prints every refusal.
func (e *apiError) Error() string {
	if e.Code != "" {
		s := e.Code + ": " + e.Message
		if e.Field != "" {
			s += " (field " + e.Field + ")"
		}
		return s
	}
	s := fmt.Sprintf("HTTP %d %s", e.Status, http.StatusText(e.Status))
	if e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden {
		s += ": the Function App wants its function key: --key or " + envKey +
			" (and, when it signs callers in with Microsoft Entra ID, a token: --audience or " + envAudience + ")"
	}
	if e.Body != "" {
		s += ": " + e.Body
	}
	return s
}

func excerpt(raw []byte) string {
	s := strings.TrimSpace(string(raw))
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

// runWatch is the watch command.
func runWatch(ctx context.Context, inv *invocation) (int, error) {
	return watch(ctx, inv.c, inv.args[0], inv.out, inv.interval)
}

// watch shows the migration until it ends, then its report: on a terminal a progress bar per phase with its rate
// and expected end, redrawn in place; elsewhere a line whenever the progress changes.
func watch(ctx context.Context, c *client, id string, out io.Writer, interval time.Duration) (int, error) {
	start := c.now()
	last := ""
	bars := isTerminal(out)
	drawn := 0
	for {
		raw, _, err := c.send(ctx, http.MethodGet, migrationPath(id), nil)
		if ctx.Err() != nil {
			return 130, ctx.Err()
		}
		if err != nil {
			return 1, err
		}
		var m migrationDoc
		if err := json.Unmarshal(raw, &m); err != nil {
			return 1, fmt.Errorf("get %s: unreadable document: %w", id, err)
		}
		now := c.now()
		if bars {
			drawn = redraw(out, drawn, m.progressBars(now, now.Sub(start)))
		} else if line := m.progressLine(); line != last {
			fmt.Fprintf(out, "[%4.0fs] %s\n", now.Sub(start).Seconds(), line)
			last = line
		}
		if m.terminal() {
			m.report(out)
			if m.Status == "completed" {
				return 0, nil
			}
			return 1, fmt.Errorf("migration %s ended %s", id, m.Status)
		}
		select {
		case <-ctx.Done():
			return 130, ctx.Err()
		case <-time.After(interval):
		}
	}
}

// migrationDoc holds the contract fields of a migration document that the CLI shows.
type migrationDoc struct {
	ID      string `json:"id"`
	Status  string `json:"status"`
	Request struct {
		Source      string `json:"source"`
		Destination string `json:"destination"`
	} `json:"request"`
	Jobs []struct {
		ID     string           `json:"id"`
		Kind   string           `json:"kind"`
		State  string           `json:"state"`
		Counts map[string]int64 `json:"counts"`
		// Round numbers a sync delta's jobs (0: the full copy).
		Round     int        `json:"round"`
		StartedAt *time.Time `json:"startedAt"`
	} `json:"jobs"`
	Planning *struct {
		Counts    int               `json:"counts"`
		Pending   []json.RawMessage `json:"pending"`
		Failures  int               `json:"failures"`
		LastError string            `json:"lastError"`
	} `json:"planning"`
	Sync *struct {
		LagSeconds float64 `json:"lagSeconds"`
		Rounds     int     `json:"rounds"`
		Round      *struct {
			N     int  `json:"n"`
			Final bool `json:"final"`
		} `json:"round"`
		LastError          string  `json:"lastError"`
		CutoverRequestedAt *string `json:"cutoverRequestedAt"`
	} `json:"sync"`
	Cutover *struct {
		At         string  `json:"at"`
		LagSeconds float64 `json:"lagSeconds"`
	} `json:"cutover"`
	Progress *struct {
		Exports           struct{ Done, Total int } `json:"exports"`
		Imports           struct{ Done, Total int } `json:"imports"`
		Copies            struct{ Done, Total int } `json:"copies"`
		ResourcesExported int64                     `json:"resourcesExported"`
		ResourcesImported int64                     `json:"resourcesImported"`
		Estimate          *struct {
			Expected   int64      `json:"expected"`
			Exported   int64      `json:"exported"`
			Imported   int64      `json:"imported"`
			ExportRate float64    `json:"exportRate"`
			ImportRate float64    `json:"importRate"`
			ExportEnd  *time.Time `json:"exportEnd"`
			ImportEnd  *time.Time `json:"importEnd"`
			Basis      string     `json:"basis"`
		} `json:"estimate"`
	} `json:"progress"`
	Verification *struct {
		Rows []struct {
			Type              string `json:"type"`
			Source            int64  `json:"source"`
			Exported          int64  `json:"exported"`
			Imported          int64  `json:"imported"`
			ImportErrors      int64  `json:"importErrors"`
			DestinationBefore int64  `json:"destinationBefore"`
			BaselineMissing   bool   `json:"baselineMissing"`
			Destination       int64  `json:"destination"`
			Lines             int64  `json:"lines"`
			Checked           int64  `json:"checked"`
			Missing           int64  `json:"missing"`
			Different         int64  `json:"different"`
			Explanation       string `json:"explanation"`
			Reason            string `json:"reason"`
			NotCopied         bool   `json:"notCopied"`
			Match             bool   `json:"match"`
		} `json:"rows"`
		Mode    string   `json:"mode"`
		Skipped bool     `json:"skipped"`
		Missing []string `json:"missing"`
	} `json:"verification"`
	Notes   []string `json:"notes"`
	Cleanup *struct {
		State     string `json:"state"`
		Container string `json:"container"`
		Blobs     int    `json:"blobs"`
		Bytes     int64  `json:"bytes"`
		Error     string `json:"error"`
	} `json:"cleanup"`
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func (m *migrationDoc) Source() string      { return m.Request.Source }
func (m *migrationDoc) Destination() string { return m.Request.Destination }

func (m *migrationDoc) terminal() bool {
	return m.Status == "completed" || m.Status == "failed" || m.Status == "canceled"
}

func (m *migrationDoc) jobsOf(kind string) []int {
	var idx []int
	for i, j := range m.Jobs {
		if j.Kind == kind {
			idx = append(idx, i)
		}
	}
	return idx
}

func (m *migrationDoc) progressLine() string {
	parts := []string{fmt.Sprintf("%-10s", m.Status)}
	for _, kind := range []struct{ name, plural string }{{"export", "exports"}, {"import", "imports"}, {"copy", "copies"}} {
		idx := m.jobsOf(kind.name)
		if len(idx) == 0 {
			continue
		}
		done, running := 0, 0
		var resources int64
		for _, i := range idx {
			switch m.Jobs[i].State {
			case "done":
				done++
			case "starting", "running":
				running++
			}
			for _, n := range m.Jobs[i].Counts {
				resources += n
			}
		}
		parts = append(parts, fmt.Sprintf("%s %d/%d done (%d running, %d resources)", kind.plural, done, len(idx), running, resources))
	}
	if line := m.syncLine(); line != "" {
		parts = append(parts, line)
	}
	return strings.Join(parts, "  ")
}

// syncLine is the sync's rounds and lag, and the cutover once done; "" without a sync.
func (m *migrationDoc) syncLine() string {
	var parts []string
	if s := m.Sync; s != nil {
		line := fmt.Sprintf("sync: %d rounds, lag %s", s.Rounds, lag(s.LagSeconds))
		switch {
		case s.Round != nil && s.Round.Final:
			line += fmt.Sprintf(", final round %d running", s.Round.N)
		case s.Round != nil:
			line += fmt.Sprintf(", round %d running", s.Round.N)
		}
		if s.CutoverRequestedAt != nil && m.Cutover == nil {
			line += ", cutover requested"
		}
		if s.LastError != "" {
			line += ", last error: " + s.LastError
		}
		parts = append(parts, line)
	}
	if m.Cutover != nil {
		parts = append(parts, fmt.Sprintf("cut over at %s (lag %s)", m.Cutover.At, lag(m.Cutover.LagSeconds)))
	}
	return strings.Join(parts, "  ")
}

// lag writes a sync's lag coarsely, so that a watch prints a new line when it moves, not every second.
func lag(seconds float64) string {
	d := time.Duration(seconds) * time.Second
	switch {
	case d < time.Minute:
		return (d / (5 * time.Second) * (5 * time.Second)).String()
	case d < time.Hour:
		return (d / time.Minute * time.Minute).String()
	default:
		return d.Round(time.Minute).String()
	}
}

func (m *migrationDoc) report(out io.Writer) {
	fmt.Fprintf(out, "\nmigration %s: %s\n", m.ID, m.Status)
	if m.Error != nil {
		fmt.Fprintf(out, "error: %s: %s\n", m.Error.Code, m.Error.Message)
	}
	if v := m.Verification; v != nil {
		if v.Skipped {
			fmt.Fprintln(out, "verification: skipped (verify: none)")
		} else {
			rows := v.Rows
			sort.Slice(rows, func(i, j int) bool { return rows[i].Type < rows[j].Type })
			checked := v.Mode == "ids" || v.Mode == "full"
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
			head := "type\tsource\texported\timported\timport errors\tbefore\tdestination\t"
			if checked {
				head += "lines\tids checked\tmissing\t"
				if v.Mode == "full" {
					head += "different\t"
				}
			}
			fmt.Fprintln(tw, head+"result\t")
			var src, exp, dst int64
			for _, r := range rows {
				before := strconv.FormatInt(r.DestinationBefore, 10)
				if r.BaselineMissing {
					before = "unknown"
				}
				line := fmt.Sprintf("%s\t%d\t%d\t%d\t%d\t%s\t%d\t", r.Type, r.Source, r.Exported, r.Imported, r.ImportErrors, before, r.Destination)
				if checked {
					line += fmt.Sprintf("%d\t%d\t%d\t", r.Lines, r.Checked, r.Missing)
					if v.Mode == "full" {
						line += fmt.Sprintf("%d\t", r.Different)
					}
				}
				result := "ok"
				switch {
				case r.Reason != "":
					result = r.Reason
				case r.NotCopied:
					result = "not copied"
				case !r.Match:
					result = "mismatch"
				}
				fmt.Fprintln(tw, line+result+"\t")
				src += r.Source
				exp += r.Exported
				dst += r.Destination
			}
			fmt.Fprintf(tw, "total\t%d\t%d\t\t\t\t%d\t\n", src, exp, dst)
			_ = tw.Flush()
			for _, r := range rows {
				if r.Explanation != "" {
					fmt.Fprintf(out, "%s: %s\n", r.Type, r.Explanation)
				}
			}
			if len(v.Missing) > 0 {
				fmt.Fprintf(out, "missing ids, first of them (`fhirmigrate report %s --missing` lists all): %s\n", m.ID, strings.Join(v.Missing[:min(len(v.Missing), 10)], ", "))
			}
		}
	}
	if c := m.Cleanup; c != nil {
		fmt.Fprintf(out, "cleanup: %s, %d staged file(s), %d bytes in container %s", c.State, c.Blobs, c.Bytes, c.Container)
		if c.Error != "" {
			fmt.Fprintf(out, ": %s", c.Error)
		}
		fmt.Fprintln(out)
	}
	for _, n := range m.Notes {
		fmt.Fprintln(out, "note:", n)
	}
}

// isTerminal reports whether out is a terminal (bars are drawn there, plain lines elsewhere).
func isTerminal(out io.Writer) bool {
	f, ok := out.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// redraw replaces the previous frame (drawn lines) with lines and returns how many it drew. Lines are cut to the
// terminal's width, so that none wraps and the next frame starts where this one did.
func redraw(out io.Writer, drawn int, lines []string) int {
	width := 0
	if f, ok := out.(*os.File); ok {
		if w, _, err := term.GetSize(int(f.Fd())); err == nil {
			width = w
		}
	}
	var b strings.Builder
	if drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", drawn) // back to the frame's first line
	}
	b.WriteString("\r\x1b[J") // and clear it all: a shorter frame leaves nothing behind
	for _, l := range lines {
		if r := []rune(l); width > 1 && len(r) >= width {
			l = string(r[:width-1])
		}
		b.WriteString(l)
		b.WriteString("\n")
	}
	_, _ = io.WriteString(out, b.String())
	return len(lines)
}

const barWidth = 24

// bar draws done of total as a bar with its percentage.
func bar(done, total int64) string {
	if total <= 0 {
		return "[" + strings.Repeat("-", barWidth) + "]   ?%"
	}
	f := min(float64(done)/float64(total), 1)
	n := int(f * barWidth)
	return "[" + strings.Repeat("#", n) + strings.Repeat("-", barWidth-n) + fmt.Sprintf("] %3.0f%%", f*100)
}

// A kind's rate and expected end are drawn only once they rest on a measure: the kind's jobs of the full copy
// started at least measureTime ago and have moved at least measureShare of the expected resources. Before that
// ("measuring") the service's figures are a few seconds' or a few resources' worth, extrapolated over the whole
// copy: a first window that ended quickly, or the SearchParameter copy, which writes a handful of resources in
// seconds, would promise an end minutes or days away from the true one. Copies are not imports: they count
// neither towards the measure of the imports nor as their start.
const (
	measureTime  = 30 * time.Second
	measureShare = 0.01
)

// measured reports whether the figures of a kind of job ("export", "import") rest on a measure at now.
func (m *migrationDoc) measured(kind string, expected int64, now time.Time) bool {
	var first *time.Time
	var moved int64
	for _, j := range m.Jobs {
		if j.Kind != kind || j.Round > 0 {
			continue
		}
		if j.StartedAt != nil && (first == nil || j.StartedAt.Before(*first)) {
			first = j.StartedAt
		}
		if j.State == "done" {
			for _, n := range j.Counts {
				moved += n
			}
		}
	}
	return first != nil && now.Sub(*first) >= measureTime && moved > 0 && float64(moved) >= measureShare*float64(expected)
}

// pace ends a bar line: "done" once every job of the kind is, the rate and expected end once measured, else
// "measuring".
func pace(done, measured bool, rate float64, end *time.Time, now time.Time) string {
	switch {
	case done:
		return "done"
	case !measured || rate <= 0:
		return "measuring"
	}
	return perSecond(rate) + "  " + eta(end, now)
}

// perSecond writes a rate, with a decimal under 10/s (a small copy's rate is not 0/s).
func perSecond(rate float64) string {
	if rate < 10 {
		return strconv.FormatFloat(rate, 'f', 1, 64) + "/s"
	}
	return strconv.FormatFloat(rate, 'f', 0, 64) + "/s"
}

// eta writes when a phase should end, from now.
func eta(end *time.Time, now time.Time) string {
	if end == nil {
		return "ETA unknown"
	}
	d := end.Sub(now)
	if d <= 0 {
		return "ETA now"
	}
	return "ETA " + d.Round(time.Second).String()
}

// planningLine is what a planning migration does: count the source to plan its export windows.
func (m *migrationDoc) planningLine() string {
	line := "planning the export windows"
	if p := m.Planning; p != nil {
		line += fmt.Sprintf(": %d count(s) made, %d range(s) pending", p.Counts, len(p.Pending))
		if p.LastError != "" {
			line += fmt.Sprintf("; failed %d time(s) in a row: %s", p.Failures, p.LastError)
		}
	}
	return line
}

// progressBars is the frame a terminal shows: the status, a bar per phase with its resources, rate and expected
// end (while the copy runs; "done" once a phase is), and the sync's rounds and lag. A planning migration has no
// job yet: it shows the planning.
func (m *migrationDoc) progressBars(now time.Time, elapsed time.Duration) []string {
	lines := []string{fmt.Sprintf("%s  %s  (watching %s)", m.ID, m.Status, elapsed.Round(time.Second))}
	if m.Status == "planning" {
		return append(lines, m.planningLine())
	}
	if p := m.Progress; p != nil {
		exportsDone := p.Exports.Total > 0 && p.Exports.Done == p.Exports.Total
		importsDone := exportsDone && p.Imports.Done == p.Imports.Total && p.Copies.Done == p.Copies.Total
		if e := p.Estimate; e != nil {
			lines = append(lines,
				fmt.Sprintf("exports  %s  %d/%d windows  %d/%d resources  %s", bar(e.Exported, e.Expected),
					p.Exports.Done, p.Exports.Total, e.Exported, e.Expected,
					pace(exportsDone, m.measured("export", e.Expected, now), e.ExportRate, e.ExportEnd, now)),
				fmt.Sprintf("imports  %s  %d/%d jobs  %d/%d resources  %s", bar(e.Imported, e.Expected),
					p.Imports.Done, p.Imports.Total, e.Imported, e.Expected,
					pace(importsDone, m.measured("import", e.Expected, now), e.ImportRate, e.ImportEnd, now)),
				"         "+e.Basis)
		} else {
			// The copy is over (or was never under way): the jobs and what they moved, imports of what was exported.
			lines = append(lines,
				fmt.Sprintf("exports  %s  %d/%d windows  %d resources%s", bar(int64(p.Exports.Done), int64(p.Exports.Total)),
					p.Exports.Done, p.Exports.Total, p.ResourcesExported, doneMark(exportsDone)),
				fmt.Sprintf("imports  %s  %d/%d jobs  %d/%d resources%s", bar(int64(p.Imports.Done), int64(p.Imports.Total)),
					p.Imports.Done, p.Imports.Total, p.ResourcesImported, p.ResourcesExported, doneMark(importsDone)))
		}
	}
	if line := m.syncLine(); line != "" {
		lines = append(lines, line)
	}
	return lines
}

func doneMark(done bool) string {
	if done {
		return "  done"
	}
	return ""
}
