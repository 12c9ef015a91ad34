package fhirsim

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Limits of $import registration.
const (
	maxImportInputs   = 10_000
	maxImportBodySize = 32 << 20
	// importFutureSkew is how far in the future an IncrementalLoad lastUpdated may be.
	importFutureSkew = 10 * time.Second
)

const (
	modeIncremental = "IncrementalLoad"
	modeInitial     = "InitialLoad"
)

// importParameterNames are the Parameters names $import understands; any other is a 400.
var importParameterNames = map[string]bool{
	"inputFormat": true, "mode": true, "input": true, "storageDetail": true, "inputSource": true,
	"allowNegativeVersions": true, "eventualConsistency": true, "processingUnitBytesToRead": true,
	"errorContainerName": true, "force": true,
}

type fhirParameters struct {
	ResourceType string          `json:"resourceType"`
	Parameter    []fhirParameter `json:"parameter"`
}

type fhirParameter struct {
	Name         string          `json:"name"`
	ValueString  *string         `json:"valueString,omitempty"`
	ValueURI     *string         `json:"valueUri,omitempty"`
	ValueBoolean *bool           `json:"valueBoolean,omitempty"`
	ValueInteger *int64          `json:"valueInteger,omitempty"`
	Part         []fhirParameter `json:"part,omitempty"`
}

func (p fhirParameter) text() (string, bool) {
	switch {
	case p.ValueString != nil:
		return *p.ValueString, true
	case p.ValueURI != nil:
		return *p.ValueURI, true
	}
	return "", false
}

// importInput is one validated input file.
type importInput struct {
	Type string `json:"type,omitempty"`
	URL  string `json:"url"`
	ETag string `json:"etag,omitempty"`
}

// importSpec is a validated $import body; its JSON form is the canonical key of idempotent registration.
type importSpec struct {
	Mode           string        `json:"mode"`
	ErrorContainer string        `json:"errorContainer"`
	Inputs         []importInput `json:"inputs"`
}

type importOutput struct {
	Type     string `json:"type"`
	Count    int    `json:"count"`
	InputURL string `json:"inputUrl"`
}

type importErrorFile struct {
	Type     string `json:"type"`
	Count    int    `json:"count"`
	InputURL string `json:"inputUrl"`
	URL      string `json:"url"`
}

type importResult struct {
	TransactionTime string            `json:"transactionTime"`
	Request         string            `json:"request"`
	Output          []importOutput    `json:"output"`
	Error           []importErrorFile `json:"error"`
}

type importJob struct {
	job
	spec   importSpec
	output []importOutput
	errors []importErrorFile
}

func (s *Server) handleImportKickOff(w http.ResponseWriter, r *http.Request) {
	if s.cfg.flavor != FlavorAHDS {
		writeOutcome(w, http.StatusBadRequest, "not-supported", `the requested "$import" operation is not enabled on this simulator flavor`)
		return
	}
	if prefer := r.Header.Values("Prefer"); len(prefer) != 1 || strings.TrimSpace(prefer[0]) != "respond-async" {
		writeOutcome(w, http.StatusBadRequest, "invalid", "the Prefer header must be exactly respond-async for $import")
		return
	}
	if !strings.Contains(r.Header.Get("Content-Type"), "application/fhir+json") {
		writeOutcome(w, http.StatusBadRequest, "invalid", "the Content-Type header must be application/fhir+json for $import")
		return
	}
	blobs, ok := s.storage(w, "$import")
	if !ok {
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxImportBodySize))
	if err != nil {
		writeOutcome(w, http.StatusBadRequest, "invalid", "read $import body: %v", err)
		return
	}
	spec, err := s.parseImportSpec(body, blobs)
	if err != nil {
		writeOutcome(w, http.StatusBadRequest, "invalid", "%v", err)
		return
	}
	key, err := json.Marshal(spec)
	if err != nil {
		writeOutcome(w, http.StatusInternalServerError, "exception", "encode import key: %v", err)
		return
	}
	if s.faults.roll(FaultKickoff429) {
		s.log.Info("fault injected", "fault", FaultKickoff429, "op", "$import")
		s.writeThrottled(w, "$import")
		return
	}
	if s.faults.roll(FaultImportBusy) {
		s.log.Info("fault injected", "fault", FaultImportBusy, "op", "$import")
		writeOutcome(w, http.StatusLocked, "lock-error", "the service is busy with another operation: retry the $import later")
		return
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	id, seen := s.importKeys[string(key)]
	if !seen {
		if s.cfg.maxImports > 0 && s.runningImportsLocked() >= s.cfg.maxImports {
			s.faults.countThrottled()
			s.log.Info("import throttled", "running", s.cfg.maxImports)
			s.writeThrottled(w, "$import")
			return
		}
		j := &importJob{job: job{id: newJobID(), created: s.now(), request: baseURL(r) + "/$import"}, spec: spec}
		id = j.id
		s.imports[id] = j
		s.importKeys[string(key)] = id
		s.stats.ImportJobs++
		s.startLocked(&j.job, "import", func(ctx context.Context) error { return s.runImport(ctx, blobs, j) })
		s.log.Info("import queued", "job_id", id, "inputs", len(spec.Inputs), "mode", spec.Mode)
	}
	w.Header().Set("Content-Location", baseURL(r)+"/_operations/import/"+id)
	writeAccepted(w)
}

func (s *Server) parseImportSpec(body []byte, blobs *blobAccount) (importSpec, error) {
	var p fhirParameters
	if err := json.Unmarshal(body, &p); err != nil {
		return importSpec{}, fmt.Errorf("the $import body is not a valid Parameters resource: %w", err)
	}
	if p.ResourceType != "Parameters" {
		return importSpec{}, fmt.Errorf("the $import body must be a Parameters resource, not %q", p.ResourceType)
	}
	spec := importSpec{Mode: modeIncremental, ErrorContainer: s.cfg.errorContainer, Inputs: []importInput{}}
	inputFormat := ""
	seen := map[string]bool{}
	for _, prm := range p.Parameter {
		if !importParameterNames[prm.Name] {
			return importSpec{}, fmt.Errorf("the $import parameter %q is not supported", prm.Name)
		}
		v, _ := prm.text()
		switch prm.Name {
		case "inputFormat":
			inputFormat = v
		case "mode":
			spec.Mode = v
		case "errorContainerName":
			if !validContainerName(v) {
				return importSpec{}, fmt.Errorf("errorContainerName %q is not a valid container name", v)
			}
			spec.ErrorContainer = v
		case "storageDetail":
			for _, part := range prm.Part {
				if t, _ := part.text(); part.Name == "type" && t != "azure-blob" {
					return importSpec{}, fmt.Errorf("storageDetail type %q is not supported (want azure-blob)", t)
				}
			}
		case "input":
			in, err := parseImportInput(prm, blobs)
			if err != nil {
				return importSpec{}, fmt.Errorf("input %d: %w", len(spec.Inputs)+1, err)
			}
			if seen[in.URL] {
				return importSpec{}, fmt.Errorf("input %d: the url %s appears more than once", len(spec.Inputs)+1, in.URL)
			}
			seen[in.URL] = true
			spec.Inputs = append(spec.Inputs, in)
			if len(spec.Inputs) > maxImportInputs {
				return importSpec{}, fmt.Errorf("an $import request takes at most %d inputs", maxImportInputs)
			}
		}
	}
	if inputFormat != "application/fhir+ndjson" {
		return importSpec{}, fmt.Errorf("inputFormat %q is not supported (want application/fhir+ndjson)", inputFormat)
	}
	switch spec.Mode {
	case modeIncremental:
	case modeInitial:
		if !s.cfg.initialImportMode {
			return importSpec{}, errors.New("InitialLoad mode requires the service's initial import mode, which is off")
		}
	default:
		return importSpec{}, fmt.Errorf("import mode %q is not supported (want InitialLoad or IncrementalLoad)", spec.Mode)
	}
	if len(spec.Inputs) == 0 {
		return importSpec{}, errors.New("the $import request has no input")
	}
	return spec, nil
}

func parseImportInput(prm fhirParameter, blobs *blobAccount) (importInput, error) {
	var in importInput
	for _, part := range prm.Part {
		switch part.Name {
		case "type":
			if part.ValueString == nil {
				return in, errors.New("the type part must be a valueString")
			}
			in.Type = *part.ValueString
		case "url":
			if part.ValueURI == nil {
				return in, errors.New("the url part must be a valueUri")
			}
			in.URL = *part.ValueURI
		case "etag":
			in.ETag, _ = part.text()
		default:
			return in, fmt.Errorf("the input part %q is not supported", part.Name)
		}
	}
	if in.Type != "" && !knownType(in.Type) {
		return in, fmt.Errorf("resource type %q is not supported", in.Type)
	}
	if in.Type == "SearchParameter" {
		return in, errors.New("SearchParameter resources cannot be imported")
	}
	if in.URL == "" {
		return in, errors.New("the input has no url")
	}
	u, err := url.Parse(in.URL)
	if err != nil || !u.IsAbs() {
		return in, fmt.Errorf("the url %q is not an absolute URL", in.URL)
	}
	if u.RawQuery != "" || u.ForceQuery {
		return in, fmt.Errorf("the url %s://%s%s has a query string: SAS URLs are not supported", u.Scheme, u.Host, u.EscapedPath())
	}
	if !blobs.inAccount(in.URL) {
		return in, fmt.Errorf("the url %s is not in the storage account configured for import", in.URL)
	}
	return in, nil
}

// runImport loads every input; a bad line fails alone, a missing or unreadable input fails the job.
func (s *Server) runImport(ctx context.Context, blobs *blobAccount, j *importJob) error {
	// Under the rate model the job takes its share of the destination's import rate from its start, for its
	// modelled resources once read.
	served := s.importMeter.join()
	defer s.importMeter.leave(served)
	output := make([]importOutput, 0, len(j.spec.Inputs))
	var errFiles []importErrorFile
	weight := int(s.cfg.rates.weight())
	lines := 0
	// The inputs are read in parallel, as the service's processing jobs do; results stay in input order.
	type read struct {
		loaded int
		failed [][]byte
		err    error
	}
	reads := make([]read, len(j.spec.Inputs))
	seen := &importSeen{keys: map[string]bool{}}
	inParallel(ctx, len(reads), blobWorkers, func(i int) {
		r := &reads[i]
		r.loaded, r.failed, r.err = s.importInput(ctx, blobs, j.spec.Mode, j.spec.Inputs[i], seen)
	})
	for i, in := range j.spec.Inputs {
		loaded, failedLines, err := reads[i].loaded, reads[i].failed, reads[i].err
		if err == nil {
			err = ctx.Err()
		}
		if err != nil {
			return fmt.Errorf("import operation failed for reason: %w", err)
		}
		lines += loaded + len(failedLines)
		output = append(output, importOutput{Type: in.Type, Count: loaded * weight, InputURL: in.URL})
		if len(failedLines) == 0 {
			continue
		}
		if err := blobs.ensureContainer(ctx, j.spec.ErrorContainer); err != nil {
			return fmt.Errorf("import operation failed for reason: %w", err)
		}
		name := fmt.Sprintf("%s%s-%d.ndjson", cmp.Or(in.Type, "Resource"), j.id, i+1)
		u, err := blobs.upload(ctx, j.spec.ErrorContainer, name, bytes.Join(failedLines, nil))
		if err != nil {
			return fmt.Errorf("import operation failed for reason: %w", err)
		}
		errFiles = append(errFiles, importErrorFile{Type: "OperationOutcome", Count: len(failedLines) * weight, InputURL: in.URL, URL: u})
	}
	if err := s.importMeter.finish(ctx, served, float64(lines*weight)); err != nil {
		return err
	}
	s.mu.Lock()
	j.output, j.errors = output, errFiles
	s.mu.Unlock()
	return nil
}

// importInput streams one NDJSON blob line by line and returns the loaded count and an OperationOutcome line per
// failed line.
func (s *Server) importInput(ctx context.Context, blobs *blobAccount, mode string, in importInput, seen *importSeen) (loaded int, failed [][]byte, err error) {
	container, name, err := blobs.locate(in.URL)
	if err != nil {
		return 0, nil, err
	}
	body, err := blobs.open(ctx, container, name)
	if err != nil {
		return 0, nil, err
	}
	defer body.Close()
	rd := bufio.NewReaderSize(body, 64<<10)
	var offset int64
	for lineNo := 1; ; lineNo++ {
		line, readErr := rd.ReadBytes('\n')
		start := offset
		offset += int64(len(line))
		if trimmed := bytes.TrimSpace(line); len(trimmed) > 0 {
			var lineErr error
			if s.faults.roll(FaultImportLineErrors) {
				lineErr = errors.New("the resource could not be written: the data store timed out")
			} else {
				lineErr = s.importLine(mode, in.Type, trimmed, seen)
			}
			if lineErr != nil {
				oo, _ := json.Marshal(newOutcome("processing", fmt.Sprintf(
					"Failed to process resource at line: %d with stream start offset: %d. %v", lineNo, start, lineErr)))
				failed = append(failed, append(oo, '\n'))
			} else {
				loaded++
			}
		}
		if errors.Is(readErr, io.EOF) {
			return loaded, failed, nil
		}
		if readErr != nil {
			return 0, nil, fmt.Errorf("read %s: %w", in.URL, readErr)
		}
	}
}

// importSeen are the versions a job has read: a second row with the same (id, versionId) or (id, lastUpdated)
// fails as a duplicate, as the service deduplicates the rows it reads.
type importSeen struct {
	mu   sync.Mutex
	keys map[string]bool
}

// first records the row's keys and reports whether neither was seen before.
func (s *importSeen) first(typ, id, version string, lastUpdated time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	byVersion := typ + "/" + id + "/v/" + version
	byTime := typ + "/" + id + "/t/" + lastUpdated.UTC().Format(time.RFC3339Nano)
	if s.keys[byVersion] || s.keys[byTime] {
		return false
	}
	s.keys[byVersion], s.keys[byTime] = true, true
	return true
}

// importLine stores one resource according to the import mode. IncrementalLoad keeps a row's versionId and
// lastUpdated when both are there (versionId an integer): a higher version becomes the newest (a row with the
// deleted-state extension deletes the resource, and leaves the extension out of the stored row), a lower one with
// an earlier lastUpdated goes into the history, the same one with the same content is a success that changes
// nothing, and any other disagreement of version and time order is a version conflict.
func (s *Server) importLine(mode, inputType string, line []byte, seen *importSeen) error {
	p, err := parseResource(line)
	if err != nil {
		return err
	}
	if inputType != "" && p.Type != inputType {
		return fmt.Errorf("the resource type %q does not match the input type %q", p.Type, inputType)
	}
	if !knownType(p.Type) || p.Type == "SearchParameter" {
		return fmt.Errorf("resource type %q cannot be imported", p.Type)
	}
	if s.faults.roll(FaultImportDrop) {
		s.faults.recordDropped(p.Type + "/" + p.ID)
		return nil // counted as loaded, never stored
	}
	now := s.now()
	deleted := isDeletionStub(p.Compact)
	var lastUpdated time.Time
	if mode != modeInitial && p.LastUpdated != "" {
		tr, err := parseFHIRTime(p.LastUpdated)
		if err != nil {
			return fmt.Errorf("meta.lastUpdated: %w", err)
		}
		if tr.start.After(now.Add(importFutureSkew)) {
			return fmt.Errorf("meta.lastUpdated %s is in the future", p.LastUpdated)
		}
		lastUpdated = tr.start
	}
	version := versionNumber(p.VersionID)
	kept := mode != modeInitial && !lastUpdated.IsZero() && version > 0
	if kept && !seen.first(p.Type, p.ID, p.VersionID, lastUpdated) {
		return fmt.Errorf("Failed to import duplicate resource %s/%s (version %s)", p.Type, p.ID, p.VersionID)
	}
	return s.resources.update(p.Type, p.ID, func(v versions) (change, error) {
		if mode == modeInitial {
			if v.current != nil {
				return change{}, fmt.Errorf("%s/%s already exists", p.Type, p.ID)
			}
			r, err := stamped(p, 1, now)
			return change{latest: r}, err
		}
		if !kept {
			at := cmp.Or(lastUpdated, now)
			if deleted {
				return change{latest: deletionStub(p.Type, p.ID, nextVersion(v), at)}, nil
			}
			r, err := stamped(p, nextVersion(v), at)
			return change{latest: r}, err
		}
		in := deletionStub(p.Type, p.ID, version, lastUpdated)
		if !deleted {
			if in, err = storedFrom(p); err != nil {
				return change{}, err
			}
		}
		conflict := fmt.Errorf("version conflict: %s/%s version %d at %s disagrees with the stored versions", p.Type, p.ID, version, p.LastUpdated)
		if same := v.find(version); same != nil {
			if same.Deleted == in.Deleted && same.LastUpdated.Equal(in.LastUpdated) && (in.Deleted || bytes.Equal(same.Raw, in.Raw)) {
				return change{}, nil // already stored: a success that changes nothing
			}
			return change{}, conflict
		}
		latest := v.latest()
		switch {
		case latest == nil || version > versionNumber(latest.VersionID):
			if latest != nil && in.LastUpdated.Before(latest.LastUpdated) {
				return change{}, conflict
			}
			return change{latest: in}, nil
		case in.LastUpdated.Before(latest.LastUpdated):
			return change{older: in}, nil
		default:
			return change{}, conflict
		}
	})
}

func (s *Server) runningImportsLocked() int {
	n := 0
	for _, j := range s.imports {
		if j.state == jobRunning {
			n++
		}
	}
	return n
}

func (s *Server) handleImportJob(w http.ResponseWriter, r *http.Request, id string) {
	if r.Method == http.MethodGet {
		answer, completed := s.importStatus(w, id)
		if completed && s.faults.roll(FaultImportHold) {
			s.log.Info("fault injected", "fault", FaultImportHold, "job_id", id, "hold", s.cfg.importHold)
			hold := time.NewTimer(s.cfg.importHold)
			select {
			case <-hold.C:
			case <-r.Context().Done():
			case <-s.ctx.Done():
			}
			hold.Stop()
		}
		answer()
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.imports[id]
	if j == nil {
		writeOutcome(w, http.StatusNotFound, "not-found", "the import job %q was not found", id)
		return
	}
	if r.Method == http.MethodDelete {
		j.deletes++
	}
	switch r.Method {
	case http.MethodDelete:
		if j.state != jobRunning {
			writeOutcome(w, http.StatusConflict, "conflict", "the import job %q has already finished", id)
			return
		}
		s.finishLocked(&j.job, jobCanceled, "")
		j.cancel()
		writeAccepted(w)
	default:
		writeOutcome(w, http.StatusMethodNotAllowed, "not-supported", "method %s is not allowed on an import job", r.Method)
	}
}

// importStatus decides a status answer under s.mu; it is written later, outside the lock, after any hold. completed
// reports a 200 for a completed job.
func (s *Server) importStatus(w http.ResponseWriter, id string) (answer func(), completed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.imports[id]
	if j != nil {
		j.gets++
	}
	switch {
	case j == nil:
		return func() { writeOutcome(w, http.StatusNotFound, "not-found", "the import job %q was not found", id) }, false
	case s.statusFault(w, "import", id):
		return func() {}, false
	case j.state == jobCanceled:
		return func() {
			writeOutcome(w, http.StatusBadRequest, "exception", "User requested cancellation of operation.")
		}, false
	case s.pollLocked(&j.job):
		if j.state == jobCompleted && len(j.output) > 1 {
			// The orchestrator is done but not every processing job: 202 with what is known so far.
			res := importResult{TransactionTime: formatInstant(j.created), Request: j.request,
				Output: j.output[:len(j.output)/2], Error: []importErrorFile{}}
			return func() { writeJSON(w, http.StatusAccepted, "application/json", res) }, false
		}
		return func() { writeAccepted(w) }, false
	case j.state == jobFailed:
		failure := j.failure
		return func() { writeOutcome(w, http.StatusBadRequest, "exception", "%s", failure) }, false
	}
	res := importResult{TransactionTime: formatInstant(j.created), Request: j.request, Output: j.output, Error: j.errors}
	if res.Error == nil {
		res.Error = []importErrorFile{}
	}
	return func() { writeJSON(w, http.StatusOK, "application/json", res) }, true
}
