package assess

import (
	"context"
	"errors"
	"io"
)

// noStaging is a staging account none of whose calls work.
type noStaging struct{}

var errNoStaging = errors.New("no staging account in this test")

func (noStaging) Endpoint() string                                      { return "https://acct.blob.core.windows.net" }
func (noStaging) ContainerExists(context.Context, string) (bool, error) { return false, errNoStaging }
func (noStaging) ClaimContainer(context.Context, string, string) error  { return errNoStaging }
func (noStaging) PutBlob(context.Context, string, string, string, []byte) (string, error) {
	return "", errNoStaging
}
func (noStaging) Open(context.Context, string) (io.ReadCloser, error)   { return nil, errNoStaging }
func (noStaging) DeleteContainer(context.Context, string, string) error { return errNoStaging }
