package migration

import (
	"fmt"

	"github.com/fhir-migrator/fhir-migrator/internal/store"
)

// ErrorKind says what sort of refusal an engine error is. The engine knows no HTTP: the API maps each kind to
// its status (internal/api).
type ErrorKind string

// Error kinds.
const (
	// Invalid: the request is wrong; Field names what.
	Invalid ErrorKind = "invalid"
	// NotFound: no such migration, or nothing of the kind asked for yet.
	NotFound ErrorKind = "not_found"
	// Conflict: the request does not fit the migration's state or the staging account's.
	Conflict ErrorKind = "conflict"
	// Unavailable: a FHIR server the request needs could not be reached or would not answer.
	Unavailable ErrorKind = "unavailable"
)

// Error is a request an engine operation refuses: a stable code, its kind, the offending field and why.
type Error struct {
	Kind    ErrorKind
	Code    string
	Field   string
	Message string
	// cause is what the refusal stands for inside the engine (store.ErrNotFound for not_found).
	cause error
}

// Unwrap lets errors.Is see the refusal's cause.
func (e *Error) Unwrap() error { return e.cause }

func (e *Error) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("%s (%s): %s", e.Code, e.Field, e.Message)
	}
	return e.Code + ": " + e.Message
}

// Code is one error code an engine operation returns: its kind and when.
type Code struct {
	Code string
	Kind ErrorKind
	When string
}

// Codes lists every code the engine's operations return (a test checks each refusal in the code is listed).
func Codes() []Code {
	return []Code{
		{"missing_field", Invalid, "`source` or `destination` absent, or `sourceKind` absent for a source whose host implies no kind"},
		{"invalid_source_kind", Invalid, "`sourceKind` is not one of the kinds (`api-for-fhir`, `fhir-service`, `bulk-data`)"},
		{"invalid_group", Invalid, "`group` is not a FHIR id"},
		{"unsupported_by_source_kind", Invalid, "the source's kind cannot do what a field asks: `group` for an Azure source; `history` or `deletes` for a bulk-data source, `till` for one whose export declares no `_until`, `sync` for its Patient or Group export; `types`, `typeFilter` where its export declares no `_type` or `_typeFilter`; `verify` `ids` or `full` of a Patient or Group export; an assessment of a bulk-data source"},
		{"export_not_declared", Invalid, "a bulk-data source's CapabilityStatement declares no `export` (or `patient-export`), or no `group-export` for `group`"},
		{"group_not_found", Invalid, "a bulk-data source has no Group of the id in `group`"},
		{"fhir_version_mismatch", Invalid, "the source's and the destination's CapabilityStatement `fhirVersion` differ in major.minor version (an STU3 source and an R4 destination)"},
		{"invalid_url", Invalid, "`source` or `destination` is not an absolute URL, or one the allow-list cannot read"},
		{"host_not_allowed", Invalid, "`source` or `destination` is not on `AllowedHosts` (or uses http off loopback)"},
		{"same_server", Invalid, "`source` and `destination` are the same server"},
		{"invalid_type", Invalid, "`types[i]` is not a resource type, or is listed twice"},
		{"unknown_type", Invalid, "`types[i]` or `typeFilter[i]` names a type the source's CapabilityStatement lacks"},
		{"invalid_time", Invalid, "`since` or `till` is not an RFC 3339 time"},
		{"invalid_window", Invalid, "`since` is not before `till`, or is in the future"},
		{"invalid_type_filter", Invalid, "`typeFilter[i]` is malformed, holds a comma, has a parameter that is not `name=value`, names a type not in `types`, or is a search the source refuses"},
		{"invalid_export_strategy", Invalid, "`exportStrategy` is not `system` or `per-type`"},
		{"invalid_import_mode", Invalid, "`importMode` is not `IncrementalLoad` or `InitialLoad`"},
		{"invalid_container", Invalid, "`container` is not a valid container name"},
		{"invalid_verify", Invalid, "`verify` is not one of the modes (a re-verify: not `counts`, `ids` or `full`)"},
		{"invalid_verify_sample", Invalid, "`verifySample` is negative"},
		{"invalid_cleanup", Invalid, "`cleanup` is not `after-verify`"},
		{"invalid_window_target", Invalid, "`windowTarget` is below 1"},
		{"history_not_combinable", Invalid, "`history`, `deletes` or `sync` with a `typeFilter`, or with `importMode` `InitialLoad`"},
		{"invalid_sync", Invalid, "`syncInterval` or `syncMargin` is not a positive duration or comes without `sync`, or `sync` comes with a `till`"},
		{"invalid_top", Invalid, "`top` of the migration list is not 1 to 500"},
		{"invalid_continuation_token", Invalid, "`continuationToken` of the migration list is not one the service gave"},
		{"invalid_reconcile", Invalid, "`reconcile` is not `delete` or `report`, or comes without `sync`"},
		{"invalid_cutover_verify", Invalid, "`cutoverVerify` is not `fast` or `full-ids`, or comes without `sync`"},
		{"invalid_accept", Invalid, "`accept[i]` of a re-verify or a cutover is not `refused-versions`, or is given twice"},
		{"not_found", NotFound, "no migration with that id (or nothing held back: `report/search-parameters`)"},
		{"report_not_ready", NotFound, "the migration has no finished verification report yet"},
		{"container_in_use", Conflict, "`container` belongs to another migration or holds other data"},
		{"already_finished", Conflict, "cancel of a migration that has ended"},
		{"verification_running", Conflict, "re-verify while a verification runs"},
		{"not_verifiable", Conflict, "re-verify of a migration that is neither completed nor failed by its verification"},
		{"staged_files_deleted", Conflict, "re-verify by `ids` or `full` after cleanup"},
		{"migration_running", Conflict, "cleanup of a migration that has not ended"},
		{"verification_not_passed", Conflict, "cleanup of a migration whose verification did not pass (send `force`)"},
		{"container_not_owned", Conflict, "cleanup of a container whose owner metadata names another migration"},
		{"not_syncing", Conflict, "cutover of a migration that is not syncing"},
		{"cutover_requested", Conflict, "a second cutover with another `accept` list while the first is under way"},
		{"nothing_to_repair", Conflict, "repair of a migration whose last verification found no resource whose newest version the destination refused, or that is not failed"},
		{"source_unreachable", Unavailable, "the source's CapabilityStatement could not be read, or a `typeFilter[i]` not counted"},
		{"destination_unreachable", Unavailable, "the destination's CapabilityStatement could not be read"},
	}
}

func refuse(kind ErrorKind, code, field, format string, args ...any) *Error {
	return &Error{Kind: kind, Code: code, Field: field, Message: fmt.Sprintf(format, args...)}
}

func invalid(code, field, format string, args ...any) *Error {
	return refuse(Invalid, code, field, format, args...)
}

func conflict(code, format string, args ...any) *Error {
	return refuse(Conflict, code, "", format, args...)
}

func unavailable(code, field, format string, args ...any) *Error {
	return refuse(Unavailable, code, field, format, args...)
}

func notFound(id string) *Error {
	e := refuse(NotFound, "not_found", "", "no migration %q", id)
	e.cause = store.ErrNotFound
	return e
}

func notReady(format string, args ...any) *Error {
	return refuse(NotFound, "report_not_ready", "", format, args...)
}
