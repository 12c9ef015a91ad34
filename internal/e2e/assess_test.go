package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/assess"
	"github.com/fhir-migrator/fhir-migrator/internal/fhirsim"
)

// assessNow starts an assessment of req and answers its id, after checking the 202 and its Location.
func (s *stack) assessNow(req map[string]any) string {
	s.t.Helper()
	status, raw := s.api(http.MethodPost, "/api/assessments", req)
	require.Equal(s.t, http.StatusAccepted, status, string(raw))
	var a assess.Assessment
	require.NoError(s.t, json.Unmarshal(raw, &a))
	require.Equal(s.t, assess.StatusRunning, a.Status)
	return a.ID
}

// awaitAssessment polls the assessment until it is no longer running and answers it.
func (s *stack) awaitAssessment(id string) *assess.Assessment {
	s.t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		status, raw := s.api(http.MethodGet, "/api/assessments/"+id, nil)
		require.Equal(s.t, http.StatusOK, status, string(raw))
		var a assess.Assessment
		require.NoError(s.t, json.Unmarshal(raw, &a))
		if a.Status != assess.StatusRunning {
			return &a
		}
		require.True(s.t, time.Now().Before(deadline), "assessment %s still running after 3 minutes:\n%s", id, raw)
		time.Sleep(250 * time.Millisecond)
	}
}

func item(t *testing.T, a *assess.Assessment, code string) assess.Item {
	t.Helper()
	i := slices.IndexFunc(a.Items, func(it assess.Item) bool { return it.Code == code })
	require.GreaterOrEqual(t, i, 0, "assessment %s has no item %s: %+v", a.ID, code, a.Items)
	return a.Items[i]
}

// TestAssessment runs assessments on one local stack, side by side: a healthy pair (every item ok, the custom
// SearchParameters listed, an estimate), and one per blocking case (export not configured on the source, import
// disabled on the destination, InitialLoad with history, an STU3 source, a destination that does not answer) and
// an overlapping destination (a warning with the counts). Neither FHIR server records a write (their own
// counters), the destination no import job, and no probe container is left in the staging account.
func TestAssessment(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{patients: 6})
	sim := func(opts ...fhirsim.Option) string {
		t.Helper()
		srv := serveLoopback(t, fhirsim.New(append([]fhirsim.Option{fhirsim.WithJobDelay(50 * time.Millisecond)}, opts...)...))
		return srv.URL
	}
	source := func(opts ...fhirsim.Option) string {
		return sim(append([]fhirsim.Option{fhirsim.WithFlavor(fhirsim.FlavorAPIForFHIR), fhirsim.WithSeed(3, 11)}, opts...)...)
	}
	dest := func(opts ...fhirsim.Option) string {
		return sim(append([]fhirsim.Option{fhirsim.WithFlavor(fhirsim.FlavorAHDS), fhirsim.WithStorage(azurite.ConnectionString)}, opts...)...)
	}
	unreachable := serveLoopback(t, http.NotFoundHandler())
	gone := unreachable.URL
	unreachable.Close() // nothing listens there any more

	noExport := source() // no storage account: $export is not configured
	stu3 := source(fhirsim.WithStorage(azurite.ConnectionString), fhirsim.WithFHIRVersion("3.0.2"))
	importOff := dest(fhirsim.WithImportDisabled(true))
	overlapping := dest(fhirsim.WithSeed(4, 5))

	types := []string{"Patient", "Observation", "SearchParameter"}
	req := func(src, dst string, extra map[string]any) map[string]any {
		r := map[string]any{"source": src, "destination": dst, "types": types}
		for k, v := range extra {
			r[k] = v
		}
		return r
	}
	cases := []struct {
		name        string
		req         map[string]any
		code        string
		want        assess.Level
		destination string
	}{
		{"export not configured", req(noExport, s.dest.URL, nil), assess.CodeExport, assess.Blocking, ""},
		{"import disabled", req(s.source.URL, importOff, nil), assess.CodeImportEnabled, assess.Blocking, ""},
		{"InitialLoad with history", req(s.source.URL, s.dest.URL, map[string]any{"importMode": "InitialLoad", "history": true}), assess.CodeRequest, assess.Blocking, ""},
		{"STU3 source", req(stu3, s.dest.URL, nil), assess.CodeFHIRVersion, assess.Blocking, ""},
		{"destination unreachable", req(s.source.URL, gone, nil), assess.CodeDestinationReachable, assess.Blocking, ""},
		{"overlapping destination", req(s.source.URL, overlapping, map[string]any{"types": []string{"Patient", "Observation"}}), assess.CodeOverlap, assess.Warning, overlapping},
	}
	srcBefore, dstBefore := s.srcSim.Stats(), s.destSim.Stats()

	healthyID := s.assessNow(req(s.source.URL, s.dest.URL, nil))
	historyID := s.assessNow(req(s.source.URL, s.dest.URL, map[string]any{"history": true, "deletes": true}))
	ids := make([]string, len(cases))
	for i, c := range cases {
		ids[i] = s.assessNow(c.req)
	}
	var mu sync.Mutex
	done := map[string]*assess.Assessment{}
	var wg sync.WaitGroup
	for _, id := range append([]string{healthyID, historyID}, ids...) {
		wg.Go(func() {
			a := s.awaitAssessment(id)
			mu.Lock()
			done[id] = a
			mu.Unlock()
		})
	}
	wg.Wait()

	healthy := done[healthyID]
	require.Equal(t, assess.StatusCompleted, healthy.Status, "%+v", healthy.Error)
	require.Equal(t, assess.OK, healthy.Verdict)
	codes := map[string]bool{}
	for _, it := range healthy.Items {
		require.Equal(t, assess.OK, it.Status, "%s: %s", it.Code, it.Detail)
		codes[it.Code] = true
	}
	for _, c := range []string{assess.CodeSourceReachable, assess.CodeDestinationReachable, assess.CodeFHIRVersion, assess.CodeTypes,
		assess.CodeExport, assess.CodeExportStorage, assess.CodeStagingAccess, assess.CodeImportEnabled, assess.CodeImportStorage,
		assess.CodeImportMode, assess.CodeOverlap, assess.CodeSearchParameters, assess.CodePlan, assess.CodeEstimate} {
		require.True(t, codes[c], "the healthy pair's assessment has the item %s", c)
	}
	require.Equal(t, "4.0.1", healthy.Source.FHIRVersion)
	require.Equal(t, "4.0.1", healthy.Destination.FHIRVersion)
	require.NotNil(t, healthy.Staging.ExportContainerFound)
	require.True(t, *healthy.Staging.ExportContainerFound, "the probe export wrote its container into the staging account")
	require.Zero(t, healthy.Export.Resources, "the probe export selects nothing")
	// The custom SearchParameters, each listed, every one missing on the destination, and the reindex to run.
	sp := healthy.SearchParameters
	require.NotNil(t, sp)
	require.Len(t, sp.Source, 4)
	require.Len(t, sp.Missing, 4)
	for _, d := range sp.Source {
		require.Contains(t, item(t, healthy, assess.CodeSearchParameters).Detail, d.URL)
	}
	reindex := slices.IndexFunc(healthy.Checklist, func(task assess.Task) bool { return task.Code == assess.TaskReindex })
	require.GreaterOrEqual(t, reindex, 0)
	require.Contains(t, healthy.Checklist[reindex].Call, s.dest.URL+"/$reindex")
	// Per type: the source's resources and what the destination holds (nothing).
	byType := map[string]assess.TypeFacts{}
	for _, tf := range healthy.Types {
		byType[tf.Type] = tf
	}
	wantPatients := count(t, s.source.URL, "Patient", nil)
	require.Equal(t, wantPatients, byType["Patient"].Live)
	require.True(t, byType["Patient"].DestinationCounted)
	require.Zero(t, byType["Patient"].Destination)
	require.NotNil(t, byType["Patient"].Oldest)
	require.NotNil(t, healthy.Estimate)
	require.Positive(t, healthy.Estimate.TotalSeconds)
	require.Positive(t, healthy.Estimate.StagingBytes)

	// With history and deletes, every version is counted per type (the source's own _history count) and planned.
	withHistory := done[historyID]
	require.Equal(t, assess.StatusCompleted, withHistory.Status, "%+v", withHistory.Error)
	require.Equal(t, assess.OK, withHistory.Verdict, "%+v", withHistory.Items)
	for _, tf := range withHistory.Types {
		require.NotNil(t, tf.Versions, tf.Type)
		require.Equal(t, count(t, s.source.URL, tf.Type+"/_history", url.Values{"_summary": {"count"}}), *tf.Versions, tf.Type)
		require.GreaterOrEqual(t, *tf.Versions, tf.Live, tf.Type)
	}

	for i, c := range cases {
		a := done[ids[i]]
		require.Equal(t, assess.StatusCompleted, a.Status, "%s: %+v", c.name, a.Error)
		it := item(t, a, c.code)
		require.Equal(t, c.want, it.Status, "%s: %s: %s", c.name, it.Code, it.Detail)
		require.Equal(t, c.want, a.Verdict, c.name)
		if c.want == assess.Blocking {
			require.NotEmpty(t, it.Action, "%s: a blocking item says what to do", c.name)
		}
		if c.destination != "" {
			// The counts: what the destination holds of each type, against what the source holds.
			for _, typ := range []string{"Patient", "Observation"} {
				n := count(t, c.destination, typ, nil)
				require.Positive(t, n)
				require.Contains(t, it.Detail, fmt.Sprintf("%s: %d (", typ, n), c.name)
			}
		}
	}

	// Nothing written to either FHIR server of the stack, no import job, one probe export (selecting nothing)
	// per assessment whose source it is.
	srcAfter, dstAfter := s.srcSim.Stats(), s.destSim.Stats()
	require.Equal(t, srcBefore.Writes, srcAfter.Writes, "no write to the source")
	require.Equal(t, dstBefore.Writes, dstAfter.Writes, "no write to the destination")
	require.Equal(t, dstBefore.ImportJobs, dstAfter.ImportJobs, "no import job on the destination")
	for _, e := range srcAfter.Exports {
		require.Zero(t, e.Resources, "a probe export exports nothing: %s", e.Query)
		require.Contains(t, e.Query, "_since=", e.Query)
	}
	require.Positive(t, srcAfter.ExportJobs)

	// No probe container is left in the staging account.
	client, err := azblob.NewClientFromConnectionString(azurite.ConnectionString, nil)
	require.NoError(t, err)
	all := append([]string{healthyID, historyID}, ids...)
	pager := client.NewListContainersPager(nil)
	for pager.More() {
		page, err := pager.NextPage(t.Context())
		require.NoError(t, err)
		for _, c := range page.ContainerItems {
			require.False(t, slices.Contains(all, *c.Name), "container %s left in the staging account", *c.Name)
			require.False(t, strings.HasPrefix(*c.Name, healthyID), *c.Name)
		}
	}
}
