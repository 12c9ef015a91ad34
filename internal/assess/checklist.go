package assess

import (
	"fmt"
	"strings"

	"github.com/fhir-migrator/fhir-migrator/internal/migration"
)

// Checklist codes: what the operator does by hand once the migration is done.
const (
	TaskRBAC      = "rbac"
	TaskClients   = "smart-apps"
	TaskNetwork   = "private-endpoints"
	TaskReindex   = "reindex"
	TaskInitial   = "initial-import-mode"
	TaskProfiles  = "profiles"
	TaskExport    = "export-configuration"
	TaskStaging   = "staging-cleanup"
	TaskCutover   = "cutover"
	TaskAuditLogs = "diagnostic-settings"
)

// checklist is what nothing in a migration moves: access, clients, network, the reindex of custom search
// parameters, the modes and configurations of the new service.
func checklist(a *Assessment) []Task {
	dst := a.Request.Destination
	tasks := []Task{
		{Code: TaskRBAC, Title: "Role assignments on the new FHIR service",
			Detail: "Azure role assignments on the source (FHIR Data Reader, Contributor, Writer, Exporter, Importer, SMART User) and its access policies do not move: " +
				"give each user, group and application its role on the destination, at the FHIR service's scope.",
			Call: "az role assignment list --scope <source resource id> -o table; " +
				"az role assignment create --assignee <object id> --role \"FHIR Data Contributor\" --scope <destination FHIR service resource id>"},
		{Code: TaskClients, Title: "SMART on FHIR apps and other clients",
			Detail: "point every client at " + dst + ": the base URL and the token audience (the resource or scope " + dst + "/.default) change; " +
				"re-register the SMART apps' redirect URIs and scopes, and let the destination's identity provider settings (authority, SMART) match the source's."},
		{Code: TaskNetwork, Title: "Private endpoints, firewall and CORS",
			Detail: "recreate for the destination what the source had: private endpoints and their DNS zones (privatelink.fhir.azurehealthcareapis.com for an AHDS " +
				"workspace), public network access, the CORS origins, and the network rules of the staging account (the FHIR service as a trusted resource instance)."},
		{Code: TaskAuditLogs, Title: "Diagnostic settings",
			Detail: "send the destination's AuditLogs to the same Log Analytics workspace or storage as the source's."},
		{Code: TaskExport, Title: "Export on the new service",
			Detail: "if anything exports from the source today (analytics, backups), configure export on the destination (its export storage account and the service identity's role there)."},
	}
	if d := a.SearchParameters; d != nil && len(d.Source) > 0 {
		how := "the migration copies them; once it is done"
		if a.Request.ImportMode == migration.ModeInitial {
			how = "POST the batch Bundle of GET /api/migrations/{id}/report/search-parameters to the destination once initial import mode is off, then"
		}
		tasks = append(tasks, Task{Code: TaskReindex, Title: "Reindex for the custom SearchParameters",
			Detail: fmt.Sprintf("the source has %d custom SearchParameters (%s): %s run a reindex so that searches by them find the resources imported before them; "+
				"follow the Content-Location until the job completes (GET [destination]/_operations/reindex/{id}).", len(d.Source), definitionNames(d, 5), how),
			Call: "POST " + dst + "/$reindex with {\"resourceType\": \"Parameters\", \"parameter\": []} (Content-Type: application/fhir+json)"})
	}
	if d := a.Profiles; d != nil && len(d.Missing) > 0 {
		tasks = append(tasks, Task{Code: TaskProfiles, Title: "Profiles",
			Detail: fmt.Sprintf("the destination lacks %d StructureDefinitions the source holds (%s): load them if the migration does not (StructureDefinition among types), "+
				"before anything validates against them.", len(d.Missing), strings.Join(firstN(d.Missing, 5), ", "))})
	}
	if a.Request.ImportMode == migration.ModeInitial {
		tasks = append(tasks, Task{Code: TaskInitial, Title: "Initial import mode off",
			Detail: "InitialLoad needs the destination's initial import mode, which refuses every other write (423): turn it off once the migration is verified."})
	}
	if a.Request.Sync {
		tasks = append(tasks, Task{Code: TaskCutover, Title: "Cutover",
			Detail: "the migration syncs until you stop the writes to the source and cut over (POST /api/migrations/{id}/cutover); switch the clients then."})
	}
	tasks = append(tasks, Task{Code: TaskStaging, Title: "The staged files",
		Detail: "once the migration is verified, delete its staged export files (POST /api/migrations/{id}/cleanup, or cleanup: after-verify in the request)."})
	return tasks
}

func definitionNames(d *Definitions, n int) string {
	var names []string
	for _, def := range d.Source {
		names = append(names, cmpOr(def.Code, def.Name, def.URL))
	}
	return strings.Join(firstN(names, n), ", ")
}

func firstN(s []string, n int) []string {
	if len(s) <= n {
		return s
	}
	return append(s[:n:n], fmt.Sprintf("and %d more", len(s)-n))
}

func cmpOr(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}
