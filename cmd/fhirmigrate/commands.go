package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// command is one of the CLI's commands: its help, and setup, which defines its flags on a flag set and returns
// what runs it once they are parsed.
type command struct {
	name string
	// args names the positional arguments ("ID", or ""); synopsis is what follows them in the usage line.
	args, synopsis string
	summary        string // one line in the command list
	detail         string // the command's help
	setup          func(fs *flagSet) runner
}

// runner runs a command once its flags are parsed.
type runner func(ctx context.Context, inv *invocation) (int, error)

// invocation is one run of a command: the client, the output, the positional arguments.
type invocation struct {
	*env
	c        *client
	args     []string
	interval time.Duration
	// prog is how to call the CLI again in a next command shown to the operator: "fhirmigrate", with the --url
	// that was given on the command line (never the key).
	prog string
}

// next writes the command that follows an id, for the operator to run.
func (inv *invocation) next(cmd, id string) string { return inv.prog + " " + cmd + " " + id }

// commands are every command, in the order the help lists them.
func commands() []*command {
	return []*command{
		{name: "start", synopsis: "--source URL --destination URL [flags]",
			summary: "start a migration (--dry-run: print its plan and start nothing)",
			detail: `Start a migration. The service checks the request and both servers, and answers with the migration
while it plans its export windows: start prints its id and the command that follows it (or, with --watch,
follows it). --dry-run asks for the plan instead: the export windows with the resources counted in each, in the
order they would start; nothing is stored or started, and the exit status is 0.

Each flag sets the field of the request (POST /api/migrations) named in [brackets]; a flag left out leaves its
field out, and the service applies its default. --body FILE sends a JSON request read from FILE, with the flags
given set on top of it (so --body FILE --dry-run plans that request).`,
			setup: setupStart},
		{name: "assess", synopsis: "--source URL --destination URL [flags]",
			summary: "assess a migration before starting it: will it work, how long, what to do by hand",
			detail: `Assess a migration before starting it (POST /api/assessments), with the same flags and body as start:
both servers, a probe export whose output is empty, the staging account, the destination's import and its mode,
what each type holds on both servers, custom SearchParameters and profiles, the plan, an estimate of the
duration and staging storage, and what to do by hand afterwards. Nothing is written to either FHIR server.
assess prints the assessment's id; --watch waits until it ends and prints its Markdown report, with exit status
1 when an item is blocking or the assessment failed. Each flag sets the field named in [brackets].`,
			setup: setupAssess},
		{name: "assessment", args: "ID", synopsis: "[--json | --html] [--out FILE]",
			summary: "an assessment's report: Markdown, --html page, --json document",
			detail: `Print an assessment (GET /api/assessments/{id}[/report]): its Markdown report (default), the
self-contained HTML page (--html), or the document (--json), each as it is now, running or ended.
--out FILE writes it to FILE instead of stdout.`,
			setup: setupAssessment},
		{name: "watch", args: "ID",
			summary: "show progress until the migration ends; exit 0 only when it completed",
			detail: `Follow a migration until it ends, then print its verification table. On a terminal: a progress bar per
phase with its rate and expected end, redrawn in place; elsewhere (a pipe, a file, CI) a line whenever the
progress changes. The exit status is 0 only when the migration completed (1 when it failed or was canceled).
--interval sets the poll interval.`,
			setup: func(*flagSet) runner { return runWatch }},
		{name: "status", args: "ID",
			summary: "print the migration document (JSON, as the service answers it)",
			detail: `Print the migration document, as GET /api/migrations/{id} answers it (indented JSON): status, jobs,
progress, planning, sync, verification, cleanup, error.`,
			setup: setupStatus},
		{name: "list", synopsis: "[--top N] [--all] [--continuation-token T] [--status S] [--json]",
			summary: "list migrations, oldest first, as a table (--json: a JSON array)",
			detail: `List migrations, oldest first, a page at a time (GET /api/migrations), as a table: id, status (with the
error code of a failed one), source -> destination (without the scheme and .azurehealthcareapis.com), when it
was created (UTC), when it last changed, resources exported and imported. Without --all one page is printed; when
there are more, the command for the next page is printed on stderr.
--json prints the summaries as the service gives them, as one JSON array (one summary a line).`,
			setup: setupList},
		{name: "cancel", args: "ID", synopsis: "[--json]",
			summary: "cancel a migration: every running export and import is deleted on its server",
			detail: `Cancel a migration (DELETE /api/migrations/{id}): every running export and import is deleted on its
server and the migration becomes canceled. A migration that has ended is refused (already_finished).`,
			setup: setupCancel},
		{name: "verify", args: "ID", synopsis: "[--verify counts|ids|full] [--verify-sample N] [--accept refused-versions] [--watch] [--json]",
			summary: "verify a finished migration again",
			detail: `Verify a finished migration again (POST /api/migrations/{id}/verify), for example once the destination's
search index caught up: a new verification generation, in the mode given (default: the migration's own).`,
			setup: setupVerify},
		{name: "repair", args: "ID", synopsis: "[--watch] [--json]",
			summary: "write the source's current version of every resource the destination refused, then verify again",
			detail: `Repair (POST /api/migrations/{id}/repair): write on the destination the source's current version of every
resource whose newest version the destination refused (the last verification found it stale), then verify again
in the same mode.`,
			setup: setupRepair},
		{name: "cutover", args: "ID", synopsis: "[--accept refused-versions] [--watch] [--json]",
			summary: "switch a syncing migration: one final round, then verification",
			detail: `Cut a syncing migration over (POST /api/migrations/{id}/cutover) once writes to the source have stopped:
one final round copies the last changes, then the destination is verified against the source.`,
			setup: setupCutover},
		{name: "cleanup", args: "ID", synopsis: "[--dry-run] [--force] [--error-files] [--json]",
			summary: "delete the migration's staged export files (--dry-run: list them)",
			detail: `Delete the migration's staged export files (POST /api/migrations/{id}/cleanup): its container in the
staging account. Refused while the migration runs, and unless verification passed (or --force). The import error
files stay unless --error-files. --dry-run lists what would be deleted, with sizes, and deletes nothing.`,
			setup: setupCleanup},
		{name: "report", args: "ID", synopsis: "[--html | --missing | --search-parameters] [--out FILE]",
			summary: "the report: Markdown, --html page, --missing ids, --search-parameters Bundle",
			detail: `Print a report of the migration (GET /api/migrations/{id}/report[/part]):
  (default)            the Markdown verification report
  --html               the self-contained HTML page of the migration as it is now (give --out FILE, or redirect)
  --missing            every missing id, one Type/id a line
  --search-parameters  the SearchParameters an InitialLoad destination could not take, as a batch Bundle
--out FILE writes it to FILE instead of stdout.`,
			setup: setupReport},
		{name: "openapi", synopsis: "[--out FILE]",
			summary: "the HTTP API's OpenAPI 3.1 description",
			detail:  `Print the service's OpenAPI 3.1 description (GET /api/openapi.json).`,
			setup:   setupOpenAPI},
		{name: "help", synopsis: "[COMMAND]",
			summary: "this help, or a command's (also: fhirmigrate COMMAND --help)",
			detail:  `Print the help, or a command's help.`,
			setup:   func(*flagSet) runner { return nil }},
	}
}

func lookupCommand(name string) *command {
	for _, c := range commands() {
		if c.name == name {
			return c
		}
	}
	return nil
}

// connectionHelp documents the connection options: every command takes them, before or after its name.
const connectionHelp = `connection options (before or after the command):
  --url URL        the Function App's base URL (env FHIRMIGRATE_URL; default http://127.0.0.1:7071, the local
                   stack's host)
  --key KEY        the function key, sent as the x-functions-key header (env FHIRMIGRATE_KEY; the local host
                   checks none). In Azure every HTTP function needs one: the app's function key, from
                     az functionapp keys list -g RESOURCE_GROUP -n APP --query functionKeys.default -o tsv
                   (or the portal: the Function App, App keys). Prefer the variable: a --key shows in the
                   process list.
  --interval D     how often watch polls (default 1s)
  --audience SCOPE sign in with Microsoft Entra ID (a Function App deployed with AUTH_MODE entra): the app's
                   scope, api://<client-id>/.default (env FHIRMIGRATE_AUDIENCE; a bare client id or api://<client-id>
                   gets /.default). The token, from the Azure CLI's sign-in (az login), goes in Authorization:
                   Bearer on every request, with the function key. The caller needs the app role Migration.Read
                   to read, Migration.Operate to change.
  --device-code    sign in with a device code instead (env FHIRMIGRATE_DEVICE_CODE=1); the instructions go to
                   stderr. --tenant ID (env FHIRMIGRATE_TENANT) picks the tenant, --client-id ID (env
                   FHIRMIGRATE_CLIENT_ID) the public client application the device code sign-in uses.`

const exitHelp = `exit status: 0 done; 1 the service refused or failed the request (printed as
"fhirmigrate: CODE: MESSAGE (field FIELD)"), the service could not be reached, or a watched migration ended
failed or canceled; 2 a usage error (unknown command or flag, missing argument); 130 interrupted.`

// usageText is the CLI's help.
func usageText() string {
	var b strings.Builder
	b.WriteString(`fhirmigrate: the operator's client of the FHIR migration service's HTTP API.

usage: fhirmigrate [connection options] COMMAND [ARGS] [flags]
       fhirmigrate help [COMMAND]
       fhirmigrate COMMAND --help

commands:
`)
	tw := tabwriter.NewWriter(&b, 0, 8, 2, ' ', 0)
	for _, c := range commands() {
		fmt.Fprintf(tw, "  %s\t%s\n", strings.TrimSpace(c.name+" "+c.args), c.summary)
	}
	_ = tw.Flush()
	b.WriteString("\nA command's flags: fhirmigrate COMMAND --help. Flags may come before or after the ID.\n\n" +
		connectionHelp + "\n\n" + exitHelp + "\n")
	return b.String()
}

// help is a command's help: usage line, description, flags in the order they are defined.
func (c *command) help() string {
	fs := newFlagSet(c.name)
	c.setup(fs)
	var b strings.Builder
	fmt.Fprintf(&b, "usage: fhirmigrate %s\n\n%s\n", strings.Join(strings.Fields(c.name+" "+c.args+" "+c.synopsis), " "), c.detail)
	if len(fs.order) > 0 {
		b.WriteString("\nflags:\n")
		tw := tabwriter.NewWriter(&b, 0, 8, 2, ' ', 0)
		for _, name := range fs.order {
			f := fs.Lookup(name)
			kind, usage := flag.UnquoteUsage(f)
			names := "--" + name
			if kind != "" {
				names += " " + kind
			}
			if d := f.DefValue; d != "" && d != "false" && d != "0" {
				usage += " (default " + d + ")"
			}
			if a := fs.aliases[name]; a != "" {
				usage += " (also --" + a + ")"
			}
			fmt.Fprintf(tw, "  %s\t%s\n", names, usage)
		}
		_ = tw.Flush()
	}
	b.WriteString("\n" + connectionHelp + "\n")
	return b.String()
}

// usageError is a command line the CLI cannot run: exit status 2, the message and the usage on stderr.
type usageError struct {
	msg, usage string
}

func (e *usageError) Error() string { return e.msg + "\n\n" + e.usage }

// flagSet is a command's flags, in the order they were defined (the help lists them so), with their aliases.
type flagSet struct {
	*flag.FlagSet
	order   []string
	aliases map[string]string // a flag's name → its alias
	given   map[string]bool
}

func newFlagSet(name string) *flagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return &flagSet{FlagSet: fs, aliases: map[string]string{}}
}

func (f *flagSet) str(name, usage string) *string {
	f.order = append(f.order, name)
	return f.String(name, "", usage)
}

func (f *flagSet) boolean(name, usage string) *bool {
	f.order = append(f.order, name)
	return f.Bool(name, false, usage)
}

func (f *flagSet) int64(name, usage string) *int64 {
	f.order = append(f.order, name)
	return f.Int64(name, 0, usage)
}

// list is a repeatable flag; split also splits each value on commas.
func (f *flagSet) list(name string, split bool, usage string) *listValue {
	f.order = append(f.order, name)
	v := &listValue{split: split}
	f.Var(v, name, usage)
	return v
}

// alias makes alias another name of the flag name.
func (f *flagSet) alias(alias, name string) {
	f.Var(f.Lookup(name).Value, alias, "same as --"+name)
	f.aliases[name] = alias
}

// set reports whether the flag name, or its alias, was given (after parsing).
func (f *flagSet) set(name string) bool {
	if f.given == nil {
		f.given = map[string]bool{}
		f.Visit(func(fl *flag.Flag) { f.given[fl.Name] = true })
	}
	return f.given[name] || (f.aliases[name] != "" && f.given[f.aliases[name]])
}

// parse parses flags before, between and after the positional arguments, which it returns.
func (f *flagSet) parse(args []string) ([]string, error) {
	var pos []string
	for {
		if err := f.Parse(args); err != nil {
			return nil, err
		}
		args = f.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// listValue is a repeatable flag's values.
type listValue struct {
	split bool
	items []string
}

func (l *listValue) String() string {
	if l == nil {
		return ""
	}
	return strings.Join(l.items, ",")
}

func (l *listValue) Set(v string) error {
	if l.items == nil {
		l.items = []string{} // given, even empty: sent as [] (an absent flag sends nothing)
	}
	if !l.split {
		l.items = append(l.items, v)
		return nil
	}
	for p := range strings.SplitSeq(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			l.items = append(l.items, p)
		}
	}
	return nil
}

// fieldKind is how a request field is written as a flag.
type fieldKind int

const (
	kString fieldKind = iota
	kBool
	kInt
	kList   // comma-separated, repeatable
	kRepeat // one value per flag, repeatable
)

// field is a field of a request body and the flag that sets it.
type field struct {
	json, flag, alias string
	kind              fieldKind
	usage             string
	// always sends the field even when its flag is not given (its zero value).
	always bool
}

// defineFields defines the flags of a request's fields, and returns what builds the request from the flags
// given: a field whose flag was not given is left out (unless always), so the service applies its default.
func defineFields(fs *flagSet, fields []field) func() map[string]json.RawMessage {
	vals := make([]any, len(fields))
	for i, fd := range fields {
		usage := "[" + fd.json + "] " + fd.usage
		switch fd.kind {
		case kString:
			vals[i] = fs.str(fd.flag, usage)
		case kBool:
			vals[i] = fs.boolean(fd.flag, usage)
		case kInt:
			vals[i] = fs.int64(fd.flag, usage)
		case kList:
			vals[i] = fs.list(fd.flag, true, usage)
		case kRepeat:
			vals[i] = fs.list(fd.flag, false, usage)
		}
		if fd.alias != "" {
			fs.alias(fd.alias, fd.flag)
		}
	}
	return func() map[string]json.RawMessage {
		req := map[string]json.RawMessage{}
		for i, fd := range fields {
			if !fd.always && !fs.set(fd.flag) {
				continue
			}
			var v any
			switch p := vals[i].(type) {
			case *string:
				v = *p
			case *bool:
				v = *p
			case *int64:
				v = *p
			case *listValue:
				v = p.items
				if p.items == nil {
					v = []string{}
				}
			}
			req[fd.json], _ = json.Marshal(v)
		}
		return req
	}
}
