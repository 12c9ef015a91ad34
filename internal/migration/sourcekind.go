package migration

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/fhir-migrator/fhir-migrator/internal/fhir"
	"github.com/fhir-migrator/fhir-migrator/internal/identity"
)

// Source kinds: the request field sourceKind.
const (
	// SourceKindAPIForFHIR is Azure API for FHIR: $export into the staging container (_container), both ends of
	// a window inclusive at 100 ns, Entra ID tokens.
	SourceKindAPIForFHIR = "api-for-fhir"
	// SourceKindFHIRService is the Azure Health Data Services FHIR service: the same, except that its parallel
	// export takes _till exclusively at millisecond precision.
	SourceKindFHIRService = "fhir-service"
	// SourceKindBulkData is any server of the HL7 Bulk Data Access IG.
	SourceKindBulkData = "bulk-data"
)

// sourceKindNames are the values of sourceKind the engine implements (kindOf answers each), in the order the API
// documents them.
var sourceKindNames = []string{SourceKindAPIForFHIR, SourceKindFHIRService, SourceKindBulkData}

// SourceKind is everything about a source that differs by its kind; the rest of the engine asks the migration's
// kind (kindOf) and never branches on the kind's name. A kind must provide:
//
//   - Name: its value of the request field sourceKind.
//
//   - Bounds: how windows are cut and counted: the resolution of the source's lastUpdated as its export selects
//     it, and whether an export's _till is in the window or starts the next one. Planning, the counts before
//     each kick-off, verification and the history counts all take their ends from it.
//
//   - ExportRequest: the $export kick-off of one export job, holding only the parameters the kind takes
//     (fhir.ExportRequest; a kind that cannot name a container or a till leaves them out).
//
//   - Client: the client of the source, authorised as the kind authorises (Clients holds the configured
//     factories: Entra ID, and SMART Backend Services when configured).
//
//   - StageFiles: where a finished export's files are and how they are read: it answers the files, as URLs in
//     the staging account, that the destination imports. A kind whose source wrote into the staging container
//     answers the manifest's files as they are; one whose files are elsewhere copies them there first. It runs
//     in the sweep's concurrent calls (poll.go runCalls), before the document is saved, each time a status poll
//     answers a manifest for a job still running in the document: it must be idempotent (the same manifest may be
//     staged again after a lost save or a re-poll), and an error is handled as a failed status poll
//     (applyPollError: retried, bounded by MaxPollFailures; wrap one a retry cannot fix with permanent()).
//
//   - Prepare: at start, checks the request against what the source declares (its CapabilityStatement, given)
//     and records in the request what the kind's kick-offs need; a refusal is a 4xx.
//
//   - CountsExports: whether a search on the source counts what the request's exports select. Planning, the
//     check of each manifest against the counts before its kick-off, and verification count the source only
//     then; otherwise the manifest's lines stand for the source.
//
// A kind is stateless: kindOf answers a fresh value, and everything it needs arrives in the call.
type SourceKind interface {
	Name() string
	Bounds() WindowBounds
	ExportRequest(req *Request, j *Job) fhir.ExportRequest
	Client(c Clients, baseURL string) (FHIRClient, error)
	StageFiles(ctx context.Context, in StageInput) ([]File, error)
	Prepare(ctx context.Context, src FHIRClient, caps fhir.Capabilities, req *Request) *Error
	CountsExports(req *Request) bool
}

// Clients are the configured client factories a kind chooses from.
type Clients struct {
	// Entra is the Entra ID (managed identity) client factory: Config.FHIR.
	Entra ClientFactory
	// SMART authorises with SMART Backend Services (Config.SMARTFHIR); nil when no SMART client is configured.
	SMART ClientFactory
}

// StageInput is what StageFiles is given: the migration, its export job, and the manifest its source answered.
type StageInput struct {
	Migration *Migration
	Job       *Job
	Manifest  *fhir.Manifest
	// Source is the source's client (from the kind's Client); Staging the staging account.
	Source  FHIRClient
	Staging Staging
	// Files reads the export's files where the source keeps them (Config.SourceFiles; nil when not configured).
	Files SourceFiles
	Log   *slog.Logger
	// Note adds a line to the migration's notes (shown in the report) once the manifest is accepted.
	Note func(string)
}

// kindOf is the kind of a request's source (validate sets Request.SourceKind; a document from before the field
// was added is Azure API for FHIR, the only kind there was).
func kindOf(req *Request) SourceKind {
	switch req.SourceKind {
	case SourceKindFHIRService:
		return fhirServiceKind{}
	case SourceKindBulkData:
		return bulkDataKind{}
	default:
		return apiForFHIRKind{}
	}
}

// sourceClient is the client of a request's source, authorised as its kind authorises.
func (s *Service) sourceClient(req *Request) (FHIRClient, error) {
	return kindOf(req).Client(Clients{Entra: s.cfg.FHIR, SMART: s.cfg.SMARTFHIR}, req.Source)
}

// clientOf is the client of base, one of the migration's two servers.
func (s *Service) clientOf(req *Request, base string) (FHIRClient, error) {
	if base == req.Source {
		return s.sourceClient(req)
	}
	return s.cfg.FHIR(base)
}

// defaultSourceKind is the kind a source's host implies: an AHDS FHIR service ({workspace}-{service}.fhir.
// azurehealthcareapis.com), another Azure API for FHIR host ({name}.azurehealthcareapis.com), and a loopback
// host (the local simulators) api-for-fhir; any other host has none ("": the request must name it).
func defaultSourceKind(baseURL string) string {
	u, err := url.Parse(baseURL)
	if err != nil {
		return ""
	}
	host := strings.ToLower(u.Hostname())
	switch {
	case strings.HasSuffix(host, ".fhir.azurehealthcareapis.com"):
		return SourceKindFHIRService
	case strings.HasSuffix(host, ".azurehealthcareapis.com"):
		return SourceKindAPIForFHIR
	case identity.IsLoopbackHost(host):
		return SourceKindAPIForFHIR
	}
	return ""
}

// WindowBounds is how a kind's export windows are cut and counted. In the engine a window is [since, till], both
// ends in it, each a multiple of Tick (the resolution at which the source's export selects by lastUpdated), and the
// next window starts one Tick after the till of the one before. With TillExclusive the source's export takes
// _till exclusively: a window is sent with _till one Tick after its last, which is the next window's _since, and
// counted with the same ends (ge{since}, lt{till + Tick}); else it is sent and counted as it is (ge, le).
//
// With OneExport the source's export takes no time upper bound: the request is planned as one export, whatever
// its size, and never split.
type WindowBounds struct {
	Tick          time.Duration
	TillExclusive bool
	OneExport     bool
}

// describe says in words how windows are cut, for the report's scope.
func (b WindowBounds) describe() string {
	if b.OneExport {
		return "one export, without a time upper bound, up to the source's transactionTime"
	}
	if b.TillExclusive {
		return fmt.Sprintf("export windows cut at %s, each _till the next window's _since", b.Tick)
	}
	return fmt.Sprintf("export windows cut at %s, both ends in the window", b.Tick)
}

// align truncates t to a boundary.
func (b WindowBounds) align(t time.Time) time.Time { return t.Truncate(b.Tick) }

// next is the first instant after a window ending at till: the next window's since, and the _before of a
// _history count (exclusive) that covers the window.
func (b WindowBounds) next(till time.Time) time.Time { return b.align(till).Add(b.Tick) }

// exportTill is the _till a window ending at till is exported with.
func (b WindowBounds) exportTill(till time.Time) time.Time {
	if b.TillExclusive {
		return b.next(till)
	}
	return till
}

// countTill is the _lastUpdated search value that ends a count of a window ending at till: the same end its
// export has.
func (b WindowBounds) countTill(till time.Time) string {
	if b.TillExclusive {
		return "lt" + fhir.FormatInstant(b.next(till))
	}
	return "le" + fhir.FormatInstant(till)
}

// heldAt is the last instant an export without _till holds when its manifest's transactionTime is t: t itself
// when the till is inclusive; with TillExclusive the export ended before the tick of t (the FHIR service's
// transactionTime is the job's creation, which is also its default _till: GetExportRequestHandler.cs,
// ExportOrchestratorJob.cs), so the last tick before it.
func (b WindowBounds) heldAt(t time.Time) time.Time {
	if b.TillExclusive {
		return b.align(t).Add(-b.Tick)
	}
	return t
}

// split halves the range [since, till] at a boundary: the left half ends at leftTill, the right one starts at
// rightSince (one Tick later). ok is false when the range is within one Tick and cannot be split.
func (b WindowBounds) split(since, till time.Time) (leftTill, rightSince time.Time, ok bool) {
	since = b.align(since)
	if till.Sub(since) < b.Tick {
		return time.Time{}, time.Time{}, false
	}
	mid := b.align(since.Add(till.Sub(since) / 2))
	return mid, mid.Add(b.Tick), true
}

// apiForFHIRKind is Azure API for FHIR: its export (ExportJobTask.cs, non-parallel by default on Cosmos DB)
// selects ge{_since} and le{_till} on lastUpdated, both ends inclusive at the 100 ns of a FHIR instant; it writes
// into the staging container named by _container, and takes Entra ID tokens.
type apiForFHIRKind struct{}

func (apiForFHIRKind) Name() string { return SourceKindAPIForFHIR }

func (apiForFHIRKind) Bounds() WindowBounds { return WindowBounds{Tick: instant} }

func (apiForFHIRKind) ExportRequest(req *Request, j *Job) fhir.ExportRequest {
	return azureExportRequest(req, j)
}

func (apiForFHIRKind) Client(c Clients, baseURL string) (FHIRClient, error) {
	return c.Entra(baseURL)
}

func (apiForFHIRKind) Prepare(_ context.Context, _ FHIRClient, _ fhir.Capabilities, req *Request) *Error {
	return noGroup(req)
}

func (apiForFHIRKind) CountsExports(*Request) bool { return true }

// noGroup refuses the request field group for a kind that exports at system level only.
func noGroup(req *Request) *Error {
	if req.Group != "" {
		return invalid("unsupported_by_source_kind", "group", "group is for a bulk-data source (Group/{id}/$export); sourceKind is %s", req.SourceKind)
	}
	return nil
}

func (apiForFHIRKind) StageFiles(_ context.Context, in StageInput) ([]File, error) {
	return manifestFiles(in.Manifest), nil
}

// azureExportRequest is the kick-off of both Azure kinds: the job's window and filters, the staging container,
// and the associated data the request moves.
func azureExportRequest(req *Request, j *Job) fhir.ExportRequest {
	return fhir.ExportRequest{Types: j.Types, Since: j.Since, Till: j.Till, TypeFilter: j.TypeFilter, Container: req.Container,
		// History brings deletions too: without its stub, an older version of a deleted resource would become
		// current on the destination. A sync round always carries them.
		History: req.History, Deleted: req.Deletes || req.History || j.Round > 0}
}
