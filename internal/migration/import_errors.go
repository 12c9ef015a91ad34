package migration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/fhir-migrator/fhir-migrator/internal/fhir"
)

const (
	// maxErrorLines bounds the errors an import's error summary quotes.
	maxErrorLines = 10
	// maxErrorMessage bounds one quoted error.
	maxErrorMessage = 300
	// maxErrorFileLine bounds one line read from an error file.
	maxErrorFileLine = 1 << 20
)

// keepImportErrors types a finished import's error files by their input (the server names them by
// OperationOutcome, not by the type that failed), writes them as the job's error-files blob and digests them.
func (s *Service) keepImportErrors(ctx context.Context, m *Migration, j *Job, files []fhir.ImportErrorFile) (string, *ErrorSummary, error) {
	ins, err := s.inputs(ctx, m, j)
	if err != nil {
		return "", nil, err
	}
	typed := importErrorFiles(ins, files)
	name := importErrorsName(m.ID, j.ID, len(j.Attempts))
	if err := s.putJSON(ctx, name, typed); err != nil {
		return "", nil, err
	}
	return name, s.summariseErrors(ctx, typed), nil
}

// importErrorFiles turns an import result's error entries into error files, typed by their input.
func importErrorFiles(ins []Input, files []fhir.ImportErrorFile) []ErrorFile {
	types := make(map[string]string, len(ins))
	for _, in := range ins {
		types[stripQuery(in.URL)] = in.Type
	}
	var out []ErrorFile
	for _, f := range files {
		typ := f.Type
		if t, ok := types[stripQuery(f.InputURL)]; ok && t != "" {
			typ = t
		}
		out = append(out, ErrorFile{Type: typ, Count: f.Count, URL: f.URL, InputURL: f.InputURL})
	}
	return out
}

// summariseErrors digests an import's error files: failed resources per type and the first errors, read from
// the files (a file that cannot be read leaves its counts and says why).
func (s *Service) summariseErrors(ctx context.Context, files []ErrorFile) *ErrorSummary {
	if len(files) == 0 {
		return nil
	}
	sum := &ErrorSummary{ByType: map[string]int64{}}
	var unread []string
	for _, f := range files {
		sum.ByType[f.Type] += f.Count
		if f.URL == "" || len(sum.First) >= maxErrorLines {
			continue
		}
		if err := s.readErrorLines(ctx, f, sum); err != nil {
			unread = append(unread, err.Error())
		}
	}
	if len(unread) > 0 {
		sum.Unread = truncate(strings.Join(unread, "; "), maxErrorMessage)
	}
	return sum
}

func (s *Service) readErrorLines(ctx context.Context, f ErrorFile, sum *ErrorSummary) error {
	rc, err := s.cfg.Staging.Open(ctx, stripQuery(f.URL))
	if err != nil {
		return fmt.Errorf("error file of %s: %w", f.Type, err)
	}
	defer func() { _ = rc.Close() }()
	sc := bufio.NewScanner(rc)
	sc.Buffer(make([]byte, 0, 64<<10), maxErrorFileLine)
	for sc.Scan() && len(sum.First) < maxErrorLines {
		text := strings.TrimSpace(sc.Text())
		if text == "" {
			continue
		}
		sum.First = append(sum.First, ErrorLine{Type: f.Type, InputURL: f.InputURL, Message: outcomeText([]byte(text))})
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("error file of %s: %w", f.Type, err)
	}
	return nil
}

// outcomeText is the diagnostics of an OperationOutcome line, else the line itself, shortened.
func outcomeText(line []byte) string {
	var oo struct {
		Issue []struct {
			Diagnostics string `json:"diagnostics"`
			Details     struct {
				Text string `json:"text"`
			} `json:"details"`
		} `json:"issue"`
	}
	if json.Unmarshal(line, &oo) == nil {
		var parts []string
		for _, is := range oo.Issue {
			if t := strings.TrimSpace(is.Diagnostics); t != "" {
				parts = append(parts, t)
			} else if t := strings.TrimSpace(is.Details.Text); t != "" {
				parts = append(parts, t)
			}
		}
		if len(parts) > 0 {
			return truncate(strings.Join(parts, "; "), maxErrorMessage)
		}
	}
	return truncate(strings.ToValidUTF8(string(line), "?"), maxErrorMessage)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
