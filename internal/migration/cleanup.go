package migration

import (
	"context"
	"errors"
	"fmt"

	"github.com/fhir-migrator/fhir-migrator/internal/staging"
)

// CleanupAfterVerify, as the start request's "cleanup", deletes the staged files once verification passed.
const CleanupAfterVerify = "after-verify"

// Cleanup states.
const (
	cleanupPending = "pending"
	cleanupDone    = "done"
	cleanupFailed  = "failed"
)

// maxRecordedBlobs bounds the deleted blobs named in the document; the counts cover them all.
const maxRecordedBlobs = 1000

// CleanupRequest is the body of POST /api/migrations/{id}/cleanup.
type CleanupRequest struct {
	// Force cleans up although verification did not pass.
	Force bool `json:"force"`
	// DryRun lists what would be deleted, with sizes, and deletes nothing.
	DryRun bool `json:"dryRun"`
	// ErrorFiles also deletes the destination's import error files (kept by default).
	ErrorFiles bool `json:"errorFiles"`
}

// CleanupResult answers a cleanup: what was (or, for a dry run, would be) deleted.
type CleanupResult struct {
	DryRun     bool         `json:"dryRun"`
	Container  string       `json:"container"`
	Blobs      []StagedBlob `json:"blobs"`
	ErrorFiles []StagedBlob `json:"errorFiles,omitempty"`
	Bytes      int64        `json:"bytes"`
	Migration  *Migration   `json:"migration,omitempty"`
}

// Cleanup deletes a migration's staged files (or, for a dry run, lists what it would delete).
func (s *Service) Cleanup(ctx context.Context, id string, req CleanupRequest) (*CleanupResult, error) {
	return s.cleanup(ctx, id, req)
}

func (s *Service) cleanup(ctx context.Context, id string, req CleanupRequest) (*CleanupResult, error) {
	m, _, err := s.load(ctx, id)
	if err != nil {
		return nil, err
	}
	if refusal := cleanable(m, req.Force); refusal != nil {
		return nil, refusal
	}
	cleaner := s.cfg.Staging
	container := m.Request.Container
	listed, err := cleaner.ListContainer(ctx, container, m.ID)
	if errors.Is(err, staging.ErrNotOwned) {
		return nil, conflict("container_not_owned", "container %s is not owned by migration %s; nothing was deleted", container, m.ID)
	}
	if err != nil {
		return nil, fmt.Errorf("list staged files of %s: %w", m.ID, err)
	}
	blobs := make([]StagedBlob, len(listed))
	for i, b := range listed {
		blobs[i] = StagedBlob{Name: b.Name, Size: b.Size}
	}
	res := &CleanupResult{DryRun: req.DryRun, Container: container, Blobs: blobs}
	for _, b := range blobs {
		res.Bytes += b.Size
	}
	if req.ErrorFiles {
		urls, err := s.stagedErrorFiles(ctx, m)
		if err != nil {
			return nil, fmt.Errorf("error files of %s: %w", m.ID, err)
		}
		for _, u := range urls {
			size, err := cleaner.BlobSize(ctx, u)
			if errors.Is(err, staging.ErrBlobNotFound) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("size of error file %s: %w", u, err)
			}
			res.ErrorFiles = append(res.ErrorFiles, StagedBlob{Name: u, Size: size})
			res.Bytes += size
		}
	}
	if req.DryRun {
		return res, nil
	}
	now := s.now()
	// The intent is saved first, so that a crash in the middle leaves a record to retry from.
	if _, _, err := s.update(ctx, id, func(m *Migration) (*effects, error) {
		// Decided again on the fresh document: a re-verify may have started since it was first read.
		if refusal := cleanable(m, req.Force); refusal != nil {
			return nil, refusal
		}
		m.Cleanup = &Cleanup{State: cleanupPending, RequestedAt: now, Forced: req.Force, Container: container}
		return nil, nil
	}); err != nil {
		return nil, fmt.Errorf("record cleanup of %s: %w", id, err)
	}
	delErr := cleaner.DeleteContainer(ctx, container, id)
	if delErr == nil {
		for _, f := range res.ErrorFiles {
			if err := cleaner.DeleteBlob(ctx, f.Name); err != nil && !errors.Is(err, staging.ErrBlobNotFound) {
				delErr = fmt.Errorf("delete error file %s: %w", f.Name, err)
				break
			}
		}
	}
	saved, _, err := s.update(ctx, id, func(m *Migration) (*effects, error) {
		c := &Cleanup{State: cleanupDone, RequestedAt: now, FinishedAt: timePtr(s.now()), Forced: req.Force,
			Container: container, Blobs: len(blobs), Bytes: res.Bytes, ErrorFiles: res.ErrorFiles}
		c.Deleted = blobs[:min(len(blobs), maxRecordedBlobs)]
		c.Truncated = len(blobs) > maxRecordedBlobs
		if delErr != nil {
			c.State, c.Error = cleanupFailed, delErr.Error()
		}
		m.Cleanup = c
		return nil, nil
	})
	if err != nil {
		return nil, fmt.Errorf("record cleanup of %s: %w", id, err)
	}
	if delErr != nil {
		return nil, fmt.Errorf("clean up %s: %w", id, delErr)
	}
	s.log.Info("staged files deleted", "migration", id, "container", container, "blobs", len(blobs),
		"errorFiles", len(res.ErrorFiles), "bytes", res.Bytes, "forced", req.Force)
	res.Migration = saved.served(s.now())
	return res, nil
}

// cleanable refuses to clean up a running migration, and one whose verification did not pass unless forced.
func cleanable(m *Migration, force bool) *Error {
	if !m.Status.Terminal() {
		return conflict("migration_running", "migration %s is %s: cancel it or wait until it ends", m.ID, m.Status)
	}
	if force || verificationPassed(m) {
		return nil
	}
	return conflict("verification_not_passed", "migration %s is %s and its verification did not pass; send {\"force\": true} to clean up anyway", m.ID, m.Status)
}

func verificationPassed(m *Migration) bool {
	v := m.Verification
	return m.Status == StatusCompleted && v != nil && !v.Skipped && v.CheckedAt != nil && v.Passed
}

// stagedErrorFiles are the destination's error files named by finished import jobs.
func (s *Service) stagedErrorFiles(ctx context.Context, m *Migration) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, j := range m.Jobs {
		if j.Kind != KindImport {
			continue
		}
		files, err := s.importErrorFilesOf(ctx, j)
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			if u := stripQuery(f.URL); u != "" && !seen[u] {
				seen[u] = true
				out = append(out, u)
			}
		}
	}
	return out, nil
}
