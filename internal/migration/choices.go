package migration

import (
	"fmt"
	"slices"
	"strings"
)

// The values the requests' fields take, their defaults and patterns (contract): validation (start.go,
// reverify.go, sync.go) accepts exactly these lists, and the API's description (handler/openapi.go) publishes the
// same lists as its enums, defaults and patterns; a test there sends each value, and values outside, through both.
var (
	exportStrategies = []string{StrategySystem, StrategyPerType}
	importModes      = []string{ModeIncremental, ModeInitial}
	// verifyModes are a start request's; a re-verify takes every one but none (reverifyModes).
	verifyModes    = []string{VerifyModeCounts, VerifyModeIDs, VerifyModeFull, VerifyModeNone}
	reverifyModes  = []string{VerifyModeCounts, VerifyModeIDs, VerifyModeFull}
	cleanupModes   = []string{CleanupAfterVerify, ""}
	reconcileModes = []string{ReconcileDelete, ReconcileReport}
	acceptValues   = []string{acceptRefusedVersions}
	statuses       = []Status{StatusPlanning, StatusExporting, StatusImporting, StatusVerifying, StatusSyncing,
		StatusCompleted, StatusFailed, StatusCanceled}
	jobKinds  = []JobKind{KindExport, KindImport, KindCopy}
	jobStates = []JobState{JobQueued, JobStarting, JobRunning, JobDone, JobFailed, JobCanceled}
)

// Defaults a start request's absent fields take (exportStrategy's depends on types: per-type with them, else
// system; syncInterval, syncMargin and reconcile apply with sync only).
const (
	DefaultImportMode = ModeIncremental
	DefaultVerify     = VerifyModeCounts
	DefaultReconcile  = ReconcileDelete
)

// Bounds of the list's page size (GET /api/migrations?top=).
const (
	DefaultListTop = defaultListTop
	MaxListTop     = maxListTop
)

// Bounds of a staging container's name (with ContainerPattern).
const (
	ContainerMinLength = 3
	ContainerMaxLength = 63
)

// ExportStrategies are the values of exportStrategy.
func ExportStrategies() []string { return slices.Clone(exportStrategies) }

// SourceKinds are the values of sourceKind.
func SourceKinds() []string { return slices.Clone(sourceKindNames) }

// ImportModes are the values of importMode.
func ImportModes() []string { return slices.Clone(importModes) }

// VerifyModes are the values of a start request's verify.
func VerifyModes() []string { return slices.Clone(verifyModes) }

// ReverifyModes are the values of a re-verify's verify.
func ReverifyModes() []string { return slices.Clone(reverifyModes) }

// CleanupModes are the values of a start request's cleanup ("" as if absent).
func CleanupModes() []string { return slices.Clone(cleanupModes) }

// ReconcileModes are the values of reconcile.
func ReconcileModes() []string { return slices.Clone(reconcileModes) }

// AcceptValues are what accept lists may name (each once).
func AcceptValues() []string { return slices.Clone(acceptValues) }

// Statuses are every status a migration has, in the order it passes them.
func Statuses() []Status { return slices.Clone(statuses) }

// JobKinds are every kind of job.
func JobKinds() []JobKind { return slices.Clone(jobKinds) }

// JobStates are every state of a job.
func JobStates() []JobState { return slices.Clone(jobStates) }

// TypePattern is a FHIR resource type as the start request takes it (types, and typeFilter's Type).
func TypePattern() string { return typePattern.String() }

// ContainerPattern is a staging container's name (ContainerMinLength to ContainerMaxLength characters).
func ContainerPattern() string { return containerPattern.String() }

// orList quotes values for a message: "a", "b" or "c".
func orList(values []string) string {
	q := make([]string, len(values))
	for i, v := range values {
		q[i] = fmt.Sprintf("%q", v)
	}
	if len(q) < 2 {
		return strings.Join(q, "")
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}

// IDPattern is a FHIR id (the request field group).
func IDPattern() string { return idPattern.String() }
