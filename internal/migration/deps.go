package migration

import (
	"context"
	"encoding/json"
	"io"
	"net/url"

	"github.com/fhir-migrator/fhir-migrator/internal/fhir"
	"github.com/fhir-migrator/fhir-migrator/internal/staging"
)

// FHIRClient is what the engine needs of a FHIR server; *fhir.Client satisfies it.
type FHIRClient interface {
	BaseURL() string
	ResourceTypes(ctx context.Context) ([]string, error)
	ExportKickoff(ctx context.Context, r fhir.ExportRequest) (string, error)
	ExportStatus(ctx context.Context, contentLocation string) (*fhir.ExportStatus, error)
	ImportKickoff(ctx context.Context, r fhir.ImportRequest) (string, error)
	ImportStatus(ctx context.Context, contentLocation string) (*fhir.ImportStatus, error)
	CancelJob(ctx context.Context, contentLocation string) error
	Count(ctx context.Context, resourceType string, query url.Values) (int64, error)
	// HistoryCount counts every version of a type: current, older and deleted ones (_history?_summary=count).
	HistoryCount(ctx context.Context, resourceType string) (int64, error)
	// Search calls each with every resource of the search's pages (the ids and full checks).
	Search(ctx context.Context, resourceType string, query url.Values, each func(resource json.RawMessage) error) error
	Batch(ctx context.Context, entries []fhir.BatchEntry) (*fhir.BatchResult, error)
}

// ClientFactory returns the client of the FHIR server at baseURL (already checked by the URLPolicy).
type ClientFactory func(baseURL string) (FHIRClient, error)

// URLPolicy validates and normalises a FHIR base URL from a start request; *fhir.HostPolicy satisfies it.
type URLPolicy interface {
	CheckBaseURL(raw string) (string, error)
}

// Staging is the storage account the source exports into and the destination imports from: each migration owns
// one container there. *staging.Account implements it; its sentinel errors are the staging package's.
type Staging interface {
	// ClaimContainer creates the export container when missing and marks it as owned by migrationID;
	// staging.ErrContainerTaken when the container belongs to another migration (or holds data of unknown origin).
	ClaimContainer(ctx context.Context, container, migrationID string) error
	// ReleaseContainer undoes the claim of a start that stored no document (the container must still be empty).
	ReleaseContainer(ctx context.Context, container, migrationID string) error
	// Open streams one staged blob, addressed by its full URL as written in an export manifest.
	Open(ctx context.Context, blobURL string) (io.ReadCloser, error)
	// ListContainer lists the blobs of a migration's container with their sizes; staging.ErrNotOwned when the
	// container is not migrationID's; an empty list when it does not exist.
	ListContainer(ctx context.Context, container, migrationID string) ([]staging.BlobInfo, error)
	// DeleteContainer deletes a migration's container with everything in it; staging.ErrNotOwned when it is
	// not migrationID's; nil when it does not exist.
	DeleteContainer(ctx context.Context, container, migrationID string) error
	// BlobSize and DeleteBlob address one blob of the account by URL; a missing blob is staging.ErrBlobNotFound.
	BlobSize(ctx context.Context, blobURL string) (int64, error)
	DeleteBlob(ctx context.Context, blobURL string) error
}
