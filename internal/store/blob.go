package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
)

// Blob stores documents as block blobs in one container; the blob ETag is the document ETag, and writes use
// If-Match / If-None-Match so concurrent writers cannot lose each other's updates.
type Blob struct {
	container *container.Client
}

// NewBlob returns a store over container, creating the container when it does not exist.
func NewBlob(ctx context.Context, client *azblob.Client, containerName string) (*Blob, error) {
	cc := client.ServiceClient().NewContainerClient(containerName)
	if _, err := cc.Create(ctx, nil); err != nil && !bloberror.HasCode(err, bloberror.ContainerAlreadyExists) {
		return nil, fmt.Errorf("create document container %s: %w", containerName, err)
	}
	return &Blob{container: cc}, nil
}

// Get implements Store.
func (b *Blob) Get(ctx context.Context, name string) ([]byte, string, error) {
	resp, err := b.container.NewBlobClient(name).DownloadStream(ctx, nil)
	if err != nil {
		if bloberror.HasCode(err, bloberror.BlobNotFound, bloberror.ContainerNotFound) {
			return nil, "", ErrNotFound
		}
		return nil, "", fmt.Errorf("read document %s: %w", name, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, "", fmt.Errorf("read document %s: %w", name, err)
	}
	if resp.ETag == nil {
		return nil, "", fmt.Errorf("read document %s: no ETag in the answer", name)
	}
	return data, quoteETag(string(*resp.ETag)), nil
}

// Put implements Store.
func (b *Blob) Put(ctx context.Context, name string, data []byte, etag string, metadata map[string]string) (string, error) {
	cond := &blob.ModifiedAccessConditions{}
	if etag == "" {
		cond.IfNoneMatch = to.Ptr(azcore.ETagAny)
	} else {
		cond.IfMatch = to.Ptr(azcore.ETag(etag))
	}
	meta := make(map[string]*string, len(metadata))
	for k, v := range metadata {
		meta[k] = to.Ptr(v)
	}
	resp, err := b.container.NewBlockBlobClient(name).Upload(ctx, streaming.NopCloser(bytes.NewReader(data)), &blockblob.UploadOptions{
		HTTPHeaders:      &blob.HTTPHeaders{BlobContentType: to.Ptr("application/json")},
		Metadata:         meta,
		AccessConditions: &blob.AccessConditions{ModifiedAccessConditions: cond},
	})
	if err != nil {
		if lostRace(err, etag) {
			return "", ErrConflict
		}
		return "", fmt.Errorf("write document %s: %w", name, err)
	}
	if resp.ETag == nil {
		return "", fmt.Errorf("write document %s: no ETag in the answer", name)
	}
	return quoteETag(string(*resp.ETag)), nil
}

// List implements Store.
func (b *Blob) List(ctx context.Context, prefix string) ([]Item, error) {
	var items []Item
	pager := b.container.NewListBlobsFlatPager(&container.ListBlobsFlatOptions{
		Prefix:  &prefix,
		Include: container.ListBlobsInclude{Metadata: true},
	})
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list documents %q: %w", prefix, err)
		}
		items = append(items, blobItems(page.Segment.BlobItems)...)
	}
	return items, nil
}

// ListPage implements Store with the service's own paging: its marker is the page's NextMarker.
func (b *Blob) ListPage(ctx context.Context, prefix string, max int, marker string) ([]Item, string, error) {
	opts := &container.ListBlobsFlatOptions{Prefix: &prefix, Include: container.ListBlobsInclude{Metadata: true},
		MaxResults: to.Ptr(int32(max))}
	if marker != "" {
		opts.Marker = &marker
	}
	page, err := b.container.NewListBlobsFlatPager(opts).NextPage(ctx)
	if err != nil {
		return nil, "", fmt.Errorf("list documents %q: %w", prefix, err)
	}
	next := ""
	if page.NextMarker != nil {
		next = *page.NextMarker
	}
	return blobItems(page.Segment.BlobItems), next, nil
}

func blobItems(blobs []*container.BlobItem) []Item {
	var items []Item
	for _, it := range blobs {
		if it.Name == nil {
			continue
		}
		item := Item{Name: *it.Name, Metadata: map[string]string{}}
		if it.Properties != nil && it.Properties.ETag != nil {
			item.ETag = quoteETag(string(*it.Properties.ETag))
		}
		for k, v := range it.Metadata {
			if v != nil {
				item.Metadata[strings.ToLower(k)] = *v
			}
		}
		items = append(items, item)
	}
	return items
}

// lostRace tells a write refused by its condition (someone else wrote first, or a create found the blob) from any
// other refusal. Only the condition is a conflict to retry: another 409 (a full store, a lease) is an error, which
// must not be retried as a race and hidden behind "changed concurrently".
func lostRace(err error, etag string) bool {
	if bloberror.HasCode(err, bloberror.ConditionNotMet, bloberror.BlobAlreadyExists) {
		return true
	}
	if etag != "" && bloberror.HasCode(err, bloberror.BlobNotFound) {
		return true // If-Match on a blob deleted meanwhile
	}
	var re *azcore.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusPreconditionFailed && re.ErrorCode == ""
}

// quoteETag gives every ETag one form: listings return it bare, reads and writes quoted.
func quoteETag(tag string) string {
	if strings.HasPrefix(tag, `"`) || strings.HasPrefix(tag, `W/"`) {
		return tag
	}
	return `"` + tag + `"`
}
