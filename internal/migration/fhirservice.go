package migration

import (
	"context"
	"time"

	"github.com/fhir-migrator/fhir-migrator/internal/fhir"
)

// fhirServiceKind is the Azure Health Data Services FHIR service as a source. What differs from Azure API for FHIR
// is how its export selects by time (checked in microsoft/fhir-server):
//
//   - Its export is parallel unless the request says otherwise (ExportController.cs GetExportParallelSetting:
//     only Azure API for FHIR defaults to false), and the engine says so explicitly with _isParallel.
//   - A parallel system export without _typeFilter (SqlExportOrchestratorJob.cs) selects by surrogate id, from
//     since.ToId() to till.ToId() - 1, "so _till value can be used as _since in the next time based export"; an
//     id is the lastUpdated truncated to the millisecond (IdHelper.cs ToId), so _till is exclusive and both ends
//     are taken at millisecond precision. The worker job (ExportJobTask.cs) also adds ge{_since} and le{_till},
//     which millisecond-aligned ends leave unchanged.
//   - With _typeFilter the orchestrator does not split the job (the parallel branch needs Filters to be empty):
//     ExportJobTask.cs alone selects, with le{_till}, inclusively. Such a window is sent as a non-parallel export
//     with _till its last millisecond: stored times are milliseconds (ResourceWrapperFactoryExtensions.cs), so
//     le{last ms} selects exactly what lt{next ms} does.
//
// So its windows are cut at milliseconds, each parallel export's _till equal to the next window's _since, and
// counted with the same ends (ge/lt).
// History, deletes, the staging container and Entra ID tokens are as for Azure API for FHIR.
type fhirServiceKind struct{}

func (fhirServiceKind) Name() string { return SourceKindFHIRService }

func (fhirServiceKind) Bounds() WindowBounds {
	return WindowBounds{Tick: time.Millisecond, TillExclusive: true}
}

func (k fhirServiceKind) ExportRequest(req *Request, j *Job) fhir.ExportRequest {
	r := azureExportRequest(req, j)
	parallel := len(j.TypeFilter) == 0
	r.IsParallel = &parallel
	if parallel && r.Till != nil {
		till := k.Bounds().exportTill(*r.Till)
		r.Till = &till
	}
	return r
}

func (fhirServiceKind) Client(c Clients, baseURL string) (FHIRClient, error) {
	return c.Entra(baseURL)
}

func (fhirServiceKind) Prepare(_ context.Context, _ FHIRClient, _ fhir.Capabilities, req *Request) *Error {
	return noGroup(req)
}

func (fhirServiceKind) CountsExports(*Request) bool { return true }

func (fhirServiceKind) StageFiles(_ context.Context, in StageInput) ([]File, error) {
	return manifestFiles(in.Manifest), nil
}
