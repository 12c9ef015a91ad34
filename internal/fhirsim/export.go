package fhirsim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// exportParams are the $export query parameters Azure API for FHIR accepts; any other is a 400.
var exportParams = map[string]bool{
	"_outputFormat": true, "_since": true, "_till": true, "_type": true, "_container": true, "_format": true,
	"_typeFilter": true, "_isParallel": true, "includeAssociatedData": true, "_maxCount": true,
	"_anonymizationConfig": true, "_anonymizationConfigEtag": true, "_anonymizationConfigCollectionReference": true,
}

// exportSpec is a validated $export kick-off.
type exportSpec struct {
	types       []string // nil: every type
	since       *dateFilter
	till        dateFilter
	typeFilters map[string][]criteria // ORed per type
	container   string
	// history and deleted: includeAssociatedData=_history (older versions) and _deleted (deletion stubs), each
	// selected by its own lastUpdated.
	history, deleted bool
}

type manifestFile struct {
	Type  string `json:"type"`
	URL   string `json:"url"`
	Count int    `json:"count"`
}

type exportManifest struct {
	TransactionTime     string         `json:"transactionTime"`
	Request             string         `json:"request"`
	RequiresAccessToken bool           `json:"requiresAccessToken"`
	Output              []manifestFile `json:"output"`
	Error               []manifestFile `json:"error"`
	Issues              []any          `json:"issues"`
}

type exportJob struct {
	job
	// query is the kick-off's query, sorted: equal for equal requests.
	query  string
	output []manifestFile
	fault  string // the job fault assigned at kick-off, "" for none
	// earlyAnswered is set once FaultEarly200 has answered its short manifest.
	earlyAnswered bool
	// bulk marks a bulk-data flavor export: files served by the simulator behind the token, an error file maybe,
	// and a DELETE after completion that removes them.
	bulk       bool
	errorFiles []manifestFile
	// filesDeleted: the client DELETEd the completed bulk export; its status URL answers 404 since.
	filesDeleted bool
}

// handleExportKickOff starts a system $export. Both flavors export; they differ in how a parallel export selects
// by time (parseExportSpec).
func (s *Server) handleExportKickOff(w http.ResponseWriter, r *http.Request) {
	if accept := r.Header.Values("Accept"); len(accept) != 1 || accept[0] != "application/fhir+json" {
		writeOutcome(w, http.StatusBadRequest, "invalid", "the Accept header must be exactly application/fhir+json for $export")
		return
	}
	if err := checkExportPrefer(r.Header.Values("Prefer")); err != nil {
		writeOutcome(w, http.StatusBadRequest, "invalid", "%v", err)
		return
	}
	created := s.now()
	spec, err := parseExportSpec(r.URL.Query(), created, s.cfg.flavor)
	if err != nil {
		writeOutcome(w, http.StatusBadRequest, "invalid", "%v", err)
		return
	}
	blobs, ok := s.storage(w, "$export")
	if !ok {
		return
	}
	if s.faults.roll(FaultKickoff429) {
		s.log.Info("fault injected", "fault", FaultKickoff429, "op", "$export", "query", r.URL.Query().Encode())
		s.writeThrottled(w, "$export")
		return
	}

	snapshot := s.exportSnapshot(spec)
	fault := s.exportJobFault()
	j := &exportJob{job: job{id: newJobID(), created: created, request: requestURL(r)}, query: r.URL.Query().Encode(), fault: fault}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.exports[j.id] = j
	s.stats.ExportJobs++
	if fault != "" {
		s.log.Info("fault injected", "fault", fault, "job_id", j.id)
	}
	s.startLocked(&j.job, "export", func(ctx context.Context) error {
		// Under the rate model the job waits for an export slot (answering 202 meanwhile), then takes the time its
		// modelled resources take to produce.
		release, err := s.exportGate.enter(ctx)
		if err != nil {
			return err
		}
		defer release()
		began := time.Now()
		written := snapshot
		switch fault {
		case FaultExportFail:
			return errors.New("export operation failed for reason: the export storage account denied the write (403 AuthorizationPermissionMismatch)")
		case FaultExportStall:
			<-ctx.Done() // runs until a DELETE cancels it or the simulator stops
			return ctx.Err()
		case FaultExportCancel:
			// Canceled by the system half-way: what was written is reported as if it were everything.
			written = snapshot[:len(snapshot)/2]
		}
		output, err := s.writeExport(ctx, blobs, j, spec.container, written)
		if err != nil {
			return fmt.Errorf("export operation failed for reason: %w", err)
		}
		// Writing the files is part of the modelled time, not added to it.
		if err := sleepCtx(ctx, s.rateModel().exportTime(len(written))-time.Since(began)); err != nil {
			return err
		}
		s.mu.Lock()
		j.output = output
		for _, res := range written {
			s.exported[res.Type+"/"+res.ID+"/_history/"+res.VersionID]++
		}
		s.mu.Unlock()
		return nil
	})
	s.log.Info("export queued", "job_id", j.id, "resources", len(snapshot))
	w.Header().Set("Content-Location", baseURL(r)+"/_operations/export/"+j.id)
	writeAccepted(w)
}

// checkExportPrefer reads Prefer as the export handler does: respond-async is required, handling=strict or
// handling=lenient may come with it, and nothing else is accepted.
func checkExportPrefer(values []string) error {
	async := false
	for _, v := range values {
		for p := range strings.SplitSeq(v, ",") {
			switch p = strings.TrimSpace(p); p {
			case "respond-async":
				async = true
			case "handling=strict", "handling=lenient":
			default:
				return fmt.Errorf("the Prefer value %q is not supported for $export (respond-async, handling=strict|lenient)", p)
			}
		}
	}
	if !async {
		return errors.New("the Prefer header must contain respond-async for $export")
	}
	return nil
}

// parseExportSpec reads a kick-off's parameters. On the AHDS flavor a parallel export (the default there:
// ExportController.cs GetExportParallelSetting, where only Azure API for FHIR defaults to false) of every type
// without _typeFilter is split by surrogate ids from since.ToId() to till.ToId() - 1 (SqlExportOrchestratorJob.cs;
// IdHelper.cs ToId truncates to the millisecond): _till is exclusive at millisecond precision. Otherwise, and on
// Azure API for FHIR, ExportJobTask.cs selects le{_till}: inclusive.
func parseExportSpec(q url.Values, created time.Time, flavor Flavor) (exportSpec, error) {
	names := make([]string, 0, len(q))
	for name := range q {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if !exportParams[name] {
			return exportSpec{}, fmt.Errorf("the query parameter %q is not supported for $export", name)
		}
	}
	spec := exportSpec{till: dateFilter{prefix: "le", r: timeRange{start: created, end: created.Add(time.Nanosecond)}}}
	if v := q.Get("_outputFormat"); v != "" {
		switch v {
		case "application/fhir+ndjson", "application/ndjson", "ndjson":
		default:
			return exportSpec{}, fmt.Errorf("_outputFormat %q is not supported", v)
		}
	}
	if v := joined(q, "_type"); v != "" {
		for t := range strings.SplitSeq(v, ",") {
			t = strings.TrimSpace(t)
			if !knownType(t) {
				return exportSpec{}, fmt.Errorf("_type contains the unsupported resource type %q", t)
			}
			if !slices.Contains(spec.types, t) {
				spec.types = append(spec.types, t)
			}
		}
	}
	typeFilter := joined(q, "_typeFilter")
	if typeFilter != "" && spec.types == nil {
		return exportSpec{}, fmt.Errorf("_typeFilter requires _type")
	}
	if v := q.Get("includeAssociatedData"); v != "" {
		// ExportController.cs: split on commas, empty entries dropped, nothing trimmed, compared case-sensitively;
		// the message names the values it refused.
		var invalid []string
		for d := range strings.SplitSeq(v, ",") {
			switch d {
			case "":
			case "_history":
				spec.history = true
			case "_deleted":
				spec.deleted = true
			default:
				invalid = append(invalid, d)
			}
		}
		if len(invalid) > 0 {
			return exportSpec{}, fmt.Errorf(`The export parameter "includeAssociatedData" contains an invalid value. Supported values are: %s.`, strings.Join(invalid, ","))
		}
		if (spec.history || spec.deleted) && typeFilter != "" {
			return exportSpec{}, fmt.Errorf(`The request "_typeFilter" cannot be used with an export request with historical or soft deleted resources.`)
		}
	}
	if q.Has("_anonymizationConfig") || q.Has("_anonymizationConfigCollectionReference") {
		return exportSpec{}, fmt.Errorf("anonymized export is not configured on this server")
	}
	parallel := flavor == FlavorAHDS
	switch v := q.Get("_isParallel"); v {
	case "":
	case "true", "false":
		parallel = v == "true"
	default:
		return exportSpec{}, fmt.Errorf("_isParallel %q is not a boolean", v)
	}
	if v := q.Get("_maxCount"); v != "" {
		if n, err := strconv.Atoi(v); err != nil || n <= 0 {
			return exportSpec{}, fmt.Errorf("_maxCount %q is not a positive integer", v)
		}
	}
	if v := q.Get("_since"); v != "" {
		tr, err := parseFHIRTime(v)
		if err != nil {
			return exportSpec{}, fmt.Errorf("_since: %w", err)
		}
		spec.since = &dateFilter{prefix: "ge", r: tr}
	}
	if v := q.Get("_till"); v != "" {
		tr, err := parseFHIRTime(v)
		if err != nil {
			return exportSpec{}, fmt.Errorf("_till: %w", err)
		}
		spec.till = dateFilter{prefix: "le", r: tr}
	}
	if flavor == FlavorAHDS && parallel && typeFilter == "" {
		// globalEndId = till.ToId() - 1: everything before the millisecond that holds _till (which is stricter
		// than the worker's own le{_till}).
		spec.till = dateFilter{prefix: "lt", r: timeRange{start: spec.till.r.start.Truncate(time.Millisecond)}}
	}
	if v := q.Get("_container"); v != "" {
		if !validContainerName(v) {
			return exportSpec{}, fmt.Errorf("_container %q is not a valid container name", v)
		}
		spec.container = v
	}
	if typeFilter != "" {
		spec.typeFilters = map[string][]criteria{}
		for f := range strings.SplitSeq(typeFilter, ",") {
			typ, query, ok := strings.Cut(strings.TrimSpace(f), "?")
			if !ok || !knownType(typ) {
				return exportSpec{}, fmt.Errorf("_typeFilter %q must be {ResourceType}?{search parameters}", f)
			}
			// The service splits each entry on & and each parameter on =: exactly one = per parameter.
			for part := range strings.SplitSeq(query, "&") {
				if strings.Count(part, "=") != 1 {
					return exportSpec{}, fmt.Errorf("_typeFilter %q: the parameter %q is not name=value", f, part)
				}
			}
			values, err := url.ParseQuery(query)
			if err != nil {
				return exportSpec{}, fmt.Errorf("_typeFilter %q: %w", f, err)
			}
			c, err := parseCriteria(typ, values, true, false)
			if err != nil {
				return exportSpec{}, fmt.Errorf("_typeFilter %q: %w", f, err)
			}
			if slices.Contains(spec.types, typ) { // a filter for a type not exported is ignored
				spec.typeFilters[typ] = append(spec.typeFilters[typ], c)
			}
		}
	}
	return spec, nil
}

// joined comma-joins every value of a repeatable parameter.
func joined(q url.Values, name string) string { return strings.Join(q[name], ",") }

// exportSnapshot selects the resources the job exports, at kick-off, ordered by type, lastUpdated and id: a range
// of each type's time index, then the type's filters.
func (s *Server) exportSnapshot(spec exportSpec) []*resource {
	dates := []dateFilter{spec.till}
	if spec.since != nil {
		dates = append(dates, *spec.since)
	}
	return s.resources.exportRange(spec.types, func(t string) query {
		q := query{typ: t, dates: dates, byTime: true, limit: -1}
		if filters := spec.typeFilters[t]; len(filters) > 0 {
			q.match = func(r *resource) bool {
				return slices.ContainsFunc(filters, func(c criteria) bool { return c.match(r) })
			}
		}
		return q
	}, spec.history, spec.deleted)
}

// writeExport writes the snapshot as NDJSON files, rolling over every s.cfg.rollover resources per type.
func (s *Server) writeExport(ctx context.Context, blobs *blobAccount, j *exportJob, container string, snapshot []*resource) ([]manifestFile, error) {
	prefix := ""
	if container == "" {
		container = "export-" + j.id
	} else {
		prefix = j.created.UTC().Format("20060102T150405") + "-" + j.id + "/"
	}
	if err := blobs.ensureContainer(ctx, container); err != nil {
		return nil, err
	}
	type file struct {
		name  string
		chunk []*resource
	}
	var files []file
	for len(snapshot) > 0 {
		typ := snapshot[0].Type
		end := 1
		for end < len(snapshot) && snapshot[end].Type == typ {
			end++
		}
		group := snapshot[:end]
		snapshot = snapshot[end:]
		for n := 1; len(group) > 0; n++ {
			chunk := group[:min(s.cfg.rollover, len(group))]
			group = group[len(chunk):]
			files = append(files, file{fmt.Sprintf("%s%s-%d.ndjson", prefix, typ, n), chunk})
		}
	}
	// Files are written in parallel, as the service's export writers do; the manifest keeps their order.
	output := make([]manifestFile, len(files))
	errs := make([]error, len(files))
	inParallel(ctx, len(files), blobWorkers, func(i int) {
		var buf bytes.Buffer
		for _, res := range files[i].chunk {
			buf.Write(res.Raw)
			buf.WriteByte('\n')
		}
		u, err := blobs.upload(ctx, container, files[i].name, buf.Bytes())
		errs[i] = err
		output[i] = manifestFile{Type: files[i].chunk[0].Type, URL: u, Count: len(files[i].chunk) * int(s.cfg.rates.weight())}
	})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return output, nil
}

func writeManifest(w http.ResponseWriter, j *exportJob, output []manifestFile) {
	errorFiles := j.errorFiles
	if errorFiles == nil {
		errorFiles = []manifestFile{}
	}
	writeJSON(w, http.StatusOK, "application/json", exportManifest{
		TransactionTime: formatInstant(j.created), Request: j.request, Output: output,
		Error: errorFiles, Issues: []any{}, RequiresAccessToken: j.bulk,
	})
}

func (s *Server) handleExportJob(w http.ResponseWriter, r *http.Request, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.exports[id]
	if j != nil && r.Method == http.MethodGet {
		j.gets++
	}
	if j != nil && r.Method == http.MethodDelete {
		j.deletes++
	}
	if j == nil || (j.state == jobCanceled || j.filesDeleted) && r.Method == http.MethodGet || j.filesDeleted {
		writeOutcome(w, http.StatusNotFound, "not-found", "the export job %q was not found", id)
		return
	}
	switch r.Method {
	case http.MethodGet:
		if s.statusFault(w, "export", id) {
			return
		}
		if j.fault == FaultEarly200 && !j.earlyAnswered && j.state == jobCompleted {
			// Answered 200 before every file is listed, once; later polls see the whole manifest.
			j.earlyAnswered = true
			j.polls++
			writeManifest(w, j, j.output[:len(j.output)/2])
			return
		}
		if s.pollLocked(&j.job) && !j.earlyAnswered {
			writeAccepted(w)
			return
		}
		if j.state == jobFailed {
			writeOutcome(w, http.StatusInternalServerError, "exception", "%s", j.failure)
			return
		}
		writeManifest(w, j, j.output)
	case http.MethodDelete:
		if j.bulk && j.state == jobCompleted {
			// The Bulk Data IG: a DELETE after completion tells the server the client is done with the files.
			j.filesDeleted = true
			s.deleteBulkFiles(j.id)
			s.recordDelete(r, http.StatusAccepted)
			writeAccepted(w)
			return
		}
		if j.state != jobRunning {
			writeOutcome(w, http.StatusConflict, "conflict", "the export job %q has already finished", id)
			return
		}
		s.finishLocked(&j.job, jobCanceled, "")
		j.cancel()
		writeAccepted(w)
	default:
		writeOutcome(w, http.StatusMethodNotAllowed, "not-supported", "method %s is not allowed on an export job", r.Method)
	}
}
