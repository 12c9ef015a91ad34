package assess

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/fhir-migrator/fhir-migrator/internal/migration"
)

// judge turns the facts found so far into items, in the order of Codes; a check whose facts are not in yet has no
// item. It reads only the document, so that a test can hold each verdict to its facts.
func judge(a *Assessment) []Item {
	var items []Item
	add := func(it *Item) {
		if it != nil {
			items = append(items, *it)
		}
	}
	add(judgeRequest(a))
	add(judgeReachable(CodeSourceReachable, "source", a.Source))
	add(judgeReachable(CodeDestinationReachable, "destination", a.Destination))
	add(judgeFHIRVersion(a))
	add(judgeTypes(a))
	add(judgeTypeFilters(a))
	add(judgeExport(a))
	add(judgeExportStorage(a))
	add(judgeStagingAccess(a))
	enabled, storage, mode := judgeImport(a)
	add(enabled)
	add(storage)
	add(mode)
	add(judgeOverlap(a))
	add(judgeDefinitions(a, a.SearchParameters, CodeSearchParameters))
	add(judgeDefinitions(a, a.Profiles, CodeProfiles))
	add(judgePlan(a))
	add(judgeEstimate(a))
	return items
}

// verdict is the worst status of the items.
func verdict(items []Item) Level {
	v := OK
	for _, it := range items {
		if it.Status.rank() > v.rank() {
			v = it.Status
		}
	}
	return v
}

func judgeRequest(a *Assessment) *Item {
	it := &Item{Code: CodeRequest, Title: "The request", Status: OK,
		Detail: "a request POST /api/migrations accepts (" + describeRequest(&a.Request) + ")",
		Source: "the migration's own validation (internal/migration: Service.ValidateStart)"}
	if r := a.Refusal; r != nil {
		it.Status = Blocking
		it.Detail = "POST /api/migrations would refuse it with " + r.Code + " (field " + r.Field + "): " + r.Message
		it.Action = "history, deletes and sync need importMode " + migration.ModeIncremental + " (which keeps versionId and lastUpdated) and no typeFilter " +
			"(the source refuses includeAssociatedData with _typeFilter: ExportController.ValidateAndParseIncludeAssociatedData): change one or the other"
	}
	return it
}

func describeRequest(r *migration.Request) string {
	types := "every type"
	if len(r.Types) > 0 {
		types = strings.Join(r.Types, ", ")
	}
	parts := []string{types, "export " + r.ExportStrategy, "import " + r.ImportMode, "verify " + r.Verify}
	if r.History {
		parts = append(parts, "history")
	}
	if r.Deletes {
		parts = append(parts, "deletes")
	}
	if r.Sync {
		parts = append(parts, "sync")
	}
	if len(r.TypeFilter) > 0 {
		parts = append(parts, fmt.Sprintf("%d typeFilter entries", len(r.TypeFilter)))
	}
	return strings.Join(parts, ", ")
}

func judgeReachable(code, role string, s *ServerFacts) *Item {
	if s == nil {
		return nil
	}
	it := &Item{Code: code, Title: "The " + role + " answers", Source: "GET " + s.URL + "/metadata"}
	if !s.Reachable {
		it.Status = Blocking
		it.Detail = "its CapabilityStatement could not be read: " + s.Error
		it.Action = "check the URL, that its host is on the AllowedHosts setting, the network path from the function app " +
			"(private endpoints, firewall) and that the function's identity holds a FHIR data role on the " + role
		return it
	}
	it.Status = OK
	it.Detail = fmt.Sprintf("%s; software %s %s; fhirVersion %s; %d resource types", s.Kind,
		orDash(s.Software), s.SoftwareVersion, orDash(s.FHIRVersion), len(s.Types))
	return it
}

// serverKind names the service a base URL belongs to, by the documented host names: an AHDS FHIR service is
// https://{workspace}-{service}.fhir.azurehealthcareapis.com, Azure API for FHIR https://{name}.azurehealthcareapis.com.
func serverKind(base string) string {
	u, err := url.Parse(base)
	if err != nil {
		return "a FHIR server"
	}
	host := strings.ToLower(u.Hostname())
	switch {
	case strings.HasSuffix(host, ".fhir.azurehealthcareapis.com"):
		return "Azure Health Data Services FHIR service"
	case strings.HasSuffix(host, ".azurehealthcareapis.com"):
		return "Azure API for FHIR"
	}
	return "a FHIR server (not an Azure host name)"
}

// r4 reports whether a fhirVersion is R4 (4.0.x).
func r4(v string) bool { return strings.HasPrefix(v, "4.0.") || v == "4.0" }

func judgeFHIRVersion(a *Assessment) *Item {
	src, dst := a.Source, a.Destination
	if src == nil || dst == nil || (!src.Reachable && !dst.Reachable) {
		return nil
	}
	it := &Item{Code: CodeFHIRVersion, Title: "Both servers speak R4", Status: OK,
		Source: "fhirVersion of each CapabilityStatement"}
	var bad []string
	for _, s := range []struct {
		role string
		f    *ServerFacts
	}{{"source", src}, {"destination", dst}} {
		if !s.f.Reachable {
			continue
		}
		if !r4(s.f.FHIRVersion) {
			bad = append(bad, fmt.Sprintf("the %s speaks FHIR %s", s.role, orDash(s.f.FHIRVersion)))
		}
	}
	it.Detail = fmt.Sprintf("source %s, destination %s", versionOf(src), versionOf(dst))
	if len(bad) > 0 {
		it.Status = Blocking
		it.Detail = strings.Join(bad, "; ") + " (" + it.Detail + ")"
		it.Action = "the migration copies resources as they are, and both services' bulk operations move R4 (the AHDS FHIR " +
			"service speaks R4): convert an STU3 source's data to R4 first (for example with Microsoft's FHIR Converter) and import that"
	}
	return it
}

func versionOf(s *ServerFacts) string {
	if !s.Reachable {
		return "unknown (unreachable)"
	}
	return orDash(s.FHIRVersion)
}

func judgeTypes(a *Assessment) *Item {
	src, dst := a.Source, a.Destination
	if src == nil || !src.Reachable {
		return nil
	}
	it := &Item{Code: CodeTypes, Title: "The types are served by both servers", Status: OK,
		Source: "rest.resource.type of each CapabilityStatement"}
	var unknown, missing []string
	for _, t := range a.Request.Types {
		if !slices.Contains(src.Types, t) {
			unknown = append(unknown, t)
		}
	}
	for _, f := range a.Request.TypeFilter {
		t, _, _ := strings.Cut(f, "?")
		if !slices.Contains(src.Types, t) && !slices.Contains(unknown, t) {
			unknown = append(unknown, t)
		}
	}
	types := migration.PlanTypes(&a.Request, src.Types)
	held := map[string]int64{}
	for _, tf := range a.Types {
		held[tf.Type] = tf.Live
	}
	if dst != nil && dst.Reachable {
		for _, t := range types {
			if slices.Contains(unknown, t) || slices.Contains(dst.Types, t) {
				continue
			}
			// Every type of the source (no types given): only a type the source holds resources of matters.
			if n, surveyed := held[t]; len(a.Request.Types) == 0 && (!surveyed || n == 0) {
				continue
			}
			missing = append(missing, t)
		}
	}
	it.Detail = fmt.Sprintf("%d types to migrate", len(types))
	if len(a.Request.Types) == 0 {
		it.Detail += " (every type of the source)"
	}
	var problems []string
	if len(unknown) > 0 {
		problems = append(problems, "the source does not serve "+strings.Join(unknown, ", ")+" (POST /api/migrations refuses it: unknown_type)")
	}
	if len(missing) > 0 {
		problems = append(problems, "the destination does not serve "+strings.Join(missing, ", ")+" (its import would refuse every line of them)")
	}
	if len(problems) > 0 {
		it.Status = Blocking
		it.Detail = strings.Join(problems, "; ")
		it.Action = "leave these types out of types (or give types without them)"
	}
	return it
}

func judgeTypeFilters(a *Assessment) *Item {
	if len(a.Request.TypeFilter) == 0 || len(a.Filters) == 0 {
		return nil
	}
	it := &Item{Code: CodeTypeFilter, Title: "The typeFilter searches", Status: OK,
		Source: "GET [source]/{Type}?{query}&_summary=count with Prefer: handling=strict, as a migration counts them"}
	var parts, refused []string
	for _, f := range a.Filters {
		if f.Refused != "" {
			refused = append(refused, f.Filter+": "+f.Refused)
			continue
		}
		parts = append(parts, fmt.Sprintf("%s: %d", f.Filter, f.Count))
	}
	it.Detail = strings.Join(parts, "; ")
	if len(refused) > 0 {
		it.Status = Blocking
		it.Detail = "the source refuses " + strings.Join(refused, "; ")
		it.Action = "correct the search (a parameter the source does not know, or a value it cannot read): POST /api/migrations refuses it (invalid_type_filter)"
	}
	return it
}

func judgeExport(a *Assessment) *Item {
	e := a.Export
	if e == nil || e.State == exportRunning {
		return nil
	}
	it := &Item{Code: CodeExport, Title: "The source exports", Source: "GET [source]/$export?" + e.Query + ", then its status"}
	action := "configure export on the source (Azure API for FHIR: Export, a storage account, the staging account) and give the " +
		"service's managed identity Storage Blob Data Contributor on it; the function's identity needs the FHIR Data Exporter role on the source"
	switch e.State {
	case exportCompleted:
		it.Status = OK
		it.Detail = fmt.Sprintf("a probe export with nothing in its range completed in %s with %d files: export is enabled, "+
			"the function's identity may export, and the source wrote to its export storage (its container %s)",
			seconds(e.FinishedAt.Sub(*e.KickedOffAt).Seconds()), e.Files, e.Container)
		if e.Files > 0 {
			it.Status = Warning
			it.Detail += fmt.Sprintf("; it wrote %d files although its range held nothing (they were deleted with the container)", e.Files)
		}
	case exportRefused:
		it.Status = Blocking
		it.Detail = fmt.Sprintf("the source refused the export: HTTP %d: %s", e.Status, e.Answer)
		it.Action = action
	case exportFailed:
		it.Status = Blocking
		it.Detail = "the probe export failed on the source: " + e.Answer
		it.Action = action
	case exportTimedOut:
		it.Status = Warning
		it.Detail = "the probe export did not finish in time and was canceled: the source's export jobs may be queued behind others"
		it.Action = "assess again when the source's running exports are done"
	}
	return it
}

func judgeExportStorage(a *Assessment) *Item {
	s, e := a.Staging, a.Export
	if s == nil || e == nil || e.State != exportCompleted || s.ExportContainerFound == nil {
		return nil
	}
	it := &Item{Code: CodeExportStorage, Title: "The source exports into the staging account", Status: OK,
		Source: "the staging account (" + s.Endpoint + "), after the probe export",
		Detail: "the probe export's container " + s.Container + " is in the staging account, where the destination imports from"}
	if !*s.ExportContainerFound {
		it.Status = Blocking
		it.Detail = "the probe export completed, but its container " + s.Container + " is not in the staging account: the source exports into another account"
		it.Action = "set the source's export storage account to the staging account (the StagingStorage setting), or the staging setting to the source's"
	}
	return it
}

func judgeStagingAccess(a *Assessment) *Item {
	s := a.Staging
	if s == nil {
		return nil
	}
	it := &Item{Code: CodeStagingAccess, Title: "The function reads and writes the staging account", Status: OK,
		Source: "a blob written, read back and deleted in " + s.Endpoint + s.Container,
		Detail: "a blob was written, read back and deleted, and the probe container deleted"}
	switch {
	case s.Error != "" && !(s.Wrote && s.Read):
		it.Status = Blocking
		it.Detail = "the function's identity could not use the staging account: " + s.Error
		it.Action = "give the function app's identity Storage Blob Data Contributor on the staging account, and let its network reach it"
	case !s.Deleted:
		it.Status = Warning
		it.Detail = "the blob was written and read, but the probe container " + s.Container + " could not be deleted: " + s.Error
		it.Action = "delete the container " + s.Container + " from the staging account"
	}
	return it
}

// Texts of fhir-server's answers the import probe tells apart (src/Microsoft.Health.Fhir.Api/Resources.resx):
// OperationNotEnabled "The requested "{0}" operation is not enabled", ImportStorageAccountNotConfigured "The import
// storage account is not configured correctly on the server", ImportRequestInputUrlStorageEndpointMismatch
// "input.url must match the configured integration storage account endpoint", UnsupportedResourceType "Requested
// operation does not support resource type: {0}.".
func importDisabled(msg string) bool { return strings.Contains(strings.ToLower(msg), "not enabled") }

func importStorageRefused(msg string) bool {
	m := strings.ToLower(msg)
	return strings.Contains(m, "storage account") || strings.Contains(m, "input.url")
}

func importAccepted(p *ImportProbe) bool {
	return p != nil && p.Import != nil && p.Import.Status == 400 && strings.Contains(p.Import.Message, "SearchParameter") &&
		!importDisabled(p.Import.Message) && !importStorageRefused(p.Import.Message)
}

func judgeImport(a *Assessment) (enabled, storage, mode *Item) {
	p := a.Import
	if p == nil {
		return nil, nil, nil
	}
	src := "POST [destination]/$import with one SearchParameter input at " + p.InputURL +
		" (refused by design, before any job: ImportController.ValidateImportRequestConfiguration)"
	enabled = &Item{Code: CodeImportEnabled, Title: "The destination imports", Source: src}
	if p.Import == nil {
		enabled.Status = Blocking
		enabled.Detail = "the $import probe got no answer: " + p.Error
		enabled.Action = "check the network path from the function app to the destination"
		return enabled, nil, nil
	}
	answer := fmt.Sprintf("HTTP %d: %s", p.Import.Status, p.Import.Message)
	switch {
	case importDisabled(p.Import.Message):
		enabled.Status = Blocking
		enabled.Detail = "import is not enabled on the destination (" + answer + ")"
		enabled.Action = "enable import on the destination (the FHIR service's import configuration: enabled, with the staging " +
			"account as its storage account) and give the service's managed identity Storage Blob Data Contributor on it"
		return enabled, nil, nil
	case p.Import.Status == 401 || p.Import.Status == 403:
		enabled.Status = Blocking
		enabled.Detail = "the destination refused the function's identity (" + answer + ")"
		enabled.Action = "give the function app's identity the FHIR Data Importer and FHIR Data Contributor roles on the destination"
		return enabled, nil, nil
	}
	enabled.Status = OK
	enabled.Detail = "import is enabled (" + answer + ")"
	storage = &Item{Code: CodeImportStorage, Title: "The destination imports from the staging account", Source: src}
	switch {
	case importAccepted(p):
		storage.Status = OK
		storage.Detail = "the destination's import storage account is the staging account's host: it refused only the " +
			"SearchParameter type, the check it makes after the storage account's (" + answer + "). Whether its identity may read " +
			"the account shows only when a job runs: give it Storage Blob Data Contributor there"
	case importStorageRefused(p.Import.Message):
		storage.Status = Blocking
		storage.Detail = "the destination does not import from the staging account (" + answer + ")"
		storage.Action = "set the destination's import storage account to the staging account (StagingStorage), and give the service's managed identity Storage Blob Data Contributor on it"
	default:
		storage.Status = Warning
		storage.Detail = "the destination answered the $import probe unexpectedly (" + answer + ")"
		storage.Action = "check the destination's import configuration before migrating"
	}
	mode = &Item{Code: CodeImportMode, Title: "The destination's import mode fits importMode " + a.Request.ImportMode,
		Source: "POST [destination]/metadata: InitialImportLockMiddleware answers 423 to it in initial import mode (nothing else can)"}
	if p.Lock == nil {
		mode.Status = Warning
		mode.Detail = "the initial import mode could not be probed: " + p.Error
		return enabled, storage, mode
	}
	locked := p.Lock.Status == 423
	switch {
	case a.Request.ImportMode == migration.ModeInitial && locked:
		mode.Status = OK
		mode.Detail = "the destination is in initial import mode, which InitialLoad needs"
	case a.Request.ImportMode == migration.ModeInitial:
		mode.Status = Blocking
		mode.Detail = fmt.Sprintf("the destination is not in initial import mode (HTTP %d): it refuses InitialLoad "+
			"(ImportController: \"Initial import mode is not enabled\")", p.Lock.Status)
		mode.Action = "turn the destination's initial import mode on (an empty service only), or use importMode " + migration.ModeIncremental
	case locked:
		mode.Status = Warning
		mode.Detail = "the destination is in initial import mode: IncrementalLoad imports run, but every other write is " +
			"refused (423), the copy of SearchParameters and a repair among them"
		mode.Action = "turn initial import mode off before migrating with " + migration.ModeIncremental + ", or use InitialLoad"
	default:
		mode.Status = OK
		mode.Detail = fmt.Sprintf("the destination is not in initial import mode (HTTP %d), as %s wants", p.Lock.Status, migration.ModeIncremental)
	}
	return enabled, storage, mode
}

func judgeOverlap(a *Assessment) *Item {
	if a.Survey == nil || !a.Survey.Done || a.Destination == nil || !a.Destination.Reachable {
		return nil
	}
	it := &Item{Code: CodeOverlap, Title: "What the destination holds already", Status: OK,
		Source: "GET [destination]/{Type}?_summary=count per type"}
	var held, uncounted []string
	var total int64
	for _, t := range a.Types {
		switch {
		case !t.DestinationSupported:
		case !t.DestinationCounted:
			uncounted = append(uncounted, t.Type)
		case t.Destination > 0:
			held = append(held, fmt.Sprintf("%s: %d (the source holds %d in range)", t.Type, t.Destination, t.Live))
			total += t.Destination
		}
	}
	it.Detail = fmt.Sprintf("the destination holds none of the %d types", len(a.Types))
	switch {
	case len(held) > 0 && a.Request.ImportMode == migration.ModeInitial:
		it.Status = Blocking
		it.Detail = fmt.Sprintf("the destination holds %d resources of the types already: %s", total, strings.Join(held, "; "))
		it.Action = "InitialLoad is meant for an empty FHIR service (Microsoft Learn, \"Import data into the FHIR service\"): " +
			"migrate into an empty one, or use " + migration.ModeIncremental
	case len(held) > 0:
		it.Status = Warning
		it.Detail = fmt.Sprintf("the destination holds %d resources of the types already: %s", total, strings.Join(held, "; "))
		it.Action = "an imported resource replaces one of the same id; make sure this is the destination meant (verification looks " +
			"these types up id by id)"
	}
	if len(uncounted) > 0 {
		if it.Status == OK {
			it.Status = Warning
		}
		it.Detail += "; not counted: " + strings.Join(uncounted, ", ")
	}
	return it
}

func judgeDefinitions(a *Assessment, d *Definitions, code string) *Item {
	if d == nil {
		return nil
	}
	what := "custom SearchParameters"
	title := "Custom SearchParameters"
	if code == CodeProfiles {
		what, title = "StructureDefinitions (profiles)", "Profiles"
	}
	it := &Item{Code: code, Title: title, Status: OK,
		Source: "GET [source]/" + d.Type + " and GET [destination]/" + d.Type + "?url=..., by url"}
	if code == CodeSearchParameters {
		// fhir-server keeps the spec's search parameters in embedded files (SearchParameterDefinitionManager reads
		// search-parameters.json): every SearchParameter resource a server stores is a custom one.
		it.Source += "; a stored SearchParameter is a custom one (the built-in ones are embedded: SearchParameterDefinitionManager.cs)"
	}
	var srcTypes []string
	if a.Source != nil {
		srcTypes = a.Source.Types
	}
	inScope := slices.Contains(migration.PlanTypes(&a.Request, srcTypes), d.Type)
	switch {
	case !d.Served:
		it.Detail = "the source does not serve " + d.Type
		return it
	case len(d.Source) == 0:
		it.Detail = "the source holds no " + what
		return it
	case !d.Checked:
		it.Status = Warning
		it.Detail = fmt.Sprintf("the source holds %d %s; the destination could not be asked which it holds", len(d.Source), what)
		return it
	case len(d.Missing) == 0:
		it.Detail = fmt.Sprintf("the destination holds all %d %s of the source", len(d.Source), what)
		return it
	}
	it.Detail = fmt.Sprintf("the destination lacks %d of the source's %d %s: %s", len(d.Missing), len(d.Source), what, strings.Join(d.Missing, ", "))
	if d.Truncated {
		it.Detail += fmt.Sprintf(" (the source holds more than the first %d listed)", len(d.Source))
	}
	switch {
	case !inScope:
		it.Status = Warning
		it.Action = "the migration does not move " + d.Type + " (not among types): add it to types, or create them on the destination"
	case code == CodeSearchParameters && a.Request.ImportMode == migration.ModeInitial:
		it.Status = Warning
		it.Action = "an InitialLoad destination takes no PUT: the migration keeps them as a batch Bundle " +
			"(GET /api/migrations/{id}/report/search-parameters) to POST once initial import mode is off, then $reindex (checklist)"
	case code == CodeSearchParameters:
		it.Detail += "; the migration copies them (batch PUTs), and the destination then needs a reindex (checklist)"
	default:
		it.Detail += "; the migration imports them with the other types"
	}
	return it
}

func judgePlan(a *Assessment) *Item {
	p := a.Plan
	if p == nil || !p.Done {
		return nil
	}
	it := &Item{Code: CodePlan, Title: "The plan", Status: OK,
		Source: fmt.Sprintf("the migration's own planning (internal/migration.PlanStep): %d count calls on the source", p.Planning.Counts)}
	var largest int64
	for _, w := range p.Windows {
		largest = max(largest, w.Planned)
	}
	it.Detail = fmt.Sprintf("%d export windows holding %d resources (the largest %d; windows of at most %d)",
		len(p.Windows), p.Resources, largest, migration.WindowTarget(&a.Request))
	if len(p.Windows) == 0 {
		it.Detail = "nothing to export: the source holds nothing the request selects"
	}
	if p.Planning.Versions == "live" {
		it.Status = Warning
		it.Detail += "; the source refused to count versions, so the windows are sized by live resources: " + p.Planning.VersionsNote
	}
	return it
}

func judgeEstimate(a *Assessment) *Item {
	e := a.Estimate
	if e == nil {
		return nil
	}
	return &Item{Code: CodeEstimate, Title: "Duration and storage", Status: OK,
		Detail: fmt.Sprintf("the copy about %s (the exports end after %s), verification about %s: about %s in all; "+
			"about %s staged", seconds(e.CopySeconds), seconds(e.ExportSeconds), seconds(e.VerifySeconds),
			seconds(e.TotalSeconds), bytesText(e.StagingBytes)),
		Source: "the windows planned, the rates stated in the estimate's assumptions, the sizes sampled"}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// seconds writes a duration readably: "45 s", "12 min", "3.2 h", "2.1 days".
func seconds(s float64) string {
	d := time.Duration(s * float64(time.Second))
	switch {
	case s < 90:
		return fmt.Sprintf("%.0f s", s)
	case d < 90*time.Minute:
		return fmt.Sprintf("%.0f min", d.Minutes())
	case d < 48*time.Hour:
		return fmt.Sprintf("%.1f h", d.Hours())
	}
	return fmt.Sprintf("%.1f days", d.Hours()/24)
}

// bytesText writes a size in bytes with a binary unit.
func bytesText(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
