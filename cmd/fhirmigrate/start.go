package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// startFields are the fields of the start request (internal/migration.StartRequest), each with its flag: a test
// holds this list to the request type, so that a field added there without a flag here fails it.
var startFields = []field{
	{json: "source", flag: "source", kind: kString, usage: "the source FHIR server's base `URL` (Azure API for FHIR); required"},
	{json: "destination", flag: "destination", kind: kString, usage: "the destination FHIR server's base `URL` (AHDS FHIR service); required"},
	{json: "sourceKind", flag: "source-kind", kind: kString, usage: "`api-for-fhir|fhir-service|bulk-data`: the kind of source (default: from its host, *.fhir.azurehealthcareapis.com fhir-service, another *.azurehealthcareapis.com api-for-fhir; required for any other host)"},
	{json: "group", flag: "group", kind: kString, usage: "bulk-data sources: the `ID` of the Group whose patients are exported (Group/{id}/$export)"},
	{json: "types", flag: "types", kind: kList, usage: "resource `TYPES`, comma-separated or repeated (default: every type of the source)"},
	{json: "since", flag: "since", kind: kString, usage: "copy what was last updated at or after this RFC 3339 `TIME`"},
	{json: "till", flag: "till", kind: kString, usage: "copy what was last updated at or before this RFC 3339 `TIME`"},
	{json: "typeFilter", flag: "type-filter", kind: kRepeat, usage: "an export _typeFilter `ENTRY`, Type?name=value[&name=value] without commas; repeatable"},
	{json: "exportStrategy", flag: "export-strategy", alias: "strategy", kind: kString, usage: "`system|per-type`: one system export, or one per type (default per-type with --types, else system)"},
	{json: "importMode", flag: "import-mode", kind: kString, usage: "`IncrementalLoad|InitialLoad`: the import mode (default IncrementalLoad)"},
	{json: "container", flag: "container", kind: kString, usage: "the staging container's `NAME` (default: the migration id)"},
	{json: "verify", flag: "verify", kind: kString, usage: "`counts|ids|full|none`: how to verify (default counts)"},
	{json: "verifySample", flag: "verify-sample", kind: kInt, usage: "with --verify full, compare only `N` resources per type (0: all)"},
	{json: "dryRun", flag: "dry-run", kind: kBool, usage: "print the plan (windows, resources counted) and start nothing"},
	{json: "windowTarget", flag: "window-target", kind: kInt, usage: "at most `N` resources in one export window (default 5000000)"},
	{json: "cleanup", flag: "cleanup", kind: kString, usage: "`after-verify`: delete the staged files once verification passed"},
	{json: "history", flag: "history", kind: kBool, usage: "copy every version of every resource"},
	{json: "deletes", flag: "deletes", kind: kBool, usage: "copy deleted resources as deletions"},
	{json: "sync", flag: "sync", kind: kBool, usage: "after the full copy, keep the destination in step with the source until a cutover"},
	{json: "syncInterval", flag: "sync-interval", kind: kString, usage: "with --sync, the time `D` between rounds, a Go duration (default 15m)"},
	{json: "syncMargin", flag: "sync-margin", kind: kString, usage: "with --sync, the overlap `D` of a round with the previous one (default 5m)"},
	{json: "reconcile", flag: "reconcile", kind: kString, usage: "`delete|report`, with --sync: what the cutover does with what the source hard-deleted or purged (default delete)"},
	{json: "cutoverVerify", flag: "cutover-verify", kind: kString, usage: "`fast|full-ids`, with --sync: how the cutover verifies: only what changed since the checks made while syncing, or every staged file and every id again (default fast)"},
}

func setupStart(fs *flagSet) runner {
	build := defineFields(fs, startFields)
	bodyFile := fs.str("body", "send the JSON start request in `FILE`, with the flags given set on top of it")
	doWatch := fs.boolean("watch", "then watch the migration until it ends (exit 0 only when it completed)")
	asJSON := fs.boolean("json", "print the service's answer as it is: the migration document, or the plan")
	return func(ctx context.Context, inv *invocation) (int, error) {
		req := map[string]json.RawMessage{}
		if *bodyFile != "" {
			raw, err := os.ReadFile(*bodyFile)
			if err != nil {
				return 2, fmt.Errorf("start --body: %w", err)
			}
			if err := json.Unmarshal(raw, &req); err != nil || req == nil {
				return 2, fmt.Errorf("start --body %s: not a JSON object: %v", *bodyFile, err)
			}
		}
		for k, v := range build() {
			req[k] = v
		}
		body, _ := json.Marshal(req)
		raw, status, err := inv.c.send(ctx, http.MethodPost, "/api/migrations", body)
		if err != nil {
			return 1, err
		}
		var head struct {
			DryRun bool   `json:"dryRun"`
			ID     string `json:"id"`
		}
		if json.Unmarshal(raw, &head) != nil || (!head.DryRun && head.ID == "") {
			return 1, fmt.Errorf("start: unexpected answer (HTTP %d): %s", status, excerpt(raw))
		}
		if head.DryRun {
			if *asJSON {
				writeRaw(inv.out, raw)
				return 0, nil
			}
			var p plan
			if err := json.Unmarshal(raw, &p); err != nil {
				return 1, fmt.Errorf("start: unreadable plan: %w", err)
			}
			p.print(inv.out)
			return 0, nil
		}
		var m migrationDoc
		if err := json.Unmarshal(raw, &m); err != nil {
			return 1, fmt.Errorf("start: unreadable migration: %w", err)
		}
		if *asJSON {
			writeRaw(inv.out, raw)
		} else {
			what := m.Status
			if m.Status == "planning" {
				// A migration starts by counting the source to plan its export windows: it has no job yet.
				what = "planning the export windows"
			}
			fmt.Fprintf(inv.out, "started migration %s (%s -> %s): %s\n", m.ID, m.Source(), m.Destination(), what)
			if !*doWatch {
				fmt.Fprintf(inv.out, "follow it: %s\n", inv.next("watch", m.ID))
			}
		}
		if !*doWatch {
			return 0, nil
		}
		return watch(ctx, inv.c, m.ID, inv.out, inv.interval)
	}
}

// plan is the answer to a dry run (internal/migration.Plan): the request as the service read it, with its
// defaults, and the export windows it would start with, in order.
type plan struct {
	Request struct {
		Source         string     `json:"source"`
		Destination    string     `json:"destination"`
		SourceKind     string     `json:"sourceKind"`
		Group          string     `json:"group"`
		Types          []string   `json:"types"`
		Since          *time.Time `json:"since"`
		Till           *time.Time `json:"till"`
		TypeFilter     []string   `json:"typeFilter"`
		ExportStrategy string     `json:"exportStrategy"`
		ImportMode     string     `json:"importMode"`
		Verify         string     `json:"verify"`
		VerifySample   int        `json:"verifySample"`
		WindowTarget   int64      `json:"windowTarget"`
		Cleanup        string     `json:"cleanup"`
		History        bool       `json:"history"`
		Deletes        bool       `json:"deletes"`
		Sync           bool       `json:"sync"`
		SyncInterval   string     `json:"syncInterval"`
		SyncMargin     string     `json:"syncMargin"`
		Reconcile      string     `json:"reconcile"`
		CutoverVerify  string     `json:"cutoverVerify"`
	} `json:"request"`
	Jobs []struct {
		ID         string     `json:"id"`
		Kind       string     `json:"kind"`
		Types      []string   `json:"types"`
		Since      *time.Time `json:"since"`
		Till       *time.Time `json:"till"`
		Planned    int64      `json:"planned"`
		Estimated  bool       `json:"estimated"`
		TypeFilter []string   `json:"typeFilter"`
	} `json:"jobs"`
}

// print writes the plan readably: the request, the totals, a table of the windows.
func (p *plan) print(out io.Writer) {
	r := p.Request
	fmt.Fprintf(out, "dry run: nothing was stored or started. The migration %s -> %s would run:\n", r.Source, r.Destination)
	types := "every type of the source"
	if len(r.Types) > 0 {
		types = strings.Join(r.Types, ", ")
	}
	fmt.Fprintf(out, "  types: %s\n", types)
	for _, f := range r.TypeFilter {
		fmt.Fprintf(out, "  typeFilter: %s\n", f)
	}
	if r.Since != nil || r.Till != nil {
		fmt.Fprintf(out, "  last updated: %s to %s\n", instantOr(r.Since, "the beginning"), instantOr(r.Till, "the start of the migration"))
	}
	opts := []string{"export " + r.ExportStrategy, "import " + r.ImportMode, "verify " + r.Verify}
	if r.SourceKind != "" {
		opts = append([]string{"source kind " + r.SourceKind}, opts...)
	}
	if r.VerifySample > 0 {
		opts = append(opts, fmt.Sprintf("%d resources per type", r.VerifySample))
	}
	if r.WindowTarget > 0 {
		opts = append(opts, fmt.Sprintf("windows of at most %d resources", r.WindowTarget))
	}
	if r.History {
		opts = append(opts, "history")
	}
	if r.Deletes {
		opts = append(opts, "deletes")
	}
	if r.Sync {
		opts = append(opts, fmt.Sprintf("sync every %s (margin %s, reconcile %s, cutover verify %s)", r.SyncInterval, r.SyncMargin, r.Reconcile, r.CutoverVerify))
	}
	if r.Cleanup != "" {
		opts = append(opts, "cleanup "+r.Cleanup)
	}
	fmt.Fprintf(out, "  %s\n", strings.Join(opts, ", "))

	var counted int64
	estimated := 0
	for _, j := range p.Jobs {
		if j.Estimated {
			estimated++
		}
		counted += j.Planned
	}
	fmt.Fprintf(out, "%d export window(s), %d resources counted (an upper bound)", len(p.Jobs), counted)
	if estimated > 0 {
		fmt.Fprintf(out, "; %d window(s) not counted within the dry run's time: planning counts them when the migration starts", estimated)
	}
	fmt.Fprintln(out)
	if len(p.Jobs) == 0 {
		fmt.Fprintln(out, "nothing to export: the source holds nothing the request selects")
		return
	}
	tw := tabwriter.NewWriter(out, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tWINDOW\tTYPES\tSINCE\tTILL\tRESOURCES")
	for i, j := range p.Jobs {
		n := strconv.FormatInt(j.Planned, 10)
		if j.Estimated {
			n = "not counted"
		}
		types := "all"
		if len(j.Types) > 0 {
			types = shortList(j.Types, 3)
		}
		if len(j.TypeFilter) > 0 {
			types += fmt.Sprintf(" (%d filter(s))", len(j.TypeFilter))
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", i+1, j.ID, types, instantOr(j.Since, "-"), instantOr(j.Till, "-"), n)
	}
	_ = tw.Flush()
}

func instantOr(t *time.Time, none string) string {
	if t == nil {
		return none
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// shortList joins at most n items, and says how many more there are.
func shortList(items []string, n int) string {
	if len(items) <= n {
		return strings.Join(items, ",")
	}
	return fmt.Sprintf("%s +%d more", strings.Join(items[:n], ","), len(items)-n)
}
