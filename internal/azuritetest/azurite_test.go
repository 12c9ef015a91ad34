package azuritetest

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

var azurite *Azurite

func TestMain(m *testing.M) { Main(m, &azurite) }

func TestBlobRoundTrip(t *testing.T) {
	ctx := context.Background()
	require.True(t, strings.HasPrefix(azurite.BlobEndpoint, "http://127.0.0.1:"))
	name, err := azurite.CreateContainer(ctx, "roundtrip")
	require.NoError(t, err)
	c, err := azurite.Client()
	require.NoError(t, err)
	_, err = c.UploadBuffer(ctx, name, "a/b.ndjson", []byte("{}\n"), nil)
	require.NoError(t, err)
	resp, err := c.DownloadStream(ctx, name, "a/b.ndjson", nil)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, "{}\n", string(body))
	_, err = c.DownloadStream(ctx, name, "missing", nil)
	require.Error(t, err)
}

// TestStartWithMemoryBoundsTheContent: the memory bound is Azurite's: past it, a write is refused.
func TestStartWithMemoryBoundsTheContent(t *testing.T) {
	a, err := StartWithMemory(1)
	require.NoError(t, err)
	defer a.Stop()
	ctx := context.Background()
	name, err := a.CreateContainer(ctx, "small")
	require.NoError(t, err)
	c, err := a.Client()
	require.NoError(t, err)
	_, err = c.UploadBuffer(ctx, name, "fits", make([]byte, 256<<10), nil)
	require.NoError(t, err)
	_, err = c.UploadBuffer(ctx, name, "too-big", make([]byte, 2<<20), nil)
	require.ErrorContains(t, err, "MemoryExtentStoreAtSizeLimit")
}
