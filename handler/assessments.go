package main

import (
	"net/http"
	"time"

	"github.com/fhir-migrator/fhir-migrator/internal/api"
	"github.com/fhir-migrator/fhir-migrator/internal/assess"
	"github.com/fhir-migrator/fhir-migrator/internal/migration"
	"github.com/fhir-migrator/fhir-migrator/internal/report"
)

// startAssessment serves POST /api/assessments: the body of a migration's start, validated as POST
// /api/migrations validates it; 202 with the assessment (status running) and its Location. Nothing but the document
// store is called here: the checks run in the PollJob sweep (pollJob), like a migration's planning, because they
// are bounded, resumable steps saved in the document (a probe export is waited for across sweeps, and nobody
// sleeps), which is what the timer already does for migrations; a Service Bus message would only add a queue.
func (a *app) startAssessment(w http.ResponseWriter, r *http.Request) {
	var req migration.StartRequest
	if bad := api.Decode(r.Body, api.MaxStartBody, false, &req); bad != nil {
		api.Write(w, bad)
		return
	}
	auditFields(r.Context(), req)
	as, err := a.assess.Start(r.Context(), req)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	w.Header().Set("Location", assessmentPath(as.ID))
	api.WriteJSON(w, http.StatusAccepted, as)
}

func assessmentPath(id string) string { return "/api/assessments/" + id }

// getAssessment serves GET /api/assessments/{id}: the assessment document (JSON).
func (a *app) getAssessment(w http.ResponseWriter, r *http.Request) {
	as, err := a.assess.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	api.WriteJSON(w, http.StatusOK, as)
}

// assessmentReport serves GET /api/assessments/{id}/report: the Markdown report, or with Accept: text/html the
// self-contained page, under the same Content-Security-Policy as the migration's report page. Both render the
// assessment as it is now, running or ended.
func (a *app) assessmentReport(w http.ResponseWriter, r *http.Request) {
	as, err := a.assess.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	if !wantsHTML(r.Header.Get("Accept")) {
		w.Header().Set("Content-Type", "text/markdown; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(assess.Markdown(as))
		return
	}
	page, err := report.AssessmentHTML(as, time.Now())
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
