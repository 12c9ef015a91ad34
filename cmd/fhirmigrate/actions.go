package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
)

// The request bodies of the actions (internal/migration.ReverifyRequest, CutoverRequest, CleanupRequest), each
// field with its flag: a test holds them to the request types.
var (
	verifyFields = []field{
		{json: "verify", flag: "verify", kind: kString, usage: "`counts|ids|full`: how to verify (default: the migration's own)"},
		{json: "verifySample", flag: "verify-sample", alias: "sample", kind: kInt, usage: "with full, compare only `N` resources per type (0: all)"},
		{json: "accept", flag: "accept", kind: kList, usage: "`refused-versions`: let pass the versions the destination refused that are not a resource's newest"},
	}
	cutoverFields = []field{
		{json: "accept", flag: "accept", kind: kList, usage: "`refused-versions`: let pass the versions the destination refused that are not a resource's newest"},
	}
	cleanupFields = []field{
		{json: "dryRun", flag: "dry-run", kind: kBool, always: true, usage: "list what would be deleted, with sizes; delete nothing"},
		{json: "force", flag: "force", kind: kBool, always: true, usage: "clean up even though verification did not pass"},
		{json: "errorFiles", flag: "error-files", kind: kBool, always: true, usage: "also delete the destination's import error files"},
	}
)

func setupStatus(*flagSet) runner {
	return func(ctx context.Context, inv *invocation) (int, error) {
		raw, _, err := inv.c.send(ctx, http.MethodGet, migrationPath(inv.args[0]), nil)
		if err != nil {
			return 1, err
		}
		writeRaw(inv.out, raw)
		return 0, nil
	}
}

func setupCancel(fs *flagSet) runner {
	asJSON := jsonFlag(fs)
	return func(ctx context.Context, inv *invocation) (int, error) {
		return inv.post(ctx, http.MethodDelete, "", nil, *asJSON, false, "canceled")
	}
}

func setupVerify(fs *flagSet) runner {
	build := defineFields(fs, verifyFields)
	doWatch, asJSON := watchFlag(fs), jsonFlag(fs)
	return func(ctx context.Context, inv *invocation) (int, error) {
		return inv.post(ctx, http.MethodPost, "/verify", body(build()), *asJSON, *doWatch, "verifying again")
	}
}

func setupRepair(fs *flagSet) runner {
	doWatch, asJSON := watchFlag(fs), jsonFlag(fs)
	return func(ctx context.Context, inv *invocation) (int, error) {
		return inv.post(ctx, http.MethodPost, "/repair", nil, *asJSON, *doWatch, "repairing, then verifying again")
	}
}

func setupCutover(fs *flagSet) runner {
	build := defineFields(fs, cutoverFields)
	doWatch, asJSON := watchFlag(fs), jsonFlag(fs)
	return func(ctx context.Context, inv *invocation) (int, error) {
		return inv.post(ctx, http.MethodPost, "/cutover", body(build()), *asJSON, *doWatch, "cutover requested: one final round, then verification")
	}
}

func watchFlag(fs *flagSet) *bool {
	return fs.boolean("watch", "then watch the migration until it ends (exit 0 only when it completed)")
}

func jsonFlag(fs *flagSet) *bool {
	return fs.boolean("json", "print the service's answer as it is (JSON)")
}

// body is a request's JSON body; nil when it has no field (the actions' bodies are optional).
func body(req map[string]json.RawMessage) []byte {
	if len(req) == 0 {
		return nil
	}
	b, _ := json.Marshal(req)
	return b
}

// post sends an action that answers the migration document, and says what the migration does now (or prints the
// answer as it is), then watches it when asked.
func (inv *invocation) post(ctx context.Context, method, action string, body []byte, asJSON, doWatch bool, what string) (int, error) {
	id := inv.args[0]
	raw, _, err := inv.c.send(ctx, method, migrationPath(id)+action, body)
	if err != nil {
		return 1, err
	}
	var m migrationDoc
	if asJSON || json.Unmarshal(raw, &m) != nil || m.ID == "" {
		writeRaw(inv.out, raw)
	} else {
		fmt.Fprintf(inv.out, "migration %s: %s (status %s)\n", m.ID, what, m.Status)
		if !doWatch && !m.terminal() {
			fmt.Fprintf(inv.out, "follow it: %s\n", inv.next("watch", id))
		}
	}
	if !doWatch {
		return 0, nil
	}
	return watch(ctx, inv.c, id, inv.out, inv.interval)
}

func setupCleanup(fs *flagSet) runner {
	build := defineFields(fs, cleanupFields)
	asJSON := jsonFlag(fs)
	return func(ctx context.Context, inv *invocation) (int, error) {
		raw, _, err := inv.c.send(ctx, http.MethodPost, migrationPath(inv.args[0])+"/cleanup", body(build()))
		if err != nil {
			return 1, err
		}
		var res struct {
			DryRun     bool         `json:"dryRun"`
			Container  string       `json:"container"`
			Blobs      []stagedBlob `json:"blobs"`
			ErrorFiles []stagedBlob `json:"errorFiles"`
			Bytes      int64        `json:"bytes"`
		}
		if *asJSON || json.Unmarshal(raw, &res) != nil || res.Container == "" {
			writeRaw(inv.out, raw)
			return 0, nil
		}
		verb := "deleted"
		if res.DryRun {
			verb = "dry run: cleanup would delete"
		}
		fmt.Fprintf(inv.out, "%s %d staged file(s) and %d import error file(s), %d bytes, of container %s\n",
			verb, len(res.Blobs), len(res.ErrorFiles), res.Bytes, res.Container)
		if res.DryRun {
			for _, b := range append(res.Blobs, res.ErrorFiles...) {
				fmt.Fprintf(inv.out, "%12d  %s\n", b.Size, b.Name)
			}
		}
		return 0, nil
	}
}

type stagedBlob struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
}

func setupReport(fs *flagSet) runner {
	html := fs.boolean("html", "the HTML page of the migration as it is now (with --out FILE, or redirected)")
	missing := fs.boolean("missing", "every missing id, one Type/id a line")
	searchParams := fs.boolean("search-parameters", "the SearchParameters an InitialLoad destination could not take, as a batch Bundle")
	out := fs.str("out", "write it to `FILE` instead of stdout")
	return func(ctx context.Context, inv *invocation) (int, error) {
		path, accept := migrationPath(inv.args[0])+"/report", "text/markdown"
		parts := 0
		for _, p := range []struct {
			on           bool
			part, accept string
		}{{*html, "", "text/html"}, {*missing, "/missing", "text/plain"}, {*searchParams, "/search-parameters", "application/fhir+json"}} {
			if p.on {
				parts++
				path, accept = path+p.part, p.accept
			}
		}
		if parts > 1 {
			return 2, &usageError{"report: one of --html, --missing, --search-parameters", lookupCommand("report").help()}
		}
		if *html && *out == "" && isTerminal(inv.out) {
			return 2, &usageError{"report --html writes a page: give --out FILE, or redirect stdout", lookupCommand("report").help()}
		}
		return inv.download(ctx, path, accept, *out)
	}
}

func setupOpenAPI(fs *flagSet) runner {
	out := fs.str("out", "write it to `FILE` instead of stdout")
	return func(ctx context.Context, inv *invocation) (int, error) {
		return inv.download(ctx, "/api/openapi.json", "application/json", *out)
	}
}

// download streams a GET's answer to stdout, or to the file out (written only when the answer is a 2xx).
func (inv *invocation) download(ctx context.Context, path, accept, out string) (int, error) {
	if out == "" {
		if err := inv.c.stream(ctx, path, accept, inv.out); err != nil {
			return 1, err
		}
		return 0, nil
	}
	w := &lazyFile{name: out}
	err := inv.c.stream(ctx, path, accept, w)
	if err == nil {
		err = w.close()
	} else if w.f != nil {
		_ = w.f.Close()
		_ = os.Remove(out) // a part of the answer is not the answer
	}
	if err != nil {
		return 1, err
	}
	fmt.Fprintf(inv.errOut, "wrote %d bytes to %s\n", w.n, out)
	return 0, nil
}

// lazyFile creates its file at the first write (or at close when the answer was empty), so that a refused
// request leaves no file behind.
type lazyFile struct {
	name string
	f    *os.File
	n    int64
}

func (l *lazyFile) Write(p []byte) (int, error) {
	if l.f == nil {
		f, err := os.Create(l.name)
		if err != nil {
			return 0, err
		}
		l.f = f
	}
	n, err := l.f.Write(p)
	l.n += int64(n)
	return n, err
}

func (l *lazyFile) close() error {
	if l.f == nil {
		_, err := l.Write(nil)
		if err != nil {
			return err
		}
	}
	return l.f.Close()
}

var _ io.Writer = (*lazyFile)(nil)
