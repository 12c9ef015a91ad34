package assess

import (
	"bytes"
	"fmt"
	"strings"
	"time"
)

// maxReportWindows bounds the windows the readable reports list (the document has them all).
const maxReportWindows = 100

// VerdictText is what the verdict means, for the reports.
func VerdictText(a *Assessment) string {
	switch {
	case a.Status == StatusFailed:
		code := ""
		if a.Error != nil {
			code = ": " + a.Error.Code
		}
		return "FAILED" + code + " (the assessment could not finish)"
	case a.Status == StatusRunning:
		return "running: " + a.Progress.Step
	case a.Verdict == Blocking:
		return "BLOCKING: the migration would fail as requested"
	case a.Verdict == Warning:
		return "READY WITH WARNINGS"
	}
	return "READY"
}

// Markdown renders the assessment as a readable report.
func Markdown(a *Assessment) []byte {
	var b bytes.Buffer
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("# Assessment %s\n\n", a.ID)
	p("**%s**\n\n", VerdictText(a))
	p("- source: %s\n- destination: %s\n- request: %s\n- created: %s, updated: %s\n", a.Request.Source, a.Request.Destination,
		describeRequest(&a.Request), a.CreatedAt.UTC().Format(time.RFC3339), a.UpdatedAt.UTC().Format(time.RFC3339))
	if a.Error != nil {
		p("- error: `%s`: %s\n", a.Error.Code, cell(a.Error.Message))
	}
	p("\n## Items\n\n| Status | Code | Check | Found | What to do | Source |\n| --- | --- | --- | --- | --- | --- |\n")
	for _, it := range a.Items {
		p("| %s | `%s` | %s | %s | %s | %s |\n", strings.ToUpper(string(it.Status)), it.Code, cell(it.Title), cell(it.Detail), cell(it.Action), cell(it.Source))
	}
	if len(a.Types) > 0 {
		p("\n## Types\n\n| Type | In range | Versions | Oldest | Newest | Avg bytes | On the destination |\n| --- | ---: | ---: | --- | --- | ---: | ---: |\n")
		for _, t := range a.Types {
			versions := "-"
			if t.Versions != nil {
				versions = fmt.Sprint(*t.Versions)
			}
			dest := "not served"
			switch {
			case t.DestinationCounted:
				dest = fmt.Sprint(t.Destination)
			case t.DestinationSupported:
				dest = "not counted"
			}
			live := fmt.Sprint(t.Live)
			if t.Filtered != nil {
				live += fmt.Sprintf(" (filtered: at most %d)", *t.Filtered)
			}
			p("| %s | %s | %s | %s | %s | %d | %s |\n", t.Type, live, versions, instant(t.Oldest), instant(t.Newest), t.AvgBytes, dest)
		}
	}
	for _, d := range []*Definitions{a.SearchParameters, a.Profiles} {
		if d == nil || len(d.Source) == 0 {
			continue
		}
		p("\n## %s on the source\n\n| url | code or name | on the destination |\n| --- | --- | --- |\n", d.Type)
		for _, def := range d.Source {
			held := "yes"
			switch {
			case !d.Checked:
				held = "not checked"
			case contains(d.Missing, def.URL):
				held = "**missing**"
			}
			p("| %s | %s | %s |\n", cell(def.URL), cell(cmpOr(def.Code, def.Name)), held)
		}
	}
	if pl := a.Plan; pl != nil && pl.Done {
		p("\n## Plan: %d export windows, %d resources\n\n", len(pl.Windows), pl.Resources)
		if len(pl.Windows) > 0 {
			p("| # | Window | Types | Since | Till | Resources |\n| ---: | --- | --- | --- | --- | ---: |\n")
			for i, w := range pl.Windows {
				if i == maxReportWindows {
					p("\n(%d more windows in the document)\n", len(pl.Windows)-i)
					break
				}
				types := "all"
				if len(w.Types) > 0 {
					types = strings.Join(firstN(w.Types, 3), ", ")
				}
				p("| %d | %s | %s | %s | %s | %d |\n", i+1, w.ID, types, instant(w.Since), instant(w.Till), w.Planned)
			}
		}
	}
	if e := a.Estimate; e != nil {
		p("\n## Estimate\n\n- the copy: about %s (the last export ends after %s)\n- verification: about %s\n- in all: about %s\n- staging storage: about %s for %d resources in %d windows\n\nAssumptions:\n\n",
			seconds(e.CopySeconds), seconds(e.ExportSeconds), seconds(e.VerifySeconds), seconds(e.TotalSeconds), bytesText(e.StagingBytes), e.Resources, e.Windows)
		for _, s := range e.Assumptions {
			p("- %s\n", s)
		}
	}
	if len(a.Checklist) > 0 {
		p("\n## By hand, once the migration is done\n\n")
		for _, t := range a.Checklist {
			p("- [ ] **%s** (`%s`): %s", t.Title, t.Code, t.Detail)
			if t.Call != "" {
				p(" `%s`", t.Call)
			}
			p("\n")
		}
	}
	return b.Bytes()
}

// cell makes a text fit one Markdown table cell.
func cell(s string) string {
	s = strings.ReplaceAll(s, "|", "\\|")
	return strings.Join(strings.Fields(s), " ")
}

func instant(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// DurationText writes seconds readably ("45 s", "12 min", "3.2 h", "2.1 days"), as the reports do.
func DurationText(s float64) string { return seconds(s) }

// SizeText writes a size in bytes with a binary unit, as the reports do.
func SizeText(n int64) string { return bytesText(n) }
