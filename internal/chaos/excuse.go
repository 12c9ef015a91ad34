package chaos

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fhir-migrator/fhir-migrator/internal/fhirsim"
)

// exportDeadline is the handler's ExportDeadline in a chaos run: an export not finished this long after the
// source accepted it is canceled and exported again.
const exportDeadline = 10 * time.Second

// facts are what the runner gathered about one migration: its outcome as the service reports it (status, error,
// and the reasons of its verification's rows), the source's export jobs of its own container, its own
// destination's records, the faults the simulators logged, the kills that landed while it ran, and what its
// destination holds compared with the source.
type facts struct {
	id        string
	container string
	// lossy: its destination was given the lossy faults.
	lossy           bool
	doc             *document
	srcURL, destURL string
	started, ended  time.Time // ended is zero while it runs
	// exports are the source's export jobs whose kick-off query names its container.
	exports []fhirsim.ExportJobStats
	// dest is its own destination's Stats.
	dest fhirsim.Stats
	// srcFaults and destFaults are the faults the source (shared) and its destination logged.
	srcFaults, destFaults []faultRecord
	// kills are the kills that landed while it ran.
	kills []time.Time
	// compared: the destination was read; missing, extra and different as compare lists them; held counts the
	// source's resources in its scope the destination holds.
	compared                  bool
	missing, extra, different []string
	held                      int
	// refused are the resources ("Type/id") of the lines its destination refused, read back from the error files
	// of its destination's import jobs; refusedErr says why they could not be read.
	refused    []string
	refusedErr error
}

// verdict is what one migration's facts show.
type verdict struct {
	state string // completed, failed or unfinished
	// excuse names, for a failed migration, the injected faults on its own jobs that explain it ("" when none
	// does); why tells the outcome (Summary.Reasons).
	excuse string
	why    string
}

func judgeMigration(f *facts) verdict {
	d := f.doc
	switch {
	case d == nil || !d.terminal():
		return verdict{state: "unfinished", why: "did not end"}
	case d.Status == "completed":
		v := verdict{state: "completed"}
		if len(f.missing)+len(f.extra)+len(f.different) > 0 {
			v.why = fmt.Sprintf("completed but missing %d (%s), extra %d (%s), different %d (%s)",
				len(f.missing), strings.Join(first(f.missing, 5), " "), len(f.extra), strings.Join(first(f.extra, 5), " "),
				len(f.different), strings.Join(first(f.different, 5), " "))
		}
		return v
	case d.Status == "failed":
		excuse, whyNot := excuseFor(f)
		if excuse != "" {
			return verdict{state: "failed", excuse: excuse, why: "failed: " + d.errorText() + " (injected: " + excuse + ")"}
		}
		return verdict{state: "failed", why: "failed: " + d.errorText() + " (no injected fault explains it: " + whyNot + ")"}
	}
	return verdict{state: "unfinished", why: d.Status}
}

var (
	reReexported = regexp.MustCompile(`exported (\d+) times without a complete result, the last: (.*)$`)
	reKickoffs   = regexp.MustCompile(`(\d+) kick-off attempts failed`)
	rePolls      = regexp.MustCompile(`(\d+) status polls in a row failed`)
	reVerifyTry  = regexp.MustCompile(`\(attempt (\d+)\)`)
	rePlanTries  = regexp.MustCompile(`after (\d+) attempts`)
)

// number reads the first group of re in s (0 when it does not match).
func number(re *regexp.Regexp, s string) int {
	m := re.FindStringSubmatch(s)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// excuseFor names the injected faults on the migration's own jobs that explain its failure, or says why none
// does. Each kind of failure is explained only by the faults that produce it, counted on what the migration
// owns: the source's export jobs of its container (by job, by kick-off query), its own destination, and for a
// request on the shared source that no job names, the faults logged while it ran.
func excuseFor(f *facts) (excuse, whyNot string) {
	if f.doc == nil || f.doc.Error == nil {
		return "", "no error"
	}
	msg := f.doc.Error.Message
	switch code := f.doc.Error.Code; code {
	case "export_failed":
		return exportExcuse(f, msg)
	case "source_count_unavailable":
		if reKickoffs.MatchString(msg) {
			return exportExcuse(f, msg) // an export's count before its kick-off
		}
		return dropsExcuse(f, "the source", f.srcFaults, number(rePlanTries, msg))
	case "import_failed":
		return importExcuse(f, msg)
	case "verification_failed":
		n := number(reVerifyTry, msg)
		switch {
		case names(msg, f.destURL):
			return dropsExcuse(f, "its destination", f.destFaults, n)
		case names(msg, f.srcURL):
			return dropsExcuse(f, "the source", f.srcFaults, n)
		}
		return "", "the error names neither the source nor its destination"
	case "verification_mismatch", "count_mismatch", "refused_versions":
		return mismatchExcuse(f)
	default:
		return "", "no fault produces " + code
	}
}

// names tells whether msg names a URL of the server at base (http://127.0.0.1:port, no other port).
func names(msg, base string) bool {
	return base != "" && regexp.MustCompile(regexp.QuoteMeta(base)+`([^0-9]|$)`).MatchString(msg)
}

// abandoning are the export job faults after which the engine gives the attempt up and exports again.
var abandoning = []string{fhirsim.FaultExportFail, fhirsim.FaultExportStall, fhirsim.FaultExportCancel}

// causeKill marks an export attempt given up as stalled because the handler was down (killed) when it was due.
const causeKill = "kill"

// lastCauses are the causes that end an attempt with the given reason.
func lastCauses(reason string) []string {
	switch {
	case strings.Contains(reason, "operation failed for reason"):
		return []string{fhirsim.FaultExportFail}
	case strings.Contains(reason, "manifest short"):
		return []string{fhirsim.FaultExportCancel}
	case strings.Contains(reason, "stalled"):
		return []string{fhirsim.FaultExportStall, causeKill}
	}
	return nil
}

// byQuery groups the migration's export jobs by kick-off query (one engine job: equal requests, equal queries),
// each in creation order.
func byQuery(jobs []fhirsim.ExportJobStats) map[string][]fhirsim.ExportJobStats {
	out := map[string][]fhirsim.ExportJobStats{}
	for _, j := range jobs {
		out[j.Query] = append(out[j.Query], j)
	}
	for _, js := range out {
		slices.SortFunc(js, func(a, b fhirsim.ExportJobStats) int { return a.Created.Compare(b.Created) })
	}
	return out
}

// exportExcuse explains an export job's failure by one kick-off query of the migration's container (one engine
// job) whose server jobs took the hits: as many attempts given up for job faults (or for a kill while the job
// was due) as the engine exported it, the last for the fault the error names; as many kick-offs refused (429, by
// the query the source logs with it) or never answered (a server job never polled) as attempts failed; as many
// faulty status answers of its jobs as polls failed in a row.
func exportExcuse(f *facts, msg string) (string, string) {
	queries := byQuery(f.exports)
	if m := reReexported.FindStringSubmatch(msg); m != nil {
		n, _ := strconv.Atoi(m[1])
		want := lastCauses(m[2])
		best := 0
		for _, q := range slices.Sorted(maps.Keys(queries)) {
			var hits []string
			last := ""
			for _, j := range queries[q] {
				if j.Gets == 0 && j.Deletes == 0 {
					continue // an attempt whose answer the engine never had
				}
				last = attemptCause(j, f.kills)
				if last != "" {
					hits = append(hits, short(j.ID)+" "+last)
				}
			}
			best = max(best, len(hits))
			if len(hits) >= n && slices.Contains(want, last) {
				return fmt.Sprintf("container %s, export %s: %d attempts hit: %s", f.container, describeQuery(q), len(hits),
					strings.Join(hits, ", ")), ""
			}
		}
		return "", fmt.Sprintf("no export of container %s had %d attempts given up for a job fault ending with %v (at most %d)",
			f.container, n, want, best)
	}
	if n := number(reKickoffs, msg); n > 0 {
		refused := kickoff429s(f.srcFaults)
		for q := range refused {
			if containerOf(q) != f.container {
				delete(refused, q)
			} else if queries[q] == nil {
				queries[q] = nil
			}
		}
		best := 0
		for _, q := range slices.Sorted(maps.Keys(queries)) {
			var lost []string
			for _, j := range queries[q] {
				if j.Gets == 0 { // its answer lost, or come after the attempt was given up (then canceled)
					lost = append(lost, short(j.ID))
				}
			}
			hits := refused[q] + len(lost)
			best = max(best, hits)
			if hits >= n {
				return fmt.Sprintf("container %s, export %s: %s x%d, %d kick-off answers lost (server jobs never polled: %s)",
					f.container, describeQuery(q), fhirsim.FaultKickoff429, refused[q], len(lost), strings.Join(lost, " ")), ""
			}
		}
		why := fmt.Sprintf("no export of container %s had %d kick-offs refused or unanswered (at most %d)", f.container, n, best)
		unnamed := 0
		for _, r := range f.srcFaults {
			if r.Fault == fhirsim.FaultKickoff429 && r.Op == "$export" && r.Query == "" {
				unnamed++
			}
		}
		if unnamed > 0 {
			why += fmt.Sprintf("; the source logged %d %s without the kick-off's query, which no job can claim", unnamed,
				fhirsim.FaultKickoff429)
		}
		return "", why
	}
	if n := number(rePolls, msg); n > 0 {
		faults := statusFaults(f.srcFaults)
		best := 0
		for _, q := range slices.Sorted(maps.Keys(queries)) {
			var hits []string
			total := 0
			for _, j := range queries[q] {
				if c := sum(faults[j.ID]); c > 0 {
					total += c
					hits = append(hits, fmt.Sprintf("%s %s", short(j.ID), describeCounts(faults[j.ID])))
				}
			}
			best = max(best, total)
			if total >= n {
				return fmt.Sprintf("container %s, export %s: %d faulty status answers: %s", f.container, describeQuery(q), total,
					strings.Join(hits, ", ")), ""
			}
		}
		return "", fmt.Sprintf("no export of container %s had %d faulty status answers (at most %d)", f.container, n, best)
	}
	return "", "no fault makes an export fail this way"
}

// attemptCause is why the engine gave up a server export job it polled: its job fault, or a kill that landed
// while it was due when it was canceled without one; "" when neither.
func attemptCause(j fhirsim.ExportJobStats, kills []time.Time) string {
	if slices.Contains(abandoning, j.Fault) {
		return j.Fault
	}
	if j.Fault == "" && j.Deletes > 0 && slices.ContainsFunc(kills, func(k time.Time) bool {
		return !k.Before(j.Created) && !k.After(j.Created.Add(exportDeadline))
	}) {
		return causeKill
	}
	return ""
}

// importExcuse explains an import job's failure by its own destination's refusals: as many kick-offs refused
// (kickoff-429, import-busy, throttled) or whose answer was lost as attempts failed, as many faulty status
// answers of its import jobs as polls failed in a row.
func importExcuse(f *facts, msg string) (string, string) {
	fi := f.dest.FaultsInjected
	if n := number(reKickoffs, msg); n > 0 {
		lost := lostKickoffs(f.destFaults)
		hits := fi[fhirsim.FaultKickoff429] + fi[fhirsim.FaultImportBusy] + f.dest.ImportsThrottled + lost
		if hits >= n {
			return fmt.Sprintf("its destination refused %d kick-offs (%s x%d, %s x%d, throttled x%d, answers lost x%d)", hits,
				fhirsim.FaultKickoff429, fi[fhirsim.FaultKickoff429], fhirsim.FaultImportBusy, fi[fhirsim.FaultImportBusy],
				f.dest.ImportsThrottled, lost), ""
		}
		return "", fmt.Sprintf("its destination refused %d kick-offs, fewer than %d", hits, n)
	}
	if n := number(rePolls, msg); n > 0 {
		// Status faults hit job status calls only, and every import job of its destination is its own.
		drops := 0
		for id, c := range statusFaults(f.destFaults) {
			if slices.ContainsFunc(f.dest.Imports, func(j fhirsim.ImportJobStats) bool { return j.ID == id }) {
				drops += c[fhirsim.FaultDropConn]
			}
		}
		hits := fi[fhirsim.FaultStatus500] + fi[fhirsim.FaultStatus503] + drops
		if hits >= n {
			return fmt.Sprintf("its destination's import jobs got %d faulty status answers (%s x%d, %s x%d, %s x%d)", hits,
				fhirsim.FaultStatus500, fi[fhirsim.FaultStatus500], fhirsim.FaultStatus503, fi[fhirsim.FaultStatus503],
				fhirsim.FaultDropConn, drops), ""
		}
		return "", fmt.Sprintf("its destination's import jobs got %d faulty status answers, fewer than %d", hits, n)
	}
	return "", "no fault makes an import fail this way"
}

// dropsExcuse explains a step that gave up after n attempts at a search or count by as many connections the
// server dropped on such requests while the migration ran.
func dropsExcuse(f *facts, server string, recs []faultRecord, n int) (string, string) {
	if n <= 0 {
		return "", "the error does not say how many attempts failed"
	}
	to := f.ended
	if to.IsZero() {
		to = time.Now()
	}
	drops := searchDrops(recs, f.started, to)
	if drops >= n {
		return fmt.Sprintf("%s dropped %d connections of searches while it ran (%d attempts failed)", server, drops, n), ""
	}
	return "", fmt.Sprintf("%s dropped %d connections of searches while it ran, fewer than the %d attempts that failed", server, drops, n)
}

// unexplainableRows are verification row reasons that no destination fault causes: the export short of the
// source, staged files short of their manifests, a source changed since, histories or a baseline not counted.
var unexplainableRows = []string{"export_short", "staged_mismatch", "source_changed", "history_mismatch", "baseline_incomplete"}

// mismatchExcuse explains a failed verification by the lossy faults of its own destination: only when the
// destination was given them, no row has a reason they cannot cause, the destination holds nothing the source
// lacks, something is missing (or different), and every missing or different resource is one the import-drop
// fault dropped or whose line the destination refused.
func mismatchExcuse(f *facts) (string, string) {
	if !f.lossy {
		return "", "its destination has no lossy faults"
	}
	for _, r := range f.doc.Rows() {
		if slices.Contains(unexplainableRows, r.Reason) {
			return "", fmt.Sprintf("the %s row is %s, which no destination fault causes", r.Type, r.Reason)
		}
	}
	if strings.Contains(f.doc.Error.Message, "were never exported") {
		return "", "the export is short of the source, which no destination fault causes"
	}
	if !f.compared {
		return "", "its destination was not read"
	}
	if len(f.extra) > 0 {
		return "", fmt.Sprintf("its destination holds %d resources the source does not (%s)", len(f.extra),
			strings.Join(first(f.extra, 5), " "))
	}
	lost := map[string]bool{}
	for _, k := range f.dest.DroppedResources {
		lost[k] = true
	}
	dropped := len(lost)
	for _, k := range f.refused {
		lost[k] = true
	}
	var unexplained []string
	for _, k := range append(slices.Clone(f.missing), f.different...) {
		if !lost[k] {
			unexplained = append(unexplained, k)
		}
	}
	switch {
	case len(unexplained) > 0 && f.refusedErr != nil:
		return "", fmt.Sprintf("%d missing or different resources were not dropped (%s), and the refused lines could not be read: %v",
			len(unexplained), strings.Join(first(unexplained, 5), " "), f.refusedErr)
	case len(unexplained) > 0:
		return "", fmt.Sprintf("%d missing or different resources were neither dropped nor refused by its destination (%s)",
			len(unexplained), strings.Join(first(unexplained, 5), " "))
	case len(f.missing)+len(f.different) == 0:
		return "", "nothing is missing or different in its destination: no loss for the faults to explain"
	}
	return fmt.Sprintf("every one of %d missing and %d different resources was dropped (%s x%d) or refused (%d lines) by its destination",
		len(f.missing), len(f.different), fhirsim.FaultImportDrop, dropped, len(f.refused)), ""
}

// refusedKeys reads an import error file of the simulator: each OperationOutcome line names the refused input
// line ("Failed to process resource at line: N ..."); the resource is read from that line of the input file,
// numbered as the service numbers them (an empty line is skipped and not numbered).
func refusedKeys(errorFile, input []byte) ([]string, error) {
	var lines [][]byte
	for l := range bytes.SplitSeq(input, []byte("\n")) {
		if l = bytes.TrimSuffix(l, []byte("\r")); len(l) > 0 {
			lines = append(lines, l)
		}
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(errorFile))
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		raw := bytes.TrimSpace(sc.Bytes())
		if len(raw) == 0 {
			continue
		}
		var oo struct {
			Issue []struct {
				Diagnostics string `json:"diagnostics"`
			} `json:"issue"`
		}
		if err := json.Unmarshal(raw, &oo); err != nil || len(oo.Issue) == 0 {
			return out, fmt.Errorf("error line %q is not an OperationOutcome", truncate(raw))
		}
		n := number(reRefusedLine, oo.Issue[0].Diagnostics)
		if n <= 0 || n > len(lines) {
			return out, fmt.Errorf("error line %q names no line of its input (%d lines)", truncate(raw), len(lines))
		}
		var res struct {
			ResourceType string `json:"resourceType"`
			ID           string `json:"id"`
		}
		if err := json.Unmarshal(bytes.TrimSpace(lines[n-1]), &res); err != nil || res.ResourceType == "" || res.ID == "" {
			return out, fmt.Errorf("input line %d is not a resource", n)
		}
		out = append(out, res.ResourceType+"/"+res.ID)
	}
	return out, sc.Err()
}

var reRefusedLine = regexp.MustCompile(`at line: (\d+)`)

// errorFileInput returns the import job and the input (0-based) an error file of the simulator belongs to: it
// names them <type><job id>-<input number>.ndjson.
func errorFileInput(name string, jobs map[string][]string) (job string, input int, ok bool) {
	base, found := strings.CutSuffix(name, ".ndjson")
	i := strings.LastIndexByte(base, '-')
	if !found || i < 0 {
		return "", 0, false
	}
	n, err := strconv.Atoi(base[i+1:])
	if err != nil || n < 1 {
		return "", 0, false
	}
	for id, inputs := range jobs {
		if strings.HasSuffix(base[:i], id) && n <= len(inputs) {
			return id, n - 1, true
		}
	}
	return "", 0, false
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func describeCounts(m map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s x%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

// describeQuery is a kick-off query without its container (named already).
func describeQuery(q string) string {
	var parts []string
	for _, p := range strings.Split(q, "&") {
		if !strings.HasPrefix(p, "_container=") {
			parts = append(parts, p)
		}
	}
	return "?" + cmp.Or(strings.Join(parts, "&"), "(all)")
}

func short(id string) string { return id[:min(8, len(id))] }

func truncate(b []byte) string {
	if len(b) > 120 {
		return string(b[:120]) + "..."
	}
	return string(b)
}
