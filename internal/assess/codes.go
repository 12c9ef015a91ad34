package assess

// Item codes: stable, one per check; the item's status says what the check found.
const (
	CodeRequest              = "request.combination"
	CodeSourceReachable      = "source.reachable"
	CodeDestinationReachable = "destination.reachable"
	CodeFHIRVersion          = "servers.fhir-version"
	CodeTypes                = "types.supported"
	CodeTypeFilter           = "request.type-filter"
	CodeExport               = "export.probe"
	CodeExportStorage        = "staging.export-storage"
	CodeStagingAccess        = "staging.access"
	CodeImportEnabled        = "import.enabled"
	CodeImportStorage        = "import.storage"
	CodeImportMode           = "import.mode"
	CodeOverlap              = "destination.overlap"
	CodeSearchParameters     = "search-parameters.custom"
	CodeProfiles             = "profiles.structure-definitions"
	CodePlan                 = "plan.windows"
	CodeEstimate             = "estimate"
)

// CodeInfo is one item code and what it checks.
type CodeInfo struct {
	Code   string
	Checks string
}

// Codes lists every item code in the order items are reported.
func Codes() []CodeInfo {
	return []CodeInfo{
		{CodeRequest, "the request is one POST /api/migrations accepts: history, deletes and sync need IncrementalLoad and no typeFilter (blocking otherwise)"},
		{CodeSourceReachable, "the source's CapabilityStatement answers (blocking otherwise); its kind, software and fhirVersion"},
		{CodeDestinationReachable, "the destination's CapabilityStatement answers (blocking otherwise); its kind, software and fhirVersion"},
		{CodeFHIRVersion, "both servers speak R4 (fhirVersion 4.0.x); an STU3 source is blocking"},
		{CodeTypes, "every type to migrate is served by the source and by the destination (blocking otherwise)"},
		{CodeTypeFilter, "every typeFilter entry is a search the source accepts with Prefer: handling=strict, with its count"},
		{CodeExport, "a probe export with an empty output completes: export is enabled, the identity may export, the source reaches its export storage"},
		{CodeExportStorage, "the probe export's container is in the staging account: the source exports where the destination imports from"},
		{CodeStagingAccess, "the function's identity writes, reads and deletes a blob in the staging account"},
		{CodeImportEnabled, "the destination's import is enabled ($import probe)"},
		{CodeImportStorage, "the destination's import storage is the staging account ($import probe)"},
		{CodeImportMode, "the destination's initial import mode fits the importMode requested"},
		{CodeOverlap, "what the destination holds already of each type (a warning with the counts; blocking with InitialLoad)"},
		{CodeSearchParameters, "the source's custom SearchParameters the destination lacks, and whether the migration copies them"},
		{CodeProfiles, "the source's StructureDefinitions the destination lacks, and whether the migration copies them"},
		{CodePlan, "the export windows the migration would plan"},
		{CodeEstimate, "the migration's modelled duration and staging storage"},
	}
}
