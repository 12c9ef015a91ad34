// Package store keeps the service's JSON documents (migrations, per-host slots) with optimistic concurrency:
// every write names the ETag it read, and a write that lost a race fails with ErrConflict.
package store

import (
	"context"
	"errors"
)

var (
	// ErrNotFound: no document with that name.
	ErrNotFound = errors.New("store: document not found")
	// ErrConflict: the ETag no longer matches (someone else wrote), or a create found the document existing.
	ErrConflict = errors.New("store: document changed concurrently")
)

// Item is one listed document.
type Item struct {
	Name     string
	ETag     string
	Metadata map[string]string
}

// Store is a flat namespace of documents, such as "migrations/{id}.json".
type Store interface {
	// Get returns the document and its ETag, or ErrNotFound.
	Get(ctx context.Context, name string) (data []byte, etag string, err error)
	// Put writes the document. etag "" means create-only (ErrConflict when it exists); otherwise the write
	// happens only if the stored ETag still equals etag (ErrConflict otherwise). metadata is listed by List
	// (keys lower-case ASCII letters and digits, values ASCII). It returns the new ETag.
	Put(ctx context.Context, name string, data []byte, etag string, metadata map[string]string) (string, error)
	// List returns the documents whose name starts with prefix, in name order, with their metadata.
	List(ctx context.Context, prefix string) ([]Item, error)
	// ListPage returns at most max of those documents after the marker ("" for the first page), and the marker of
	// the next page ("" when there is none). Markers are opaque.
	ListPage(ctx context.Context, prefix string, max int, marker string) ([]Item, string, error)
}
