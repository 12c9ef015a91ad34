package fhirsim

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// Generated data spans these years of meta.lastUpdated.
var (
	generatedFrom = time.Date(2019, 1, 1, 0, 0, 0, 0, time.UTC)
	generatedTo   = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// patientsUntil ends the span of Patient creation, so their records spread over the later years.
	patientsUntil = time.Date(2022, 1, 1, 0, 0, 0, 0, time.UTC)
)

type meta struct {
	VersionID   string `json:"versionId"`
	LastUpdated string `json:"lastUpdated"`
}

type reference struct {
	Reference string `json:"reference"`
}

type coding struct {
	System  string `json:"system"`
	Code    string `json:"code"`
	Display string `json:"display,omitempty"`
}

type codeableConcept struct {
	Coding []coding `json:"coding"`
}

type patientResource struct {
	ResourceType string `json:"resourceType"`
	ID           string `json:"id"`
	Meta         meta   `json:"meta"`
	Identifier   []struct {
		System string `json:"system"`
		Value  string `json:"value"`
	} `json:"identifier"`
	Name []struct {
		Family string   `json:"family"`
		Given  []string `json:"given"`
	} `json:"name"`
	Gender    string `json:"gender"`
	BirthDate string `json:"birthDate"`
}

type period struct {
	Start string `json:"start"`
	End   string `json:"end"`
}

type encounterResource struct {
	ResourceType string    `json:"resourceType"`
	ID           string    `json:"id"`
	Meta         meta      `json:"meta"`
	Status       string    `json:"status"`
	Class        coding    `json:"class"`
	Subject      reference `json:"subject"`
	Period       period    `json:"period"`
}

type quantity struct {
	Value  float64 `json:"value"`
	Unit   string  `json:"unit"`
	System string  `json:"system"`
	Code   string  `json:"code"`
}

type observationResource struct {
	ResourceType      string          `json:"resourceType"`
	ID                string          `json:"id"`
	Meta              meta            `json:"meta"`
	Status            string          `json:"status"`
	Code              codeableConcept `json:"code"`
	Subject           reference       `json:"subject"`
	Encounter         reference       `json:"encounter"`
	EffectiveDateTime string          `json:"effectiveDateTime"`
	ValueQuantity     quantity        `json:"valueQuantity"`
}

type conditionResource struct {
	ResourceType   string          `json:"resourceType"`
	ID             string          `json:"id"`
	Meta           meta            `json:"meta"`
	ClinicalStatus codeableConcept `json:"clinicalStatus"`
	Code           codeableConcept `json:"code"`
	Subject        reference       `json:"subject"`
	Encounter      reference       `json:"encounter"`
	RecordedDate   string          `json:"recordedDate"`
}

type medicationRequestResource struct {
	ResourceType              string          `json:"resourceType"`
	ID                        string          `json:"id"`
	Meta                      meta            `json:"meta"`
	Status                    string          `json:"status"`
	Intent                    string          `json:"intent"`
	MedicationCodeableConcept codeableConcept `json:"medicationCodeableConcept"`
	Subject                   reference       `json:"subject"`
	AuthoredOn                string          `json:"authoredOn"`
}

type searchParameterResource struct {
	ResourceType string   `json:"resourceType"`
	ID           string   `json:"id"`
	Meta         meta     `json:"meta"`
	URL          string   `json:"url"`
	Name         string   `json:"name"`
	Status       string   `json:"status"`
	Description  string   `json:"description"`
	Code         string   `json:"code"`
	Base         []string `json:"base"`
	Type         string   `json:"type"`
	Expression   string   `json:"expression"`
}

type observationKind struct {
	code, display, unit string
	mean, spread        float64
}

var observationKinds = []observationKind{
	{"8867-4", "Heart rate", "/min", 75, 15},
	{"8310-5", "Body temperature", "Cel", 37, 0.6},
	{"29463-7", "Body weight", "kg", 75, 15},
	{"8302-2", "Body height", "cm", 170, 10},
	{"2339-0", "Glucose [Mass/volume] in Blood", "mg/dL", 100, 20},
	{"8480-6", "Systolic blood pressure", "mm[Hg]", 120, 15},
	{"8462-4", "Diastolic blood pressure", "mm[Hg]", 80, 10},
	{"9279-1", "Respiratory rate", "/min", 16, 3},
}

var conditionKinds = []coding{
	{"http://snomed.info/sct", "38341003", "Hypertension"},
	{"http://snomed.info/sct", "44054006", "Diabetes mellitus type 2"},
	{"http://snomed.info/sct", "195662009", "Acute viral pharyngitis"},
	{"http://snomed.info/sct", "10509002", "Acute bronchitis"},
	{"http://snomed.info/sct", "55822004", "Hyperlipidemia"},
}

var medicationKinds = []coding{
	{"http://www.nlm.nih.gov/research/umls/rxnorm", "197361", "Amlodipine 5 MG Oral Tablet"},
	{"http://www.nlm.nih.gov/research/umls/rxnorm", "860975", "Metformin 500 MG Oral Tablet"},
	{"http://www.nlm.nih.gov/research/umls/rxnorm", "617314", "Atorvastatin 10 MG Oral Tablet"},
	{"http://www.nlm.nih.gov/research/umls/rxnorm", "313782", "Acetaminophen 325 MG Oral Tablet"},
}

var familyNames = []string{"Smith", "Jansen", "Garcia", "Nguyen", "Okafor", "Müller", "Rossi", "Kowalski", "Silva", "Haddad"}
var givenNames = []string{"Ada", "Ben", "Chloe", "David", "Eva", "Farid", "Grace", "Hugo", "Ines", "Jonas", "Kim", "Lena"}

// generator draws the synthetic data set from one seeded source, so the same seed gives the same bytes.
type generator struct {
	rng *rand.Rand
	out []json.RawMessage
}

// Generate returns the synthetic data set for a number of patients, one compact JSON resource per element, in a
// fixed order. About 100 resources per patient (Patient, Encounter, Observation, Condition, MedicationRequest, all
// linked to their Patient) plus 4 SearchParameters; the same arguments always give byte-identical output.
func Generate(patients int, seed int64) []json.RawMessage {
	g := &generator{rng: rand.New(rand.NewPCG(uint64(seed), uint64(seed)^0x9e3779b97f4a7c15))}
	for range patients {
		g.patient()
	}
	g.searchParameters()
	return g.out
}

func (g *generator) emit(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("fhirsim: generated resource does not encode: %v", err)) // our own fixed types: a bug
	}
	g.out = append(g.out, b)
}

// uuid draws a version-4-shaped UUID from the seeded source.
func (g *generator) uuid() string {
	hi, lo := g.rng.Uint64(), g.rng.Uint64()
	hi = hi&^0xf000 | 0x4000
	lo = lo&^(0xc<<60) | 0x8<<60
	return fmt.Sprintf("%08x-%04x-%04x-%04x-%012x", hi>>32, (hi>>16)&0xffff, hi&0xffff, lo>>48, lo&0xffffffffffff)
}

// instant draws a time between from and generatedTo, at millisecond precision.
func (g *generator) instant(from time.Time) time.Time { return g.between(from, generatedTo) }

// between draws a time in [from, to), at millisecond precision.
func (g *generator) between(from, to time.Time) time.Time {
	span := to.Sub(from).Milliseconds()
	if span <= 0 {
		return from
	}
	return from.Add(time.Duration(g.rng.Int64N(span)) * time.Millisecond)
}

func (g *generator) meta(t time.Time) meta {
	return meta{VersionID: "1", LastUpdated: formatInstant(t)}
}

func pick[T any](g *generator, xs []T) T { return xs[g.rng.IntN(len(xs))] }

func (g *generator) patient() {
	p := patientResource{ResourceType: "Patient", ID: g.uuid(), Gender: pick(g, []string{"female", "male"})}
	created := g.between(generatedFrom, patientsUntil)
	p.Meta = g.meta(created)
	p.Identifier = append(p.Identifier, struct {
		System string `json:"system"`
		Value  string `json:"value"`
	}{"urn:oid:2.16.840.1.113883.19.5", fmt.Sprintf("MRN-%08d", g.rng.IntN(100_000_000))})
	p.Name = append(p.Name, struct {
		Family string   `json:"family"`
		Given  []string `json:"given"`
	}{pick(g, familyNames), []string{pick(g, givenNames)}})
	p.BirthDate = time.Date(1930+g.rng.IntN(90), time.Month(1+g.rng.IntN(12)), 1+g.rng.IntN(28), 0, 0, 0, 0, time.UTC).Format("2006-01-02")
	g.emit(p)
	subject := reference{"Patient/" + p.ID}

	for range 6 + g.rng.IntN(5) {
		encTime := g.instant(created)
		enc := encounterResource{
			ResourceType: "Encounter", ID: g.uuid(), Meta: g.meta(encTime), Status: "finished",
			Class:   coding{System: "http://terminology.hl7.org/CodeSystem/v3-ActCode", Code: "AMB", Display: "ambulatory"},
			Subject: subject,
			Period:  period{Start: formatInstant(encTime.Add(-time.Hour)), End: formatInstant(encTime)},
		}
		g.emit(enc)
		encRef := reference{"Encounter/" + enc.ID}
		for range 8 + g.rng.IntN(4) {
			g.observation(subject, encRef, encTime)
		}
		for range g.rng.IntN(3) {
			c := pick(g, conditionKinds)
			t := g.instant(encTime)
			g.emit(conditionResource{
				ResourceType: "Condition", ID: g.uuid(), Meta: g.meta(t),
				ClinicalStatus: codeableConcept{[]coding{{System: "http://terminology.hl7.org/CodeSystem/condition-clinical", Code: pick(g, []string{"active", "resolved"})}}},
				Code:           codeableConcept{[]coding{c}}, Subject: subject, Encounter: encRef,
				RecordedDate: formatInstant(encTime),
			})
		}
	}
	for range 8 + g.rng.IntN(7) {
		t := g.instant(created)
		g.emit(medicationRequestResource{
			ResourceType: "MedicationRequest", ID: g.uuid(), Meta: g.meta(t),
			Status: pick(g, []string{"active", "completed", "completed"}), Intent: "order",
			MedicationCodeableConcept: codeableConcept{[]coding{pick(g, medicationKinds)}},
			Subject:                   subject, AuthoredOn: formatInstant(t),
		})
	}
}

func (g *generator) observation(subject, enc reference, encTime time.Time) {
	k := pick(g, observationKinds)
	status := "final"
	switch n := g.rng.IntN(20); {
	case n == 0:
		status = "preliminary"
	case n <= 2:
		status = "amended"
	}
	t := g.instant(encTime)
	value := k.mean + (g.rng.Float64()*2-1)*k.spread
	g.emit(observationResource{
		ResourceType: "Observation", ID: g.uuid(), Meta: g.meta(t), Status: status,
		Code:    codeableConcept{[]coding{{System: "http://loinc.org", Code: k.code, Display: k.display}}},
		Subject: subject, Encounter: enc, EffectiveDateTime: formatInstant(encTime),
		ValueQuantity: quantity{Value: math.Round(value*10) / 10, Unit: k.unit, System: "http://unitsofmeasure.org", Code: k.unit},
	})
}

func (g *generator) searchParameters() {
	params := []struct{ name, base, typ, expr string }{
		{"blood-group", "Patient", "token", "Patient.extension.where(url='http://example.org/fhir/blood-group').value"},
		{"encounter-ward", "Encounter", "string", "Encounter.location.location.display"},
		{"observation-device-name", "Observation", "string", "Observation.device.display"},
		{"medication-prescriber-org", "MedicationRequest", "reference", "MedicationRequest.requester"},
	}
	for _, p := range params {
		g.emit(searchParameterResource{
			ResourceType: "SearchParameter", ID: g.uuid(), Meta: g.meta(g.instant(generatedFrom)),
			URL: "http://example.org/fhir/SearchParameter/" + p.name, Name: p.name, Status: "active",
			Description: "Hospital-specific search parameter " + p.name, Code: p.name,
			Base: []string{p.base}, Type: p.typ, Expression: p.expr,
		})
	}
}
