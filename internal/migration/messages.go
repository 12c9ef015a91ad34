package migration

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/fhir-migrator/fhir-migrator/internal/bus"
)

// RunImportMessage is the body of a run-import message.
type RunImportMessage struct {
	MigrationID string `json:"migrationId"`
	JobID       string `json:"jobId"`
}

// VerifyMessage is the body of a verify-counts message.
type VerifyMessage struct {
	MigrationID string `json:"migrationId"`
	Generation  int    `json:"generation"`
	// Task "sync-checks" is a syncing migration's background checks (sync_checks.go), numbered by Dispatch; empty,
	// a verification round.
	Task     string `json:"task,omitempty"`
	Dispatch int    `json:"dispatch,omitempty"`
}

// runImportMessage builds the run-import message of one dispatch of a job; the MessageId changes with the
// dispatch number, so a deliberate re-send is not dropped as a duplicate while a repeated send of one is.
func runImportMessage(migrationID, jobID string, dispatch int, notBefore time.Time) bus.Message {
	body, _ := json.Marshal(RunImportMessage{MigrationID: migrationID, JobID: jobID})
	return bus.Message{
		Queue:     bus.QueueRunImport,
		ID:        fmt.Sprintf("%s/run-import/%s/%d", migrationID, jobID, dispatch),
		Body:      body,
		NotBefore: notBefore,
	}
}

// verifyMessage builds the verify-counts message of one dispatch of a verification generation, due at at (the
// zero time, or a time not in the future, for now).
func verifyMessage(migrationID string, generation, dispatch int, at time.Time) bus.Message {
	body, _ := json.Marshal(VerifyMessage{MigrationID: migrationID, Generation: generation})
	return bus.Message{
		Queue:     bus.QueueVerifyCounts,
		ID:        fmt.Sprintf("%s/verify/%d/%d", migrationID, generation, dispatch),
		Body:      body,
		NotBefore: at,
	}
}

// dispatch records a new run-import dispatch of job, due at at, and queues its message.
func dispatch(m *Migration, j *Job, at time.Time, now time.Time, e *effects) {
	j.Dispatch++
	j.DispatchAt, j.WaitingSlot = timePtr(at), nil
	var notBefore time.Time
	if at.After(now) {
		notBefore = at
	}
	e.send(runImportMessage(m.ID, j.ID, j.Dispatch, notBefore))
}
