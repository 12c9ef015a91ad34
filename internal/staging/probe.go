package staging

import (
	"context"
	"fmt"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
)

// What an assessment (internal/assess) needs of the staging account besides what a migration does: whether a
// container exists (a probe export's), and one small blob written into a container it owns, read back with Open.

// ContainerExists reports whether the container exists.
func (a *Account) ContainerExists(ctx context.Context, name string) (bool, error) {
	_, err := a.client.ServiceClient().NewContainerClient(name).GetProperties(ctx, nil)
	switch {
	case bloberror.HasCode(err, bloberror.ContainerNotFound, bloberror.ContainerBeingDeleted):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("read staging container %s: %w", name, err)
	}
	return true, nil
}

// PutBlob writes data as the blob name of migrationID's container and answers its URL (as Open takes it).
func (a *Account) PutBlob(ctx context.Context, container, name, migrationID string, data []byte) (string, error) {
	exists, err := a.checkOwner(ctx, container, migrationID)
	if err != nil {
		return "", err
	}
	if !exists {
		return "", fmt.Errorf("staging container %s does not exist", container)
	}
	if _, err := a.client.UploadBuffer(ctx, container, name, data, nil); err != nil {
		return "", fmt.Errorf("write %s/%s: %w", container, name, err)
	}
	return a.client.ServiceClient().NewContainerClient(container).NewBlobClient(name).URL(), nil
}
