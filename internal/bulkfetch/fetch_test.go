package bulkfetch_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/bulkfetch"
	"github.com/fhir-migrator/fhir-migrator/internal/fhirsim"
	"github.com/fhir-migrator/fhir-migrator/internal/smart"
)

// memUploader keeps uploads in memory, reading them in small pieces as a block upload does.
type memUploader struct {
	mu    sync.Mutex
	blobs map[string][]byte
}

func (m *memUploader) UploadStream(_ context.Context, c, b string, r io.Reader, blockSize int64, _ int) (string, error) {
	var buf bytes.Buffer
	chunk := make([]byte, min(blockSize, 64))
	for {
		n, err := r.Read(chunk)
		buf.Write(chunk[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", err
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.blobs[c+"/"+b] = buf.Bytes()
	return "http://staging/" + c + "/" + b, nil
}

type env struct {
	sim  *fhirsim.Server
	base string
	cred *smart.Credential
	up   *memUploader
	f    *bulkfetch.Fetcher
}

func start(t *testing.T, opts ...fhirsim.Option) *env {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	der, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "k.pem")
	require.NoError(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600))
	var raw [][]byte
	for i := range 40 {
		raw = append(raw, fmt.Appendf(nil, `{"resourceType":"Patient","id":"p%02d","meta":{"versionId":"1","lastUpdated":"2024-01-02T00:00:00.000Z"}}`, i))
	}
	s := fhirsim.New(append([]fhirsim.Option{fhirsim.WithFlavor(fhirsim.FlavorBulkData), fhirsim.WithResources(raw...),
		fhirsim.WithSMARTClient("c", &key.PublicKey), fhirsim.WithRollover(20), fhirsim.WithPollsBeforeDone(0),
		fhirsim.WithJobDelay(0)}, opts...)...)
	hs := httptest.NewServer(s)
	t.Cleanup(func() { hs.Close(); s.Close() })
	signer, err := smart.NewFileSigner(path)
	require.NoError(t, err)
	cred, err := smart.New(smart.Config{FHIRBaseURL: hs.URL, ClientID: "c", Signer: signer})
	require.NoError(t, err)
	up := &memUploader{blobs: map[string][]byte{}}
	f, err := bulkfetch.New(bulkfetch.Config{SourceBaseURL: hs.URL, Credential: cred, Uploader: up,
		Sleep: func(context.Context, time.Duration) error { return nil }})
	require.NoError(t, err)
	return &env{sim: s, base: hs.URL, cred: cred, up: up, f: f}
}

type manifest struct {
	RequiresAccessToken bool             `json:"requiresAccessToken"`
	Output              []bulkfetch.File `json:"output"`
	Error               []bulkfetch.File `json:"error"`
}

// export runs a system export on the simulator (with its own token) and returns the status URL and manifest.
func (e *env) export(t *testing.T) (string, manifest) {
	t.Helper()
	tok, err := e.cred.GetToken(t.Context(), policyOpts())
	require.NoError(t, err)
	do := func(u string, h map[string]string) *http.Response {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+tok.Token)
		for k, v := range h {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		t.Cleanup(func() { _ = resp.Body.Close() })
		return resp
	}
	resp := do(e.base+"/$export", map[string]string{"Accept": "application/fhir+json", "Prefer": "respond-async"})
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	loc := resp.Header.Get("Content-Location")
	for range 2000 {
		if resp = do(loc, nil); resp.StatusCode != http.StatusAccepted {
			break
		}
		time.Sleep(5 * time.Millisecond) // pacing the poll loop, not an assertion
	}
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var m manifest
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&m))
	require.True(t, m.RequiresAccessToken)
	return loc, m
}

func TestStageResumesAnInterruptedDownloadAndRenewsOn401(t *testing.T) {
	e := start(t, fhirsim.WithDownloadCuts(1), fhirsim.WithTokenRevocationAfterFiles(2),
		fhirsim.WithExportErrors("Observation/o1 could not be exported"))
	loc, m := e.export(t)
	require.Len(t, m.Output, 2)

	// The first file's download is cut half-way and resumed by Range with the same token.
	res, err := e.f.Stage(t.Context(), m.Output[0], true, "stage", "a.ndjson")
	require.NoError(t, err)
	require.Equal(t, int64(20), res.Lines)
	require.Equal(t, 1, res.Resumes)
	require.Equal(t, 1, res.Attempts)
	require.Zero(t, res.Renewals)
	// The two answers of the first file revoked the token: the second file's GET answers 401, the token is renewed once.
	res2, err := e.f.Stage(t.Context(), m.Output[1], true, "stage", "b.ndjson")
	require.NoError(t, err)
	require.Equal(t, 1, res2.Renewals)
	require.Equal(t, int64(20), res2.Lines)

	got := append(append([]byte{}, e.up.blobs["stage/a.ndjson"]...), e.up.blobs["stage/b.ndjson"]...)
	require.Equal(t, 40, bytes.Count(got, []byte("\n")))
	for i := range 40 {
		require.Contains(t, string(got), fmt.Sprintf(`"id":"p%02d"`, i))
	}
	fetches := e.sim.BulkFetches()
	require.Len(t, fetches, 4)
	require.True(t, fetches[0].Cut)
	require.Equal(t, http.StatusPartialContent, fetches[1].Status)
	require.Equal(t, fmt.Sprintf("bytes=%d-", fetches[0].Bytes), fetches[1].Range)
	require.Equal(t, fetches[0].Token, fetches[1].Token)
	require.Equal(t, http.StatusUnauthorized, fetches[2].Status)
	require.Equal(t, http.StatusOK, fetches[3].Status)
	require.NotEqual(t, fetches[0].Token, fetches[3].Token)

	msgs, err := e.f.ReadErrors(t.Context(), m.Error, true)
	require.NoError(t, err)
	require.Equal(t, []string{"error processing: Observation/o1 could not be exported"}, msgs)

	require.NoError(t, e.f.Delete(t.Context(), loc, true))
	_, err = e.f.Stage(t.Context(), m.Output[0], true, "stage", "a.ndjson")
	require.ErrorContains(t, err, "404", "the files are gone once the export is deleted")
	require.NoError(t, e.f.Delete(t.Context(), loc, true), "deleting again: already gone")
}

func TestStageChecksCountsAndOrigins(t *testing.T) {
	e := start(t)
	_, m := e.export(t)
	wrong := m.Output[0]
	wrong.Count++
	res, err := e.f.Stage(t.Context(), wrong, true, "stage", "a.ndjson")
	require.ErrorIs(t, err, bulkfetch.ErrCountMismatch)
	require.Equal(t, 3, res.Attempts, "tried whole again, each time short")

	elsewhere := m.Output[0]
	elsewhere.URL = "http://127.0.0.2:1/file.ndjson"
	_, err = e.f.Stage(t.Context(), elsewhere, true, "stage", "a.ndjson")
	require.ErrorContains(t, err, "the token is sent nowhere else")
	for _, f := range e.sim.BulkFetches() {
		require.Equal(t, http.StatusOK, f.Status)
	}

	// Without the token the server refuses, and a refusal is not retried.
	res, err = e.f.Stage(t.Context(), m.Output[0], false, "stage", "a.ndjson")
	require.ErrorContains(t, err, "401")
	require.Equal(t, 1, res.Attempts)
}

// A server that ignores Range: the broken attempt is abandoned and the file fetched again whole.
func TestStageWithoutRangeSupportRetriesWhole(t *testing.T) {
	body := bytes.Repeat([]byte(`{"resourceType":"Patient","id":"x"}`+"\n"), 100)
	var mu sync.Mutex
	var calls []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls = append(calls, r.Header.Get("Range"))
		n := len(calls)
		mu.Unlock()
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		w.WriteHeader(http.StatusOK)
		if n == 1 {
			_, _ = w.Write(body[:100])
			_ = http.NewResponseController(w).Flush()
			panic(http.ErrAbortHandler)
		}
		_, _ = w.Write(body)
	}))
	defer srv.Close()
	up := &memUploader{blobs: map[string][]byte{}}
	f, err := bulkfetch.New(bulkfetch.Config{SourceBaseURL: srv.URL, Uploader: up, Sleep: func(context.Context, time.Duration) error { return nil }})
	require.NoError(t, err)
	res, err := f.Stage(t.Context(), bulkfetch.File{Type: "Patient", URL: srv.URL + "/f.ndjson", Count: 100}, false, "c", "f")
	require.NoError(t, err)
	require.Equal(t, 2, res.Attempts)
	require.Equal(t, []string{"", "bytes=100-", ""}, calls)
	require.Equal(t, body, up.blobs["c/f"])
}

func policyOpts() policy.TokenRequestOptions { return policy.TokenRequestOptions{} }

// markingUploader is a memUploader that records finished files as staging.Account does.
type markingUploader struct {
	memUploader
	marks map[string]int64 // "container/blob|source" -> lines
}

func (m *markingUploader) MarkStaged(_ context.Context, c, b, src string, lines int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.marks[c+"/"+b+"|"+src] = lines
	return nil
}

func (m *markingUploader) StagedLines(_ context.Context, c, b, src string) (string, int64, int64, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	lines, ok := m.marks[c+"/"+b+"|"+src]
	return "http://staging/" + c + "/" + b, lines, int64(len(m.blobs[c+"/"+b])), ok, nil
}

// A file an earlier run staged (a poll that ran out of time after it) is not fetched again; another file, or the
// same blob name for another source file, is.
func TestStageSkipsAFileAlreadyStaged(t *testing.T) {
	e := start(t)
	up := &markingUploader{memUploader: memUploader{blobs: map[string][]byte{}}, marks: map[string]int64{}}
	f, err := bulkfetch.New(bulkfetch.Config{SourceBaseURL: e.base, Credential: e.cred, Uploader: up,
		Sleep: func(context.Context, time.Duration) error { return nil }})
	require.NoError(t, err)
	_, m := e.export(t)
	first, err := f.Stage(t.Context(), m.Output[0], true, "stage", "a.ndjson")
	require.NoError(t, err)
	require.False(t, first.Already)
	again, err := f.Stage(t.Context(), m.Output[0], true, "stage", "a.ndjson")
	require.NoError(t, err)
	require.True(t, again.Already)
	require.Equal(t, first.Lines, again.Lines)
	require.Equal(t, first.Bytes, again.Bytes)
	require.Len(t, e.sim.BulkFetches(), 1, "fetched once")

	other, err := f.Stage(t.Context(), m.Output[1], true, "stage", "a.ndjson")
	require.NoError(t, err)
	require.False(t, other.Already, "the blob holds another source file")
	require.Len(t, e.sim.BulkFetches(), 2)
}
