package migration

import (
	"context"
	"errors"
	"time"

	"github.com/fhir-migrator/fhir-migrator/internal/fhir"
)

// Entry points for the assessment (internal/assess): it validates a start request as Start does and plans the
// windows as a migration's planning does, in bounded, resumable steps, without storing a migration or claiming
// anything. Nothing here changes what a migration does.

// ValidateStart validates a start request as Start does, without calling a server: the request with its defaults,
// or the refusal Start would answer before it checks the servers.
//
// It also refuses what the source's kind refuses without asking the source (group for the Azure kinds). A
// bulk-data source's refusals come from its CapabilityStatement and OperationDefinition, which an assessment does
// not read: such a source is not assessed (a dry run reads them).
func (s *Service) ValidateStart(raw StartRequest) (*Request, *Error) {
	req, refusal := s.validate(&raw)
	if refusal != nil {
		return nil, refusal
	}
	if req.SourceKind == SourceKindBulkData {
		return nil, invalid("unsupported_by_source_kind", "sourceKind",
			"an assessment covers the Azure kinds (%s, %s); for a bulk-data source, start with dryRun true", SourceKindAPIForFHIR, SourceKindFHIRService)
	}
	if refusal := kindOf(req).Prepare(context.Background(), nil, fhir.Capabilities{}, req); refusal != nil {
		return nil, refusal
	}
	return req, nil
}

// NewPlanning is the plan of a request before any count: the whole request for a system export, else each type's
// whole range, ending at now when the request has no till.
func NewPlanning(req *Request, sourceTypes []string, now time.Time) *Planning {
	return newPlanning(req, sourceTypes, now)
}

// PlanTypes are the types a request moves: its own, or every type of the source's CapabilityStatement.
func PlanTypes(req *Request, sourceTypes []string) []string { return planTypes(req, sourceTypes) }

// PlanStep plans on from p (changed in place) against source with the same rules as a migration's planning: at
// most stepCounts count calls and until deadline, within maxCounts count calls in all (past it, what is not split
// yet becomes one window each). It answers the windows this step made (export jobs, each with what it counted in
// Planned) and whether the plan is done (nothing pending).
func PlanStep(ctx context.Context, source FHIRClient, req *Request, sourceTypes []string, p *Planning,
	maxCounts, stepCounts int, deadline time.Time, clock func() time.Time) ([]*Job, bool, error) {
	if p.Windows == nil {
		p.Windows = map[string]int{} // a planning read back from JSON with no window yet
	}
	pl := &planner{req: req, sourceTypes: sourceTypes, target: windowTarget(req), maxCounts: maxCounts,
		source: source, p: p, now: clock().UTC()}
	err := pl.run(ctx, stepCounts, deadline, clock)
	if errors.Is(err, errPlanningBudget) {
		return pl.jobs, false, nil
	}
	if err != nil {
		return pl.jobs, false, err
	}
	return pl.jobs, len(p.Pending) == 0, nil
}

// OrderWindows orders export windows as a migration starts them: smallest first.
func OrderWindows(jobs []*Job) { orderWindows(jobs) }

// WindowTarget is the most resources one window of the request holds.
func WindowTarget(req *Request) int64 { return windowTarget(req) }

// StartAudit is the audit entry of a request that creates a document of its own beside the migrations (an
// assessment), and the call that marks it recorded once that document is saved with it; nil (and a call that does
// nothing) when the request carries none (WithAudit).
func StartAudit(ctx context.Context) (*AuditEntry, func()) {
	slot := pendingAudit(ctx, "", true)
	if slot == nil {
		return nil, func() {}
	}
	return slot.entry, slot.markSaved
}
