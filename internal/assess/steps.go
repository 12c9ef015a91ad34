package assess

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/fhir-migrator/fhir-migrator/internal/fhir"
	"github.com/fhir-migrator/fhir-migrator/internal/migration"
)

// Steps of an assessment, in the order they first run (StepProgress.Step). The probe export is kicked off early
// and polled while the rest runs.
const (
	stepServers     = "servers"
	stepExport      = "export"
	stepExportPoll  = "exportStatus"
	stepImport      = "import"
	stepSurvey      = "survey"
	stepDefinitions = "definitions"
	stepPlan        = "plan"
	stepStaging     = "staging"
	stepFinish      = "finish"
)

// Bounds of the steps.
const (
	// planCountsPerStep bounds one plan step's count calls (a migration's planning step makes as many).
	planCountsPerStep = 50
	// maxDefinitions bounds the SearchParameters or StructureDefinitions listed of a server.
	maxDefinitions = 1000
	// sampleSize is how many of a type's newest resources are read to measure their size.
	sampleSize = 10
	// reachRetries: a server that cannot be read is asked again at this many sweeps before it is unreachable.
	reachRetries = 2
	// exportPollErrors: server errors in a row answering the probe export's status before it counts as failed.
	exportPollErrors = 3
	// probeBlob is the blob the staging check writes and reads in the probe's container.
	probeBlob = "assessment-probe.txt"
)

// run is one step of one assessment: it changes a, which Advance then saves.
type run struct {
	s        *Service
	a        *Assessment
	deadline time.Time
}

func (r *run) client(base string) (Client, error) {
	c, err := r.s.cfg.FHIR(base)
	if err != nil {
		return nil, fmt.Errorf("client for %s: %w", base, err)
	}
	return c, nil
}

// step does the next thing to do; wait reports that nothing is left but waiting (for the probe export).
func (r *run) step(ctx context.Context) (wait bool, err error) {
	a, now := r.a, r.s.now()
	set := func(step string) { a.Progress.Step = step }
	if a.Source == nil || a.Destination == nil {
		set(stepServers)
		return false, r.servers(ctx)
	}
	srcOK, dstOK := a.Source.Reachable, a.Destination.Reachable
	switch {
	case srcOK && a.Export == nil:
		set(stepExport)
		return false, r.kickoff(ctx)
	case a.Export != nil && a.Export.State == exportRunning && (a.Export.NextPollAt == nil || !a.Export.NextPollAt.After(now)):
		set(stepExportPoll)
		return false, r.pollExport(ctx)
	case dstOK && a.Import == nil:
		set(stepImport)
		return false, r.importProbes(ctx)
	case srcOK && (a.Survey == nil || !a.Survey.Done):
		set(stepSurvey)
		return false, r.survey(ctx)
	case srcOK && (a.SearchParameters == nil || a.Profiles == nil):
		set(stepDefinitions)
		return false, r.definitions(ctx)
	case srcOK && planable(a) && (a.Plan == nil || !a.Plan.Done):
		set(stepPlan)
		return false, r.plan(ctx)
	case a.Export != nil && a.Export.State == exportRunning:
		set(stepExportPoll)
		return true, nil // the probe export is all that is left: polled at the next sweep
	case a.Staging == nil:
		set(stepStaging)
		return false, r.staging(ctx)
	}
	set(stepFinish)
	r.finish()
	return false, nil
}

// servers reads both CapabilityStatements, and counts the typeFilter entries on the source as a migration does.
func (r *run) servers(ctx context.Context) error {
	a := r.a
	src, srcErr := r.server(ctx, a.Request.Source)
	dst, dstErr := r.server(ctx, a.Request.Destination)
	if (srcErr != nil || dstErr != nil) && a.Progress.failuresOf(stepServers) < reachRetries {
		return errors.Join(srcErr, dstErr) // asked again at the next sweep before it is judged unreachable
	}
	if src.Reachable {
		client, err := r.client(a.Request.Source)
		if err != nil {
			return err
		}
		var filters []FilterCount
		for _, f := range a.Request.TypeFilter {
			typ, query, _ := strings.Cut(f, "?")
			fc := FilterCount{Filter: f}
			if !slices.Contains(src.Types, typ) {
				fc.Refused = "the source does not serve " + typ
				filters = append(filters, fc)
				continue
			}
			q, _ := url.ParseQuery(query) // checked by the request's validation
			n, err := client.Count(ctx, typ, q)
			switch {
			case fhir.Refused(err):
				fc.Refused = err.Error()
			case err != nil:
				return fmt.Errorf("count %s on the source: %w", f, err)
			}
			fc.Count = n
			filters = append(filters, fc)
		}
		a.Filters = filters
	}
	a.Source, a.Destination = src, dst
	return nil
}

// server reads one CapabilityStatement; the facts say unreachable when it could not be read.
func (r *run) server(ctx context.Context, base string) (*ServerFacts, error) {
	f := &ServerFacts{URL: base, Kind: serverKind(base)}
	client, err := r.client(base)
	var c *fhir.Capability
	if err == nil {
		c, err = client.Capability(ctx)
	}
	if err != nil {
		f.Error = truncate(err.Error(), 500)
		return f, err
	}
	f.Reachable = true
	f.FHIRVersion, f.Software, f.SoftwareVersion, f.Types, f.Operations = c.FHIRVersion, c.Software, c.SoftwareVersion, c.Types, c.Operations
	if c.Implementation != "" && f.Software == "" {
		f.Software = c.Implementation
	}
	return f, nil
}

// kickoff starts the probe export: one type, _since a day ahead, into a container named as the assessment. The
// service accepts a _since in the future (ValidateExportRequestFilterAttribute and CreateExportRequestHandler
// check no time), and ExportJobTask.cs searches _lastUpdated=le{till}&_lastUpdated=ge{since}, till defaulting to
// the job's queued time, so the export selects nothing; before searching it connects to its storage and creates the
// container (AzureExportDestinationClient.ConnectAsync: CreateIfNotExistsAsync), which proves the source's export
// storage and its rights there, and CreateExportRequestHandler checks the caller's Export data action first.
func (r *run) kickoff(ctx context.Context) error {
	a, now := r.a, r.s.now()
	client, err := r.client(a.Request.Source)
	if err != nil {
		return err
	}
	types := migration.PlanTypes(&a.Request, a.Source.Types)
	typ := "Patient"
	for _, t := range types {
		if slices.Contains(a.Source.Types, t) {
			typ = t
			break
		}
	}
	since := now.Add(24 * time.Hour)
	req := fhir.ExportRequest{Types: []string{typ}, Since: &since, Container: a.ID}
	e := &ExportProbe{Container: a.ID, State: exportRunning, KickedOffAt: &now,
		Query: url.Values{"_type": {typ}, "_since": {fhir.FormatInstant(since)}, "_container": {a.ID}}.Encode()}
	cl, err := client.ExportKickoff(ctx, req)
	var fe *fhir.Error
	switch {
	case fhir.Refused(err) && errors.As(err, &fe):
		e.State, e.Status, e.Answer, e.FinishedAt = exportRefused, fe.StatusCode, fe.Message, &now
	case err != nil:
		return fmt.Errorf("probe export kick-off: %w", err)
	default:
		e.ContentLocation, e.NextPollAt = cl, &now
	}
	a.Export = e
	return nil
}

// pollExport asks the probe export's status; a job that runs past the deadline is canceled.
func (r *run) pollExport(ctx context.Context) error {
	a, now := r.a, r.s.now()
	e := a.Export
	client, err := r.client(a.Request.Source)
	if err != nil {
		return err
	}
	e.Polls++
	st, err := client.ExportStatus(ctx, e.ContentLocation)
	var fe *fhir.Error
	switch {
	case errors.As(err, &fe) && fe.StatusCode != 429 && (fe.StatusCode < 500 || a.Progress.failuresOf(stepExportPoll)+1 >= exportPollErrors):
		// A failed job answers its failure (a 4xx, or a 5xx with the job's reason); a canceled one 404.
		e.State, e.Status, e.Answer, e.FinishedAt = exportFailed, fe.StatusCode, fe.Message, &now
		return nil
	case err != nil:
		next := now.Add(r.s.cfg.PollInterval)
		e.NextPollAt = &next
		return fmt.Errorf("probe export status: %w", err)
	case st.Done:
		e.State, e.FinishedAt, e.NextPollAt = exportCompleted, &now, nil
		e.Files = len(st.Manifest.Output)
		for _, f := range st.Manifest.Output {
			e.Resources += f.Count
		}
		return nil
	case now.Sub(*e.KickedOffAt) > r.s.cfg.ExportDeadline:
		if err := client.CancelJob(ctx, e.ContentLocation); err != nil {
			r.s.log.Warn("probe export not canceled", "assessment", a.ID, "err", err)
		}
		e.State, e.FinishedAt, e.NextPollAt = exportTimedOut, &now, nil
		return nil
	}
	next := now.Add(max(r.s.cfg.PollInterval, st.RetryAfter))
	e.NextPollAt = &next
	return nil
}

// importProbes asks the destination the two questions it refuses by design (internal/fhir.ImportProbe and
// LockProbe): whether import is enabled from the staging account, and whether it is in initial import mode.
func (r *run) importProbes(ctx context.Context) error {
	a := r.a
	client, err := r.client(a.Request.Destination)
	if err != nil {
		return err
	}
	p := &ImportProbe{InputURL: strings.TrimSuffix(r.s.cfg.Staging.Endpoint(), "/") + "/" + a.ID + "/assessment-probe.ndjson",
		CheckedAt: r.s.now()}
	var errs []error
	if p.Import, err = client.ImportProbe(ctx, p.InputURL); err != nil {
		errs = append(errs, err)
	}
	if p.Lock, err = client.LockProbe(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		if a.Progress.failuresOf(stepImport) < reachRetries {
			return err
		}
		p.Error = truncate(err.Error(), 500)
	}
	a.Import = p
	return nil
}

// survey takes the facts of the next type: on the source its resources in the range (each typeFilter entry
// counted), with history or deletes its versions, its oldest and newest lastUpdated and a sample's size; on the
// destination its count.
func (r *run) survey(ctx context.Context) error {
	a, now := r.a, r.s.now()
	if a.Survey == nil {
		till := now
		if a.Request.Till != nil {
			till = *a.Request.Till
		}
		var types []string
		for _, t := range migration.PlanTypes(&a.Request, a.Source.Types) {
			if slices.Contains(a.Source.Types, t) {
				types = append(types, t)
			}
		}
		a.Survey = &SurveyProgress{Types: types, Since: a.Request.Since, Till: till, Done: len(types) == 0}
		return nil
	}
	sv := a.Survey
	src, err := r.client(a.Request.Source)
	if err != nil {
		return err
	}
	for sv.Next < len(sv.Types) {
		t := sv.Types[sv.Next]
		tf, err := r.surveyType(ctx, src, t)
		if err != nil {
			return err
		}
		a.Types = append(a.Types, *tf)
		sv.Next++
		if !r.s.now().Before(r.deadline) {
			break
		}
	}
	sv.Done = sv.Next >= len(sv.Types)
	return nil
}

// rangeQuery selects the survey's range by lastUpdated, both ends inclusive, as a migration counts it.
func (sv *SurveyProgress) rangeQuery() url.Values {
	q := url.Values{"_lastUpdated": {"le" + fhir.FormatInstant(sv.Till)}}
	if sv.Since != nil {
		q.Add("_lastUpdated", "ge"+fhir.FormatInstant(*sv.Since))
	}
	return q
}

func (r *run) surveyType(ctx context.Context, src Client, t string) (*TypeFacts, error) {
	a, sv := r.a, r.a.Survey
	tf := &TypeFacts{Type: t}
	var err error
	if tf.Live, err = src.Count(ctx, t, sv.rangeQuery()); err != nil {
		return nil, fmt.Errorf("count %s on the source: %w", t, err)
	}
	var filtered int64
	filters := 0
	for _, f := range a.Filters {
		if typ, _, _ := strings.Cut(f.Filter, "?"); typ == t && f.Refused == "" {
			filtered += f.Count
			filters++
		}
	}
	if filters > 0 {
		tf.Filtered = &filtered
	}
	if a.Request.History || a.Request.Deletes || a.Request.Sync {
		// Every version and deletion by its own lastUpdated, as such an export selects them (ExportJobTask.cs):
		// _before only with the request's till (the server refuses a _before in the future).
		hr := fhir.HistoryRange{Since: sv.Since}
		if a.Request.Till != nil {
			before := a.Request.Till.Add(100 * time.Nanosecond)
			hr.Before = &before
		}
		n, err := src.HistoryCount(ctx, t, hr)
		switch {
		case fhir.Refused(err):
		case err != nil:
			return nil, fmt.Errorf("count the versions of %s on the source: %w", t, err)
		default:
			tf.Versions = &n
		}
	}
	if tf.Live > 0 {
		q := sv.rangeQuery()
		q.Set("_sort", "_lastUpdated")
		q.Set("_count", "1")
		oldest, _, err := src.SearchPage(ctx, t, q, "")
		if err != nil {
			return nil, fmt.Errorf("the oldest %s on the source: %w", t, err)
		}
		q.Set("_sort", "-_lastUpdated")
		q.Set("_count", fmt.Sprint(sampleSize))
		newest, _, err := src.SearchPage(ctx, t, q, "")
		if err != nil {
			return nil, fmt.Errorf("the newest %s on the source: %w", t, err)
		}
		if len(oldest) > 0 {
			tf.Oldest = lastUpdated(oldest[0])
		}
		if len(newest) > 0 {
			tf.Newest = lastUpdated(newest[0])
			var size int64
			for _, raw := range newest {
				var compact bytes.Buffer
				if json.Compact(&compact, raw) == nil {
					size += int64(compact.Len()) + 1 // one NDJSON line
				} else {
					size += int64(len(raw)) + 1
				}
			}
			tf.AvgBytes = size / int64(len(newest))
		}
	}
	if d := a.Destination; d.Reachable && slices.Contains(d.Types, t) {
		tf.DestinationSupported = true
		dst, err := r.client(a.Request.Destination)
		if err != nil {
			return nil, err
		}
		n, err := dst.Count(ctx, t, nil)
		if err == nil {
			tf.Destination, tf.DestinationCounted = n, true
		} else {
			r.s.log.Warn("destination count failed", "assessment", a.ID, "type", t, "err", err)
		}
	}
	return tf, nil
}

func lastUpdated(raw json.RawMessage) *time.Time {
	var head struct {
		Meta struct {
			LastUpdated string `json:"lastUpdated"`
		} `json:"meta"`
	}
	if json.Unmarshal(raw, &head) != nil {
		return nil
	}
	t, err := time.Parse(time.RFC3339Nano, head.Meta.LastUpdated)
	if err != nil {
		return nil
	}
	return &t
}

// definitions lists the source's SearchParameters (every stored one is a custom one) or StructureDefinitions, then
// the destination's, and compares them by url.
func (r *run) definitions(ctx context.Context) error {
	a := r.a
	typ := "SearchParameter"
	if a.SearchParameters != nil {
		typ = "StructureDefinition"
	}
	d := &Definitions{Type: typ, Served: slices.Contains(a.Source.Types, typ)}
	if d.Served {
		src, err := r.client(a.Request.Source)
		if err != nil {
			return err
		}
		if d.Source, d.Truncated, err = listDefinitions(ctx, src, typ); err != nil {
			return fmt.Errorf("list the source's %s resources: %w", typ, err)
		}
		if len(d.Source) > 0 && a.Destination.Reachable && slices.Contains(a.Destination.Types, typ) {
			dst, err := r.client(a.Request.Destination)
			if err != nil {
				return err
			}
			held, _, err := listDefinitions(ctx, dst, typ)
			if err != nil {
				return fmt.Errorf("list the destination's %s resources: %w", typ, err)
			}
			d.Checked = true
			for _, def := range d.Source {
				if !slices.ContainsFunc(held, func(h Definition) bool { return h.URL == def.URL }) {
					d.Missing = append(d.Missing, def.URL)
				}
			}
		}
	}
	if typ == "SearchParameter" {
		a.SearchParameters = d
	} else {
		a.Profiles = d
	}
	return nil
}

var errEnough = errors.New("enough")

func listDefinitions(ctx context.Context, c Client, typ string) ([]Definition, bool, error) {
	var out []Definition
	truncated := false
	err := c.Search(ctx, typ, url.Values{"_count": {"100"}}, func(raw json.RawMessage) error {
		if len(out) >= maxDefinitions {
			truncated = true
			return errEnough
		}
		var d struct {
			URL  string   `json:"url"`
			Name string   `json:"name"`
			Code string   `json:"code"`
			Base []string `json:"base"`
			Type string   `json:"type"`
		}
		if err := json.Unmarshal(raw, &d); err != nil {
			return fmt.Errorf("a %s: %w", typ, err)
		}
		out = append(out, Definition{URL: d.URL, Name: d.Name, Code: d.Code, Base: d.Base, Kind: d.Type})
		return nil
	})
	if err != nil && !errors.Is(err, errEnough) {
		return nil, false, err
	}
	return out, truncated, nil
}

// planable: the plan can be made (a migration would count the same): every type and typeFilter type is the
// source's, and the source takes every typeFilter search.
func planable(a *Assessment) bool {
	for _, t := range a.Request.Types {
		if !slices.Contains(a.Source.Types, t) {
			return false
		}
	}
	for _, f := range a.Filters {
		if f.Refused != "" {
			return false
		}
	}
	return true
}

// plan runs steps of the migration's own planning until the step's deadline.
func (r *run) plan(ctx context.Context) error {
	a, now := r.a, r.s.now()
	if a.Plan == nil {
		a.Plan = &WindowPlan{Planning: migration.NewPlanning(&a.Request, a.Source.Types, now)}
		return nil
	}
	src, err := r.client(a.Request.Source)
	if err != nil {
		return err
	}
	jobs, done, err := migration.PlanStep(ctx, src, &a.Request, a.Source.Types, a.Plan.Planning, r.s.cfg.MaxPlanningCounts,
		planCountsPerStep, r.deadline, r.s.cfg.Clock)
	for _, j := range jobs {
		a.Plan.Windows = append(a.Plan.Windows, Window{ID: j.ID, Types: j.Types, Since: j.Since, Till: j.Till, Planned: j.Planned})
		a.Plan.Resources += j.Planned
	}
	if err != nil {
		return fmt.Errorf("plan: %w", err)
	}
	if done {
		// Ordered as a migration starts them (smallest first), by the engine's own ordering.
		js := make([]*migration.Job, len(a.Plan.Windows))
		for i, w := range a.Plan.Windows {
			js[i] = &migration.Job{ID: w.ID, Planned: w.Planned}
		}
		migration.OrderWindows(js)
		byID := map[string]Window{}
		for _, w := range a.Plan.Windows {
			byID[w.ID] = w
		}
		for i, j := range js {
			a.Plan.Windows[i] = byID[j.ID]
		}
		a.Plan.Done = true
	}
	return nil
}

// staging checks the staging account with the function's identity: the probe export's container is there (when
// the probe completed), then the container is claimed, a blob written and read back, and the container deleted.
// What fails is a finding, not a failure of the step.
func (r *run) staging(ctx context.Context) error {
	a, st := r.a, r.s.cfg.Staging
	p := &StagingProbe{Endpoint: st.Endpoint(), Container: a.ID, CheckedAt: r.s.now()}
	a.Staging = p
	if a.Export != nil && a.Export.State == exportCompleted {
		found, err := st.ContainerExists(ctx, a.ID)
		if err != nil {
			p.Error = "read the container: " + err.Error()
			return nil
		}
		p.ExportContainerFound = &found
	}
	if err := st.ClaimContainer(ctx, a.ID, a.ID); err != nil {
		p.Error = "create the container: " + err.Error()
		return nil
	}
	want := []byte("fhir-migrator assessment " + a.ID + "\n")
	u, err := st.PutBlob(ctx, a.ID, probeBlob, a.ID, want)
	if err == nil {
		p.Wrote = true
		var rc io.ReadCloser
		if rc, err = st.Open(ctx, u); err == nil {
			var got []byte
			got, err = io.ReadAll(io.LimitReader(rc, 1<<20))
			_ = rc.Close()
			if err == nil && !bytes.Equal(got, want) {
				err = fmt.Errorf("the blob read back differs from the one written (%d bytes, not %d)", len(got), len(want))
			}
			p.Read = err == nil
		}
	}
	if err != nil {
		p.Error = truncate(err.Error(), 500)
	}
	if err := st.DeleteContainer(ctx, a.ID, a.ID); err != nil {
		p.Error = strings.TrimPrefix(p.Error+"; delete the container: "+truncate(err.Error(), 500), "; ")
		return nil
	}
	p.Deleted = true
	return nil
}

// finish estimates, lists what to do by hand, and completes the assessment.
func (r *run) finish() {
	a := r.a
	if a.Plan != nil && a.Plan.Done {
		latency := 0.0
		if e := a.Export; e != nil && e.State == exportCompleted {
			latency = e.FinishedAt.Sub(*e.KickedOffAt).Seconds()
		}
		a.Estimate = estimateOf(a, r.s.cfg.Rates, r.s.cfg.MaxExportsPerSource, latency)
	}
	a.Checklist = checklist(a)
	a.Status = StatusCompleted
}

// fail ends an assessment that could not finish: its probe export is canceled and its container deleted.
func (r *run) fail(ctx context.Context, cause error) {
	a := r.a
	a.Status = StatusFailed
	a.Error = &AssessmentError{Code: "assessment_incomplete",
		Message: fmt.Sprintf("step %s failed %d times in a row: %v", a.Progress.Step, a.Progress.Failures, truncate(cause.Error(), 800))}
	if e := a.Export; e != nil && e.State == exportRunning && e.ContentLocation != "" {
		if c, err := r.client(a.Request.Source); err == nil {
			if err := c.CancelJob(ctx, e.ContentLocation); err != nil {
				r.s.log.Warn("probe export not canceled", "assessment", a.ID, "err", err)
			}
		}
		now := r.s.now()
		e.State, e.FinishedAt = exportTimedOut, &now
	}
	if a.Staging == nil || !a.Staging.Deleted {
		st := r.s.cfg.Staging
		if exists, err := st.ContainerExists(ctx, a.ID); err == nil && exists {
			if err := st.ClaimContainer(ctx, a.ID, a.ID); err == nil {
				_ = st.DeleteContainer(ctx, a.ID, a.ID)
			}
		}
	}
}
