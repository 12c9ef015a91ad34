package fhirsim

import (
	"net/http"
	"slices"
	"strings"
)

// resourceTypes are the R4 resource types the simulator serves: the generated ones and a set of common others.
var resourceTypes = []string{
	"Account", "AllergyIntolerance", "Appointment", "AuditEvent", "Basic", "Binary", "CarePlan", "CareTeam",
	"Claim", "ClaimResponse", "ClinicalImpression", "Communication", "Composition", "Condition", "Consent",
	"Coverage", "Device", "DeviceRequest", "DiagnosticReport", "DocumentReference", "Encounter", "Endpoint",
	"EpisodeOfCare", "ExplanationOfBenefit", "FamilyMemberHistory", "Goal", "Group", "HealthcareService",
	"ImagingStudy", "Immunization", "List", "Location", "Media", "Medication", "MedicationAdministration",
	"MedicationDispense", "MedicationRequest", "MedicationStatement", "Observation", "Organization", "Patient",
	"Practitioner", "PractitionerRole", "Procedure", "Provenance", "Questionnaire", "QuestionnaireResponse",
	"RelatedPerson", "Schedule", "SearchParameter", "ServiceRequest", "Slot", "Specimen", "Task", "ValueSet",
}

func knownType(t string) bool {
	_, found := slices.BinarySearch(resourceTypes, t)
	return found
}

type capabilityStatement struct {
	ResourceType string           `json:"resourceType"`
	Status       string           `json:"status"`
	Date         string           `json:"date"`
	Kind         string           `json:"kind"`
	Software     capSoftware      `json:"software"`
	FHIRVersion  string           `json:"fhirVersion"`
	Format       []string         `json:"format"`
	Rest         []capabilityRest `json:"rest"`
}

type capSoftware struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

type capabilityRest struct {
	Mode        string         `json:"mode"`
	Resource    []capResource  `json:"resource"`
	Interaction []capCode      `json:"interaction"`
	SearchParam []capParam     `json:"searchParam"`
	Operation   []capOperation `json:"operation"`
}

type capResource struct {
	Type        string     `json:"type"`
	Interaction []capCode  `json:"interaction"`
	SearchParam []capParam `json:"searchParam,omitempty"`
}

type capCode struct {
	Code string `json:"code"`
}

type capParam struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

type capOperation struct {
	Name       string `json:"name"`
	Definition string `json:"definition"`
}

func (s *Server) handleMetadata(w http.ResponseWriter, _ *http.Request) {
	rest := capabilityRest{
		Mode:        "server",
		Interaction: []capCode{{"batch"}, {"search-system"}},
		SearchParam: []capParam{{"_id", "token"}, {"_lastUpdated", "date"}, {"_count", "number"}, {"_summary", "token"}},
	}
	for _, t := range resourceTypes {
		res := capResource{Type: t, Interaction: []capCode{{"read"}, {"update"}, {"search-type"}}}
		for p := range tokenParams[t] {
			res.SearchParam = append(res.SearchParam, capParam{p, "token"})
		}
		slices.SortFunc(res.SearchParam, func(a, b capParam) int { return strings.Compare(a.Name, b.Name) })
		rest.Resource = append(rest.Resource, res)
	}
	switch s.cfg.flavor {
	case FlavorBulkData:
		// The Bulk Data IG's canonical OperationDefinitions; this server serves them at /OperationDefinition/{id}
		// with the parameters it takes (bulkdata.go).
		rest.Operation = []capOperation{
			{"export", "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"},
			{"patient-export", "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export"},
			{"group-export", "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"},
		}
	case FlavorAHDS:
		// The AHDS service exports as well as imports (it is a source, too).
		rest.Operation = []capOperation{{"import", "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/import"},
			{"export", "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"}}
	default:
		rest.Operation = []capOperation{{"export", "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"}}
	}
	writeJSON(w, http.StatusOK, "application/fhir+json", capabilityStatement{
		ResourceType: "CapabilityStatement", Status: "active", Date: "2024-01-01", Kind: "instance",
		Software:    capSoftware{Name: "fhirsim (" + string(s.cfg.flavor) + ")", Version: "1"},
		FHIRVersion: s.fhirVersion(), Format: []string{"application/fhir+json"}, Rest: []capabilityRest{rest},
	})
}
