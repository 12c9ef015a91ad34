package migration

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/fhir"
)

func TestNewestOnlyKeepsEachResourcesLastVersionAndDropsDeletions(t *testing.T) {
	t.Parallel()
	line := func(id, version string, deleted bool) fhir.BatchEntry {
		ext := ""
		if deleted {
			ext = `,"extension":[{"url":"http://azurehealthcareapis.com/data-extensions/deleted-state","valueString":"soft-deleted"}]`
		}
		return fhir.BatchEntry{Type: "SearchParameter", ID: id,
			Resource: []byte(`{"resourceType":"SearchParameter","id":"` + id + `","meta":{"versionId":"` + version + `"` + ext + `}}`)}
	}
	got := newestOnly([]fhir.BatchEntry{
		line("a", "2", false), line("a", "1", false), // newest first in the file: version 2 kept
		line("b", "1", false), line("b", "2", true), // deleted: dropped
		line("c", "1", false),
		line("d", "3", true), line("d", "4", false), // deleted, then created again: kept
	})
	var kept []string
	for _, e := range got {
		kept = append(kept, e.ID+"/"+string(rune('0'+lineVersion(e.Resource))))
	}
	require.Equal(t, []string{"a/2", "c/1", "d/4"}, kept)
}
