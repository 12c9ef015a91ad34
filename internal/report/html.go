// Package report renders a migration as one self-contained HTML page: inline CSS and SVG, no script, nothing
// fetched from elsewhere, readable printed to PDF. Every figure on it carries a data-figure attribute naming
// where it comes from in the document, so that a test can hold the page to the document.
package report

import (
	"bytes"
	"cmp"
	"fmt"
	"html/template"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/fhir-migrator/fhir-migrator/internal/migration"
)

// ContentSecurityPolicy is the header the page is served with: nothing but its own inline style may load.
const ContentSecurityPolicy = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// maxTimelineJobs bounds the jobs drawn on the timeline (the latest); the earlier ones are counted.
const maxTimelineJobs = 400

// typeFigures are one type's bars.
type typeFigures struct {
	Type                                                  string
	Source, Exported, Imported, ImportErrors, Destination int64
	HasSource, HasDestination                             bool
	Max                                                   int64
	Reason, Explanation                                   string
	Match, Verified                                       bool
}

type timelineJob struct {
	ID, Kind, State, Label, Title string
	X, W, Y                       float64
	Duration                      string
}

type page struct {
	M           *migration.Migration
	Now         time.Time
	Types       []typeFigures
	Jobs        []timelineJob
	JobsHidden  int
	TimelineH   float64
	Start, End  time.Time
	Ticks       []tick
	Verdict     string
	VerdictCSS  string
	Notes       []string
	Missing     []string
	Differences []migration.Difference
	Scope       []migration.ScopeItem
}

type tick struct {
	X      float64
	Label  string
	Anchor string
}

const (
	timelineW    = 900.0
	timelineLeft = 190.0
	rowH         = 14.0
)

// HTML renders m as seen at now.
func HTML(m *migration.Migration, now time.Time) ([]byte, error) {
	p := &page{M: m, Now: now, Notes: m.Notes, Scope: migration.Scope(m)}
	p.Types = typeFiguresOf(m)
	p.timeline(m, now)
	p.verdict(m)
	if v := m.Verification; v != nil {
		p.Missing = v.Missing
		p.Differences = v.Differences
	}
	var b bytes.Buffer
	if err := pageTemplate.Execute(&b, p); err != nil {
		return nil, fmt.Errorf("render the report of %s: %w", m.ID, err)
	}
	return b.Bytes(), nil
}

// typeFiguresOf takes each type's figures from the verification rows when there are some, else from the jobs.
func typeFiguresOf(m *migration.Migration) []typeFigures {
	byType := map[string]*typeFigures{}
	row := func(t string) *typeFigures {
		if byType[t] == nil {
			byType[t] = &typeFigures{Type: t}
		}
		return byType[t]
	}
	if v := m.Verification; v != nil && len(v.Rows) > 0 {
		for _, r := range v.Rows {
			f := row(r.Type)
			f.Source, f.Exported, f.Imported, f.ImportErrors, f.Destination = r.Source, r.Exported, r.Imported, r.ImportErrors, r.Destination
			f.HasSource, f.HasDestination, f.Verified = true, true, true
			f.Reason, f.Explanation, f.Match = r.Reason, r.Explanation, r.Match
		}
	} else {
		for _, t := range m.Request.Types {
			row(t) // every requested type is listed, before any job of it finishes
		}
		for _, j := range m.Jobs {
			if j.State != migration.JobDone {
				continue
			}
			for t, n := range j.Counts {
				if j.Kind == migration.KindExport {
					row(t).Exported += n
				} else {
					row(t).Imported += n
				}
			}
			if j.ErrorSummary != nil {
				for t, n := range j.ErrorSummary.ByType {
					row(t).ImportErrors += n
				}
			}
		}
	}
	out := make([]typeFigures, 0, len(byType))
	for _, t := range slices.Sorted(maps.Keys(byType)) {
		f := byType[t]
		f.Max = max(f.Source, f.Exported, f.Imported, f.ImportErrors, f.Destination, 1)
		out = append(out, *f)
	}
	return out
}

func (p *page) timeline(m *migration.Migration, now time.Time) {
	jobs := slices.Clone(m.Jobs)
	jobs = slices.DeleteFunc(jobs, func(j *migration.Job) bool { return j.StartedAt == nil })
	slices.SortStableFunc(jobs, func(a, b *migration.Job) int { return a.StartedAt.Compare(*b.StartedAt) })
	if len(jobs) > maxTimelineJobs { // the latest ones: what moves now, the recent sync rounds
		p.JobsHidden = len(jobs) - maxTimelineJobs
		jobs = jobs[p.JobsHidden:]
	}
	p.Start, p.End = m.CreatedAt, now
	if m.Status.Terminal() {
		p.End = m.UpdatedAt
	}
	for _, j := range jobs {
		if j.StartedAt.Before(p.Start) {
			p.Start = *j.StartedAt
		}
		if j.FinishedAt != nil && j.FinishedAt.After(p.End) {
			p.End = *j.FinishedAt
		}
	}
	span := max(p.End.Sub(p.Start).Seconds(), 1)
	scale := func(t time.Time) float64 {
		return timelineLeft + (timelineW-timelineLeft-10)*t.Sub(p.Start).Seconds()/span
	}
	for i, j := range jobs {
		end := p.End
		if j.FinishedAt != nil {
			end = *j.FinishedAt
		}
		x0, x1 := scale(*j.StartedAt), scale(end)
		label := j.ID
		if j.Round > 0 {
			label += fmt.Sprintf(" (sync round %d)", j.Round)
		} else if j.Since != nil || j.Till != nil {
			label += " " + window(j)
		}
		p.Jobs = append(p.Jobs, timelineJob{ID: j.ID, Kind: string(j.Kind), State: string(j.State), Label: label,
			X: x0, W: max(x1-x0, 2), Y: 20 + float64(i)*rowH, Duration: end.Sub(*j.StartedAt).Round(time.Second).String(),
			Title: fmt.Sprintf("%s %s: %s, %s", j.Kind, j.ID, j.State, end.Sub(*j.StartedAt).Round(time.Second))})
	}
	p.TimelineH = 30 + float64(len(p.Jobs))*rowH
	for i := range 5 {
		t := p.Start.Add(time.Duration(float64(i) / 4 * span * float64(time.Second)))
		anchor := "middle"
		if i == 4 {
			anchor = "end" // the last label ends at the right edge, not past it
		}
		p.Ticks = append(p.Ticks, tick{X: scale(t), Label: t.UTC().Format("01-02 15:04:05"), Anchor: anchor})
	}
}

func window(j *migration.Job) string {
	f := func(t *time.Time) string {
		if t == nil {
			return "…"
		}
		return t.UTC().Format("2006-01-02")
	}
	return "[" + f(j.Since) + " – " + f(j.Till) + "]"
}

func (p *page) verdict(m *migration.Migration) {
	switch {
	case m.Status == migration.StatusCompleted && m.Verification != nil && m.Verification.Skipped:
		p.Verdict, p.VerdictCSS = "completed, not verified (verify: none)", "warn"
	case m.Status == migration.StatusCompleted && len(notProven(m)) > 0:
		p.Verdict, p.VerdictCSS = "PASSED, NOT PROVEN for "+strings.Join(notProven(m), ", ")+": counts cannot tell and the staged files are deleted", "warn"
	case m.Status == migration.StatusCompleted:
		p.Verdict, p.VerdictCSS = "PASSED: every migrated type verified", "ok"
	case m.Status == migration.StatusFailed && m.Error != nil:
		p.Verdict, p.VerdictCSS = "FAILED: "+m.Error.Code, "bad"
	case m.Status == migration.StatusCanceled:
		p.Verdict, p.VerdictCSS = "canceled", "warn"
	case m.Status == migration.StatusSyncing:
		p.Verdict, p.VerdictCSS = "syncing: the destination follows the source until the cutover", "run"
	default:
		p.Verdict, p.VerdictCSS = "running: "+string(m.Status), "run"
	}
}

// notProven are the types the verification could not prove.
func notProven(m *migration.Migration) []string {
	var out []string
	if v := m.Verification; v != nil {
		for _, r := range v.Rows {
			if r.NotProven {
				out = append(out, r.Type)
			}
		}
	}
	return out
}

var pageTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"pct": func(n, maxN int64) string { return fmt.Sprintf("%.1f", 100*float64(n)/float64(cmp.Or(maxN, 1))) },
	"utc": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
	"utcp": func(t *time.Time) string {
		if t == nil {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	},
	"join": strings.Join,
	"secs": func(s float64) string { return (time.Duration(s) * time.Second).String() },
	"rate": func(r float64) string { return fmt.Sprintf("%.0f", r) },
}).Parse(pageHTML))

const pageHTML = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Migration {{.M.ID}}: {{.M.Status}}</title>
<style>
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1b1f24; margin: 24px auto; max-width: 960px; padding: 0 16px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid #d0d7de; padding-bottom: 4px; }
.meta { color: #57606a; } .mono { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 12px; }
.verdict { display: inline-block; padding: 6px 12px; border-radius: 6px; font-weight: 600; margin: 10px 0; }
.ok { background: #dafbe1; color: #116329; } .bad { background: #ffebe9; color: #a40e26; } .warn { background: #fff8c5; color: #7d4e00; } .run { background: #ddf4ff; color: #0a3069; }
table { border-collapse: collapse; width: 100%; } th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #eaeef2; vertical-align: top; }
th { font-weight: 600; background: #f6f8fa; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
.bars td { padding: 2px 8px; } .bar { height: 10px; border-radius: 2px; }
.b-source { background: #8c959f; } .b-exported { background: #218bff; } .b-imported { background: #2da44e; } .b-errors { background: #cf222e; } .b-destination { background: #8250df; }
.legend span { display: inline-block; margin-right: 14px; } .legend i { display: inline-block; width: 10px; height: 10px; margin-right: 4px; border-radius: 2px; }
svg text { font: 10px system-ui, sans-serif; fill: #1b1f24; }
.s-done { fill: #2da44e; } .s-running, .s-starting { fill: #218bff; } .s-queued { fill: #d0d7de; } .s-failed { fill: #cf222e; } .s-canceled { fill: #8c959f; }
span.s-done { color: #2da44e; } span.s-running { color: #218bff; } span.s-failed { color: #cf222e; } span.s-canceled { color: #8c959f; }
ul.notes li { margin-bottom: 4px; }
@media print { body { margin: 0; max-width: none; font-size: 11px; } h2 { break-after: avoid; } table, svg { break-inside: avoid; } .verdict { border: 1px solid currentColor; } }
</style>
</head>
<body>
<h1>Migration <span class="mono" data-figure="id">{{.M.ID}}</span></h1>
<div class="meta"><span data-figure="source">{{.M.Request.Source}}</span> → <span data-figure="destination">{{.M.Request.Destination}}</span></div>
<div class="meta">status <b data-figure="status">{{.M.Status}}</b> · created {{utc .M.CreatedAt}} · updated {{utc .M.UpdatedAt}} · report at {{utc .Now}}</div>
<div class="verdict {{.VerdictCSS}}" data-figure="verdict">{{.Verdict}}</div>
<h2>Scope</h2>
<table class="scope">{{range .Scope}}<tr><th>{{.Label}}</th><td data-figure="scope.{{.Label}}">{{.Value}}</td></tr>
{{end}}</table>
{{with .M.Error}}<p><b>Error</b> <span class="mono" data-figure="error.code">{{.Code}}</span>: {{.Message}}</p>{{end}}
{{with .M.Progress}}{{with .Estimate}}<p data-figure="estimate">Exported <b>{{.Exported}}</b> and imported <b>{{.Imported}}</b> of about {{.Expected}} resources; {{rate .ExportRate}}/s exported, {{rate .ImportRate}}/s imported; exports end {{with .ExportEnd}}{{utcp .}}{{else}}when a window has finished we will know{{end}}, imports {{with .ImportEnd}}{{utcp .}}{{else}}when an import has finished we will know{{end}} ({{.Basis}}).</p>{{end}}{{end}}
{{with .M.Sync}}<p>Sync: <b data-figure="sync.rounds">{{.Rounds}}</b> rounds, lag <b>{{secs .LagSeconds}}</b>, high-water mark {{utc .HighWater}}{{if .LastError}}; last error: {{.LastError}}{{end}}.</p>{{end}}
{{with .M.Cutover}}<p>Cut over at <b>{{utc .At}}</b> (lag {{secs .LagSeconds}}).</p>{{end}}

<h2>Resources per type</h2>
<div class="legend"><span><i class="b-source"></i>source</span><span><i class="b-exported"></i>exported</span><span><i class="b-imported"></i>imported</span><span><i class="b-errors"></i>import errors</span><span><i class="b-destination"></i>destination</span></div>
{{if .Types}}<table class="bars">
<tr><th>Type</th><th>Figure</th><th style="width:50%"></th><th class="n">Count</th></tr>
{{range .Types}}{{$t := .}}
{{if .HasSource}}<tr><td rowspan="5"><b>{{.Type}}</b>{{if .Verified}}<br>{{if .Match}}<span class="ok">match</span>{{else}}<span class="bad">{{.Reason}}</span>{{end}}{{end}}</td><td>source</td><td><div class="bar b-source" style="width:{{pct .Source .Max}}%"></div></td><td class="n" data-figure="{{.Type}}.source">{{.Source}}</td></tr>{{else}}<tr><td rowspan="4"><b>{{.Type}}</b></td>{{end}}
{{if .HasSource}}<tr>{{end}}<td>exported</td><td><div class="bar b-exported" style="width:{{pct .Exported .Max}}%"></div></td><td class="n" data-figure="{{.Type}}.exported">{{.Exported}}</td></tr>
<tr><td>imported</td><td><div class="bar b-imported" style="width:{{pct .Imported .Max}}%"></div></td><td class="n" data-figure="{{.Type}}.imported">{{.Imported}}</td></tr>
<tr><td>import errors</td><td><div class="bar b-errors" style="width:{{pct .ImportErrors .Max}}%"></div></td><td class="n" data-figure="{{.Type}}.importErrors">{{.ImportErrors}}</td></tr>
{{if .HasDestination}}<tr><td>destination</td><td><div class="bar b-destination" style="width:{{pct .Destination .Max}}%"></div></td><td class="n" data-figure="{{.Type}}.destination">{{.Destination}}</td></tr>{{else}}<tr><td>destination</td><td></td><td class="n">not counted yet</td></tr>{{end}}
{{end}}</table>{{else}}<p>No job has finished yet.</p>{{end}}

<h2>Timeline</h2>
{{if .Jobs}}<svg xmlns="http://www.w3.org/2000/svg" width="100%" viewBox="0 0 900 {{.TimelineH}}" role="img" aria-label="jobs over time">
{{range .Ticks}}<line x1="{{.X}}" y1="12" x2="{{.X}}" y2="{{$.TimelineH}}" stroke="#eaeef2"/><text x="{{.X}}" y="10" text-anchor="{{.Anchor}}">{{.Label}}</text>{{end}}
{{range .Jobs}}<g data-job="{{.ID}}" data-state="{{.State}}"><title>{{.Title}}</title><text x="4" y="{{.Y}}" dy="9">{{.Label}}</text><rect class="s-{{.State}}" x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="10" rx="2"/></g>
{{end}}</svg>
<p class="meta">{{len .Jobs}} jobs{{if .JobsHidden}} drawn, the latest ({{.JobsHidden}} earlier ones not drawn){{end}}: <span class="s-done">■</span> done <span class="s-running">■</span> running <span class="s-failed">■</span> failed <span class="s-canceled">■</span> canceled.</p>
<table><tr><th>Job</th><th>Kind</th><th>State</th><th>Duration</th></tr>
{{range .Jobs}}<tr><td class="mono">{{.Label}}</td><td>{{.Kind}}</td><td data-figure="job.{{.ID}}.state">{{.State}}</td><td>{{.Duration}}</td></tr>
{{end}}</table>{{else}}<p>No job has started yet.</p>{{end}}

<h2>Verification</h2>
{{with .M.Verification}}{{if .CheckedAt}}<p>Mode <b>{{.Mode}}</b>, checked {{utcp .CheckedAt}}: <b data-figure="verification.passed">{{if .Passed}}passed{{else}}not passed{{end}}</b>.</p>
<table><tr><th>Type</th><th class="n">Source</th><th class="n">Exported</th><th class="n">Imported</th><th class="n">Destination before</th><th class="n">Destination</th><th>Result</th></tr>
{{range .Rows}}<tr><td>{{.Type}}</td><td class="n">{{.Source}}</td><td class="n">{{.Exported}}</td><td class="n">{{.Imported}}</td><td class="n">{{.DestinationBefore}}</td><td class="n">{{.Destination}}</td><td data-figure="{{.Type}}.result">{{if not .Match}}<b>{{.Reason}}</b>{{else if .NotProven}}<b>not proven</b>{{else if .NothingInRange}}nothing in range{{else}}match{{end}}{{if .Explanation}}<br><span class="meta">{{.Explanation}}</span>{{end}}</td></tr>
{{end}}</table>{{else}}<p>Verifying (round {{.Generation}}).</p>{{end}}{{else}}<p>Not verified yet: the copy is still running.</p>{{end}}
{{with .Missing}}<p><b>Missing in the destination</b> (the first {{len .}}; every one at <span class="mono">/report/missing</span>):</p><ul class="mono">{{range .}}<li>{{.}}</li>{{end}}</ul>{{end}}
{{with .Differences}}<p><b>Differing resources</b>:</p><ul class="mono">{{range .}}<li>{{.Resource}}: {{join .Paths ", "}}</li>{{end}}</ul>{{end}}

<h2>Notes to act on</h2>
{{with .Notes}}<ul class="notes">{{range .}}<li data-figure="note">{{.}}</li>{{end}}</ul>{{else}}<p>None.</p>{{end}}
</body>
</html>
`
