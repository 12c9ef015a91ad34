// Package bulkfetch moves the output of an HL7 Bulk Data export from the server that holds it into the staging
// account, for sources whose files are not in the staging account already (the bulk-data kind): each file is
// streamed (memory bounded by the upload's blocks, whatever the file's size), with the source's token when the
// manifest says requiresAccessToken, resumed by Range after an interrupted download when the server honours it,
// retried whole otherwise, and counted by lines against the manifest's count. Error files are read into
// messages; the export is deleted on the server once staged, as the IG asks of a client.
//
// A token is sent to the source's own origin only, never across a redirect, as the FHIR client does.
package bulkfetch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// Defaults.
const (
	DefaultBlockSize   = 4 << 20
	DefaultConcurrency = 2
	DefaultAttempts    = 3
	DefaultResumes     = 5
	// maxErrorIssues bounds the messages read from an export's error files.
	maxErrorIssues = 100
	maxErrorBytes  = 1 << 20
)

// Uploader is where a file goes: staging.Account.UploadStream.
type Uploader interface {
	UploadStream(ctx context.Context, containerName, blobName string, r io.Reader, blockSize int64, concurrency int) (string, error)
}

// Marker is an Uploader that can record a finished file on its blob and find it again (staging.Account): a file
// staged by an earlier run (a poll that ran out of time after it) is not fetched again.
type Marker interface {
	MarkStaged(ctx context.Context, containerName, blobName, sourceURL string, lines int64) error
	StagedLines(ctx context.Context, containerName, blobName, sourceURL string) (blobURL string, lines, size int64, found bool, err error)
}

// Invalidator is a credential that can drop a token the server refused (internal/smart.Credential).
type Invalidator interface {
	Invalidate(token string)
}

// Config configures a Fetcher.
type Config struct {
	// SourceBaseURL is the source FHIR server: its origin alone receives the token.
	SourceBaseURL string
	// Credential gives the source's token (nil: no token is ever sent; requiresAccessToken files then fail).
	Credential azcore.TokenCredential
	// Scope is asked of the credential ("{origin}/.default" by default; a SMART credential ignores it).
	Scope    string
	Uploader Uploader
	// Allow, when set, must allow every URL fetched (the FHIR host allow-list).
	Allow func(*url.URL) bool
	// HTTPClient is used for every call (default: 30 s to the headers, no overall timeout: files are large).
	HTTPClient *http.Client
	// BlockSize and Concurrency bound the memory of one file's upload (their product).
	BlockSize   int64
	Concurrency int
	// Attempts is how often one file is tried whole; Resumes how often one attempt resumes by Range.
	Attempts, Resumes int
	Logger            *slog.Logger
	// Sleep waits between attempts (tests record instead).
	Sleep func(context.Context, time.Duration) error
}

// Fetcher stages one source's export files.
type Fetcher struct {
	cfg    Config
	origin string
	http   *http.Client
	log    *slog.Logger
}

// New checks cfg.
func New(cfg Config) (*Fetcher, error) {
	u, err := url.Parse(cfg.SourceBaseURL)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("bulkfetch: source base URL %q is not an http(s) URL", cfg.SourceBaseURL)
	}
	if cfg.Uploader == nil {
		return nil, errors.New("bulkfetch: an uploader is required")
	}
	f := &Fetcher{cfg: cfg, origin: u.Scheme + "://" + u.Host, http: cfg.HTTPClient, log: cfg.Logger}
	if f.cfg.Scope == "" {
		f.cfg.Scope = f.origin + "/.default"
	}
	if f.http == nil {
		f.http = &http.Client{Transport: &http.Transport{ResponseHeaderTimeout: 30 * time.Second, Proxy: http.ProxyFromEnvironment}}
	}
	// Never follow a redirect: the token would go with it, and a file URL that moves is the server's business.
	h := *f.http
	h.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	f.http = &h
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	if f.cfg.BlockSize <= 0 {
		f.cfg.BlockSize = DefaultBlockSize
	}
	if f.cfg.Concurrency <= 0 {
		f.cfg.Concurrency = DefaultConcurrency
	}
	if f.cfg.Attempts <= 0 {
		f.cfg.Attempts = DefaultAttempts
	}
	if f.cfg.Resumes < 0 {
		f.cfg.Resumes = 0
	} else if f.cfg.Resumes == 0 {
		f.cfg.Resumes = DefaultResumes
	}
	if f.cfg.Sleep == nil {
		f.cfg.Sleep = sleep
	}
	return f, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// File is one output file of a manifest. Count is the manifest's count, 0 when the server gave none.
type File struct {
	Type  string
	URL   string
	Count int64
}

// Result is what staging one file did.
type Result struct {
	// BlobURL is the staged blob.
	BlobURL string
	// Lines are the NDJSON lines written (non-blank), Bytes the bytes.
	Lines, Bytes int64
	// Attempts is how often the file was tried whole, Resumes how often the last attempt resumed by Range,
	// Renewals how often a 401 made it renew the token.
	Attempts, Resumes, Renewals int
	// Already: an earlier run staged it (Marker); nothing was fetched.
	Already bool
}

// ErrCountMismatch: the file's lines differ from the manifest's count, every attempt.
var ErrCountMismatch = errors.New("bulkfetch: lines differ from the manifest's count")

// Stage streams file into containerName/blobName, sending the token when requiresToken.
func (f *Fetcher) Stage(ctx context.Context, file File, requiresToken bool, containerName, blobName string) (Result, error) {
	u, err := f.checkURL(file.URL, requiresToken)
	if err != nil {
		return Result{}, err
	}
	marker, _ := f.cfg.Uploader.(Marker)
	if marker != nil {
		blobURL, lines, size, found, err := marker.StagedLines(ctx, containerName, blobName, file.URL)
		if err != nil {
			return Result{}, fmt.Errorf("bulkfetch: %w", err)
		}
		if found && (file.Count <= 0 || lines == file.Count) {
			return Result{BlobURL: blobURL, Lines: lines, Bytes: size, Already: true}, nil
		}
	}
	var res Result
	var last error
	for attempt := 1; attempt <= f.cfg.Attempts; attempt++ {
		res.Attempts = attempt
		if attempt > 1 {
			if err := f.cfg.Sleep(ctx, time.Duration(attempt-1)*time.Second); err != nil {
				return res, err
			}
		}
		r := &resumingReader{ctx: ctx, f: f, url: u, requiresToken: requiresToken, size: -1}
		blobURL, err := f.cfg.Uploader.UploadStream(ctx, containerName, blobName, r, f.cfg.BlockSize, f.cfg.Concurrency)
		r.close()
		res.Resumes, res.Renewals = r.resumes, res.Renewals+r.renewals
		if err == nil && file.Count > 0 && r.lines.n != file.Count {
			err = fmt.Errorf("%w: %s has %d lines, the manifest says %d", ErrCountMismatch, redact(u), r.lines.n, file.Count)
		}
		if err == nil && marker != nil {
			err = marker.MarkStaged(ctx, containerName, blobName, file.URL, r.lines.n)
		}
		if err == nil {
			res.BlobURL, res.Lines, res.Bytes = blobURL, r.lines.n, r.offset
			f.log.InfoContext(ctx, "bulk file staged", "type", file.Type, "url", redact(u), "lines", res.Lines,
				"bytes", res.Bytes, "attempts", attempt, "resumes", res.Resumes, "renewals", res.Renewals)
			return res, nil
		}
		last = err
		if ctx.Err() != nil || errors.Is(err, errRefused) {
			return res, err
		}
		f.log.WarnContext(ctx, "bulk file attempt failed", "url", redact(u), "attempt", attempt, "error", err)
	}
	return res, fmt.Errorf("bulkfetch: %s after %d attempts: %w", redact(u), f.cfg.Attempts, last)
}

// errRefused marks answers no retry changes (4xx other than 401 after a renewal, 408 and 429).
var errRefused = errors.New("refused")

// checkURL allows a file on the source's origin; one elsewhere is fetched without the token only when none is
// required.
func (f *Fetcher) checkURL(raw string, requiresToken bool) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
		return nil, fmt.Errorf("bulkfetch: the file URL %q is not an http(s) URL", raw)
	}
	if f.cfg.Allow != nil && !f.cfg.Allow(u) {
		return nil, fmt.Errorf("bulkfetch: the file %s is not on an allowed host: %w", redact(u), errRefused)
	}
	if requiresToken && u.Scheme+"://"+u.Host != f.origin {
		return nil, fmt.Errorf("bulkfetch: the file %s needs the token but is not on the source %s; the token is sent nowhere else", redact(u), f.origin)
	}
	return u, nil
}

// get sends one GET (with Range from offset when > 0), renewing the token once on a 401.
func (f *Fetcher) get(ctx context.Context, u *url.URL, requiresToken bool, offset int64, accept string) (*http.Response, int, error) {
	renewals := 0
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return nil, renewals, fmt.Errorf("bulkfetch: request: %w", err)
		}
		req.Header.Set("Accept", accept)
		if offset > 0 {
			req.Header.Set("Range", "bytes="+strconv.FormatInt(offset, 10)+"-")
		}
		token := ""
		if requiresToken {
			if token, err = f.token(ctx); err != nil {
				return nil, renewals, err
			}
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := f.http.Do(req)
		if err != nil {
			var uerr *url.Error
			if errors.As(err, &uerr) {
				err = uerr.Err
			}
			return nil, renewals, fmt.Errorf("bulkfetch: GET %s: %w", redact(u), err)
		}
		if resp.StatusCode == http.StatusUnauthorized && requiresToken && renewals == 0 {
			drain(resp)
			if inv, ok := f.cfg.Credential.(Invalidator); ok {
				inv.Invalidate(token)
			}
			renewals++
			f.log.InfoContext(ctx, "bulk file answered 401: token renewed", "url", redact(u))
			continue
		}
		return resp, renewals, nil
	}
}

func (f *Fetcher) token(ctx context.Context) (string, error) {
	if f.cfg.Credential == nil {
		return "", fmt.Errorf("bulkfetch: the manifest requires an access token and no credential is configured: %w", errRefused)
	}
	tok, err := f.cfg.Credential.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{f.cfg.Scope}})
	if err != nil {
		return "", fmt.Errorf("bulkfetch: token for %s: %w", f.origin, err)
	}
	return tok.Token, nil
}

// status turns an unexpected answer into an error; 4xx but 408 and 429 are final.
func status(u *url.URL, resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	drain(resp)
	err := fmt.Errorf("bulkfetch: GET %s answered %d: %s", redact(u), resp.StatusCode, strings.TrimSpace(string(body)))
	if resp.StatusCode/100 == 4 && resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests {
		return fmt.Errorf("%w (%w)", err, errRefused)
	}
	return err
}

func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
}

// redact drops a URL's query (a signed URL's signature) for logs and errors.
func redact(u *url.URL) string {
	c := *u
	if c.RawQuery != "" {
		c.RawQuery = "REDACTED"
	}
	return c.String()
}

// lineCounter counts non-blank NDJSON lines across writes.
type lineCounter struct {
	n       int64
	content bool // the current line has a non-blank byte
}

func (c *lineCounter) write(p []byte) {
	for _, b := range p {
		switch b {
		case '\n':
			if c.content {
				c.n++
			}
			c.content = false
		case ' ', '\t', '\r':
		default:
			c.content = true
		}
	}
}

func (c *lineCounter) finish() {
	if c.content {
		c.n++
		c.content = false
	}
}

// resumingReader reads a file from the server, resuming by Range after a broken body when the server honours it.
type resumingReader struct {
	ctx           context.Context
	f             *Fetcher
	url           *url.URL
	requiresToken bool

	body     io.ReadCloser
	offset   int64
	size     int64 // the whole file's size when known, else -1
	resumes  int
	renewals int
	lines    lineCounter
	done     bool
}

func (r *resumingReader) open() error {
	resp, renewals, err := r.f.get(r.ctx, r.url, r.requiresToken, r.offset, "application/fhir+ndjson")
	r.renewals += renewals
	if err != nil {
		return err
	}
	switch {
	case r.offset == 0 && resp.StatusCode == http.StatusOK:
		r.size = resp.ContentLength
	case r.offset > 0 && resp.StatusCode == http.StatusPartialContent:
		start, total, ok := contentRange(resp.Header.Get("Content-Range"))
		if !ok || start != r.offset {
			drain(resp)
			return fmt.Errorf("bulkfetch: GET %s: the range answer starts at %q, not byte %d", redact(r.url), resp.Header.Get("Content-Range"), r.offset)
		}
		if total >= 0 {
			r.size = total
		}
	case r.offset > 0 && resp.StatusCode == http.StatusOK:
		drain(resp)
		return fmt.Errorf("bulkfetch: GET %s: the server ignored the Range; the file is fetched again whole", redact(r.url))
	default:
		return status(r.url, resp)
	}
	r.body = resp.Body
	return nil
}

func (r *resumingReader) Read(p []byte) (int, error) {
	if r.done {
		return 0, io.EOF
	}
	if r.body == nil {
		if err := r.open(); err != nil {
			return 0, err
		}
	}
	n, err := r.body.Read(p)
	r.offset += int64(n)
	r.lines.write(p[:n])
	if err == io.EOF && (r.size < 0 || r.offset == r.size) {
		r.done = true
		r.lines.finish()
		return n, io.EOF
	}
	if err == nil {
		return n, nil
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	// A broken body: resume from the next byte if the server takes ranges, else fail the attempt.
	_ = r.body.Close()
	r.body = nil
	if r.ctx.Err() != nil || r.resumes >= r.f.cfg.Resumes {
		return n, fmt.Errorf("bulkfetch: GET %s broke at byte %d: %w", redact(r.url), r.offset, err)
	}
	r.resumes++
	r.f.log.InfoContext(r.ctx, "bulk file download broke: resuming", "url", redact(r.url), "offset", r.offset, "error", err)
	return n, nil
}

func (r *resumingReader) close() {
	if r.body != nil {
		_ = r.body.Close()
		r.body = nil
	}
}

// contentRange reads "bytes start-end/total" (total may be "*": -1).
func contentRange(h string) (start, total int64, ok bool) {
	spec, found := strings.CutPrefix(h, "bytes ")
	if !found {
		return 0, 0, false
	}
	rng, tot, found := strings.Cut(spec, "/")
	a, _, found2 := strings.Cut(rng, "-")
	if !found || !found2 {
		return 0, 0, false
	}
	start, err := strconv.ParseInt(a, 10, 64)
	if err != nil {
		return 0, 0, false
	}
	total = -1
	if tot != "*" {
		if total, err = strconv.ParseInt(tot, 10, 64); err != nil {
			return 0, 0, false
		}
	}
	return start, total, true
}

// ReadErrors reads an export's error files (NDJSON OperationOutcomes) into their messages, at most 100 in all.
func (f *Fetcher) ReadErrors(ctx context.Context, files []File, requiresToken bool) ([]string, error) {
	var out []string
	for _, file := range files {
		if len(out) >= maxErrorIssues {
			break
		}
		u, err := f.checkURL(file.URL, requiresToken)
		if err != nil {
			return out, err
		}
		resp, _, err := f.get(ctx, u, requiresToken, 0, "application/fhir+ndjson")
		if err != nil {
			return out, err
		}
		if resp.StatusCode != http.StatusOK {
			return out, status(u, resp)
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBytes))
		drain(resp)
		if err != nil {
			return out, fmt.Errorf("bulkfetch: read %s: %w", redact(u), err)
		}
		for line := range bytes.SplitSeq(body, []byte("\n")) {
			if len(bytes.TrimSpace(line)) == 0 || len(out) >= maxErrorIssues {
				continue
			}
			var oo struct {
				Issue []struct {
					Severity    string `json:"severity"`
					Code        string `json:"code"`
					Diagnostics string `json:"diagnostics"`
					Details     struct {
						Text string `json:"text"`
					} `json:"details"`
				} `json:"issue"`
			}
			if json.Unmarshal(line, &oo) != nil {
				out = append(out, "an error file line that is not an OperationOutcome")
				continue
			}
			for _, is := range oo.Issue {
				msg := is.Diagnostics
				if msg == "" {
					msg = is.Details.Text
				}
				out = append(out, fmt.Sprintf("%s %s: %s", is.Severity, is.Code, msg))
			}
		}
	}
	return out, nil
}

// Delete tells the server the client is done with the export (DELETE on its status URL): 2xx, or 404 for an
// export already gone, are success.
func (f *Fetcher) Delete(ctx context.Context, statusURL string, withToken bool) error {
	u, err := f.checkURL(statusURL, withToken)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, u.String(), nil)
	if err != nil {
		return fmt.Errorf("bulkfetch: request: %w", err)
	}
	req.Header.Set("Accept", "application/fhir+json")
	if withToken {
		token, err := f.token(ctx)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := f.http.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return fmt.Errorf("bulkfetch: DELETE %s: %w", redact(u), err)
	}
	drain(resp)
	if resp.StatusCode/100 != 2 && resp.StatusCode != http.StatusNotFound {
		return fmt.Errorf("bulkfetch: DELETE %s answered %d", redact(u), resp.StatusCode)
	}
	return nil
}
