// Package migration is the engine of the service: the migration document, its job state machine, and the steps
// that drive it (start, the poll sweep, run-import, verify-counts, cancel, re-verify, cleanup). It knows no HTTP:
// its operations take typed requests and refuse with an *Error of a few kinds (errors.go); internal/api maps them
// to answers.
//
// The stored documents are the only truth. Every step loads a document, decides, and saves it with the ETag it
// read (reloading and deciding again on a conflict); calls to FHIR servers that start work are recorded in the
// document before they are made, and messages and DELETEs are sent only after the save that decided them.
//
// Files, each with one job:
//   - service.go, tuning.go, deps.go: the Service, its Config and Tuning, the interfaces it needs (FHIR client,
//     URL policy, staging account);
//   - model.go, document.go: the document's types, and load / update with the ETag;
//   - errors.go: refusals, their kinds and the table of codes;
//   - start.go, baseline.go: start requests, their validation, the preflight, the plan, the destination's
//     counts before;
//   - machine.go, effects.go, messages.go, slots.go, pacing.go: the pure decisions of the job state machine,
//     the effects they ask for, the chained messages, the per-host concurrency slots, backoff and fan-out;
//   - poll.go, export_checks.go: the PollJob sweep, and the checks of an export against the source's counts;
//   - run_import.go, copy.go, import_errors.go: the RunImport step, the SearchParameter copy, and the digest of
//     import error files;
//   - verify.go, verify_judge.go, verify_ids.go, verify_diff.go: the VerifyModeCounts step, the verdict per type, the
//     ids and full checks, and content differences;
//   - migrations.go, reverify.go, cleanup.go: get, list and cancel; a new verification round; cleanup of the
//     staged files;
//   - reports.go, report_markdown.go: the report blobs and their reads, and the readable report.
package migration
