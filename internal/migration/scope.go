package migration

import (
	"cmp"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ScopeItem is one line of what a migration moves and how: both reports open with them.
type ScopeItem struct {
	Label string `json:"label"`
	Value string `json:"value"`
}

// Scope says what the migration was asked to move and how, in the words an operator checks a report against:
// the servers, the types, the window, the filters, versions and deletions, sync, verification and cleanup.
func Scope(m *Migration) []ScopeItem {
	r := &m.Request
	var out []ScopeItem
	add := func(label, format string, args ...any) {
		out = append(out, ScopeItem{Label: label, Value: fmt.Sprintf(format, args...)})
	}
	add("Source", "%s", r.Source)
	kind := kindOf(r)
	add("Source kind", "%s (%s)", kind.Name(), kind.Bounds().describe())
	if bd := r.BulkData; bd != nil {
		add("Bulk Data export", "%s, with %s (what the source declares)", cmp.Or(bd.Path, "$export (system)"), strings.Join(bd.Params, ", "))
	}
	add("Destination", "%s", r.Destination)
	switch {
	case len(r.Types) > 0:
		add("Types", "%s", strings.Join(r.Types, ", "))
	case len(m.SourceTypes) > 0:
		add("Types", "every type the source supports (%d), SearchParameter included", len(m.SourceTypes))
	default:
		add("Types", "every type the source supports")
	}
	add("Window", "%s", scopeWindow(m))
	if len(r.TypeFilter) > 0 {
		add("Type filters", "%s (only matching resources were migrated)", strings.Join(r.TypeFilter, "; "))
	} else {
		add("Type filters", "none")
	}
	versions := "current versions only"
	switch {
	case r.History && (r.Deletes || r.Sync):
		versions = "every version, and deleted resources as deletions"
	case r.History:
		versions = "every version"
	case r.Deletes || r.Sync:
		versions = "current versions, and deleted resources as deletions"
	}
	add("Versions", "%s", versions)
	if r.Sync {
		reconcile := r.Reconcile
		if reconcile == "" {
			reconcile = "delete"
		}
		add("Sync", "every %s with a margin of %s until the cutover; at the cutover, what the source hard-deleted or purged: %s",
			syncInterval(r), syncMargin(r), reconcile)
	} else {
		add("Sync", "no (one copy)")
	}
	add("Export", "%s, windows of at most %s resources", r.ExportStrategy, strconv.FormatInt(windowTarget(r), 10))
	add("Import mode", "%s", r.ImportMode)
	verify := verifyMode(m)
	if verify == VerifyModeFull && verifySample(m) > 0 {
		verify += fmt.Sprintf(" (contents compared for %d resources per type)", verifySample(m))
	}
	add("Verification", "%s", verify)
	cleanup := "kept until POST .../cleanup"
	if r.Cleanup == CleanupAfterVerify {
		cleanup = "deleted once verification passes"
	}
	add("Staged files", "container %s, %s", r.Container, cleanup)
	return out
}

// scopeWindow is the migrated range in words.
func scopeWindow(m *Migration) string {
	r := &m.Request
	from := "from the oldest resource"
	if r.Since != nil {
		from = "from " + r.Since.UTC().Format(time.RFC3339)
	}
	switch {
	case r.Till != nil:
		return from + " to " + r.Till.UTC().Format(time.RFC3339)
	case r.Sync && m.Sync != nil && !m.Sync.HighWater.IsZero():
		return from + " to the sync's high-water mark, " + m.Sync.HighWater.UTC().Format(time.RFC3339)
	case m.Planning != nil:
		return from + " to the start of planning, " + m.Planning.Till.UTC().Format(time.RFC3339)
	}
	return from + " to the start of planning"
}
