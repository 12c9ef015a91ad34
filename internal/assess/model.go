// Package assess answers, before a migration, whether it will work, how long it will take and what needs doing by
// hand. An assessment takes the same request as a migration and finds out, without writing anything to either
// FHIR server: that both servers answer and speak R4; that the source exports (a probe export whose output is
// empty, its container deleted afterwards) into the staging account; that the function's identity can write and
// read that account; that the destination's import is enabled, reads from the staging account, and in which mode
// (probes the service refuses by design); per type what the source holds, since when, and what the destination
// holds already; the custom SearchParameters and profiles the destination lacks; the windows the migration would
// plan; and from those an estimate of its duration and staging storage. Each finding is an Item with a stable code
// and a status (ok, warning, blocking), what to do, and where the fact comes from.
//
// Assessments are documents beside the migrations' (assessments/{id}.json), created by Start and advanced by the
// PollJob sweep (Poll) in bounded, saved steps, so that a handler killed mid-way resumes where the last save left.
package assess

import (
	"time"

	"github.com/fhir-migrator/fhir-migrator/internal/fhir"
	"github.com/fhir-migrator/fhir-migrator/internal/migration"
)

// AssessmentStatus is where an assessment is: running, then completed (every check done, whatever it found), or
// failed (it could not finish: Error says why).
type AssessmentStatus string

// Statuses of an assessment.
const (
	StatusRunning   AssessmentStatus = "running"
	StatusCompleted AssessmentStatus = "completed"
	StatusFailed    AssessmentStatus = "failed"
)

// Statuses lists every status, in order.
func Statuses() []AssessmentStatus {
	return []AssessmentStatus{StatusRunning, StatusCompleted, StatusFailed}
}

// Level is an item's verdict: ok, warning (the migration can run; read what it says), blocking (the migration
// would fail or must not be started as requested).
type Level string

// Levels of an item.
const (
	OK       Level = "ok"
	Warning  Level = "warning"
	Blocking Level = "blocking"
)

// Levels lists every level, from the best to the worst.
func Levels() []Level { return []Level{OK, Warning, Blocking} }

func (l Level) rank() int {
	switch l {
	case Warning:
		return 1
	case Blocking:
		return 2
	}
	return 0
}

// Item is one finding: a stable code (Codes), its level, what was checked and found, what to do, and where the
// fact comes from (the call made and the server's answer).
type Item struct {
	Code   string `json:"code"`
	Status Level  `json:"status"`
	Title  string `json:"title"`
	Detail string `json:"detail"`
	Action string `json:"action,omitempty"`
	Source string `json:"source"`
}

// Assessment is the document of one assessment.
type Assessment struct {
	ID        string            `json:"id"`
	Status    AssessmentStatus  `json:"status"`
	CreatedAt time.Time         `json:"createdAt"`
	UpdatedAt time.Time         `json:"updatedAt"`
	Request   migration.Request `json:"request"`
	// Refusal is what POST /api/migrations would refuse in this request although its fields are each valid
	// (history_not_combinable): an item, blocking.
	Refusal *AssessmentError `json:"refusal,omitempty"`
	// Verdict is the worst status of the items, once completed.
	Verdict Level  `json:"verdict,omitempty"`
	Items   []Item `json:"items"`
	// The facts the items are judged from, as they were found.
	Source           *ServerFacts      `json:"source,omitempty"`
	Destination      *ServerFacts      `json:"destination,omitempty"`
	Filters          []FilterCount     `json:"filters,omitempty"`
	Export           *ExportProbe      `json:"export,omitempty"`
	Staging          *StagingProbe     `json:"staging,omitempty"`
	Import           *ImportProbe      `json:"import,omitempty"`
	Survey           *SurveyProgress   `json:"survey,omitempty"`
	Types            []TypeFacts       `json:"types,omitempty"`
	SearchParameters *Definitions      `json:"searchParameters,omitempty"`
	Profiles         *Definitions      `json:"profiles,omitempty"`
	Plan             *WindowPlan       `json:"plan,omitempty"`
	Estimate         *DurationEstimate `json:"estimate,omitempty"`
	// Checklist is what the operator must do by hand once the migration is done.
	Checklist []Task           `json:"checklist,omitempty"`
	Progress  StepProgress     `json:"progress"`
	Error     *AssessmentError `json:"error,omitempty"`
	// Audit records the request that started it (who, when, from where), as a migration's audit trail does.
	Audit []migration.AuditEntry `json:"audit,omitempty"`
}

// AssessmentError is a refusal or failure: a stable code and why.
type AssessmentError struct {
	Code    string `json:"code"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

// StepProgress is how far the checks got: the step running, its failures in a row (the server's last answer), and
// the saved steps.
type StepProgress struct {
	Step      string `json:"step"`
	Steps     int    `json:"steps"`
	Failures  int    `json:"failures,omitempty"`
	LastError string `json:"lastError,omitempty"`
	// FailedStep is the step Failures counts: failures in a row of that step, whatever other steps (the probe
	// export's polls) ran between them.
	FailedStep string `json:"failedStep,omitempty"`
}

// failuresOf is how many times in a row step failed last (0 when the failures counted are another step's).
func (p StepProgress) failuresOf(step string) int {
	if p.FailedStep != step {
		return 0
	}
	return p.Failures
}

// ServerFacts is what one server's CapabilityStatement says (GET [base]/metadata).
type ServerFacts struct {
	URL       string `json:"url"`
	Reachable bool   `json:"reachable"`
	// Error is why it could not be read.
	Error string `json:"error,omitempty"`
	// Kind is the service the URL names (Azure API for FHIR, the AHDS FHIR service, another server).
	Kind            string   `json:"kind"`
	FHIRVersion     string   `json:"fhirVersion,omitempty"`
	Software        string   `json:"software,omitempty"`
	SoftwareVersion string   `json:"softwareVersion,omitempty"`
	Types           []string `json:"types,omitempty"`
	Operations      []string `json:"operations,omitempty"`
}

// FilterCount is one typeFilter entry counted on the source as a strict search (as a migration counts it).
type FilterCount struct {
	Filter string `json:"filter"`
	Count  int64  `json:"count"`
	// Refused is the source's refusal of the search.
	Refused string `json:"refused,omitempty"`
}

// ExportProbe is the probe export: GET [source]/$export?_type=T&_since={a time in the future}&_container=C, which
// the service accepts and whose output is empty (ExportJobTask.cs selects _lastUpdated ge{since} and le{till},
// till defaulting to the job's queued time, and connects to its storage, creating the container, before it
// searches).
type ExportProbe struct {
	Query     string `json:"query"`
	Container string `json:"container"`
	// State: running, completed, refused (the kick-off was refused), failed (the job failed), timedOut (it did not
	// finish within the assessment's deadline and was canceled).
	State           string     `json:"state"`
	KickedOffAt     *time.Time `json:"kickedOffAt,omitempty"`
	ContentLocation string     `json:"contentLocation,omitempty"`
	Polls           int        `json:"polls,omitempty"`
	NextPollAt      *time.Time `json:"nextPollAt,omitempty"`
	FinishedAt      *time.Time `json:"finishedAt,omitempty"`
	// Files and Resources are the manifest's (0 and 0 expected).
	Files     int   `json:"files"`
	Resources int64 `json:"resources"`
	// Status and Answer are the server's refusal or failure.
	Status int    `json:"status,omitempty"`
	Answer string `json:"answer,omitempty"`
}

// Export probe states.
const (
	exportRunning   = "running"
	exportCompleted = "completed"
	exportRefused   = "refused"
	exportFailed    = "failed"
	exportTimedOut  = "timedOut"
)

// StagingProbe is the staging account's check: the probe export's container found there (the source exports into
// it), a blob written, read back and deleted by the function's identity, and the container deleted.
type StagingProbe struct {
	Endpoint  string `json:"endpoint"`
	Container string `json:"container"`
	// ExportContainerFound: after a completed probe export, its container is in the staging account.
	ExportContainerFound *bool     `json:"exportContainerFound,omitempty"`
	Wrote                bool      `json:"wrote"`
	Read                 bool      `json:"read"`
	Deleted              bool      `json:"deleted"`
	Error                string    `json:"error,omitempty"`
	CheckedAt            time.Time `json:"checkedAt"`
}

// ImportProbe is the destination's two probes, each refused by design, never creating a job: $import with one
// SearchParameter input at the staging account (ImportController: enabled, storage, then the type) and a POST to
// [base]/metadata (InitialImportLockMiddleware: 423 in initial import mode).
type ImportProbe struct {
	InputURL  string            `json:"inputUrl"`
	Import    *fhir.ProbeAnswer `json:"import,omitempty"`
	Lock      *fhir.ProbeAnswer `json:"lock,omitempty"`
	Error     string            `json:"error,omitempty"`
	CheckedAt time.Time         `json:"checkedAt"`
}

// SurveyProgress is the per-type survey's progress: the types to survey, the next one, the range surveyed.
type SurveyProgress struct {
	Types []string   `json:"types"`
	Next  int        `json:"next"`
	Since *time.Time `json:"since,omitempty"`
	Till  time.Time  `json:"till"`
	Done  bool       `json:"done"`
}

// TypeFacts is one type: on the source, its resources in the range (Live; with typeFilter, Filtered is the sum of
// its entries' counts), with history or deletes its versions (current, older and deleted, by their own
// lastUpdated), the oldest and newest lastUpdated in the range, the average size of a sample; on the destination,
// what it holds of the type already (whatever its lastUpdated).
type TypeFacts struct {
	Type     string     `json:"type"`
	Live     int64      `json:"live"`
	Filtered *int64     `json:"filtered,omitempty"`
	Versions *int64     `json:"versions,omitempty"`
	Oldest   *time.Time `json:"oldest,omitempty"`
	Newest   *time.Time `json:"newest,omitempty"`
	// AvgBytes is the average NDJSON line of a sample of the newest resources (0: none sampled).
	AvgBytes int64 `json:"avgBytes"`
	// Destination is the destination's count of the type; DestinationSupported that it serves the type at all.
	Destination          int64 `json:"destination"`
	DestinationSupported bool  `json:"destinationSupported"`
	DestinationCounted   bool  `json:"destinationCounted"`
}

// Definitions are the conformance resources of one type (SearchParameter, StructureDefinition) the source holds,
// and which of them the destination lacks (by url).
type Definitions struct {
	Type string `json:"type"`
	// Served: the source's CapabilityStatement lists the type (else it holds none).
	Served bool         `json:"served"`
	Source []Definition `json:"source,omitempty"`
	// Missing are the urls of Source the destination does not hold; Checked that the destination was asked.
	Missing []string `json:"missing,omitempty"`
	Checked bool     `json:"checked"`
	// Truncated: the source holds more than were listed.
	Truncated bool `json:"truncated,omitempty"`
}

// Definition is one SearchParameter or StructureDefinition.
type Definition struct {
	URL  string   `json:"url"`
	Name string   `json:"name,omitempty"`
	Code string   `json:"code,omitempty"`
	Base []string `json:"base,omitempty"`
	// Kind is a StructureDefinition's type (what it profiles), or a SearchParameter's type.
	Kind string `json:"kind,omitempty"`
}

// WindowPlan is the plan a migration of the request would start with: its export windows, planned in steps by the
// engine's own planning (internal/migration.PlanStep), smallest first as they would start.
type WindowPlan struct {
	Planning  *migration.Planning `json:"planning"`
	Windows   []Window            `json:"windows"`
	Resources int64               `json:"resources"`
	Done      bool                `json:"done"`
}

// Window is one planned export window.
type Window struct {
	ID      string     `json:"id"`
	Types   []string   `json:"types,omitempty"`
	Since   *time.Time `json:"since,omitempty"`
	Till    *time.Time `json:"till,omitempty"`
	Planned int64      `json:"planned"`
}

// DurationEstimate is the migration's modelled duration and staging storage, with what they assume.
type DurationEstimate struct {
	// ExportSeconds is when the last export ends, CopySeconds when the last import does (the copy), VerifySeconds
	// the verification after it, TotalSeconds the three.
	ExportSeconds float64 `json:"exportSeconds"`
	CopySeconds   float64 `json:"copySeconds"`
	VerifySeconds float64 `json:"verifySeconds"`
	TotalSeconds  float64 `json:"totalSeconds"`
	// Resources are what the windows hold (versions with history); StagingBytes their NDJSON in the staging account.
	Resources    int64 `json:"resources"`
	StagingBytes int64 `json:"stagingBytes"`
	Windows      int   `json:"windows"`
	// The rates it rests on: per export job, export jobs at once, the destination's import in all, the ids
	// verification's lookups; the probe export's latency (kick-off to manifest) added to each window.
	ExportRate        float64  `json:"exportRate"`
	ExportSlots       int      `json:"exportSlots"`
	ImportRate        float64  `json:"importRate"`
	LookupRate        float64  `json:"lookupRate"`
	JobLatencySeconds float64  `json:"jobLatencySeconds"`
	Assumptions       []string `json:"assumptions"`
}

// Task is one thing to do by hand once the migration is done.
type Task struct {
	Code   string `json:"code"`
	Title  string `json:"title"`
	Detail string `json:"detail"`
	// Call is the request that does it, when one does.
	Call string `json:"call,omitempty"`
}
