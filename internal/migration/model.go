package migration

import (
	"time"
)

// Status is a migration's phase.
type Status string

// Migration statuses (contract).
const (
	// StatusPlanning: the source is being counted to plan the export windows; nothing runs yet.
	StatusPlanning  Status = "planning"
	StatusExporting Status = "exporting"
	StatusImporting Status = "importing"
	StatusVerifying Status = "verifying"
	// StatusSyncing: the full copy is imported and verified, and deltas keep the destination in step with the
	// source until the operator cuts over (request sync).
	StatusSyncing   Status = "syncing"
	StatusCompleted Status = "completed"
	StatusFailed    Status = "failed"
	StatusCanceled  Status = "canceled"
)

// Terminal reports whether nothing more will happen to a migration in this status.
func (s Status) Terminal() bool {
	return s == StatusCompleted || s == StatusFailed || s == StatusCanceled
}

// JobKind says what a job does.
type JobKind string

// Job kinds: an $export on the source, an $import on the destination, or a copy of SearchParameter resources
// with batch PUTs (they cannot be imported).
const (
	KindExport JobKind = "export"
	KindImport JobKind = "import"
	KindCopy   JobKind = "copy"
)

// JobState is where a job is in its life; one state machine serves every kind.
type JobState string

// Job states.
const (
	JobQueued   JobState = "queued"
	JobStarting JobState = "starting" // a kick-off attempt is recorded and its answer not yet saved
	JobRunning  JobState = "running"  // the server accepted it: ContentLocation is polled
	JobDone     JobState = "done"
	JobFailed   JobState = "failed"
	JobCanceled JobState = "canceled"
)

// Finished reports whether the job will not change any more.
func (s JobState) Finished() bool { return s == JobDone || s == JobFailed || s == JobCanceled }

// Migration is the stored document of one migration, "migrations/{id}.json".
type Migration struct {
	ID        string    `json:"id"`
	Status    Status    `json:"status"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
	Request   Request   `json:"request"`
	// Jobs are every job once loaded; the stored document holds only those not moved to a page (job_pages.go).
	Jobs []*Job `json:"jobs"`
	// JobPages name the blobs finished jobs were moved to, in order.
	JobPages []JobPage `json:"jobPages,omitempty"`
	// paged holds, per job read from a page, its stored encoding (a save proves it unchanged).
	paged map[string][]byte
	// Verification is set once every job is done.
	Verification *Verification `json:"verification,omitempty"`
	// Notes are things an operator must know or do (e.g. $reindex on the destination).
	Notes []string `json:"notes,omitempty"`
	Error *Failure `json:"error,omitempty"`
	// Baseline is the destination's per-type counts before anything was imported.
	Baseline *Baseline `json:"baseline,omitempty"`
	// Cleanup records what was deleted of the staged files.
	Cleanup *Cleanup `json:"cleanup,omitempty"`
	// SourceTypes are the resource types of the source's CapabilityStatement at start: what a system export of
	// every type covers, and so what verification counts on the source.
	SourceTypes []string `json:"sourceTypes,omitempty"`
	// Planning is the progress of the plan of export windows (status planning), then its record.
	Planning *Planning `json:"planning,omitempty"`
	// Cancels are the server jobs the engine gave up on and must DELETE; each stays until its server confirms.
	Cancels []ServerCancel `json:"cancels,omitempty"`
	// Sync keeps a migration with request sync in step with its source once the full copy is verified.
	Sync *Sync `json:"sync,omitempty"`
	// Cutover records the switch: when the final delta was verified, and the lag then.
	Cutover *Cutover `json:"cutover,omitempty"`
	// Repairs records what POST .../repair wrote on the destination (refused.go).
	Repairs *Repairs `json:"repairs,omitempty"`
	// Audit is the latest requests that changed the migration (audit.go); AuditPages name the blobs the older ones
	// moved to, oldest first.
	Audit      []AuditEntry `json:"audit,omitempty"`
	AuditPages []string     `json:"auditPages,omitempty"`
	// Progress is derived when serving; never stored.
	Progress *Progress `json:"progress,omitempty"`
}

// Request is the accepted start request with its defaults applied.
type Request struct {
	Source string `json:"source"`
	// SourceKind is the kind of source server (sourcekind.go): api-for-fhir, fhir-service or bulk-data.
	SourceKind string `json:"sourceKind"`
	// Group is the Group whose patients a bulk-data source exports (Group/{id}/$export), or "".
	Group string `json:"group,omitempty"`
	// BulkData is what a bulk-data source declared at start (bulkdata.go).
	BulkData       *BulkDataExport `json:"bulkData,omitempty"`
	Destination    string          `json:"destination"`
	Types          []string        `json:"types,omitempty"`
	Since          *time.Time      `json:"since,omitempty"`
	Till           *time.Time      `json:"till,omitempty"`
	TypeFilter     []string        `json:"typeFilter,omitempty"`
	ExportStrategy string          `json:"exportStrategy"`
	ImportMode     string          `json:"importMode"`
	Container      string          `json:"container"`
	Verify         string          `json:"verify"`
	VerifySample   int             `json:"verifySample"`
	DryRun         bool            `json:"dryRun,omitempty"`
	// WindowTarget is the most resources one export window holds (0: DefaultWindowTarget).
	WindowTarget int64 `json:"windowTarget,omitempty"`
	// Cleanup is "after-verify" to delete the staged files once verification passed, or empty.
	Cleanup string `json:"cleanup,omitempty"`
	// History copies every version (export includeAssociatedData=_history), Deletes the deleted resources as
	// deletion stubs (_deleted); both need IncrementalLoad, which keeps versionId and lastUpdated.
	History bool `json:"history,omitempty"`
	Deletes bool `json:"deletes,omitempty"`
	// Sync: after the full copy, export and import what changed every SyncInterval, from the high-water mark
	// less SyncMargin, with deletions, until a cutover.
	Sync         bool     `json:"sync,omitempty"`
	SyncInterval Duration `json:"syncInterval,omitempty"`
	SyncMargin   Duration `json:"syncMargin,omitempty"`
	// Reconcile is what the cutover does with the destination's resources the source no longer has: delete
	// (default with sync) or report.
	Reconcile string `json:"reconcile,omitempty"`
	// CutoverVerify is how a synced migration's cutover verifies (cutover_compare.go): "fast" (the default: what
	// the sync checked already is not read again; counts over ranges find what changed since) or "full-ids" (every
	// staged file read again and every id of both servers listed, hours at a billion resources).
	CutoverVerify string `json:"cutoverVerify,omitempty"`
}

// associated reports whether the exports carry more than current versions (older versions or deletion stubs):
// history, deletes, or the deltas of a sync, which carry deletions.
func (r *Request) associated() bool { return r.History || r.Deletes || r.Sync }

// Failure is why a migration failed.
type Failure struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Job is one unit of work on a FHIR server: an export of some types in a time window, an import of a batch of
// files, or a copy of SearchParameter files.
type Job struct {
	ID    string   `json:"id"`
	Kind  JobKind  `json:"kind"`
	Types []string `json:"types,omitempty"`
	// Since and Till are the export window (per job, so that a migration can be split into windows); Planned is
	// what planning counted in it (an upper bound), Estimated that it was not counted (a dry run out of time).
	Since      *time.Time `json:"since,omitempty"`
	Till       *time.Time `json:"till,omitempty"`
	Planned    int64      `json:"planned,omitempty"`
	Estimated  bool       `json:"estimated,omitempty"`
	TypeFilter []string   `json:"typeFilter,omitempty"`
	// From names the export job whose files an import or copy job carries.
	From  string   `json:"from,omitempty"`
	State JobState `json:"state"`

	ContentLocation string     `json:"contentLocation,omitempty"`
	NextPollAt      *time.Time `json:"nextPollAt,omitempty"`
	// Polls counts status polls of the running attempt (the backoff exponent).
	Polls int `json:"polls,omitempty"`
	// PollFailures counts consecutive failed status polls.
	PollFailures int       `json:"pollFailures,omitempty"`
	Attempts     []Attempt `json:"attempts,omitempty"`
	// Orphans counts export attempts whose Content-Location was never saved (their files stay in the container).
	Orphans   int    `json:"orphans,omitempty"`
	LastError string `json:"lastError,omitempty"`

	// Dispatch numbers the run-import messages of an import or copy job; DispatchAt is when the latest is due.
	Dispatch   int        `json:"dispatch,omitempty"`
	DispatchAt *time.Time `json:"dispatchAt,omitempty"`
	// WaitingSlot is when a queued import found the destination's import slots full: no message is out for it,
	// and the sweep dispatches it when a slot is free (so that waiting imports do not each retry on a timer).
	WaitingSlot *time.Time `json:"waitingSlot,omitempty"`

	// Manifest names the blob of an export's manifest (files.go); Files counts its output files. An import or
	// copy job names its export's manifest and carries Files of its importable (or SearchParameter) files from
	// First on.
	Manifest string `json:"manifest,omitempty"`
	First    int    `json:"first,omitempty"`
	Files    int    `json:"files,omitempty"`
	// Counts: resources per type exported (export), imported (import) or written (copy).
	Counts map[string]int64 `json:"counts,omitempty"`
	// ErrorFiles names the blob of a finished import's error files; ErrorSummary digests them (and a copy job's
	// failed entries).
	ErrorFiles string `json:"errorFiles,omitempty"`

	CreatedAt  time.Time  `json:"createdAt"`
	StartedAt  *time.Time `json:"startedAt,omitempty"`
	FinishedAt *time.Time `json:"finishedAt,omitempty"`

	// Expected: the source's resource counts per type for an export job's window, taken at its kick-off; a
	// manifest short of them is not trusted. A type narrowed by typeFilter entries counts each entry as a search
	// and keeps the largest (the export is their union); key "*" is the total of a system export of every type.
	Expected map[string]int64 `json:"expected,omitempty"`
	// CountedAt is when Expected was taken: resources changed on the source after it may leave the window.
	CountedAt *time.Time `json:"countedAt,omitempty"`
	// ShortManifests counts the completed answers of the running attempt that fell short of Expected.
	ShortManifests int `json:"shortManifests,omitempty"`
	// Reexports counts attempts given up after the server accepted them (stalled past the deadline, or a
	// manifest still short after a re-poll); bounded by the engine's MaxReexports.
	Reexports    int           `json:"reexports,omitempty"`
	ErrorSummary *ErrorSummary `json:"errorSummary,omitempty"`
	// Round numbers a sync delta's jobs (0: the full copy); TransactionTime is a finished export's manifest
	// transactionTime (the instant its content reflects).
	Round           int        `json:"round,omitempty"`
	TransactionTime *time.Time `json:"transactionTime,omitempty"`
	// Bundle names, for a copy job that could not write (InitialLoad), the batch Bundle kept for the operator.
	Bundle string `json:"bundle,omitempty"`
}

// ServerCancel is a DELETE of a server job's Content-Location that the engine decided and must see through.
type ServerCancel struct {
	Job             string    `json:"job"`
	Server          string    `json:"server"`
	ContentLocation string    `json:"contentLocation"`
	Reason          string    `json:"reason"`
	RequestedAt     time.Time `json:"requestedAt"`
	// NextAt is when the sweep sends the DELETE again if no answer was saved by then.
	NextAt    time.Time `json:"nextAt"`
	Attempts  int       `json:"attempts,omitempty"`
	LastError string    `json:"lastError,omitempty"`
	// GaveUp: every attempt failed; the operator is told in the notes to cancel it by hand.
	GaveUp bool `json:"gaveUp,omitempty"`
}

// ErrorSummary is the digest of an import job's error files.
type ErrorSummary struct {
	// ByType counts the failed resources per type, as the server reported them.
	ByType map[string]int64 `json:"byType"`
	// First are the first errors read from the error files, in file order.
	First []ErrorLine `json:"first,omitempty"`
	// Unread says why some error file could not be read (its counts are still in ByType).
	Unread string `json:"unread,omitempty"`
}

// ErrorLine is one failed resource read from an import error file.
type ErrorLine struct {
	Type     string `json:"type"`
	InputURL string `json:"inputUrl,omitempty"`
	Message  string `json:"message"`
}

// Attempt is one kick-off of a job, recorded before the call.
type Attempt struct {
	N               int        `json:"n"`
	StartedAt       time.Time  `json:"startedAt"`
	ContentLocation string     `json:"contentLocation,omitempty"`
	AnsweredAt      *time.Time `json:"answeredAt,omitempty"`
	Error           string     `json:"error,omitempty"`
	// Orphaned: the attempt was recorded but its answer never saved (the handler died in between).
	Orphaned bool `json:"orphaned,omitempty"`
	// Abandoned says why an accepted attempt was given up and the job exported again.
	Abandoned string `json:"abandoned,omitempty"`
	// RunningAt is when a status poll last found the server job still running: an export past ExportDeadline is
	// given up only once a poll after the deadline found it running (machine.go housekeep).
	RunningAt *time.Time `json:"runningAt,omitempty"`
}

// Input is one NDJSON file to import or copy.
type Input struct {
	Type string `json:"type"`
	URL  string `json:"url"`
}

// File is one file of an export manifest.
type File struct {
	Type  string `json:"type"`
	URL   string `json:"url"`
	Count int64  `json:"count"`
}

// ErrorFile counts the failed resources of one type, with the file describing them when there is one.
type ErrorFile struct {
	Type     string `json:"type"`
	Count    int64  `json:"count"`
	URL      string `json:"url,omitempty"`
	InputURL string `json:"inputUrl,omitempty"`
	Message  string `json:"message,omitempty"`
}

// Verification is the comparison of exported and destination counts.
type Verification struct {
	// Generation numbers verification rounds; a verify-counts message for another generation is stale.
	Generation int        `json:"generation"`
	Dispatch   int        `json:"dispatch"`
	DispatchAt time.Time  `json:"dispatchAt"`
	Skipped    bool       `json:"skipped,omitempty"`
	CheckedAt  *time.Time `json:"checkedAt,omitempty"`
	Rows       []TypeRow  `json:"rows,omitempty"`
	// Mode and Sample are this round's verify mode and verifySample (a re-verify may choose others).
	Mode   string `json:"mode,omitempty"`
	Sample int    `json:"sample,omitempty"`
	// IDs is the progress of an ids or full check, saved after every file.
	IDs *IDCheck `json:"ids,omitempty"`
	// Missing lists the first missing ids as Type/id; MissingCount counts them all, listed in MissingReport.
	Missing       []string `json:"missing,omitempty"`
	MissingCount  int64    `json:"missingCount,omitempty"`
	MissingReport string   `json:"missingReport,omitempty"`
	// Differences are the first resources whose destination copy differs, with JSON paths.
	Differences []Difference `json:"differences,omitempty"`
	// System compares the destination's total of every type.
	System *SystemTotal `json:"system,omitempty"`
	Passed bool         `json:"passed,omitempty"`
	// Failures counts the attempts of this round that could not get an answer they needed (a count, a search,
	// a staged file); LastError is the latest. Bounded by MaxAttempts, then the round ends verification_failed.
	Failures  int    `json:"failures,omitempty"`
	LastError string `json:"lastError,omitempty"`
	// Report names the readable report (Markdown) in the document store.
	Report string `json:"report,omitempty"`
	// Refused are the versions the destination's imports refused, judged against both servers (refused.go).
	Refused *RefusedSummary `json:"refused,omitempty"`
	// DestinationWrites are, after a cutover, the versions written directly on the destination it still holds.
	DestinationWrites *DestinationWrites `json:"destinationWrites,omitempty"`
	// Reconcile is the cutover's pass over the destination's ids against the source's (reconcile.go).
	Reconcile *Reconcile `json:"reconcile,omitempty"`
	// Accept lists what the operator accepted for this round ("refused-versions").
	Accept []string `json:"accept,omitempty"`
	// RepairFrom names the refused-versions report whose stale resources this round repairs first
	// (POST .../repair); RepairedAt is when it did.
	RepairFrom string     `json:"repairFrom,omitempty"`
	RepairedAt *time.Time `json:"repairedAt,omitempty"`
}

// TypeRow is the verification of one resource type.
type TypeRow struct {
	Type string `json:"type"`
	// Source is the source's own count of the type over the migrated range (each export job's window and
	// filters), taken at verification time; with several typeFilter entries it is the largest entry's count and
	// SourceUpper their sum (the export is their union).
	Source       int64 `json:"source"`
	SourceUpper  int64 `json:"sourceUpper,omitempty"`
	Exported     int64 `json:"exported"`
	Imported     int64 `json:"imported"`
	ImportErrors int64 `json:"importErrors"`
	Destination  int64 `json:"destination"`
	// DestinationBefore is the baseline (BaselineMissing when its count failed); Expected is
	// DestinationBefore + Source.
	DestinationBefore int64 `json:"destinationBefore"`
	BaselineMissing   bool  `json:"baselineMissing,omitempty"`
	Expected          int64 `json:"expected"`
	Duplicates        int64 `json:"duplicates,omitempty"`
	// Lines are the resource lines read from the type's staged files (ids, full): they must equal Exported.
	Lines int64 `json:"lines,omitempty"`
	// Checked, Missing: ids looked up and not found (ids, full); Compared, Different: contents (full).
	Checked   int64 `json:"checked,omitempty"`
	Missing   int64 `json:"missing,omitempty"`
	Compared  int64 `json:"compared,omitempty"`
	Different int64 `json:"different,omitempty"`
	// Versions: the export carried older versions and deletion stubs (history, deletes), so its lines count
	// versions, not resources; ids and full then compare the destination with the source's current resources,
	// and Extra counts ids deleted on the source that the destination still holds.
	Versions bool  `json:"versions,omitempty"`
	Extra    int64 `json:"extra,omitempty"`
	// History compares every version (history: true, after a cutover): the source's and the destination's
	// _history counts of the type, or why they were not compared.
	History *HistoryCounts `json:"history,omitempty"`
	// Refused counts the type's versions the destination refused and does not hold; Stale the resources whose
	// newest version is among them (the destination holds older content); RefusedOlder the refused versions of
	// resources neither stale nor repaired (they pass only when accepted).
	Refused      int64 `json:"refused,omitempty"`
	Stale        int64 `json:"stale,omitempty"`
	RefusedOlder int64 `json:"refusedOlder,omitempty"`
	// RefusedUnread counts refused lines that could not be read back to a resource (they pass only when accepted).
	RefusedUnread int64 `json:"refusedUnread,omitempty"`
	// Reconciled is what the cutover's reconciliation found and did for the type.
	Reconciled *ReconcileTally `json:"reconciled,omitempty"`
	// NotReconciled says why the cutover's reconciliation left the type alone.
	NotReconciled string `json:"notReconciled,omitempty"`
	// Overlap: in counts mode, the destination held resources of the type before (or its count then is unknown),
	// so counts cannot prove it and its ids were looked up as in ids mode; NotProven: they could not be (the staged
	// files are deleted) and the count does not decide either way.
	Overlap   bool `json:"overlap,omitempty"`
	NotProven bool `json:"notProven,omitempty"`
	// NothingInRange: a requested type of which the source holds nothing in the migrated range.
	NothingInRange bool `json:"nothingInRange,omitempty"`
	// NotCopied: SearchParameter resources held back because the destination refuses writes (InitialLoad).
	NotCopied   bool   `json:"notCopied,omitempty"`
	Explanation string `json:"explanation,omitempty"`
	// Reason is the code of the most serious problem found (empty when none); Proven says the evidence shows
	// every migrated resource of the type in the destination.
	Reason string `json:"reason,omitempty"`
	Proven bool   `json:"proven"`
	Match  bool   `json:"match"`
}

// HistoryCounts are a type's version counts on both servers (current, older and deleted versions).
type HistoryCounts struct {
	Compared    bool   `json:"compared"`
	Source      int64  `json:"source,omitempty"`
	Destination int64  `json:"destination,omitempty"`
	Why         string `json:"why,omitempty"`
}

// Progress is derived from the jobs when a document is served.
type Progress struct {
	Exports           JobTally `json:"exports"`
	Imports           JobTally `json:"imports"`
	Copies            JobTally `json:"copies"`
	ResourcesExported int64    `json:"resourcesExported"`
	ResourcesImported int64    `json:"resourcesImported"`
	OrphanedAttempts  int      `json:"orphanedAttempts"`
	// Estimate is the copy's rates and expected end, while it exports or imports.
	Estimate *Estimate `json:"estimate,omitempty"`
}

// JobTally counts the jobs of one kind.
type JobTally struct {
	Done  int `json:"done"`
	Total int `json:"total"`
}

// Summary is one line of the migration list.
type Summary struct {
	ID          string    `json:"id"`
	Status      Status    `json:"status"`
	CreatedAt   time.Time `json:"createdAt"`
	UpdatedAt   time.Time `json:"updatedAt"`
	Source      string    `json:"source"`
	Destination string    `json:"destination"`
	Progress    Progress  `json:"progress"`
	Error       *Failure  `json:"error,omitempty"`
}

// Plan is the answer to a dry run: the jobs a migration would start with.
type Plan struct {
	DryRun  bool    `json:"dryRun"`
	Request Request `json:"request"`
	Jobs    []*Job  `json:"jobs"`
}

func (m *Migration) job(id string) *Job {
	for _, j := range m.Jobs {
		if j.ID == id {
			return j
		}
	}
	return nil
}

func (m *Migration) progress() Progress {
	var p Progress
	for _, j := range m.Jobs {
		t := &p.Exports
		switch j.Kind {
		case KindImport:
			t = &p.Imports
		case KindCopy:
			t = &p.Copies
		}
		t.Total++
		if j.State == JobDone {
			t.Done++
		}
		for _, n := range j.Counts {
			if j.Kind == KindExport {
				p.ResourcesExported += n
			} else {
				p.ResourcesImported += n
			}
		}
		p.OrphanedAttempts += j.Orphans
	}
	return p
}

// served returns the document as the API shows it, with its derived progress.
func (m *Migration) served(now time.Time) *Migration {
	p := m.progress()
	p.Estimate = m.estimate(now)
	m.Progress = &p
	if m.Sync != nil && m.Cutover == nil && !m.Sync.HighWater.IsZero() {
		m.Sync.LagSeconds = max(now.Sub(m.Sync.HighWater).Seconds(), 0)
	}
	return m
}

// lastAttempt is the job's latest kick-off attempt, or nil.
func (j *Job) lastAttempt() *Attempt {
	if len(j.Attempts) == 0 {
		return nil
	}
	return &j.Attempts[len(j.Attempts)-1]
}

// slotHolder names a job in a host's slot document; staleHolders parses it back.
func slotHolder(migrationID, jobID string) string { return migrationID + "/" + jobID }

func timePtr(t time.Time) *time.Time { return &t }

// Baseline is the destination's counts taken by StartMigration, so that a destination that was not empty can be
// verified. Counts holds every type counted, zeros included; a type absent from it has no known count before.
type Baseline struct {
	TakenAt time.Time        `json:"takenAt"`
	Counts  map[string]int64 `json:"counts,omitempty"`
	Total   int64            `json:"total"`
	Error   string           `json:"error,omitempty"`
	// Uncounted are the types whose count failed: their count before is unknown, never zero.
	Uncounted []string `json:"uncounted,omitempty"`
}

// IDCheck is the cursor of an ids or full verification: files before NextFile are done and tallied.
type IDCheck struct {
	NextFile int                 `json:"nextFile"`
	Files    int                 `json:"files"`
	Types    map[string]*IDTally `json:"types,omitempty"`
	// FromSync: a fast cutover's check starts where the sync's checks stopped (sync_checks.go): the files before
	// FromSync were checked while syncing. Suspects names the blob of the ids that differed then, looked up again
	// once writes stopped (SuspectsDone).
	FromSync     int    `json:"fromSync,omitempty"`
	Suspects     string `json:"suspects,omitempty"`
	SuspectsDone bool   `json:"suspectsDone,omitempty"`
}

// IDTally counts the id and content checks of one type.
type IDTally struct {
	// Lines counts the resource lines of the files the manifests list under this type.
	Lines      int64 `json:"lines"`
	Checked    int64 `json:"checked"`
	Missing    int64 `json:"missing"`
	Duplicates int64 `json:"duplicates,omitempty"`
	Compared   int64 `json:"compared,omitempty"`
	Different  int64 `json:"different,omitempty"`
	// Extra counts ids the source does not hold (deleted there) that the destination does (history or deletes).
	Extra int64 `json:"extra,omitempty"`
}

// Difference is one resource whose destination copy differs from the exported one, by JSON path.
type Difference struct {
	Resource string   `json:"resource"`
	Paths    []string `json:"paths"`
}

// SystemTotal is the destination's count of every resource, before and after.
type SystemTotal struct {
	Before   int64 `json:"before"`
	After    int64 `json:"after"`
	Exported int64 `json:"exported"`
	// Summed: After is the sum of the rows' destination counts (a fast cutover counts no other type).
	Summed bool `json:"summed,omitempty"`
}

// Cleanup is the record of the deletion of a migration's staged files.
type Cleanup struct {
	State       string       `json:"state"` // pending, done, failed
	RequestedAt time.Time    `json:"requestedAt"`
	FinishedAt  *time.Time   `json:"finishedAt,omitempty"`
	Forced      bool         `json:"forced,omitempty"`
	Container   string       `json:"container"`
	Blobs       int          `json:"blobs"`
	Bytes       int64        `json:"bytes"`
	Deleted     []StagedBlob `json:"deleted,omitempty"`
	Truncated   bool         `json:"truncated,omitempty"`
	ErrorFiles  []StagedBlob `json:"errorFiles,omitempty"`
	Error       string       `json:"error,omitempty"`
}

// StagedBlob is one staged file: its name in the container (or URL for error files) and size.
type StagedBlob struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
}
