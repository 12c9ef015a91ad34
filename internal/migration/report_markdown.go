package migration

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// renderReport is the readable report of a decided verification.
func renderReport(m *Migration) []byte {
	v := m.Verification
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("# Verification of migration %s\n\n", m.ID)
	result := "PASSED"
	if !v.Passed {
		code := codeVerificationMismatch
		if m.Error != nil {
			code = m.Error.Code
		}
		result = "FAILED (" + code + ")"
	}
	if unproven := notProvenTypes(v.Rows); v.Passed && len(unproven) > 0 {
		result = "PASSED, NOT PROVEN for " + strings.Join(unproven, ", ") + " (counts cannot tell and the staged files are deleted)"
	}
	p("- Result: **%s**\n", result)
	p("- Mode: %s", verifyMode(m))
	if verifyMode(m) == VerifyModeFull && verifySample(m) > 0 {
		p(" (contents compared for %d resources per type)", verifySample(m))
	}
	p("\n")
	if v.CheckedAt != nil {
		p("- Checked at: %s (round %d)\n", v.CheckedAt.Format(time.RFC3339), v.Generation)
	}
	if m.Baseline != nil {
		p("- Destination counts before the import taken at %s", m.Baseline.TakenAt.Format(time.RFC3339))
		if m.Baseline.Error != "" {
			p(" (incomplete: %s)", m.Baseline.Error)
		}
		p("\n")
	}
	p("\n## Scope\n\n")
	for _, it := range Scope(m) {
		p("- %s: %s\n", it.Label, it.Value)
	}
	p("\n## Per type\n\n")
	p("| Type | Source | Exported | Lines | Duplicates | Imported | Import errors | Before | Expected | After | Ids checked | Missing | Compared | Different | Result |\n")
	p("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n")
	for _, r := range v.Rows {
		res := "ok"
		switch {
		case r.Reason != "":
			res = "FAILED: " + r.Reason
		case r.NotCopied:
			res = "NOT COPIED"
		case r.NotProven:
			res = "NOT PROVEN"
		case r.NothingInRange:
			res = "nothing in range"
		}
		source := strconv.FormatInt(r.Source, 10)
		if r.SourceUpper > r.Source {
			source += "-" + strconv.FormatInt(r.SourceUpper, 10)
		}
		before, expected := strconv.FormatInt(r.DestinationBefore, 10), strconv.FormatInt(r.Expected, 10)
		if r.BaselineMissing {
			before, expected = "unknown", "unknown"
		}
		p("| %s | %s | %d | %d | %d | %d | %d | %s | %s | %d | %d | %d | %d | %d | %s |\n", r.Type, source, r.Exported,
			r.Lines, r.Duplicates, r.Imported, r.ImportErrors, before, expected, r.Destination, r.Checked, r.Missing,
			r.Compared, r.Different, res)
	}
	var explained bool
	for _, r := range v.Rows {
		if r.Explanation == "" {
			continue
		}
		if !explained {
			p("\n## Explanations\n\n")
			explained = true
		}
		p("- **%s**: %s.\n", r.Type, r.Explanation)
	}
	p("\nSource is the source's own count of the migrated range (each export's window and filters), taken at " +
		"verification time; the export must hold exactly that many distinct resources (fewer: export_short; more: " +
		"source_changed). Expected = before + source. In counts mode the destination must hold exactly the expected " +
		"number; where it held resources of a type before, a count proves nothing either way (an imported id may " +
		"overwrite one that was there), so that type's ids are looked up as in ids mode (when the staged files are " +
		"deleted, its row says not proven). In ids and full modes every staged " +
		"line must be counted by its manifest, every id found and every compared content equal. Soft-deleted " +
		"resources are not in search counts.\n")
	if s := v.System; s != nil {
		p("\n## Whole destination\n\nEvery type (`?_summary=count`): before %d, exported %d, after %d.", s.Before, s.Exported, s.After)
		if s.After != s.Before+s.Exported {
			p(" The difference of %d is explained by the types above, or by writes to types that were not migrated.", s.After-(s.Before+s.Exported))
		}
		p("\n")
	}
	if v.MissingCount > 0 {
		p("\n## Missing ids (%d)\n\n", v.MissingCount)
		if int64(len(v.Missing)) < v.MissingCount {
			p("The first %d are listed; `GET /api/migrations/%s/report/missing` lists them all.\n\n", len(v.Missing), m.ID)
		}
		for _, id := range v.Missing {
			p("- %s\n", id)
		}
	}
	if len(v.Differences) > 0 {
		p("\n## Differing resources\n\n")
		for _, d := range v.Differences {
			p("- %s: %s\n", d.Resource, strings.Join(d.Paths, ", "))
		}
	}
	if rf := v.Refused; rf != nil {
		p("\n## Versions the destination refused (%d)\n\n", rf.Versions)
		p("Read from the import error files and the staged rows they name; judged against both servers at verification. "+
			"Stale: the destination refused the resource's newest version and holds an older one (`POST /api/migrations/%s/repair` "+
			"writes the source's current version). Refused older versions pass only when accepted (`{\"accept\": [\"refused-versions\"]}` "+
			"on a re-verify or the cutover)%s.\n\n", m.ID, map[bool]string{true: "; they are accepted", false: ""}[rf.Accepted])
		p("- Stale resources: %d; repaired: %d", rf.Stale, rf.Repaired)
		if rf.Unread > 0 {
			p("; refused lines not read back to a resource: %d", rf.Unread)
		}
		p("\n")
		if rf.Report != "" {
			p("- Every resource is listed in `%s` (document store)\n", rf.Report)
		}
		p("\n| Resource | Version | lastUpdated | Reason | Source now | Destination now | State |\n| --- | --- | --- | --- | --- | --- | --- |\n")
		for _, r := range rf.Resources {
			state := "refused older version"
			switch {
			case r.Stale:
				state = "STALE"
			case r.Repaired:
				state = "repaired"
			}
			for _, l := range r.Versions {
				p("| %s/%s | %s | %s | %s | %d v%s | %d v%s | %s |\n", r.Type, r.ID, l.Version, l.LastUpdated, l.Reason,
					r.SourceStatus, r.SourceVersion, r.DestinationStatus, r.DestinationVersion, state)
			}
		}
	}
	if len(m.Notes) > 0 {
		p("\n## Notes\n\n")
		for _, n := range m.Notes {
			p("- %s\n", n)
		}
	}
	return []byte(b.String())
}

// notProvenTypes are the types whose rows say not proven.
func notProvenTypes(rows []TypeRow) []string {
	var out []string
	for _, r := range rows {
		if r.NotProven {
			out = append(out, r.Type)
		}
	}
	return out
}
