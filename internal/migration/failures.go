package migration

import (
	"fmt"
	"strings"
)

// FailureCode is a code a failed migration's error carries, when the engine sets it, and what the operator does.
type FailureCode struct {
	Code   string
	When   string
	Action string
}

// FailureCodes lists every error.code of a failed migration, with the operator's next step: the runbook in
// docs/operations.md is generated from it, and a test holds it to the codes the engine sets.
func FailureCodes() []FailureCode {
	return []FailureCode{
		{string(KindExport) + "_failed", "an export could not be completed: re-run `MaxReexports` times (stalled, short " +
			"of the counts taken at kick-off, failed on the server) or its kick-offs or status polls kept failing",
			"read `error.message` and the job's `lastError` (the server's own reason); check the source's export " +
				"storage account and the identity's rights on it, and whether the source is throttling; start the " +
				"migration again (imports are idempotent with IncrementalLoad)"},
		{string(KindImport) + "_failed", "an import failed on the destination, or its kick-offs or status polls kept failing",
			"read the reason: import not enabled on the destination, the destination's identity missing Storage " +
				"Blob Data Reader on the staging account, the staging account's firewall; fix it and start again"},
		{string(KindCopy) + "_failed", "the SearchParameter copy (batch PUTs to the destination) was refused",
			"the reason names the SearchParameter: correct or leave it out on the source (or write it by hand), " +
				"then start again or verify"},
		{codeSourceCountUnavailable, "the source would not count a range (during planning or before a kick-off) " +
			"after every retry: no export runs unchecked",
			"check the source's health and throttling and each `typeFilter` entry (a search the source must " +
				"answer with `_summary=count`); start again"},
		{codeVerificationMismatch, "a proven loss: exported ids missing in the destination, contents that differ, " +
			"an export short of the source, staged lines short of their manifests, or a type's versions differing",
			"read the report's rows and `GET .../report/missing`; migrate the affected types again (a new migration " +
				"of those types; their ids are looked up) and verify"},
		{codeSourceChanged, "the export holds more than the source now holds in the migrated range: it changed since",
			"give a `till` in the past, stop writes, or use `sync`; then verify again (`POST .../verify`)"},
		{codeCountMismatch, "the destination holds more than before + source: something else wrote to it meanwhile",
			"verify with `ids` (`POST .../verify` with `{\"verify\":\"ids\"}`): every exported id is then looked up"},
		{codeBaselineIncomplete, "the destination's count before the migration could not be taken for a type of " +
			"which nothing was exported, so its count after proves nothing",
			"verify with `ids`"},
		{codeVerificationFailed, "the check itself could not be done: a count, a search or a staged file kept " +
			"failing for `MaxAttempts` rounds, or an exported line is over 16 MB",
			"fix what `error.message` names (`verification.lastError` has the last fault) and verify again"},
		{codeRefusedVersions, "the destination's import refused versions that are not a resource's newest " +
			"(two versions in one millisecond, versions out of order): the destination's history is short of them",
			"read the report's list; if that history may be lost, accept it with `{\"accept\":[\"refused-versions\"]}` " +
				"on `POST .../verify` or the cutover; a resource whose newest version was refused is fixed by `POST .../repair`"},
		{codeDestinationWritten, "versions were written directly on the destination while it was synced",
			"the report lists them: remove them (or stop the writer), keep the destination unwritten until the " +
				"cutover, and verify again"},
	}
}

// FailureCodesTable is the runbook's table of failure codes in Markdown.
func FailureCodesTable() string {
	var b strings.Builder
	b.WriteString("| `error.code` | When | What to do |\n| --- | --- | --- |\n")
	for _, c := range FailureCodes() {
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", c.Code, c.When, c.Action)
	}
	return b.String()
}
