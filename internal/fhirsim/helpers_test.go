package fhirsim_test

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/azuritetest"
	"github.com/fhir-migrator/fhir-migrator/internal/fhirsim"
)

var azurite *azuritetest.Azurite

func TestMain(m *testing.M) { azuritetest.Main(m, &azurite) }

// sim is a simulator served on 127.0.0.1:0 with a client that carries a token for it.
type sim struct {
	*fhirsim.Server
	URL string
}

func startSim(t *testing.T, opts ...fhirsim.Option) *sim {
	t.Helper()
	s := fhirsim.New(opts...)
	hs := httptest.NewServer(s)
	t.Cleanup(func() {
		hs.Close()
		s.Close()
	})
	return &sim{Server: s, URL: hs.URL}
}

type request struct {
	method  string
	path    string // relative to the base URL, or absolute
	headers map[string]string
	body    string
	noAuth  bool
}

func (s *sim) do(t *testing.T, req request) *http.Response {
	t.Helper()
	u := req.path
	if !strings.HasPrefix(u, "http") {
		u = s.URL + u
	}
	var body io.Reader
	if req.body != "" {
		body = strings.NewReader(req.body)
	}
	r, err := http.NewRequestWithContext(t.Context(), cmp.Or(req.method, http.MethodGet), u, body)
	require.NoError(t, err)
	if !req.noAuth {
		r.Header.Set("Authorization", "Bearer "+fhirsim.DevToken(s.URL))
	}
	for k, v := range req.headers {
		r.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(r)
	require.NoError(t, err)
	t.Cleanup(func() { _ = resp.Body.Close() })
	return resp
}

// getJSON GETs path, requires 200 and decodes the body.
func (s *sim) getJSON(t *testing.T, path string, into any) {
	t.Helper()
	resp := s.do(t, request{path: path})
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "GET %s: %s", path, body)
	require.NoError(t, json.Unmarshal(body, into))
}

func (s *sim) count(t *testing.T, path string) int {
	t.Helper()
	var b struct {
		Type  string `json:"type"`
		Total *int   `json:"total"`
		Entry []any  `json:"entry"`
	}
	s.getJSON(t, path, &b)
	want := "searchset"
	if strings.Contains(path, "_history") {
		want = "history"
	}
	require.Equal(t, want, b.Type)
	require.NotNil(t, b.Total, "no total in %s", path)
	require.Empty(t, b.Entry)
	return *b.Total
}

// pollDone polls a Content-Location until it stops answering 202, and returns the final answer and the 202 count.
func (s *sim) pollDone(t *testing.T, location string) (*http.Response, []byte, int) {
	t.Helper()
	accepted := 0
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp := s.do(t, request{path: location})
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		if resp.StatusCode != http.StatusAccepted {
			return resp, body, accepted
		}
		accepted++
		if len(body) > 0 {
			// Only import status answers 202 with a body: a partial result, while processing jobs finish.
			require.Contains(t, location, "/_operations/import/", "an export's 202 has an empty body")
			require.True(t, strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json"), resp.Header.Get("Content-Type"))
			var partial struct {
				Output []any `json:"output"`
			}
			require.NoError(t, json.Unmarshal(body, &partial), "%s", body)
			require.NotEmpty(t, partial.Output)
		}
		require.Empty(t, resp.Header.Get("Retry-After"), "the real service sends no Retry-After on 202")
		require.True(t, time.Now().Before(deadline), "job at %s did not finish", location)
		time.Sleep(10 * time.Millisecond) // pacing the poll loop, not an assertion
	}
}

// readBlobURL downloads a blob by its URL in the Azurite account and returns its lines.
func readBlobURL(t *testing.T, blobURL string) []string {
	t.Helper()
	rest, ok := strings.CutPrefix(blobURL, azurite.BlobEndpoint+"/")
	require.True(t, ok, "%s is not in the Azurite account", blobURL)
	container, name, ok := strings.Cut(rest, "/")
	require.True(t, ok)
	c, err := azurite.Client()
	require.NoError(t, err)
	resp, err := c.DownloadStream(t.Context(), container, name, nil)
	require.NoError(t, err)
	defer resp.Body.Close()
	var lines []string
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	require.NoError(t, sc.Err())
	return lines
}

func uploadBlob(t *testing.T, container, name, content string) string {
	t.Helper()
	c, err := azurite.Client()
	require.NoError(t, err)
	_, err = c.UploadBuffer(context.Background(), container, name, []byte(content), nil)
	require.NoError(t, err)
	return azurite.BlobEndpoint + "/" + container + "/" + name
}

// uniqueName is a container name not used before (the simulator must create it).
func uniqueName(prefix string) string {
	return fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano())
}

// generated is a resource of the synthetic data set as the tests see it.
type generated struct {
	Type        string
	ID          string
	Status      string
	LastUpdated time.Time
}

func generatedSet(t *testing.T, patients int, seed int64) []generated {
	t.Helper()
	var out []generated
	for _, raw := range fhirsim.Generate(patients, seed) {
		var r struct {
			ResourceType string `json:"resourceType"`
			ID           string `json:"id"`
			Status       string `json:"status"`
			Meta         struct {
				LastUpdated string `json:"lastUpdated"`
			} `json:"meta"`
		}
		require.NoError(t, json.Unmarshal(raw, &r))
		lu, err := time.Parse(time.RFC3339Nano, r.Meta.LastUpdated)
		require.NoError(t, err)
		out = append(out, generated{Type: r.ResourceType, ID: r.ID, Status: r.Status, LastUpdated: lu})
	}
	return out
}

func exportHeaders() map[string]string {
	return map[string]string{"Accept": "application/fhir+json", "Prefer": "respond-async"}
}

func importHeaders() map[string]string {
	return map[string]string{"Content-Type": "application/fhir+json", "Prefer": "respond-async"}
}

type importInput struct{ Type, URL, ETag string }

func importBody(mode string, inputs ...importInput) string {
	type part struct {
		Name        string `json:"name"`
		ValueString string `json:"valueString,omitempty"`
		ValueURI    string `json:"valueUri,omitempty"`
	}
	type param struct {
		Name        string `json:"name"`
		ValueString string `json:"valueString,omitempty"`
		Part        []part `json:"part,omitempty"`
	}
	ps := []param{{Name: "inputFormat", ValueString: "application/fhir+ndjson"}}
	if mode != "" {
		ps = append(ps, param{Name: "mode", ValueString: mode})
	}
	for _, in := range inputs {
		p := param{Name: "input"}
		if in.Type != "" {
			p.Part = append(p.Part, part{Name: "type", ValueString: in.Type})
		}
		p.Part = append(p.Part, part{Name: "url", ValueURI: in.URL})
		if in.ETag != "" {
			p.Part = append(p.Part, part{Name: "etag", ValueURI: in.ETag})
		}
		ps = append(ps, p)
	}
	b, _ := json.Marshal(map[string]any{"resourceType": "Parameters", "parameter": ps})
	return string(b)
}
