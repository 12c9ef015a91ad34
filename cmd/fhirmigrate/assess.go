package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"time"
)

// assessmentPath is the URL path of an assessment.
func assessmentPath(id string) string { return "/api/assessments/" + url.PathEscape(id) }

// assessmentHead is what the CLI reads of an assessment document (internal/assess.Assessment).
type assessmentHead struct {
	ID      string `json:"id"`
	Status  string `json:"status"`
	Verdict string `json:"verdict"`
	Request struct {
		Source      string `json:"source"`
		Destination string `json:"destination"`
	} `json:"request"`
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// setupAssess is the command assess: the flags of start (the same body), POST /api/assessments.
func setupAssess(fs *flagSet) runner {
	build := defineFields(fs, startFields)
	bodyFile := fs.str("body", "send the JSON start request in `FILE`, with the flags given set on top of it")
	doWatch := fs.boolean("watch", "wait until the assessment ends, then print its report (exit 1 when it is blocking or failed)")
	asJSON := fs.boolean("json", "print the service's answer as it is: the assessment document")
	return func(ctx context.Context, inv *invocation) (int, error) {
		req := map[string]json.RawMessage{}
		if *bodyFile != "" {
			raw, err := os.ReadFile(*bodyFile)
			if err != nil {
				return 2, fmt.Errorf("assess --body: %w", err)
			}
			if err := json.Unmarshal(raw, &req); err != nil || req == nil {
				return 2, fmt.Errorf("assess --body %s: not a JSON object: %v", *bodyFile, err)
			}
		}
		for k, v := range build() {
			req[k] = v
		}
		body, _ := json.Marshal(req)
		raw, status, err := inv.c.send(ctx, http.MethodPost, "/api/assessments", body)
		if err != nil {
			return 1, err
		}
		var a assessmentHead
		if json.Unmarshal(raw, &a) != nil || a.ID == "" {
			return 1, fmt.Errorf("assess: unexpected answer (HTTP %d): %s", status, excerpt(raw))
		}
		if !*doWatch {
			if *asJSON {
				writeRaw(inv.out, raw)
				return 0, nil
			}
			fmt.Fprintf(inv.out, "started assessment %s (%s -> %s)\nits report, once it ends: %s\n", a.ID, a.Request.Source,
				a.Request.Destination, inv.next("assessment", a.ID))
			return 0, nil
		}
		return awaitAssessment(ctx, inv, a.ID, *asJSON)
	}
}

// awaitAssessment polls the assessment until it ends, then prints its Markdown report (or, asJSON, the document);
// the exit status is 1 when it is blocking or failed.
func awaitAssessment(ctx context.Context, inv *invocation, id string, asJSON bool) (int, error) {
	for {
		raw, _, err := inv.c.send(ctx, http.MethodGet, assessmentPath(id), nil)
		if err != nil {
			return 1, err
		}
		var a assessmentHead
		if err := json.Unmarshal(raw, &a); err != nil {
			return 1, fmt.Errorf("assess: unreadable assessment: %w", err)
		}
		if a.Status != "running" {
			if asJSON {
				writeRaw(inv.out, raw)
			} else if err := inv.c.stream(ctx, assessmentPath(id)+"/report", "text/markdown", inv.out); err != nil {
				return 1, err
			}
			if a.Status != "completed" || a.Verdict == "blocking" {
				return 1, nil
			}
			return 0, nil
		}
		select {
		case <-ctx.Done():
			return 130, ctx.Err()
		case <-time.After(inv.interval):
		}
	}
}

// setupAssessment is the command assessment: an assessment's report or document.
func setupAssessment(fs *flagSet) runner {
	asJSON := fs.boolean("json", "the assessment document (JSON, as GET /api/assessments/{id} answers it)")
	html := fs.boolean("html", "the HTML page of the assessment as it is now (with --out FILE, or redirected)")
	out := fs.str("out", "write it to `FILE` instead of stdout")
	return func(ctx context.Context, inv *invocation) (int, error) {
		switch {
		case *asJSON && *html:
			return 2, &usageError{"assessment: one of --json, --html", lookupCommand("assessment").help()}
		case *asJSON:
			return inv.download(ctx, assessmentPath(inv.args[0]), "application/json", *out)
		case *html:
			if *out == "" && isTerminal(inv.out) {
				return 2, &usageError{"assessment --html writes a page: give --out FILE, or redirect stdout", lookupCommand("assessment").help()}
			}
			return inv.download(ctx, assessmentPath(inv.args[0])+"/report", "text/html", *out)
		}
		return inv.download(ctx, assessmentPath(inv.args[0])+"/report", "text/markdown", *out)
	}
}
