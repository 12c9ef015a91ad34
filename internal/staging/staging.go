// Package staging is the handler's access to the storage account where the source exports its NDJSON and the
// destination imports it from: each migration owns one container there.
package staging

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
)

// OwnerKey is the container metadata key naming the migration that owns a staging container.
const OwnerKey = "fhirmigration"

// ErrContainerTaken: the container belongs to another migration, or holds data of unknown origin.
var ErrContainerTaken = errors.New("staging: container belongs to another migration")

// Account is one staging storage account.
type Account struct {
	client   *azblob.Client
	endpoint *url.URL // the blob service endpoint, e.g. https://acct.blob.core.windows.net/ or Azurite's path-style one
}

// New returns the staging account behind client.
func New(client *azblob.Client) (*Account, error) {
	u, err := url.Parse(client.URL())
	if err != nil {
		return nil, fmt.Errorf("staging endpoint %q: %w", client.URL(), err)
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
	}
	return &Account{client: client, endpoint: u}, nil
}

// Endpoint is the account's blob endpoint with a trailing slash.
func (a *Account) Endpoint() string { return a.endpoint.String() }

// ClaimContainer creates the container when missing and marks it as migrationID's. An existing container is
// accepted when it is already migrationID's, or when it is empty and unowned (then claimed).
func (a *Account) ClaimContainer(ctx context.Context, name, migrationID string) error {
	cc := a.client.ServiceClient().NewContainerClient(name)
	_, err := cc.Create(ctx, &container.CreateOptions{Metadata: map[string]*string{OwnerKey: to.Ptr(migrationID)}})
	if err == nil {
		return nil
	}
	if !bloberror.HasCode(err, bloberror.ContainerAlreadyExists) {
		return fmt.Errorf("create staging container %s: %w", name, err)
	}
	props, err := cc.GetProperties(ctx, nil)
	if err != nil {
		return fmt.Errorf("read staging container %s: %w", name, err)
	}
	if owner, ok := ownerOf(props.Metadata); ok {
		if owner == migrationID {
			return nil
		}
		return fmt.Errorf("%w: %s is owned by %s", ErrContainerTaken, name, owner)
	}
	pager := cc.NewListBlobsFlatPager(&container.ListBlobsFlatOptions{MaxResults: to.Ptr[int32](1)})
	page, err := pager.NextPage(ctx)
	if err != nil {
		return fmt.Errorf("list staging container %s: %w", name, err)
	}
	if len(page.Segment.BlobItems) > 0 {
		return fmt.Errorf("%w: %s already holds blobs of unknown origin", ErrContainerTaken, name)
	}
	if _, err := cc.SetMetadata(ctx, &container.SetMetadataOptions{Metadata: map[string]*string{OwnerKey: to.Ptr(migrationID)}}); err != nil {
		return fmt.Errorf("claim staging container %s: %w", name, err)
	}
	return nil
}

// ReleaseContainer undoes migrationID's claim of an empty container (its start stored no document): the owner
// mark is removed, so the name can be claimed again. A container owned by another migration, or holding blobs,
// is left as it is.
func (a *Account) ReleaseContainer(ctx context.Context, name, migrationID string) error {
	cc := a.client.ServiceClient().NewContainerClient(name)
	props, err := cc.GetProperties(ctx, nil)
	if err != nil {
		return fmt.Errorf("read staging container %s: %w", name, err)
	}
	if owner, ok := ownerOf(props.Metadata); !ok || owner != migrationID {
		return fmt.Errorf("%w: %s is not %s's", ErrNotOwned, name, migrationID)
	}
	page, err := cc.NewListBlobsFlatPager(&container.ListBlobsFlatOptions{MaxResults: to.Ptr[int32](1)}).NextPage(ctx)
	if err != nil {
		return fmt.Errorf("list staging container %s: %w", name, err)
	}
	if len(page.Segment.BlobItems) > 0 {
		return fmt.Errorf("staging container %s already holds blobs: kept claimed", name)
	}
	if _, err := cc.SetMetadata(ctx, &container.SetMetadataOptions{Metadata: map[string]*string{}}); err != nil {
		return fmt.Errorf("release staging container %s: %w", name, err)
	}
	return nil
}

// ownerOf reads the owning migration from container metadata, whose keys come back in any case.
func ownerOf(metadata map[string]*string) (string, bool) {
	for k, v := range metadata {
		if strings.EqualFold(k, OwnerKey) && v != nil {
			return *v, true
		}
	}
	return "", false
}

// Locate splits a blob URL of this account into container and blob name; URLs elsewhere are refused, so a
// manifest cannot make the handler read another account.
func (a *Account) Locate(blobURL string) (containerName, blobName string, err error) {
	u, err := url.Parse(blobURL)
	if err != nil {
		return "", "", fmt.Errorf("blob url %q: %w", blobURL, err)
	}
	if u.Scheme != a.endpoint.Scheme || u.Host != a.endpoint.Host || !strings.HasPrefix(u.Path, a.endpoint.Path) || u.RawQuery != "" {
		return "", "", fmt.Errorf("blob url %q is not in the staging account %s", blobURL, a.endpoint)
	}
	rest := strings.TrimPrefix(u.Path, a.endpoint.Path)
	containerName, blobName, ok := strings.Cut(rest, "/")
	if !ok || containerName == "" || blobName == "" {
		return "", "", fmt.Errorf("blob url %q names no blob", blobURL)
	}
	// A dot segment could step out of the container (or the account) once a server normalises the path.
	for _, seg := range strings.Split(rest, "/") {
		if seg == "." || seg == ".." {
			return "", "", fmt.Errorf("blob url %q has a dot segment", blobURL)
		}
	}
	return containerName, blobName, nil
}

// Open streams one blob of this account, addressed by its full URL as written in an export manifest.
func (a *Account) Open(ctx context.Context, blobURL string) (io.ReadCloser, error) {
	c, b, err := a.Locate(blobURL)
	if err != nil {
		return nil, err
	}
	resp, err := a.client.DownloadStream(ctx, c, b, nil)
	if bloberror.HasCode(err, bloberror.BlobNotFound, bloberror.ContainerNotFound) {
		return nil, fmt.Errorf("%w: %s/%s", ErrBlobNotFound, c, b)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s/%s: %w", c, b, err)
	}
	return resp.Body, nil
}

// UploadStream writes r to a block blob in blocks of blockSize bytes, at most concurrency in flight, so memory is
// bounded by their product whatever the blob's size; an existing blob is replaced when the upload commits, and a
// failed upload leaves no blob behind. It returns the blob's URL.
func (a *Account) UploadStream(ctx context.Context, containerName, blobName string, r io.Reader, blockSize int64, concurrency int) (string, error) {
	_, err := a.client.UploadStream(ctx, containerName, blobName, r, &azblob.UploadStreamOptions{
		BlockSize: blockSize, Concurrency: concurrency,
	})
	if err != nil {
		return "", fmt.Errorf("upload %s/%s: %w", containerName, blobName, err)
	}
	u := *a.endpoint
	u.Path += containerName + "/" + blobName
	return u.String(), nil
}

// Metadata keys of a blob streamed from a source server (MarkStaged): a hash of the file's URL at the source
// (never the URL itself: a signed URL would leave its signature here) and its NDJSON line count.
const (
	stagedSourceKey = "fhirmigrationsource"
	stagedLinesKey  = "fhirmigrationlines"
)

// MarkStaged records on a finished upload which source file it holds and how many lines it has, so that a later
// run finds it done (StagedLines) instead of fetching it again.
func (a *Account) MarkStaged(ctx context.Context, containerName, blobName, sourceURL string, lines int64) error {
	bc := a.client.ServiceClient().NewContainerClient(containerName).NewBlobClient(blobName)
	_, err := bc.SetMetadata(ctx, map[string]*string{
		stagedSourceKey: to.Ptr(sourceHash(sourceURL)), stagedLinesKey: to.Ptr(strconv.FormatInt(lines, 10)),
	}, nil)
	if err != nil {
		return fmt.Errorf("mark %s/%s staged: %w", containerName, blobName, err)
	}
	return nil
}

// StagedLines reports a blob that MarkStaged recorded for the file at sourceURL: its URL, line count and size;
// found is false when the blob is missing or holds something else.
func (a *Account) StagedLines(ctx context.Context, containerName, blobName, sourceURL string) (blobURL string, lines, size int64, found bool, err error) {
	bc := a.client.ServiceClient().NewContainerClient(containerName).NewBlobClient(blobName)
	props, err := bc.GetProperties(ctx, nil)
	if bloberror.HasCode(err, bloberror.BlobNotFound, bloberror.ContainerNotFound) {
		return "", 0, 0, false, nil
	}
	if err != nil {
		return "", 0, 0, false, fmt.Errorf("read %s/%s: %w", containerName, blobName, err)
	}
	var src, n string
	for k, v := range props.Metadata { // keys come back in any case
		switch {
		case v == nil:
		case strings.EqualFold(k, stagedSourceKey):
			src = *v
		case strings.EqualFold(k, stagedLinesKey):
			n = *v
		}
	}
	lines, perr := strconv.ParseInt(n, 10, 64)
	if src != sourceHash(sourceURL) || perr != nil || lines < 0 {
		return "", 0, 0, false, nil
	}
	if props.ContentLength != nil {
		size = *props.ContentLength
	}
	u := *a.endpoint
	u.Path += containerName + "/" + blobName
	return u.String(), lines, size, true, nil
}

func sourceHash(sourceURL string) string {
	sum := sha256.Sum256([]byte(sourceURL))
	return hex.EncodeToString(sum[:])
}
