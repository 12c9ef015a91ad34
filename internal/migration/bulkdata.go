package migration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/fhir-migrator/fhir-migrator/internal/bulkfetch"
	"github.com/fhir-migrator/fhir-migrator/internal/fhir"
)

// BulkDataExport is what a bulk-data source declared at start, kept with the request: every kick-off takes only
// these.
type BulkDataExport struct {
	// Path is the kick-off's path: "" for $export (system), "Patient/$export" or "Group/{id}/$export".
	Path string `json:"path,omitempty"`
	// Params are the kick-off parameters its OperationDefinition declares (the IG's defaults when it serves
	// none): _since always; _type, _typeFilter and _until only when listed (a request's till is sent as _until).
	Params []string `json:"params"`
	// Counts: the source answers _summary=count, and a search counts what the export selects (a system export):
	// planning, each manifest's check and verification count it. Otherwise the manifest's lines stand for the
	// source.
	Counts bool `json:"counts"`
}

// SourceFiles reads a bulk-data export's files where its server keeps them (bulkfetch.Fetcher).
type SourceFiles interface {
	Stage(ctx context.Context, file bulkfetch.File, requiresToken bool, containerName, blobName string) (bulkfetch.Result, error)
	ReadErrors(ctx context.Context, files []bulkfetch.File, requiresToken bool) ([]string, error)
	Delete(ctx context.Context, statusURL string, withToken bool) error
}

// maxExportErrorNotes bounds the source's error messages quoted in a note.
const maxExportErrorNotes = 5

// bulkDataKind is any server of the HL7 Bulk Data Access IG (v2): a system, Patient or Group export with only
// the parameters the server declares, files on the server behind its token, SMART Backend Services (or the
// configured Entra ID credential). Without a time upper bound an export cannot be cut into windows: the full copy
// is one export.
type bulkDataKind struct{}

func (bulkDataKind) Name() string { return SourceKindBulkData }

// Bounds: one export, at the millisecond (what most servers keep of lastUpdated).
func (bulkDataKind) Bounds() WindowBounds {
	return WindowBounds{Tick: time.Millisecond, OneExport: true}
}

func (bulkDataKind) ExportRequest(req *Request, j *Job) fhir.ExportRequest {
	bd := req.BulkData
	if bd == nil {
		bd = &BulkDataExport{Params: []string{"_since"}}
	}
	r := fhir.ExportRequest{Path: bd.Path, Since: j.Since}
	if slices.Contains(bd.Params, "_type") {
		r.Types = j.Types
	}
	if slices.Contains(bd.Params, "_typeFilter") && len(r.Types) > 0 {
		r.TypeFilter = j.TypeFilter
	}
	if slices.Contains(bd.Params, "_until") && req.Till != nil {
		r.Until = req.Till
	}
	return r
}

func (bulkDataKind) Client(c Clients, baseURL string) (FHIRClient, error) {
	if c.SMART != nil {
		return c.SMART(baseURL)
	}
	return c.Entra(baseURL)
}

func (bulkDataKind) CountsExports(req *Request) bool {
	return req.BulkData != nil && req.BulkData.Counts
}

// Prepare reads which export the source declares and with which parameters, and refuses what it cannot do.
func (bulkDataKind) Prepare(ctx context.Context, src FHIRClient, caps fhir.Capabilities, req *Request) *Error {
	switch {
	case req.History || req.Deletes:
		return invalid("unsupported_by_source_kind", pick(req.History, "history", "deletes"),
			"a bulk-data source exports current resources only (the Bulk Data IG has no includeAssociatedData)")
	}
	op := "export"
	bd := &BulkDataExport{}
	switch {
	case req.Group != "":
		op, bd.Path = "group-export", "Group/"+req.Group+"/$export"
	case caps.Operations["export"] == "" && caps.Operations["patient-export"] != "":
		op, bd.Path = "patient-export", "Patient/$export"
	}
	def, declared := caps.Operations[op]
	if !declared {
		return invalid("export_not_declared", pick(req.Group != "", "group", "source"),
			"the source's CapabilityStatement declares no %s operation", op)
	}
	params, err := declaredParams(ctx, src, op, def)
	if err != nil {
		return unavailable("source_unreachable", "source", "the source's OperationDefinition of %s could not be read: %v", op, err)
	}
	bd.Params = params
	if req.Till != nil && !slices.Contains(params, "_until") {
		return invalid("unsupported_by_source_kind", "till", "the source's %s declares no _until: the full copy is one export up to the server's transactionTime", op)
	}
	if len(req.Types) > 0 && !slices.Contains(params, "_type") {
		return invalid("unsupported_by_source_kind", "types", "the source's %s declares no _type", op)
	}
	if len(req.TypeFilter) > 0 && !slices.Contains(params, "_typeFilter") {
		return invalid("unsupported_by_source_kind", "typeFilter", "the source's %s declares no _typeFilter", op)
	}
	if req.Group != "" {
		if r, err := src.Read(ctx, "Group", req.Group); err != nil || r.Status != 200 {
			return invalid("group_not_found", "group", "the source has no Group %s", req.Group)
		}
	}
	// A system export is what a search counts; a Patient or Group one is a compartment no search counts.
	if bd.Path == "" {
		_, err := src.Count(ctx, "Patient", nil)
		bd.Counts = err == nil
	}
	if bd.Path != "" && req.Sync {
		// A round exports what changed again: its lines would count a resource twice against the destination.
		return invalid("unsupported_by_source_kind", "sync", "sync needs a system export: a %s is verified by its manifests' lines", op)
	}
	if bd.Path != "" && req.Verify != VerifyModeCounts && req.Verify != VerifyModeNone {
		// ids and full list the source's resources by type search: a compartment is not what they list.
		return invalid("unsupported_by_source_kind", "verify", "verify %s compares whole types; a %s is verified by its manifest's lines (counts)", req.Verify, op)
	}
	req.BulkData = bd
	return nil
}

func pick[T any](c bool, a, b T) T {
	if c {
		return a
	}
	return b
}

// declaredParams reads an export OperationDefinition's "in" parameters from the source ({base}/OperationDefinition/
// {id}, the id being the definition's last path segment); a server that serves none is taken to take what the IG
// requires of every server (_since, _type, _outputFormat).
func declaredParams(ctx context.Context, src FHIRClient, op, definition string) ([]string, error) {
	id := path.Base(strings.SplitN(definition, "|", 2)[0])
	if !idPattern.MatchString(id) {
		id = op
	}
	r, err := src.Read(ctx, "OperationDefinition", id)
	if err != nil {
		var fe *fhir.Error
		if !errors.As(err, &fe) || fe.StatusCode/100 != 4 {
			return nil, err
		}
		r.Status = fe.StatusCode
	}
	if r.Status != 200 {
		return []string{"_outputFormat", "_since", "_type"}, nil
	}
	var od struct {
		Parameter []struct {
			Name string `json:"name"`
			Use  string `json:"use"`
		} `json:"parameter"`
	}
	if err := json.Unmarshal(r.Resource, &od); err != nil {
		return nil, fmt.Errorf("OperationDefinition/%s: %w", id, err)
	}
	out := []string{"_since"}
	for _, p := range od.Parameter {
		if p.Use == "in" && !slices.Contains(out, p.Name) {
			out = append(out, p.Name)
		}
	}
	slices.Sort(out)
	return out, nil
}

// StageFiles copies the export's files from the source into the migration's staging container (streamed, with
// the token when the manifest requires it, resumed and counted by bulkfetch), rewrites the manifest's error files
// to their staged copies so the report reads them as any other, and deletes the export on the source. The staged
// files' counts are their lines.
func (bulkDataKind) StageFiles(ctx context.Context, in StageInput) ([]File, error) {
	if in.Files == nil {
		return nil, errors.New("bulk-data source: no file fetcher is configured")
	}
	attempt := len(in.Job.Attempts)
	prefix := fmt.Sprintf("%s/%d/", in.Job.ID, attempt)
	man := in.Manifest
	out := make([]File, 0, len(man.Output))
	n := map[string]int{}
	for _, f := range man.Output {
		n[f.Type]++
		res, err := in.Files.Stage(ctx, bulkfetch.File(f), man.RequiresAccessToken, in.Migration.Request.Container,
			fmt.Sprintf("%s%s-%d.ndjson", prefix, f.Type, n[f.Type]))
		if err != nil {
			return nil, fmt.Errorf("stage %s: %w", f.URL, err)
		}
		out = append(out, File{Type: f.Type, URL: res.BlobURL, Count: res.Lines})
	}
	if len(man.Error) > 0 && in.Note != nil {
		// The IG's error files are OperationOutcomes, one per line: what the source could not export, in words.
		var errFiles []bulkfetch.File
		for _, f := range man.Error {
			errFiles = append(errFiles, bulkfetch.File(f))
		}
		msgs, err := in.Files.ReadErrors(ctx, errFiles, man.RequiresAccessToken)
		if err != nil {
			return nil, fmt.Errorf("read the error files: %w", err)
		}
		if len(msgs) > 0 {
			shown := msgs[:min(len(msgs), maxExportErrorNotes)]
			in.Note(truncate(fmt.Sprintf("%s: the source reported %d export error(s), the first: %s", in.Job.ID, len(msgs),
				strings.Join(shown, "; ")), maxErrorMessage))
		}
	}
	for i, f := range man.Error {
		res, err := in.Files.Stage(ctx, bulkfetch.File{Type: f.Type, URL: f.URL}, man.RequiresAccessToken,
			in.Migration.Request.Container, fmt.Sprintf("%serrors-%d.ndjson", prefix, i+1))
		if err != nil {
			return nil, fmt.Errorf("stage the error file %s: %w", f.URL, err)
		}
		man.Error[i] = fhir.ManifestFile{Type: f.Type, URL: res.BlobURL, Count: res.Lines}
	}
	// The IG asks a client to delete the export once it has its files. A server that keeps it anyway holds only
	// its own copy: logged, not a failure.
	if loc := in.Job.ContentLocation; loc != "" {
		if err := in.Files.Delete(ctx, loc, man.RequiresAccessToken); err != nil && in.Log != nil {
			in.Log.WarnContext(ctx, "bulk-data export not deleted on the source", "error", err)
		}
	}
	return out, nil
}
