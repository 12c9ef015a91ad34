package fhirsim

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"regexp"
	"strings"
	"sync"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
)

// blobAccount is the storage account the service is configured with.
type blobAccount struct {
	client *azblob.Client
	// endpoint is the account's blob endpoint without a trailing slash, e.g. http://127.0.0.1:10000/devstoreaccount1.
	endpoint string
}

var containerNameRE = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9]|-[a-z0-9]){2,62}$`)

// validContainerName applies Azure's container naming rules.
func validContainerName(name string) bool {
	return len(name) <= 63 && containerNameRE.MatchString(name)
}

func (a *blobAccount) ensureContainer(ctx context.Context, name string) error {
	_, err := a.client.CreateContainer(ctx, name, nil)
	if err != nil && !bloberror.HasCode(err, bloberror.ContainerAlreadyExists) {
		return fmt.Errorf("create container %s: %w", name, err)
	}
	return nil
}

// upload writes a block blob and returns its URL.
func (a *blobAccount) upload(ctx context.Context, container, name string, data []byte) (string, error) {
	if _, err := a.client.UploadBuffer(ctx, container, name, data, nil); err != nil {
		return "", fmt.Errorf("upload %s/%s: %w", container, name, err)
	}
	return a.blobURL(container, name), nil
}

// blobURL is the blob's URL with "/" kept as the path separator, as the real services report it.
func (a *blobAccount) blobURL(container, name string) string {
	segs := strings.Split(name, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return a.endpoint + "/" + container + "/" + strings.Join(segs, "/")
}

// inAccount reports whether u names a blob of this account: a prefix match on the blob endpoint.
func (a *blobAccount) inAccount(u string) bool {
	return strings.HasPrefix(u, a.endpoint+"/")
}

// locate splits a blob URL of this account into container and blob name.
func (a *blobAccount) locate(u string) (container, name string, err error) {
	rest, ok := strings.CutPrefix(u, a.endpoint+"/")
	if !ok {
		return "", "", fmt.Errorf("%s is not in the storage account", u)
	}
	container, escaped, ok := strings.Cut(rest, "/")
	if !ok || container == "" || escaped == "" {
		return "", "", fmt.Errorf("%s does not name a blob", u)
	}
	name, err = url.PathUnescape(escaped)
	if err != nil {
		return "", "", fmt.Errorf("blob name in %s: %w", u, err)
	}
	return container, name, nil
}

// open streams a blob's content.
func (a *blobAccount) open(ctx context.Context, container, name string) (io.ReadCloser, error) {
	resp, err := a.client.DownloadStream(ctx, container, name, nil)
	if err != nil {
		return nil, fmt.Errorf("download %s/%s: %w", container, name, err)
	}
	return resp.Body, nil
}

// blobWorkers is how many blobs one job reads or writes at once.
const blobWorkers = 8

// inParallel runs do(0..n-1) on at most workers goroutines; it stops handing out work once ctx ends.
func inParallel(ctx context.Context, n, workers int, do func(i int)) {
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				do(i)
			}
		}()
	}
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
}
