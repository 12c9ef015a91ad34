package migration

import (
	"context"
	"encoding/json"
	"io"
	"net/url"
	"time"

	"github.com/fhir-migrator/fhir-migrator/internal/fhir"
	"github.com/fhir-migrator/fhir-migrator/internal/staging"
)

// FHIRClient is what the engine needs of a FHIR server; *fhir.Client satisfies it.
type FHIRClient interface {
	BaseURL() string
	// Capabilities reads the server's CapabilityStatement: its resource types and fhirVersion.
	Capabilities(ctx context.Context) (fhir.Capabilities, error)
	ExportKickoff(ctx context.Context, r fhir.ExportRequest) (string, error)
	ExportStatus(ctx context.Context, contentLocation string) (*fhir.ExportStatus, error)
	ImportKickoff(ctx context.Context, r fhir.ImportRequest) (string, error)
	ImportStatus(ctx context.Context, contentLocation string) (*fhir.ImportStatus, error)
	CancelJob(ctx context.Context, contentLocation string) error
	Count(ctx context.Context, resourceType string, query url.Values) (int64, error)
	// HistoryCount counts the versions of a type (every type for "") whose own lastUpdated is in the range:
	// current, older and deleted ones (_history?_since&_before&_summary=count).
	HistoryCount(ctx context.Context, resourceType string, r fhir.HistoryRange) (int64, error)
	// ResourceHistoryCount counts every version of one resource (0 when the server holds nothing of it).
	ResourceHistoryCount(ctx context.Context, resourceType, id string) (int64, error)
	// History lists the versions in the range, a page at a time, oldest or newest first.
	History(ctx context.Context, resourceType string, r fhir.HistoryRange, oldestFirst bool, pageSize int, each func(fhir.HistoryEntry) error) error
	// Search calls each with every resource of the search's pages (the ids and full checks).
	Search(ctx context.Context, resourceType string, query url.Values, each func(resource json.RawMessage) error) error
	// SearchPage runs one page of a search (or the page a next link names) and answers its next link.
	SearchPage(ctx context.Context, resourceType string, query url.Values, next string) ([]json.RawMessage, string, error)
	// Read reads one resource: 200 with its version, 410 deleted, 404 absent.
	Read(ctx context.Context, resourceType, id string) (fhir.ReadResult, error)
	// VersionBefore reads the newest version of one resource dated before a time, as a read answers.
	VersionBefore(ctx context.Context, resourceType, id string, before time.Time) (fhir.ReadResult, error)
	// VRead reads one version: its lastUpdated, and whether the server holds it.
	VRead(ctx context.Context, resourceType, id, version string) (time.Time, bool, error)
	// Delete deletes one resource (hard: every version of it); PurgeHistory removes its older versions.
	Delete(ctx context.Context, resourceType, id string, hard bool) error
	PurgeHistory(ctx context.Context, resourceType, id string) error
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
