package report

import (
	"bytes"
	"fmt"
	"html/template"
	"strings"
	"time"

	"github.com/fhir-migrator/fhir-migrator/internal/assess"
)

// assessmentPage is what the assessment's page shows.
type assessmentPage struct {
	A          *assess.Assessment
	Now        time.Time
	Verdict    string
	VerdictCSS string
	// Counts are the items by status.
	OK, Warnings, Blocking int
	Windows                []assess.Window
	WindowsHidden          int
}

// maxPageWindows bounds the windows the page lists (the document has them all).
const maxPageWindows = 100

// AssessmentHTML renders an assessment (internal/assess) as seen at now: one self-contained page like the
// migration's (inline CSS, no script, served under ContentSecurityPolicy), every item with its code, status, what
// was found, what to do and the fact's source; each figure carries a data-figure attribute naming its place in the
// document.
func AssessmentHTML(a *assess.Assessment, now time.Time) ([]byte, error) {
	p := &assessmentPage{A: a, Now: now, Verdict: assess.VerdictText(a)}
	switch {
	case a.Status == assess.StatusFailed || a.Verdict == assess.Blocking:
		p.VerdictCSS = "bad"
	case a.Status == assess.StatusRunning:
		p.VerdictCSS = "run"
	case a.Verdict == assess.Warning:
		p.VerdictCSS = "warn"
	default:
		p.VerdictCSS = "ok"
	}
	for _, it := range a.Items {
		switch it.Status {
		case assess.OK:
			p.OK++
		case assess.Warning:
			p.Warnings++
		case assess.Blocking:
			p.Blocking++
		}
	}
	if a.Plan != nil {
		p.Windows = a.Plan.Windows
		if len(p.Windows) > maxPageWindows {
			p.WindowsHidden = len(p.Windows) - maxPageWindows
			p.Windows = p.Windows[:maxPageWindows]
		}
	}
	var b bytes.Buffer
	if err := assessmentTemplate.Execute(&b, p); err != nil {
		return nil, fmt.Errorf("render the assessment %s: %w", a.ID, err)
	}
	return b.Bytes(), nil
}

var assessmentTemplate = template.Must(template.New("assessment").Funcs(template.FuncMap{
	"utc": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
	"utcp": func(t *time.Time) string {
		if t == nil {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	},
	"upper":    func(s assess.Level) string { return strings.ToUpper(string(s)) },
	"css":      levelCSS,
	"duration": assess.DurationText,
	"size":     assess.SizeText,
	"join":     strings.Join,
	"missing": func(d *assess.Definitions, url string) bool {
		for _, m := range d.Missing {
			if m == url {
				return true
			}
		}
		return false
	},
	"add": func(a, b int) int { return a + b },
}).Parse(assessmentHTML))

func levelCSS(l assess.Level) string {
	switch l {
	case assess.Blocking:
		return "bad"
	case assess.Warning:
		return "warn"
	}
	return "ok"
}

const assessmentHTML = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Assessment {{.A.ID}}: {{.Verdict}}</title>
<style>
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1b1f24; margin: 24px auto; max-width: 1100px; padding: 0 16px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid #d0d7de; padding-bottom: 4px; }
.meta { color: #57606a; } .mono { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 12px; }
.verdict { display: inline-block; padding: 6px 12px; border-radius: 6px; font-weight: 600; margin: 10px 0; }
.ok { background: #dafbe1; color: #116329; } .bad { background: #ffebe9; color: #a40e26; } .warn { background: #fff8c5; color: #7d4e00; } .run { background: #ddf4ff; color: #0a3069; }
span.ok, span.bad, span.warn { padding: 1px 6px; border-radius: 4px; font-weight: 600; font-size: 12px; }
table { border-collapse: collapse; width: 100%; } th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #eaeef2; vertical-align: top; }
th { font-weight: 600; background: #f6f8fa; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
td.src { color: #57606a; font-size: 12px; } table.items td:nth-child(3), table.items td:nth-child(4) { min-width: 200px; } ul.checklist { list-style: none; padding-left: 0; } ul.checklist li { margin-bottom: 8px; }
@media print { body { margin: 0; max-width: none; font-size: 11px; } h2 { break-after: avoid; } tr { break-inside: avoid; } .verdict { border: 1px solid currentColor; } }
</style>
</head>
<body>
<h1>Assessment <span class="mono" data-figure="id">{{.A.ID}}</span></h1>
<div class="meta"><span data-figure="source">{{.A.Request.Source}}</span> → <span data-figure="destination">{{.A.Request.Destination}}</span></div>
<div class="meta">status <b data-figure="status">{{.A.Status}}</b> · created {{utc .A.CreatedAt}} · updated {{utc .A.UpdatedAt}} · page at {{utc .Now}}</div>
<div class="verdict {{.VerdictCSS}}" data-figure="verdict">{{.Verdict}}</div>
<p><b data-figure="items.ok">{{.OK}}</b> ok, <b data-figure="items.warning">{{.Warnings}}</b> warnings, <b data-figure="items.blocking">{{.Blocking}}</b> blocking.</p>
{{with .A.Error}}<p><b>Error</b> <span class="mono" data-figure="error.code">{{.Code}}</span>: {{.Message}}</p>{{end}}

<h2>Items</h2>
<table class="items"><tr><th>Status</th><th>Check</th><th>Found</th><th>What to do</th><th>Source</th></tr>
{{range .A.Items}}<tr data-item="{{.Code}}"><td><span class="{{css .Status}}" data-figure="item.{{.Code}}.status">{{upper .Status}}</span></td><td><b>{{.Title}}</b><br><span class="mono">{{.Code}}</span></td><td data-figure="item.{{.Code}}.detail">{{.Detail}}</td><td>{{.Action}}</td><td class="src">{{.Source}}</td></tr>
{{end}}</table>

<h2>Types</h2>
{{if .A.Types}}<table><tr><th>Type</th><th class="n">In range</th><th class="n">Versions</th><th>Oldest</th><th>Newest</th><th class="n">Average bytes</th><th class="n">On the destination</th></tr>
{{range .A.Types}}<tr><td>{{.Type}}</td><td class="n" data-figure="type.{{.Type}}.live">{{.Live}}{{with .Filtered}} (filtered: at most {{.}}){{end}}</td><td class="n" data-figure="type.{{.Type}}.versions">{{with .Versions}}{{.}}{{else}}—{{end}}</td><td>{{utcp .Oldest}}</td><td>{{utcp .Newest}}</td><td class="n">{{.AvgBytes}}</td><td class="n" data-figure="type.{{.Type}}.destination">{{if .DestinationCounted}}{{.Destination}}{{else if .DestinationSupported}}not counted{{else}}not served{{end}}</td></tr>
{{end}}</table>{{else}}<p>No type surveyed{{if eq .A.Status "running"}} yet{{end}}.</p>{{end}}

{{with .A.SearchParameters}}{{if .Source}}<h2>Custom SearchParameters on the source</h2>
<table><tr><th>url</th><th>code</th><th>base</th><th>On the destination</th></tr>
{{range .Source}}<tr><td class="mono" data-figure="searchParameter">{{.URL}}</td><td>{{.Code}}</td><td>{{join .Base ", "}}</td><td>{{if not $.A.SearchParameters.Checked}}not checked{{else if missing $.A.SearchParameters .URL}}<b>missing</b>{{else}}yes{{end}}</td></tr>
{{end}}</table>{{end}}{{end}}
{{with .A.Profiles}}{{if .Source}}<h2>StructureDefinitions on the source</h2>
<table><tr><th>url</th><th>name</th><th>profiles</th><th>On the destination</th></tr>
{{range .Source}}<tr><td class="mono" data-figure="profile">{{.URL}}</td><td>{{.Name}}</td><td>{{.Kind}}</td><td>{{if not $.A.Profiles.Checked}}not checked{{else if missing $.A.Profiles .URL}}<b>missing</b>{{else}}yes{{end}}</td></tr>
{{end}}</table>{{end}}{{end}}

<h2>Plan and estimate</h2>
{{with .A.Estimate}}<p data-figure="estimate">The copy about <b data-figure="estimate.copy">{{duration .CopySeconds}}</b> (the exports end after {{duration .ExportSeconds}}), verification about {{duration .VerifySeconds}}: about <b data-figure="estimate.total">{{duration .TotalSeconds}}</b> in all, and about <b data-figure="estimate.staging">{{size .StagingBytes}}</b> staged, for <b>{{.Resources}}</b> resources in {{.Windows}} windows.</p>
<p>Assumptions:</p><ul>{{range .Assumptions}}<li>{{.}}</li>{{end}}</ul>{{else}}<p>No estimate{{if eq .A.Status "running"}} yet{{else}}: the plan could not be made{{end}}.</p>{{end}}
{{if .Windows}}<table><tr><th class="n">#</th><th>Window</th><th>Types</th><th>Since</th><th>Till</th><th class="n">Resources</th></tr>
{{range $i, $w := .Windows}}<tr><td class="n">{{add $i 1}}</td><td class="mono">{{$w.ID}}</td><td>{{if $w.Types}}{{join $w.Types ", "}}{{else}}all{{end}}</td><td>{{utcp $w.Since}}</td><td>{{utcp $w.Till}}</td><td class="n" data-figure="window.{{$w.ID}}">{{$w.Planned}}</td></tr>
{{end}}</table>{{if .WindowsHidden}}<p class="meta">{{.WindowsHidden}} more windows in the document.</p>{{end}}{{end}}

<h2>By hand, once the migration is done</h2>
{{with .A.Checklist}}<ul class="checklist">{{range .}}<li data-task="{{.Code}}">☐ <b>{{.Title}}</b> <span class="mono">{{.Code}}</span>: {{.Detail}}{{with .Call}}<br><span class="mono">{{.}}</span>{{end}}</li>
{{end}}</ul>{{else}}<p>Listed once the assessment completes.</p>{{end}}
</body>
</html>
`
