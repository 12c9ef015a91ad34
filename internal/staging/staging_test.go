package staging_test

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/azuritetest"
	"github.com/fhir-migrator/fhir-migrator/internal/staging"
)

var azurite *azuritetest.Azurite

func TestMain(m *testing.M) { azuritetest.Main(m, &azurite) }

func account(t *testing.T) *staging.Account {
	t.Helper()
	c, err := azurite.Client()
	require.NoError(t, err)
	a, err := staging.New(c)
	require.NoError(t, err)
	return a
}

func TestClaimContainer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := account(t)
	name := fmt.Sprintf("claim-%d", time.Now().UnixNano())

	require.NoError(t, a.ClaimContainer(ctx, name, "m-1"))
	require.NoError(t, a.ClaimContainer(ctx, name, "m-1"), "claiming again for the same migration is fine")
	err := a.ClaimContainer(ctx, name, "m-2")
	require.ErrorIs(t, err, staging.ErrContainerTaken)
	require.ErrorContains(t, err, "m-1")

	// An unowned container with data in it is refused; an empty unowned one is claimed.
	c, err := azurite.Client()
	require.NoError(t, err)
	full, err := azurite.CreateContainer(ctx, "unowned-full")
	require.NoError(t, err)
	_, err = c.UploadBuffer(ctx, full, "x.ndjson", []byte("{}\n"), nil)
	require.NoError(t, err)
	require.ErrorIs(t, a.ClaimContainer(ctx, full, "m-3"), staging.ErrContainerTaken)

	empty, err := azurite.CreateContainer(ctx, "unowned-empty")
	require.NoError(t, err)
	require.NoError(t, a.ClaimContainer(ctx, empty, "m-4"))
	require.ErrorIs(t, a.ClaimContainer(ctx, empty, "m-5"), staging.ErrContainerTaken)
}

func TestOpenOnlyInsideTheAccount(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := account(t)
	c, err := azurite.Client()
	require.NoError(t, err)
	name, err := azurite.CreateContainer(ctx, "open")
	require.NoError(t, err)
	_, err = c.UploadBuffer(ctx, name, "20260101T000000-1/SearchParameter-1.ndjson", []byte("{\"resourceType\":\"SearchParameter\"}\n"), nil)
	require.NoError(t, err)

	r, err := a.Open(ctx, azurite.BlobEndpoint+"/"+name+"/20260101T000000-1/SearchParameter-1.ndjson")
	require.NoError(t, err)
	body, err := io.ReadAll(r)
	require.NoError(t, err)
	require.NoError(t, r.Close())
	require.Equal(t, "{\"resourceType\":\"SearchParameter\"}\n", string(body))

	for _, bad := range []string{
		"https://evil.blob.core.windows.net/" + name + "/a.ndjson",
		azurite.BlobEndpoint + "/" + name + "/a.ndjson?sig=abc",
		azurite.BlobEndpoint + "/" + name,
		"http://127.0.0.1:1/devstoreaccount1/" + name + "/a.ndjson",
		"::not a url",
	} {
		_, err := a.Open(ctx, bad)
		require.Error(t, err, bad)
	}
}

// TestLocateRefusesDotSegments: a URL from a manifest or an import result cannot step out of its container.
func TestLocateRefusesDotSegments(t *testing.T) {
	t.Parallel()
	a := account(t)
	c, b, err := a.Locate(azurite.BlobEndpoint + "/staged/20260101T000000-1/Patient-1.ndjson")
	require.NoError(t, err)
	require.Equal(t, "staged", c)
	require.Equal(t, "20260101T000000-1/Patient-1.ndjson", b)
	for _, bad := range []string{
		azurite.BlobEndpoint + "/staged/../migrations/m-1.json",
		azurite.BlobEndpoint + "/staged/%2e%2e/migrations/m-1.json",
		azurite.BlobEndpoint + "/staged/./Patient-1.ndjson",
		azurite.BlobEndpoint + "/../devstoreaccount2/staged/Patient-1.ndjson",
	} {
		_, _, err := a.Locate(bad)
		require.ErrorContains(t, err, "dot segment", bad)
	}
}

func TestReleaseContainerUndoesAnEmptyClaim(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := account(t)
	name := fmt.Sprintf("release-%d", time.Now().UnixNano())
	require.NoError(t, a.ClaimContainer(ctx, name, "m-1"))
	require.ErrorIs(t, a.ReleaseContainer(ctx, name, "m-2"), staging.ErrNotOwned, "only the owner releases")
	require.NoError(t, a.ReleaseContainer(ctx, name, "m-1"))
	require.NoError(t, a.ClaimContainer(ctx, name, "m-2"), "a released container can be claimed again")

	c, err := azurite.Client()
	require.NoError(t, err)
	_, err = c.UploadBuffer(ctx, name, "x.ndjson", []byte("{}\n"), nil)
	require.NoError(t, err)
	require.Error(t, a.ReleaseContainer(ctx, name, "m-2"), "a container with blobs stays claimed")
	require.ErrorIs(t, a.ClaimContainer(ctx, name, "m-3"), staging.ErrContainerTaken)
}

// errAfter yields n bytes, then fails: an upload that breaks part-way.
type errAfter struct{ n int }

func (r *errAfter) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, io.ErrUnexpectedEOF
	}
	k := min(len(p), r.n)
	for i := range k {
		p[i] = 'x'
	}
	r.n -= k
	return k, nil
}

func TestUploadStreamInBlocks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := account(t)
	name, err := azurite.CreateContainer(ctx, "upload-stream")
	require.NoError(t, err)
	var want strings.Builder
	for i := range 3000 {
		fmt.Fprintf(&want, `{"resourceType":"Patient","id":"p%d"}`+"\n", i)
	}
	// Blocks of 64 KiB, a file of about 110 KiB: several blocks, committed as one blob.
	u, err := a.UploadStream(ctx, name, "dir/Patient-1.ndjson", strings.NewReader(want.String()), 64<<10, 2)
	require.NoError(t, err)
	r, err := a.Open(ctx, u)
	require.NoError(t, err)
	got, err := io.ReadAll(r)
	require.NoError(t, r.Close())
	require.NoError(t, err)
	require.Equal(t, want.String(), string(got))

	// A source that breaks leaves the committed blob as it was, and no new one.
	_, err = a.UploadStream(ctx, name, "dir/Patient-1.ndjson", &errAfter{n: 100 << 10}, 64<<10, 2)
	require.Error(t, err)
	_, err = a.UploadStream(ctx, name, "dir/broken.ndjson", &errAfter{n: 10}, 64<<10, 2)
	require.Error(t, err)
	r, err = a.Open(ctx, u)
	require.NoError(t, err)
	got, err = io.ReadAll(r)
	require.NoError(t, r.Close())
	require.NoError(t, err)
	require.Equal(t, want.String(), string(got))
	_, err = a.Open(ctx, strings.TrimSuffix(u, "Patient-1.ndjson")+"broken.ndjson")
	require.ErrorIs(t, err, staging.ErrBlobNotFound)
}

func TestMarkStagedAndStagedLines(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := account(t)
	name, err := azurite.CreateContainer(ctx, "marked")
	require.NoError(t, err)
	src := "https://ehr.example.com/bulk/1/Patient-1.ndjson?sig=secret"
	_, _, _, found, err := a.StagedLines(ctx, name, "j/1/Patient-1.ndjson", src)
	require.NoError(t, err)
	require.False(t, found, "no blob yet")

	u, err := a.UploadStream(ctx, name, "j/1/Patient-1.ndjson", strings.NewReader("{}\n{}\n"), 1<<20, 1)
	require.NoError(t, err)
	_, _, _, found, err = a.StagedLines(ctx, name, "j/1/Patient-1.ndjson", src)
	require.NoError(t, err)
	require.False(t, found, "uploaded but not marked: an upload cut short is never taken as done")

	require.NoError(t, a.MarkStaged(ctx, name, "j/1/Patient-1.ndjson", src, 2))
	got, lines, size, found, err := a.StagedLines(ctx, name, "j/1/Patient-1.ndjson", src)
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, u, got)
	require.Equal(t, int64(2), lines)
	require.Equal(t, int64(6), size)
	_, _, _, found, err = a.StagedLines(ctx, name, "j/1/Patient-1.ndjson", "https://ehr.example.com/bulk/2/Patient-1.ndjson")
	require.NoError(t, err)
	require.False(t, found, "marked for another source file")

	c, err := azurite.Client()
	require.NoError(t, err)
	props, err := c.ServiceClient().NewContainerClient(name).NewBlobClient("j/1/Patient-1.ndjson").GetProperties(ctx, nil)
	require.NoError(t, err)
	for _, v := range props.Metadata {
		require.NotContains(t, *v, "secret", "the source URL is kept as a hash, never with its signature")
	}
}
