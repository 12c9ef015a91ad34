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
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
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
	if !s.importEnabled() {
		// ImportController.CheckIfImportIsEnabled, the action's first check (after the header filter).
		writeOutcome(w, http.StatusBadRequest, "not-supported", `The requested "import" operation is not enabled`)
		return
	}
	blobs := s.blobs // nil: none configured, refused once the body is read (ValidateImportRequestConfiguration)
	if blobs == nil && s.blobsErr != nil {
		s.log.Error("storage configuration", "err", s.blobsErr)
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

// parseImportSpec reads a $import body and checks it in the order of fhir-server's ImportController.Import and
// ValidateImportRequestConfiguration: the body is a Parameters resource, inputFormat, storageDetail, at least one
// input, a storage account configured for import, no duplicate url, each input's type and url (absolute, no query,
// on the configured account), then no SearchParameter input, and last the mode (and InitialLoad only in initial
// import mode). An assessment's probe relies on this order (internal/fhir.ImportProbe).
func (s *Server) parseImportSpec(body []byte, blobs *blobAccount) (importSpec, error) {
	var p fhirParameters
	if err := json.Unmarshal(body, &p); err != nil {
		return importSpec{}, fmt.Errorf("the $import body is not a valid Parameters resource: %w", err)
	}
	if p.ResourceType != "Parameters" {
		return importSpec{}, fmt.Errorf("the $import body must be a Parameters resource, not %q", p.ResourceType)
	}
	spec := importSpec{Mode: modeIncremental, ErrorContainer: s.cfg.errorContainer, Inputs: []importInput{}}
	inputFormat, storageType := "", ""
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
				if t, _ := part.text(); part.Name == "type" {
					storageType = t
				}
			}
		case "input":
			in, err := parseImportInput(prm)
			if err != nil {
				return importSpec{}, fmt.Errorf("input %d: %w", len(spec.Inputs)+1, err)
			}
			spec.Inputs = append(spec.Inputs, in)
		}
	}
	if inputFormat != "application/fhir+ndjson" {
		return importSpec{}, fmt.Errorf("inputFormat %q is not supported (want application/fhir+ndjson)", inputFormat)
	}
	if storageType != "" && storageType != "azure-blob" {
		return importSpec{}, fmt.Errorf("storageDetail type %q is not supported (want azure-blob)", storageType)
	}
	if len(spec.Inputs) == 0 {
		return importSpec{}, errors.New("Value of the following parameter input is invalid: the $import request has no input")
	}
	if blobs == nil {
		return importSpec{}, errors.New("The import storage account is not configured correctly on the server. Import operations require a valid storage account.")
	}
	seen := map[string]bool{}
	for i, in := range spec.Inputs {
		if seen[in.URL] {
			return importSpec{}, fmt.Errorf("input %d: the url %s appears more than once", i+1, in.URL)
		}
		seen[in.URL] = true
	}
	for i, in := range spec.Inputs {
		if err := checkImportInput(in, blobs); err != nil {
			return importSpec{}, fmt.Errorf("input %d: %w", i+1, err)
		}
	}
	if len(spec.Inputs) > maxImportInputs {
		return importSpec{}, fmt.Errorf("an $import request takes at most %d inputs", maxImportInputs)
	}
	if slices.ContainsFunc(spec.Inputs, func(in importInput) bool { return in.Type == "SearchParameter" }) {
		return importSpec{}, errors.New("Requested operation does not support resource type: SearchParameter. (SearchParameter resources cannot be imported)")
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
	return spec, nil
}

// parseImportInput reads one input's parts.
func parseImportInput(prm fhirParameter) (importInput, error) {
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
	return in, nil
}

// checkImportInput checks one input as ValidateImportRequestConfiguration does: a known type, an absolute url with
// no query (SAS URLs are refused), on the account configured for import.
func checkImportInput(in importInput, blobs *blobAccount) error {
	if in.Type != "" && !knownType(in.Type) {
		return fmt.Errorf("resource type %q is not supported", in.Type)
	}
	if in.URL == "" {
		return errors.New("the input has no url")
	}
	u, err := url.Parse(in.URL)
	if err != nil || !u.IsAbs() {
		return fmt.Errorf("the url %q is not an absolute URL", in.URL)
	}
	if u.RawQuery != "" || u.ForceQuery {
		return fmt.Errorf("the url %s://%s%s has a query string: SAS URLs are not supported", u.Scheme, u.Host, u.EscapedPath())
	}
	if !blobs.inAccount(in.URL) {
		return fmt.Errorf("the url %s is not in the storage account configured for import (input.url must match the configured integration storage account endpoint)", in.URL)
	}
	return nil
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
	inParallel(ctx, len(reads), blobWorkers, func(i int) {
		r := &reads[i]
		r.loaded, r.failed, r.err = s.importInput(ctx, blobs, j.spec.Mode, j.spec.Inputs[i])
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

// importBatchSize is how many rows the service writes in one transaction (ImportJobConfiguration.cs
// DefaultTransactionSize); its deduplication works within one batch (SqlServerFhirDataStore.ImportResourcesAsync).
const importBatchSize = 1000

// Error texts of import error files (fhir-server SqlServer Resources.resx FailedToImportDuplicate and
// FailedToImportConflictingVersion), each in an OperationOutcome whose diagnostics name the line
// (ImportErrorSerializer.cs).
const (
	importDuplicateText = "Failed to import duplicate resource, resource id: %s, line: %d"
	importConflictText  = "Failed to import resource with version conflict, resource id: %s, line: %d"
)

// importErrorLine is the OperationOutcome line the service writes for one failed row: the line (1-based, counted
// from the stream start offset, 0 here since each input is read whole) in diagnostics, the reason in details.
func importErrorLine(index int, text string) []byte {
	oo := newOutcome("processing", fmt.Sprintf("Failed to process resource at line: %d with stream start offset: 0", index))
	oo.Issue[0].Details = &outcomeDetails{Text: text}
	b, _ := json.Marshal(oo) // strings only: never fails
	return append(b, '\n')
}

// importRow is one parsed row of an input file and what became of it.
type importRow struct {
	index   int
	p       parsedResource
	deleted bool
	// lastUpdated is the row's meta.lastUpdated truncated to the millisecond (zero when absent or InitialLoad);
	// version its versionId (0 when not an integer). keep: both are kept (KeepVersion in the service).
	lastUpdated time.Time
	version     int
	keep        bool
	failure     string // "" while loaded
}

// importInput streams one NDJSON blob, parses each line and loads the rows in batches of importBatchSize; it
// returns the loaded count and an OperationOutcome line per failed row.
func (s *Server) importInput(ctx context.Context, blobs *blobAccount, mode string, in importInput) (loaded int, failed [][]byte, err error) {
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
	var batch []*importRow
	flush := func() {
		s.loadBatch(mode, batch)
		for _, r := range batch {
			if r.failure != "" {
				failed = append(failed, importErrorLine(r.index, r.failure))
			} else {
				loaded++
			}
		}
		batch = batch[:0]
	}
	// Lines are numbered as ImportResourceLoader.ReadLines counts them: an empty line (nothing before its \n or
	// \r\n) is skipped and not numbered; a line of blanks is numbered and fails to parse.
	lineNo := 0
	for {
		line, readErr := rd.ReadBytes('\n')
		if content := bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r")); len(content) > 0 {
			lineNo++
			row, lineErr := s.parseImportRow(mode, in.Type, lineNo, bytes.TrimSpace(content))
			switch {
			case lineErr != nil:
				failed = append(failed, importErrorLine(lineNo, lineErr.Error()))
			case row == nil:
				loaded++ // import-drop: counted as loaded, never stored
			default:
				batch = append(batch, row)
				if len(batch) == importBatchSize {
					flush()
				}
			}
		}
		if errors.Is(readErr, io.EOF) {
			flush()
			return loaded, failed, nil
		}
		if readErr != nil {
			return 0, nil, fmt.Errorf("read %s: %w", in.URL, readErr)
		}
	}
}

// parseImportRow reads one line as the service's parser does (FirelyImportResourceParser.cs): lastUpdated is
// truncated to the millisecond and may not be over 10 s in the future, versionId is kept only when it is an
// integer and lastUpdated is there, and the deleted-state extension marks a deletion. A nil row without error is
// a line the import-drop fault swallowed.
func (s *Server) parseImportRow(mode, inputType string, index int, line []byte) (*importRow, error) {
	if s.faults.roll(FaultImportLineErrors) {
		return nil, errors.New("the resource could not be written: the data store timed out")
	}
	p, err := parseResource(line)
	if err != nil {
		return nil, err
	}
	if inputType != "" && p.Type != inputType {
		return nil, fmt.Errorf("the resource type %q does not match the input type %q", p.Type, inputType)
	}
	if !knownType(p.Type) || p.Type == "SearchParameter" {
		return nil, fmt.Errorf("resource type %q cannot be imported", p.Type)
	}
	if s.faults.roll(FaultImportDrop) {
		s.faults.recordDropped(p.Type + "/" + p.ID)
		return nil, nil
	}
	row := &importRow{index: index, p: p, deleted: isDeletionStub(p.Compact)}
	if mode != modeInitial && p.LastUpdated != "" {
		tr, err := parseFHIRTime(p.LastUpdated)
		if err != nil {
			return nil, fmt.Errorf("meta.lastUpdated: %w", err)
		}
		if tr.start.After(s.now().Add(importFutureSkew)) {
			return nil, errors.New("LastUpdated in the resource cannot be in the future.")
		}
		row.lastUpdated = tr.start.Truncate(time.Millisecond)
		if n, err := strconv.Atoi(p.VersionID); err == nil && p.VersionID != "" {
			row.version, row.keep = n, true
		}
	}
	return row, nil
}

// stored is the row as the store keeps it: a deletion stub, or the resource with its meta (lastUpdated rewritten
// when the truncation changed it).
func (r *importRow) stored(version int, at time.Time) (*resource, error) {
	if r.deleted {
		return deletionStub(r.p.Type, r.p.ID, version, at), nil
	}
	if r.keep {
		if orig, err := parseFHIRTime(r.p.LastUpdated); err == nil && orig.start.Equal(at) && version == r.version {
			return &resource{Type: r.p.Type, ID: r.p.ID, VersionID: r.p.VersionID, LastUpdated: at, Raw: r.p.Compact}, nil
		}
	}
	return stamped(r.p, version, at)
}

// loadBatch writes one batch of rows, resource by resource, and sets each row's failure.
func (s *Server) loadBatch(mode string, batch []*importRow) {
	byKey := map[string][]*importRow{}
	var keys []string
	for _, r := range batch {
		k := r.p.Type + "/" + r.p.ID
		if byKey[k] == nil {
			keys = append(keys, k)
		}
		byKey[k] = append(byKey[k], r)
	}
	for _, k := range keys {
		rows := byKey[k]
		typ, id := rows[0].p.Type, rows[0].p.ID
		err := s.resources.update(typ, id, func(v versions) (change, error) {
			if mode == modeInitial {
				return s.loadInitial(v, rows)
			}
			return s.loadIncremental(v, rows)
		})
		if err != nil {
			for _, r := range rows {
				if r.failure == "" {
					r.failure = err.Error()
				}
			}
		}
	}
}

// loadInitial is InitialLoad: the first row of an id that is not stored yet becomes version 1, stamped now; every
// other row of it is a duplicate (SqlServerFhirDataStore.ImportResourcesInternalAsync, InitialLoad).
func (s *Server) loadInitial(v versions, rows []*importRow) (change, error) {
	var c change
	for i, r := range rows {
		if i > 0 || v.latest() != nil {
			r.failure = fmt.Sprintf(importDuplicateText, r.p.ID, r.index)
			continue
		}
		res, err := r.stored(1, s.now().Truncate(time.Millisecond))
		if err != nil {
			return change{}, err
		}
		c.insert = append(c.insert, res)
	}
	return c, nil
}

// loadIncremental is IncrementalLoad for the rows of one resource in one batch, step by step as
// SqlServerFhirDataStore.ImportResourcesInternalAsync does it:
//  1. rows at the same millisecond collapse to the one with the largest versionId (compared as strings); the
//     others are duplicates;
//  2. a row at a millisecond where a version is stored already is a success that changes nothing when it is that
//     version with the same content, else a version conflict;
//  3. (MergeVersioned) rows with the same version collapse to the latest (the others are duplicates); by time,
//     newest first, versions must fall, else a conflict; a version stored already is a conflict; one whose order
//     against the stored current version disagrees with its time is a conflict; the rest are stored, the highest
//     version current.
//
// Rows without a kept version get the next version numbers, at their time or now.
func (s *Server) loadIncremental(v versions, rows []*importRow) (change, error) {
	var c change
	stored := v.all()
	dup := func(r *importRow) { r.failure = fmt.Sprintf(importDuplicateText, r.p.ID, r.index) }
	conflict := func(r *importRow) { r.failure = fmt.Sprintf(importConflictText, r.p.ID, r.index) }

	var versioned []*importRow
	for _, r := range rows {
		if r.keep {
			versioned = append(versioned, r)
		}
	}
	// 1. One row per millisecond: the largest versionId (string order), the first of equals.
	byTime := map[time.Time]*importRow{}
	for _, r := range versioned {
		if w := byTime[r.lastUpdated]; w == nil || r.p.VersionID > w.p.VersionID {
			byTime[r.lastUpdated] = r
		}
	}
	var step2 []*importRow
	for _, r := range versioned {
		if byTime[r.lastUpdated] != r {
			dup(r)
			continue
		}
		step2 = append(step2, r)
	}
	// 2. Against what is stored at the same millisecond.
	var step3 []*importRow
	for _, r := range step2 {
		var at *resource
		for _, st := range stored {
			if st.LastUpdated.Equal(r.lastUpdated) {
				at = st
				break
			}
		}
		switch {
		case at == nil:
			step3 = append(step3, r)
		case versionNumber(at.VersionID) == r.version && at.Deleted == r.deleted && (r.deleted || bytes.Equal(at.Raw, r.p.Compact)):
			// already loaded: a success
		default:
			conflict(r)
		}
	}
	// 3. One row per version: the latest.
	byVersion := map[int]*importRow{}
	for _, r := range step3 {
		if w := byVersion[r.version]; w == nil || r.lastUpdated.After(w.lastUpdated) {
			byVersion[r.version] = r
		}
	}
	var ordered []*importRow
	for _, r := range step3 {
		if byVersion[r.version] != r {
			dup(r)
			continue
		}
		ordered = append(ordered, r)
	}
	slices.SortStableFunc(ordered, func(a, b *importRow) int { return b.lastUpdated.Compare(a.lastUpdated) })
	prev := math.MaxInt
	var candidates []*importRow
	for _, r := range ordered {
		if r.version >= prev {
			conflict(r)
		} else {
			candidates = append(candidates, r)
		}
		prev = r.version
	}
	latest := v.latest()
	for _, r := range candidates {
		switch {
		case v.find(r.version) != nil:
			conflict(r)
		case latest != nil && ((latest.LastUpdated.After(r.lastUpdated) && versionNumber(latest.VersionID) < r.version) ||
			(latest.LastUpdated.Before(r.lastUpdated) && versionNumber(latest.VersionID) > r.version)):
			conflict(r)
		default:
			res, err := r.stored(r.version, r.lastUpdated)
			if err != nil {
				r.failure = err.Error()
				continue
			}
			c.insert = append(c.insert, res)
		}
	}
	// Rows without a kept version: the next numbers, in order.
	next := nextVersion(v)
	for _, ins := range c.insert {
		next = max(next, versionNumber(ins.VersionID)+1)
	}
	for _, r := range rows {
		if r.keep {
			continue
		}
		res, err := r.stored(next, cmp.Or(r.lastUpdated, s.now().Truncate(time.Millisecond)))
		if err != nil {
			r.failure = err.Error()
			continue
		}
		next++
		c.insert = append(c.insert, res)
	}
	return c, nil
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
