package main

import (
	"bufio"
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/fhir-migrator/fhir-migrator/internal/api"
	"github.com/fhir-migrator/fhir-migrator/internal/migration"
	"github.com/fhir-migrator/fhir-migrator/internal/report"
)

// migrationReport serves GET /api/migrations/{id}/report (Markdown), .../report/missing (every missing id) and
// .../report/search-parameters (the batch Bundle of SearchParameters an InitialLoad destination could not take).
func (a *app) migrationReport(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	switch r.PathValue("part") {
	case "":
		if wantsHTML(r.Header.Get("Accept")) {
			a.htmlReport(w, r, id)
			return
		}
		report, err := a.svc.Report(r.Context(), id)
		if err != nil {
			a.writeError(w, r, err)
			return
		}
		w.Header().Set("Content-Type", "text/markdown; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(report)
	case "missing":
		// Buffered so that an error found before anything was sent can still answer with its status.
		lw := &lazyHeader{w: w}
		bw := bufio.NewWriterSize(lw, 64<<10)
		err := a.svc.MissingIDs(r.Context(), id, bw)
		if err == nil {
			err = bw.Flush()
		}
		if err != nil && !lw.started {
			a.writeError(w, r, err)
			return
		}
		if err != nil {
			a.logger.Error("missing ids stream broken", "migration", id, "err", err)
			return
		}
		if !lw.started {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusOK)
		}
	case "search-parameters":
		bundle, err := a.svc.SearchParameterBundle(r.Context(), id)
		if err != nil {
			a.writeError(w, r, err)
			return
		}
		w.Header().Set("Content-Type", "application/fhir+json; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(bundle)
	default:
		api.Write(w, &api.Error{Status: api.StatusOf(api.Route), Code: "no_route", Message: "no such report: " + r.PathValue("part")})
	}
}

// lazyHeader sends the 200 and content type with the first bytes of the body.
type lazyHeader struct {
	w       http.ResponseWriter
	started bool
}

func (l *lazyHeader) Write(p []byte) (int, error) {
	if !l.started {
		l.started = true
		l.w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		l.w.WriteHeader(http.StatusOK)
	}
	return l.w.Write(p)
}

// migrationAction serves POST /api/migrations/{id}/{action}: one of actionHandlers, each body optional.
func (a *app) migrationAction(w http.ResponseWriter, r *http.Request) {
	h, ok := a.actionHandlers()[r.PathValue("action")]
	if !ok {
		api.Write(w, &api.Error{Status: api.StatusOf(api.Route), Code: "unknown_action",
			Message: "no action " + r.PathValue("action") + ": use " + strings.Join(actionNames, ", ")})
		return
	}
	h(w, r, r.PathValue("id"))
}

// actionHandlers are the actions served, by name: the OpenAPI description lists exactly these (actionNames, held
// to them by a test).
func (a *app) actionHandlers() map[string]func(w http.ResponseWriter, r *http.Request, id string) {
	return map[string]func(w http.ResponseWriter, r *http.Request, id string){
		"verify":  startAction(a, a.svc.Reverify),
		"cutover": startAction(a, a.svc.Cutover),
		"repair": startAction(a, func(ctx context.Context, id string, _ struct{}) (*migration.Migration, error) {
			return a.svc.Repair(ctx, id)
		}),
		"cleanup": func(w http.ResponseWriter, r *http.Request, id string) {
			var req migration.CleanupRequest
			if bad := api.Decode(r.Body, api.MaxActionBody, true, &req); bad != nil {
				api.Write(w, bad)
				return
			}
			auditFields(r.Context(), req)
			res, err := a.svc.Cleanup(r.Context(), id, req)
			if err != nil {
				a.writeError(w, r, err)
				return
			}
			api.WriteJSON(w, http.StatusOK, res)
		},
	}
}

// startAction serves an action that starts something from its optional body of type T: 202 with the document and
// its Location, or the error.
func startAction[T any](a *app, call func(context.Context, string, T) (*migration.Migration, error)) func(http.ResponseWriter, *http.Request, string) {
	return func(w http.ResponseWriter, r *http.Request, id string) {
		var req T
		if bad := api.Decode(r.Body, api.MaxActionBody, true, &req); bad != nil {
			api.Write(w, bad)
			return
		}
		auditFields(r.Context(), req)
		m, err := call(r.Context(), id, req)
		if err != nil {
			a.writeError(w, r, err)
			return
		}
		w.Header().Set("Location", "/api/migrations/"+m.ID)
		api.WriteJSON(w, http.StatusAccepted, m)
	}
}

// htmlReport answers the report page: one self-contained HTML page of the migration as it is now, running or
// finished, under a strict Content-Security-Policy.
func (a *app) htmlReport(w http.ResponseWriter, r *http.Request, id string) {
	m, err := a.svc.Get(r.Context(), id)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	page, err := report.HTML(m, time.Now())
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", report.ContentSecurityPolicy)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(page)
}

// wantsHTML reports whether an Accept header prefers text/html to text/markdown: a browser's does; no Accept,
// */* or text/markdown get the Markdown report.
func wantsHTML(accept string) bool {
	html, markdown := -1.0, -1.0
	for part := range strings.SplitSeq(accept, ",") {
		media, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		q := 1.0
		for p := range strings.SplitSeq(params, ";") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(p), "q="); ok {
				if f, err := strconv.ParseFloat(v, 64); err == nil {
					q = f
				}
			}
		}
		switch strings.ToLower(strings.TrimSpace(media)) {
		case "text/html":
			html = max(html, q)
		case "text/markdown":
			markdown = max(markdown, q)
		}
	}
	return html > 0 && html > markdown
}
