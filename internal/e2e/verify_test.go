package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/fhirsim"
)

// verifiedDoc is the verification part of the migration document.
type verifiedDoc struct {
	Status string `json:"status"`
	Error  *struct {
		Code string `json:"code"`
	} `json:"error"`
	Request struct {
		Container string `json:"container"`
	} `json:"request"`
	Verification struct {
		Passed       bool     `json:"passed"`
		Missing      []string `json:"missing"`
		MissingCount int64    `json:"missingCount"`
		Rows         []struct {
			Type              string `json:"type"`
			Exported          int64  `json:"exported"`
			Imported          int64  `json:"imported"`
			Destination       int64  `json:"destination"`
			DestinationBefore int64  `json:"destinationBefore"`
			Expected          int64  `json:"expected"`
			Checked           int64  `json:"checked"`
			Missing           int64  `json:"missing"`
			Match             bool   `json:"match"`
		} `json:"rows"`
	} `json:"verification"`
	Cleanup *struct {
		State string `json:"state"`
		Blobs int    `json:"blobs"`
	} `json:"cleanup"`
}

func (s *stack) verified(id string) verifiedDoc {
	s.t.Helper()
	_, raw := s.await(id, nil)
	var d verifiedDoc
	require.NoError(s.t, json.Unmarshal(raw, &d), string(raw))
	return d
}

// TestVerifyIDsCatchesDroppedResources: the destination silently drops some imported resources; the ids check
// fails the migration with exactly those ids, and per-type deltas that add up.
func TestVerifyIDsCatchesDroppedResources(t *testing.T) {
	t.Parallel()
	faults, err := fhirsim.ParseFaults("import-drop=0.03")
	require.NoError(t, err)
	s := newStack(t, stackOptions{patients: 12, destOptions: []fhirsim.Option{fhirsim.WithFaults(faults), fhirsim.WithFaultSeed(3)}})
	id := s.start(map[string]any{"source": s.source.URL, "destination": s.dest.URL, "verify": "ids"})
	d := s.verified(id)

	dropped := s.destSim.Stats().DroppedResources
	require.NotEmpty(t, dropped, "the fault seed must drop something")
	require.Equal(t, "failed", d.Status)
	require.Equal(t, "verification_mismatch", d.Error.Code)
	require.False(t, d.Verification.Passed)
	require.Equal(t, int64(len(dropped)), d.Verification.MissingCount)
	got := slices.Clone(d.Verification.Missing)
	slices.Sort(got)
	require.Equal(t, dropped, got)

	status, raw := s.api(http.MethodGet, "/api/migrations/"+id+"/report/missing", nil)
	require.Equal(t, http.StatusOK, status, string(raw))
	all := strings.Fields(string(raw))
	slices.Sort(all)
	require.Equal(t, dropped, all)

	perType := map[string]int64{}
	for _, k := range dropped {
		perType[strings.Split(k, "/")[0]]++
	}
	for _, r := range d.Verification.Rows {
		require.Equal(t, perType[r.Type], r.Missing, r.Type)
		require.Equal(t, r.Exported, r.Checked, r.Type)
		require.Equal(t, r.Expected-perType[r.Type], r.Destination, r.Type)
		require.Equal(t, perType[r.Type] == 0, r.Match, r.Type)
	}

	status, raw = s.api(http.MethodGet, "/api/migrations/"+id+"/report", nil)
	require.Equal(t, http.StatusOK, status, string(raw))
	require.Contains(t, string(raw), "FAILED")
	require.Contains(t, string(raw), dropped[0])

	status, raw = s.api(http.MethodPost, "/api/migrations/"+id+"/cleanup", `{}`)
	require.Equal(t, http.StatusConflict, status, string(raw))
	require.Contains(t, string(raw), "verification_not_passed")
}

// TestVerifyIntoAPrefilledDestinationThenCleanUp: the same migration into a destination that already held other
// data passes when nothing is lost; cleanup then removes its staged files and nothing else of the account.
func TestVerifyIntoAPrefilledDestinationThenCleanUp(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStack(t, stackOptions{patients: 8, destOptions: []fhirsim.Option{fhirsim.WithSeed(3, 99)}})
	before := count(t, s.dest.URL, "Patient", nil)
	require.Positive(t, before)

	// Other data in the account: another migration's container, and an unrelated one.
	client, err := azurite.Client()
	require.NoError(t, err)
	theirs, err := azurite.CreateContainer(ctx, "another-migration")
	require.NoError(t, err)
	_, err = client.ServiceClient().NewContainerClient(theirs).SetMetadata(ctx, &container.SetMetadataOptions{
		Metadata: map[string]*string{"fhirmigration": to.Ptr("m-another")}})
	require.NoError(t, err)
	unrelated, err := azurite.CreateContainer(ctx, "unrelated")
	require.NoError(t, err)
	for _, c := range []string{theirs, unrelated} {
		_, err = client.UploadBuffer(ctx, c, "20260101T000000-1/Patient-1-1.ndjson", []byte("{}\n"), nil)
		require.NoError(t, err)
	}

	id := s.start(map[string]any{"source": s.source.URL, "destination": s.dest.URL, "verify": "ids"})
	d := s.verified(id)
	require.Equal(t, "completed", d.Status, "%+v", d)
	require.True(t, d.Verification.Passed)
	require.Zero(t, d.Verification.MissingCount)
	for _, r := range d.Verification.Rows {
		if r.Type == "Patient" {
			require.Equal(t, before, r.DestinationBefore)
			require.Equal(t, before+r.Exported, r.Destination)
		}
	}

	status, raw := s.api(http.MethodPost, "/api/migrations/"+id+"/cleanup", `{"dryRun":true}`)
	require.Equal(t, http.StatusOK, status, string(raw))
	var dry struct {
		Blobs []struct {
			Name string `json:"name"`
			Size int64  `json:"size"`
		} `json:"blobs"`
		Bytes int64 `json:"bytes"`
	}
	require.NoError(t, json.Unmarshal(raw, &dry))
	require.NotEmpty(t, dry.Blobs)
	require.Positive(t, dry.Bytes)
	require.True(t, containerExists(t, d.Request.Container), "a dry run deletes nothing")

	status, raw = s.api(http.MethodPost, "/api/migrations/"+id+"/cleanup", `{}`)
	require.Equal(t, http.StatusOK, status, string(raw))
	require.False(t, containerExists(t, d.Request.Container))
	for _, c := range []string{theirs, unrelated} {
		require.True(t, containerExists(t, c), c)
		pager := client.NewListBlobsFlatPager(c, nil)
		page, err := pager.NextPage(ctx)
		require.NoError(t, err)
		require.Len(t, page.Segment.BlobItems, 1, c)
	}
	d = s.verified(id)
	require.Equal(t, "done", d.Cleanup.State)
	require.Len(t, dry.Blobs, d.Cleanup.Blobs)

	status, raw = s.api(http.MethodGet, "/api/migrations/"+id+"/report", nil)
	require.Equal(t, http.StatusOK, status, "the report outlives the staged files: %s", raw)
	require.Contains(t, string(raw), "PASSED")
	status, raw = s.api(http.MethodPost, "/api/migrations/"+id+"/verify", `{"verify":"ids"}`)
	require.Equal(t, http.StatusConflict, status, string(raw))
	require.Contains(t, string(raw), "staged_files_deleted")
}

func containerExists(t *testing.T, name string) bool {
	t.Helper()
	client, err := azurite.Client()
	require.NoError(t, err)
	_, err = client.ServiceClient().NewContainerClient(name).GetProperties(context.Background(), nil)
	return err == nil
}
