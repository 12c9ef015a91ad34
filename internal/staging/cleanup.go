package staging

import (
	"context"
	"errors"
	"fmt"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
)

var (
	// ErrNotOwned: the container is not owned by the migration that asked (cleanup leaves it alone).
	ErrNotOwned = errors.New("staging: container is not owned by this migration")
	// ErrBlobNotFound: no such blob.
	ErrBlobNotFound = errors.New("staging: blob not found")
)

// BlobInfo is one listed blob.
type BlobInfo struct {
	Name string
	Size int64
}

// checkOwner fails with ErrNotOwned unless the container's owner metadata names migrationID; exists is false when
// there is no such container.
func (a *Account) checkOwner(ctx context.Context, name, migrationID string) (exists bool, err error) {
	props, err := a.client.ServiceClient().NewContainerClient(name).GetProperties(ctx, nil)
	if bloberror.HasCode(err, bloberror.ContainerNotFound, bloberror.ContainerBeingDeleted) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read staging container %s: %w", name, err)
	}
	if owner, ok := ownerOf(props.Metadata); ok && owner == migrationID {
		return true, nil
	}
	return true, fmt.Errorf("%w: %s is not %s's", ErrNotOwned, name, migrationID)
}

// ListContainer lists every blob of migrationID's container with its size; a missing container lists nothing.
func (a *Account) ListContainer(ctx context.Context, name, migrationID string) ([]BlobInfo, error) {
	exists, err := a.checkOwner(ctx, name, migrationID)
	if err != nil || !exists {
		return nil, err
	}
	var out []BlobInfo
	pager := a.client.ServiceClient().NewContainerClient(name).NewListBlobsFlatPager(&container.ListBlobsFlatOptions{})
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if bloberror.HasCode(err, bloberror.ContainerNotFound, bloberror.ContainerBeingDeleted) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("list staging container %s: %w", name, err)
		}
		for _, it := range page.Segment.BlobItems {
			if it.Name == nil {
				continue
			}
			info := BlobInfo{Name: *it.Name}
			if it.Properties != nil && it.Properties.ContentLength != nil {
				info.Size = *it.Properties.ContentLength
			}
			out = append(out, info)
		}
	}
	return out, nil
}

// DeleteContainer deletes migrationID's container with every blob in it (orphans of retried kick-offs too);
// a missing container is already deleted.
func (a *Account) DeleteContainer(ctx context.Context, name, migrationID string) error {
	exists, err := a.checkOwner(ctx, name, migrationID)
	if err != nil || !exists {
		return err
	}
	_, err = a.client.DeleteContainer(ctx, name, nil)
	if err != nil && !bloberror.HasCode(err, bloberror.ContainerNotFound, bloberror.ContainerBeingDeleted) {
		return fmt.Errorf("delete staging container %s: %w", name, err)
	}
	return nil
}

// BlobSize is the size of one blob of this account, addressed by URL.
func (a *Account) BlobSize(ctx context.Context, blobURL string) (int64, error) {
	c, b, err := a.Locate(blobURL)
	if err != nil {
		return 0, err
	}
	props, err := a.client.ServiceClient().NewContainerClient(c).NewBlobClient(b).GetProperties(ctx, nil)
	if bloberror.HasCode(err, bloberror.BlobNotFound, bloberror.ContainerNotFound) {
		return 0, fmt.Errorf("%w: %s/%s", ErrBlobNotFound, c, b)
	}
	if err != nil {
		return 0, fmt.Errorf("read %s/%s: %w", c, b, err)
	}
	if props.ContentLength == nil {
		return 0, nil
	}
	return *props.ContentLength, nil
}

// DeleteBlob deletes one blob of this account, addressed by URL.
func (a *Account) DeleteBlob(ctx context.Context, blobURL string) error {
	c, b, err := a.Locate(blobURL)
	if err != nil {
		return err
	}
	_, err = a.client.DeleteBlob(ctx, c, b, nil)
	if bloberror.HasCode(err, bloberror.BlobNotFound, bloberror.ContainerNotFound) {
		return fmt.Errorf("%w: %s/%s", ErrBlobNotFound, c, b)
	}
	if err != nil {
		return fmt.Errorf("delete %s/%s: %w", c, b, err)
	}
	return nil
}
