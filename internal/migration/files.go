package migration

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
)

// The per-file lists of a migration live in blobs beside its document, each written once before the document names
// it: an export's manifest (its files, and its error files), and an import's error files. The document keeps jobs
// and their totals, so it stays small whatever the number of files, and an import or copy job names its files as a
// range of its export's manifest.

// filesPrefix starts the names of a migration's file lists in the document store.
const filesPrefix = "files/"

func manifestName(id, jobID string, attempt int) string {
	return fmt.Sprintf("%s%s/%s-%d.manifest.json", filesPrefix, id, jobID, attempt)
}

func importErrorsName(id, jobID string, attempt int) string {
	return fmt.Sprintf("%s%s/%s-%d.errors.json", filesPrefix, id, jobID, attempt)
}

// manifestBlob is an export's manifest as kept: its output files and its error files.
type manifestBlob struct {
	Output []File      `json:"output"`
	Error  []ErrorFile `json:"error,omitempty"`
}

// putJSON writes v as the blob name, replacing an earlier write of the same step.
func (s *Service) putJSON(ctx context.Context, name string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", name, err)
	}
	return s.putReport(ctx, name, data)
}

func (s *Service) getJSON(ctx context.Context, name string, v any) error {
	data, _, err := s.cfg.Store.Get(ctx, name)
	if err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decode %s: %w", name, err)
	}
	return nil
}

// manifest reads an export job's manifest.
func (s *Service) manifest(ctx context.Context, j *Job) (*manifestBlob, error) {
	if j.Manifest == "" {
		return &manifestBlob{}, nil
	}
	var mb manifestBlob
	if err := s.getJSON(ctx, j.Manifest, &mb); err != nil {
		return nil, fmt.Errorf("manifest of %s: %w", j.ID, err)
	}
	return &mb, nil
}

// carried splits a manifest's output into what import jobs carry (in chunks of maxImportInputs) and what the
// copy job carries (SearchParameters, which cannot be imported).
func carried(output []File) (imports, copies []File) {
	for _, f := range output {
		if f.Type == typeSearchParameter {
			copies = append(copies, f)
		} else {
			imports = append(imports, f)
		}
	}
	return imports, copies
}

// inputs are the files an import or copy job carries: its range of its export's manifest.
func (s *Service) inputs(ctx context.Context, m *Migration, j *Job) ([]Input, error) {
	from := m.job(j.From)
	if from == nil {
		return nil, fmt.Errorf("job %s: its export %s is not in the migration", j.ID, j.From)
	}
	mb, err := s.manifest(ctx, from)
	if err != nil {
		return nil, err
	}
	imports, copies := carried(mb.Output)
	files := imports
	if j.Kind == KindCopy {
		files = copies
	}
	if j.First < 0 || j.First+j.Files > len(files) {
		return nil, fmt.Errorf("job %s carries files %d-%d of %s, which lists %d", j.ID, j.First, j.First+j.Files, from.Manifest, len(files))
	}
	out := make([]Input, 0, j.Files)
	for _, f := range files[j.First : j.First+j.Files] {
		out = append(out, Input{Type: f.Type, URL: stripQuery(f.URL)})
	}
	return out, nil
}

// exportedFiles walks the output files of the migration's finished exports in a stable order (the order of the
// jobs, then of each manifest), from file number first on, reading only the manifests it needs; each gets the
// file's number. The cursor of an ids check indexes this order.
func (s *Service) exportedFiles(ctx context.Context, m *Migration, first int, each func(i int, f File) (bool, error)) error {
	i := 0
	for _, j := range m.Jobs {
		if j.Kind != KindExport || j.State != JobDone {
			continue
		}
		if i+j.Files <= first {
			i += j.Files
			continue
		}
		mb, err := s.manifest(ctx, j)
		if err != nil {
			return err
		}
		for _, f := range mb.Output {
			if i >= first {
				more, err := each(i, f)
				if err != nil || !more {
					return err
				}
			}
			i++
		}
	}
	return nil
}

// exportedFileCount is the number of output files of the migration's finished exports.
func exportedFileCount(m *Migration) int {
	n := 0
	for _, j := range m.Jobs {
		if j.Kind == KindExport && j.State == JobDone {
			n += j.Files
		}
	}
	return n
}

// heldFiles are the staged files of copy jobs that kept their resources for later instead of writing them
// (InitialLoad): their ids are not looked up in the destination.
func (s *Service) heldFiles(ctx context.Context, m *Migration) (map[string]bool, error) {
	out := map[string]bool{}
	for _, j := range m.Jobs {
		if j.Kind != KindCopy || j.Bundle == "" {
			continue
		}
		ins, err := s.inputs(ctx, m, j)
		if err != nil {
			return nil, err
		}
		for _, in := range ins {
			out[in.URL] = true
		}
	}
	return out, nil
}

// importErrorFilesOf reads the error files an import job's result named.
func (s *Service) importErrorFilesOf(ctx context.Context, j *Job) ([]ErrorFile, error) {
	if j.ErrorFiles == "" {
		return nil, nil
	}
	var files []ErrorFile
	if err := s.getJSON(ctx, j.ErrorFiles, &files); err != nil {
		return nil, fmt.Errorf("error files of %s: %w", j.ID, err)
	}
	return files, nil
}

// typesOf lists the types of files, in their order.
func typesOf(files []File) []string {
	var out []string
	for _, f := range files {
		if !slices.Contains(out, f.Type) {
			out = append(out, f.Type)
		}
	}
	return out
}
