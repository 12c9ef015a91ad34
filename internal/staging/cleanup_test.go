package staging_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/staging"
)

// TestCleanupTouchesNothingElse: deleting a migration's container takes its files and orphans, and leaves every
// other container and blob of the account, another migration's included.
func TestCleanupTouchesNothingElse(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := account(t)
	c, err := azurite.Client()
	require.NoError(t, err)
	suffix := time.Now().UnixNano()
	mine, theirs := fmt.Sprintf("mine-%d", suffix), fmt.Sprintf("theirs-%d", suffix)
	require.NoError(t, a.ClaimContainer(ctx, mine, "m-mine"))
	require.NoError(t, a.ClaimContainer(ctx, theirs, "m-theirs"))
	other, err := azurite.CreateContainer(ctx, "other")
	require.NoError(t, err)
	put := func(container, name, body string) {
		_, err := c.UploadBuffer(ctx, container, name, []byte(body), nil)
		require.NoError(t, err)
	}
	put(mine, "20260101T000000-1/Patient-1-1.ndjson", "0123456789")
	put(mine, "20260101T000000-2/Patient-1-1.ndjson", "orphan")
	put(theirs, "20260101T000000-1/Patient-1-1.ndjson", "theirs")
	put(other, "keep.txt", "keep")
	put(other, mine+"/lookalike.ndjson", "same prefix, other container")

	list, err := a.ListContainer(ctx, mine, "m-mine")
	require.NoError(t, err)
	require.Equal(t, []staging.BlobInfo{{Name: "20260101T000000-1/Patient-1-1.ndjson", Size: 10},
		{Name: "20260101T000000-2/Patient-1-1.ndjson", Size: 6}}, list)

	_, err = a.ListContainer(ctx, theirs, "m-mine")
	require.ErrorIs(t, err, staging.ErrNotOwned)
	require.ErrorIs(t, a.DeleteContainer(ctx, theirs, "m-mine"), staging.ErrNotOwned)
	require.ErrorIs(t, a.DeleteContainer(ctx, other, "m-mine"), staging.ErrNotOwned, "an unowned container is never deleted")

	require.NoError(t, a.DeleteContainer(ctx, mine, "m-mine"))
	require.NoError(t, a.DeleteContainer(ctx, mine, "m-mine"), "deleting again is a no-op")
	list, err = a.ListContainer(ctx, mine, "m-mine")
	require.NoError(t, err)
	require.Empty(t, list)

	var containers []string
	pager := c.NewListContainersPager(nil)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		require.NoError(t, err)
		for _, it := range page.ContainerItems {
			containers = append(containers, *it.Name)
		}
	}
	require.Contains(t, containers, theirs)
	require.Contains(t, containers, other)
	left, err := a.ListContainer(ctx, theirs, "m-theirs")
	require.NoError(t, err)
	require.Len(t, left, 1)
	var otherBlobs []string
	bp := c.NewListBlobsFlatPager(other, nil)
	for bp.More() {
		page, err := bp.NextPage(ctx)
		require.NoError(t, err)
		for _, it := range page.Segment.BlobItems {
			otherBlobs = append(otherBlobs, *it.Name)
		}
	}
	slices.Sort(otherBlobs)
	require.Equal(t, []string{"keep.txt", mine + "/lookalike.ndjson"}, otherBlobs)
}

func TestErrorFileSizeAndDelete(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := account(t)
	c, err := azurite.Client()
	require.NoError(t, err)
	logs, err := azurite.CreateContainer(ctx, "fhirlogs")
	require.NoError(t, err)
	_, err = c.UploadBuffer(ctx, logs, "Patient-err.ndjson", []byte("12345"), nil)
	require.NoError(t, err)
	u := azurite.BlobEndpoint + "/" + logs + "/Patient-err.ndjson"

	n, err := a.BlobSize(ctx, u)
	require.NoError(t, err)
	require.Equal(t, int64(5), n)
	require.NoError(t, a.DeleteBlob(ctx, u))
	_, err = a.BlobSize(ctx, u)
	require.ErrorIs(t, err, staging.ErrBlobNotFound)
	require.ErrorIs(t, a.DeleteBlob(ctx, u), staging.ErrBlobNotFound)
	require.Error(t, a.DeleteBlob(ctx, "https://evil.blob.core.windows.net/"+logs+"/x"), "only inside the account")
}
