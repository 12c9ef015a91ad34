package fhir

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/identity"
)

// seen is one request as a test server received it.
type seen struct {
	Method string
	Path   string
	Query  url.Values
	Header http.Header
	Body   []byte
}

// fhirServer is a recording httptest server on 127.0.0.1:0; handle gets the 0-based request number.
type fhirServer struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []seen
}

func newFHIRServer(t *testing.T, handle func(w http.ResponseWriter, r *http.Request, body []byte, n int)) *fhirServer {
	t.Helper()
	s := &fhirServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		n := len(s.reqs)
		s.reqs = append(s.reqs, seen{Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(), Header: r.Header.Clone(), Body: body})
		s.mu.Unlock()
		handle(w, r, body, n)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *fhirServer) requests() []seen {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]seen(nil), s.reqs...)
}

func (s *fhirServer) origin() string { return s.URL }

// countingCredential records every scope asked for and delegates to DevCredential.
type countingCredential struct {
	mu     sync.Mutex
	scopes []string
	expiry time.Time
}

func (c *countingCredential) GetToken(ctx context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	c.mu.Lock()
	c.scopes = append(c.scopes, o.Scopes...)
	c.mu.Unlock()
	tok, err := identity.DevCredential{}.GetToken(ctx, o)
	if err == nil && !c.expiry.IsZero() {
		tok.ExpiresOn = c.expiry
	}
	return tok, err
}

func (c *countingCredential) asked() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.scopes...)
}

type testClient struct {
	*Client
	cred   *countingCredential
	mu     sync.Mutex
	sleeps []time.Duration
}

func (tc *testClient) slept() []time.Duration {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	return append([]time.Duration(nil), tc.sleeps...)
}

func newTestClient(t *testing.T, base, allowed string, mods ...func(*Config)) *testClient {
	t.Helper()
	p, err := ParseHostPolicy(allowed)
	require.NoError(t, err)
	tc := &testClient{cred: &countingCredential{}}
	cfg := Config{Credential: tc.cred, Policy: p}
	for _, m := range mods {
		m(&cfg)
	}
	c, err := New(base, cfg)
	require.NoError(t, err)
	c.sleep = func(_ context.Context, d time.Duration) error {
		tc.mu.Lock()
		defer tc.mu.Unlock()
		tc.sleeps = append(tc.sleeps, d)
		return nil
	}
	tc.Client = c
	return tc
}

func bearerFor(origin string) string {
	return "Bearer " + identity.DevTokenPrefix + base64.RawURLEncoding.EncodeToString([]byte(origin))
}

func writeOutcome(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/fhir+json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{"resourceType": "OperationOutcome",
		"issue": []any{map[string]any{"severity": "error", "code": "processing", "diagnostics": msg}}})
}

func TestNewValidatesConfig(t *testing.T) {
	t.Parallel()
	p, err := ParseHostPolicy("")
	require.NoError(t, err)
	_, err = New("https://src.azurehealthcareapis.com", Config{Policy: p})
	require.ErrorContains(t, err, "Credential")
	_, err = New("https://src.azurehealthcareapis.com", Config{Credential: identity.DevCredential{}})
	require.ErrorContains(t, err, "Policy")
	_, err = New("https://src.example.com", Config{Credential: identity.DevCredential{}, Policy: p})
	require.ErrorIs(t, err, ErrHostNotAllowed)
	c, err := New("https://SRC.azurehealthcareapis.com/", Config{Credential: identity.DevCredential{}, Policy: p})
	require.NoError(t, err)
	require.Equal(t, "https://src.azurehealthcareapis.com", c.BaseURL())
}

func TestExportKickoffHeadersQueryAndToken(t *testing.T) {
	t.Parallel()
	var srv *fhirServer
	srv = newFHIRServer(t, func(w http.ResponseWriter, r *http.Request, _ []byte, _ int) {
		w.Header().Set("Content-Location", srv.URL+"/fhir/_operations/export/42")
		w.WriteHeader(http.StatusAccepted)
	})
	c := newTestClient(t, srv.URL+"/fhir/", "127.0.0.1")
	since := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	till := time.Date(2026, 1, 1, 1, 0, 0, 0, time.FixedZone("CET", 3600))
	loc, err := c.ExportKickoff(context.Background(), ExportRequest{
		Types: []string{"Patient", "Observation"}, Since: &since, Till: &till,
		TypeFilter: []string{"Observation?status=final"}, Container: "migration-xyz",
	})
	require.NoError(t, err)
	require.Equal(t, srv.URL+"/fhir/_operations/export/42", loc)

	reqs := srv.requests()
	require.Len(t, reqs, 1)
	r := reqs[0]
	require.Equal(t, http.MethodGet, r.Method)
	require.Equal(t, "/fhir/$export", r.Path)
	require.Equal(t, "application/fhir+json", r.Header.Get("Accept"))
	require.Equal(t, "respond-async", r.Header.Get("Prefer"))
	require.Equal(t, bearerFor(srv.URL), r.Header.Get("Authorization"))
	require.Equal(t, DefaultUserAgent, r.Header.Get("User-Agent"))
	require.Equal(t, url.Values{
		"_type":       {"Patient,Observation"},
		"_since":      {"2020-01-01T00:00:00.0000000Z"},
		"_till":       {"2026-01-01T00:00:00.0000000Z"},
		"_typeFilter": {"Observation?status=final"},
		"_container":  {"migration-xyz"},
	}, r.Query)
	require.Equal(t, []string{srv.URL + "/.default"}, c.cred.asked())

	for _, tc := range []struct {
		req  ExportRequest
		want string
	}{
		{ExportRequest{History: true}, "_history"},
		{ExportRequest{Deleted: true}, "_deleted"},
		{ExportRequest{History: true, Deleted: true}, "_history,_deleted"},
		{ExportRequest{}, ""},
	} {
		_, err := c.ExportKickoff(context.Background(), tc.req)
		require.NoError(t, err)
		reqs := srv.requests()
		require.Equal(t, tc.want, reqs[len(reqs)-1].Query.Get("includeAssociatedData"))
	}
}

// TestFormatInstantWritesSevenDigits: the service parses 100 ns ticks and refuses an 8th or 9th digit; fewer
// digits would make a search value stand for a wider span than its tick.
func TestFormatInstantWritesSevenDigits(t *testing.T) {
	t.Parallel()
	for in, want := range map[time.Time]string{
		time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC):                      "2026-01-02T03:04:05.0000000Z",
		time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC):              "2026-01-02T03:04:05.1234567Z",
		time.Date(2026, 1, 2, 3, 4, 5, 120000000, time.UTC):              "2026-01-02T03:04:05.1200000Z",
		time.Date(2026, 1, 2, 3, 4, 5, 99, time.UTC):                     "2026-01-02T03:04:05.0000000Z",
		time.Date(2026, 1, 2, 4, 4, 5, 100, time.FixedZone("CET", 3600)): "2026-01-02T03:04:05.0000001Z",
	} {
		require.Equal(t, want, FormatInstant(in), in.String())
	}
	var srv *fhirServer
	srv = newFHIRServer(t, func(w http.ResponseWriter, r *http.Request, _ []byte, _ int) {
		w.Header().Set("Content-Location", srv.URL+"/_operations/export/1")
		w.WriteHeader(http.StatusAccepted)
	})
	c := newTestClient(t, srv.URL, "127.0.0.1")
	since := time.Date(2020, 1, 1, 0, 0, 0, 987654321, time.UTC)
	_, err := c.ExportKickoff(context.Background(), ExportRequest{Since: &since})
	require.NoError(t, err)
	require.Equal(t, "2020-01-01T00:00:00.9876543Z", srv.requests()[0].Query.Get("_since"))
}

func TestExportKickoffRefusesBadRequests(t *testing.T) {
	t.Parallel()
	srv := newFHIRServer(t, func(w http.ResponseWriter, _ *http.Request, _ []byte, _ int) { w.WriteHeader(http.StatusAccepted) })
	c := newTestClient(t, srv.URL, "127.0.0.1")
	since, till := time.Now(), time.Now().Add(-time.Hour)
	for _, r := range []ExportRequest{
		{Types: []string{"patient"}},
		{TypeFilter: []string{"Observation?status=final"}},
		{Types: []string{"Observation"}, TypeFilter: []string{"status=final"}},
		{Since: &since, Till: &till},
		{Types: []string{"Observation"}, TypeFilter: []string{"Observation?status=final"}, Deleted: true},
	} {
		_, err := c.ExportKickoff(context.Background(), r)
		require.Error(t, err)
	}
	require.Empty(t, srv.requests())
}

func TestExportKickoffContentLocationVariants(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		header  map[string]string
		status  int
		want    string
		wantErr string
	}{
		{name: "relative", status: 202, header: map[string]string{"Content-Location": "/_operations/export/7"}, want: "/_operations/export/7"},
		{name: "location fallback", status: 202, header: map[string]string{"Location": "/_operations/export/8"}, want: "/_operations/export/8"},
		{name: "missing", status: 202, wantErr: "without Content-Location"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := newFHIRServer(t, func(w http.ResponseWriter, _ *http.Request, _ []byte, _ int) {
				for k, v := range tt.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tt.status)
			})
			c := newTestClient(t, srv.URL, "127.0.0.1")
			loc, err := c.ExportKickoff(context.Background(), ExportRequest{})
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, srv.URL+tt.want, loc)
		})
	}
}

func TestExportKickoffIsNotRetried(t *testing.T) {
	t.Parallel()
	for _, code := range []int{429, 500, 503} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			t.Parallel()
			srv := newFHIRServer(t, func(w http.ResponseWriter, _ *http.Request, _ []byte, _ int) {
				w.Header().Set("Retry-After", "3")
				writeOutcome(w, code, "busy")
			})
			c := newTestClient(t, srv.URL, "127.0.0.1")
			_, err := c.ExportKickoff(context.Background(), ExportRequest{})
			var fe *Error
			require.ErrorAs(t, err, &fe)
			require.Equal(t, code, fe.StatusCode)
			require.Equal(t, "export kick-off", fe.Op)
			require.Equal(t, "busy", fe.Message)
			require.Equal(t, 3*time.Second, fe.RetryAfter)
			require.True(t, fe.Temporary())
			require.Len(t, srv.requests(), 1)
			require.Empty(t, c.slept())
		})
	}
}

func TestExportKickoffConnectionErrorNotRetried(t *testing.T) {
	t.Parallel()
	srv := newFHIRServer(t, hangUp)
	c := newTestClient(t, srv.URL, "127.0.0.1")
	_, err := c.ExportKickoff(context.Background(), ExportRequest{})
	require.Error(t, err)
	require.Len(t, srv.requests(), 1)
}

// hangUp closes the connection without an answer.
func hangUp(w http.ResponseWriter, _ *http.Request, _ []byte, _ int) {
	conn, _, err := w.(http.Hijacker).Hijack()
	if err == nil {
		_ = conn.Close()
	}
}

func TestExportStatus(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		status     int
		header     map[string]string
		body       string
		wantDone   bool
		wantRetry  time.Duration
		wantCode   int
		wantErrMsg string
	}{
		{name: "running without retry-after", status: 202},
		{name: "running with retry-after", status: 202, header: map[string]string{"Retry-After": "7"}, wantRetry: 7 * time.Second},
		{name: "done", status: 200, body: goodManifest, wantDone: true},
		{name: "malformed manifest", status: 200, body: `{"output":[{"type":"Patient"}]}`, wantErrMsg: "malformed"},
		{name: "canceled by user", status: 404, wantCode: 404},
		{name: "failed job", status: 400, body: `{"resourceType":"OperationOutcome","issue":[{"diagnostics":"export operation failed for reason: no access"}]}`,
			wantCode: 400, wantErrMsg: "export operation failed for reason: no access"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := newFHIRServer(t, func(w http.ResponseWriter, _ *http.Request, _ []byte, _ int) {
				for k, v := range tt.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			})
			c := newTestClient(t, srv.URL, "127.0.0.1")
			st, err := c.ExportStatus(context.Background(), srv.URL+"/_operations/export/1")
			reqs := srv.requests()
			require.Len(t, reqs, 1)
			require.Equal(t, "application/json", reqs[0].Header.Get("Accept"))
			require.Equal(t, "/_operations/export/1", reqs[0].Path)
			switch {
			case tt.wantCode != 0:
				var fe *Error
				require.ErrorAs(t, err, &fe)
				require.Equal(t, tt.wantCode, fe.StatusCode)
				require.Equal(t, "export status", fe.Op)
				require.Contains(t, fe.Message, tt.wantErrMsg)
			case tt.wantErrMsg != "":
				require.ErrorContains(t, err, tt.wantErrMsg)
			default:
				require.NoError(t, err)
				require.Equal(t, tt.wantDone, st.Done)
				require.Equal(t, tt.wantRetry, st.RetryAfter)
				if tt.wantDone {
					require.Len(t, st.Manifest.Output, 2)
				} else {
					require.Nil(t, st.Manifest)
				}
			}
		})
	}
}

func TestStatusRetriesOn503ThenSucceeds(t *testing.T) {
	t.Parallel()
	srv := newFHIRServer(t, func(w http.ResponseWriter, _ *http.Request, _ []byte, n int) {
		switch n {
		case 0:
			w.WriteHeader(http.StatusServiceUnavailable)
		case 1:
			w.Header().Set("Retry-After", "2")
			w.WriteHeader(http.StatusServiceUnavailable)
		default:
			w.WriteHeader(http.StatusOK)
			_, _ = io.WriteString(w, goodManifest)
		}
	})
	c := newTestClient(t, srv.URL, "127.0.0.1")
	st, err := c.ExportStatus(context.Background(), srv.URL+"/_operations/export/1")
	require.NoError(t, err)
	require.True(t, st.Done)
	require.Len(t, srv.requests(), 3)
	sleeps := c.slept()
	require.Len(t, sleeps, 2)
	require.GreaterOrEqual(t, sleeps[0], retryBaseDelay/2)
	require.LessOrEqual(t, sleeps[0], retryBaseDelay)
	require.Equal(t, 2*time.Second, sleeps[1])
	for _, r := range srv.requests() {
		require.Equal(t, bearerFor(srv.URL), r.Header.Get("Authorization"))
	}
}

func TestRetryGivesUpAfterAFewAttempts(t *testing.T) {
	t.Parallel()
	srv := newFHIRServer(t, func(w http.ResponseWriter, _ *http.Request, _ []byte, _ int) {
		writeOutcome(w, http.StatusInternalServerError, "boom")
	})
	c := newTestClient(t, srv.URL, "127.0.0.1")
	_, err := c.ExportStatus(context.Background(), srv.URL+"/_operations/export/1")
	var fe *Error
	require.ErrorAs(t, err, &fe)
	require.Equal(t, 500, fe.StatusCode)
	require.Equal(t, "boom", fe.Message)
	require.Len(t, srv.requests(), maxRetries+1)
	var total time.Duration
	for _, d := range c.slept() {
		total += d
	}
	require.Len(t, c.slept(), maxRetries)
	require.LessOrEqual(t, total, retryBudget)
}

func TestRetryAfterBeyondBudgetReturnsAtOnce(t *testing.T) {
	t.Parallel()
	srv := newFHIRServer(t, func(w http.ResponseWriter, _ *http.Request, _ []byte, _ int) {
		w.Header().Set("x-ms-retry-after-ms", "30000")
		writeOutcome(w, http.StatusTooManyRequests, "throttled")
	})
	c := newTestClient(t, srv.URL, "127.0.0.1")
	_, err := c.ImportStatus(context.Background(), srv.URL+"/_operations/import/1")
	var fe *Error
	require.ErrorAs(t, err, &fe)
	require.Equal(t, 429, fe.StatusCode)
	require.Equal(t, 30*time.Second, fe.RetryAfter)
	require.Len(t, srv.requests(), 1)
	require.Empty(t, c.slept())
}

func TestRetryOnConnectionError(t *testing.T) {
	t.Parallel()
	srv := newFHIRServer(t, func(w http.ResponseWriter, r *http.Request, b []byte, n int) {
		if n == 0 {
			hangUp(w, r, b, n)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})
	c := newTestClient(t, srv.URL, "127.0.0.1")
	st, err := c.ExportStatus(context.Background(), srv.URL+"/_operations/export/1")
	require.NoError(t, err)
	require.False(t, st.Done)
	require.Len(t, srv.requests(), 2)
	require.Len(t, c.slept(), 1)
}

func TestNoRetryOnClientErrors(t *testing.T) {
	t.Parallel()
	srv := newFHIRServer(t, func(w http.ResponseWriter, _ *http.Request, _ []byte, _ int) {
		writeOutcome(w, http.StatusForbidden, "no role")
	})
	c := newTestClient(t, srv.URL, "127.0.0.1")
	_, err := c.Count(context.Background(), "Patient", nil)
	var fe *Error
	require.ErrorAs(t, err, &fe)
	require.Equal(t, 403, fe.StatusCode)
	require.False(t, fe.Temporary())
	require.Len(t, srv.requests(), 1)
}

// TestTokenGoesOnlyToTheBaseHostPort: a recording server on another port gets no token, whether reached by a
// Content-Location, a next link or a redirect.
func TestTokenGoesOnlyToTheBaseHostPort(t *testing.T) {
	t.Parallel()
	var base, other *fhirServer
	other = newFHIRServer(t, func(w http.ResponseWriter, r *http.Request, _ []byte, _ int) {
		switch r.URL.Path {
		case "/_operations/export/1":
			w.WriteHeader(http.StatusAccepted)
		case "/Patient":
			writeBundle(w, []string{`{"resourceType":"Patient","id":"b"}`}, base.URL+"/Patient?page=3")
		default:
			w.WriteHeader(http.StatusAccepted)
		}
	})
	base = newFHIRServer(t, func(w http.ResponseWriter, r *http.Request, _ []byte, _ int) {
		switch {
		case r.URL.Path == "/$export":
			w.Header().Set("Content-Location", other.URL+"/_operations/export/1")
			w.WriteHeader(http.StatusAccepted)
		case r.URL.Path == "/Patient" && r.URL.Query().Get("page") == "":
			writeBundle(w, []string{`{"resourceType":"Patient","id":"a"}`}, other.URL+"/Patient?page=2")
		case r.URL.Path == "/Patient":
			writeBundle(w, []string{`{"resourceType":"Patient","id":"c"}`}, "")
		case r.URL.Path == "/_operations/export/cross":
			http.Redirect(w, r, other.URL+"/_operations/export/moved", http.StatusTemporaryRedirect)
		case r.URL.Path == "/_operations/export/same":
			http.Redirect(w, r, "/_operations/export/here", http.StatusFound)
		default:
			w.WriteHeader(http.StatusAccepted)
		}
	})
	c := newTestClient(t, base.URL, "127.0.0.1")
	ctx := context.Background()

	loc, err := c.ExportKickoff(ctx, ExportRequest{})
	require.NoError(t, err)
	_, err = c.ExportStatus(ctx, loc)
	require.NoError(t, err)

	var ids []string
	require.NoError(t, c.Search(ctx, "Patient", nil, func(res json.RawMessage) error {
		var p struct{ ID string }
		require.NoError(t, json.Unmarshal(res, &p))
		ids = append(ids, p.ID)
		return nil
	}))
	require.Equal(t, []string{"a", "b", "c"}, ids)

	_, err = c.ExportStatus(ctx, base.URL+"/_operations/export/cross")
	require.NoError(t, err)
	_, err = c.ExportStatus(ctx, base.URL+"/_operations/export/same")
	require.NoError(t, err)

	otherPaths := []string{}
	for _, r := range other.requests() {
		otherPaths = append(otherPaths, r.Path)
		require.Empty(t, r.Header.Get("Authorization"), "token leaked to %s", r.Path)
	}
	require.Equal(t, []string{"/_operations/export/1", "/Patient", "/_operations/export/moved"}, otherPaths)

	basePaths := []string{}
	for _, r := range base.requests() {
		basePaths = append(basePaths, r.Path)
		require.Equal(t, bearerFor(base.URL), r.Header.Get("Authorization"), "no token on %s", r.Path)
	}
	require.Equal(t, []string{"/$export", "/Patient", "/Patient", "/_operations/export/cross",
		"/_operations/export/same", "/_operations/export/here"}, basePaths)
	for _, s := range c.cred.asked() {
		require.Equal(t, base.URL+"/.default", s)
	}
	require.Len(t, c.cred.asked(), 1, "token is cached")
}

func TestRefusesHostsOffTheList(t *testing.T) {
	t.Parallel()
	other := newFHIRServer(t, func(w http.ResponseWriter, _ *http.Request, _ []byte, _ int) {
		w.WriteHeader(http.StatusAccepted)
	})
	base := newFHIRServer(t, func(w http.ResponseWriter, r *http.Request, _ []byte, _ int) {
		switch r.URL.Path {
		case "/Patient":
			writeBundle(w, nil, other.URL+"/Patient?page=2")
		default:
			http.Redirect(w, r, other.URL+"/moved", http.StatusTemporaryRedirect)
		}
	})
	allowed := strings.TrimPrefix(base.URL, "http://")
	c := newTestClient(t, base.URL, allowed)
	ctx := context.Background()

	_, err := c.ExportStatus(ctx, other.URL+"/_operations/export/1")
	require.ErrorIs(t, err, ErrHostNotAllowed)
	_, err = c.ExportStatus(ctx, base.URL+"/_operations/export/redirected")
	require.ErrorIs(t, err, ErrHostNotAllowed)
	err = c.Search(ctx, "Patient", nil, func(json.RawMessage) error { return nil })
	require.ErrorIs(t, err, ErrHostNotAllowed)
	require.ErrorIs(t, c.CancelJob(ctx, "https://evil.example.com/_operations/export/1"), ErrHostNotAllowed)

	require.Empty(t, other.requests())
	require.Empty(t, c.slept(), "refusals are not retried")
}

func TestPostIsNeverRedirected(t *testing.T) {
	t.Parallel()
	other := newFHIRServer(t, func(w http.ResponseWriter, _ *http.Request, _ []byte, _ int) {
		w.Header().Set("Content-Location", "/x")
		w.WriteHeader(http.StatusAccepted)
	})
	base := newFHIRServer(t, func(w http.ResponseWriter, r *http.Request, _ []byte, _ int) {
		http.Redirect(w, r, other.URL+"/$import", http.StatusTemporaryRedirect)
	})
	c := newTestClient(t, base.URL, "127.0.0.1")
	_, err := c.ImportKickoff(context.Background(), ImportRequest{Inputs: []ImportInput{{Type: "Patient", URL: "https://acct.blob.core.windows.net/c/p.ndjson"}}})
	var fe *Error
	require.ErrorAs(t, err, &fe)
	require.Equal(t, http.StatusTemporaryRedirect, fe.StatusCode)
	require.Empty(t, other.requests())
}

func TestImportKickoffBodyAndHeaders(t *testing.T) {
	t.Parallel()
	srv := newFHIRServer(t, func(w http.ResponseWriter, _ *http.Request, _ []byte, n int) {
		if n == 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Location", "/_operations/import/9")
		w.WriteHeader(http.StatusAccepted)
	})
	c := newTestClient(t, srv.URL, "127.0.0.1")
	loc, err := c.ImportKickoff(context.Background(), ImportRequest{Mode: "InitialLoad", Inputs: []ImportInput{
		{Type: "Patient", URL: "https://acct.blob.core.windows.net/cont/job/Patient-1.ndjson", ETag: `"0x8D92A7342657F4F"`},
		{Type: "Observation", URL: "https://acct.blob.core.windows.net/cont/job/Observation-1.ndjson"},
	}})
	require.NoError(t, err)
	require.Equal(t, srv.URL+"/_operations/import/9", loc)

	reqs := srv.requests()
	require.Len(t, reqs, 2, "import kick-off is retried")
	require.Equal(t, reqs[0].Body, reqs[1].Body, "a retry sends the identical body")
	r := reqs[1]
	require.Equal(t, http.MethodPost, r.Method)
	require.Equal(t, "/$import", r.Path)
	require.Equal(t, []string{"respond-async"}, r.Header.Values("Prefer"))
	require.Equal(t, "application/fhir+json", r.Header.Get("Content-Type"))
	require.Equal(t, bearerFor(srv.URL), r.Header.Get("Authorization"))
	require.JSONEq(t, `{"resourceType":"Parameters","parameter":[
		{"name":"inputFormat","valueString":"application/fhir+ndjson"},
		{"name":"mode","valueString":"InitialLoad"},
		{"name":"input","part":[
			{"name":"type","valueString":"Patient"},
			{"name":"url","valueUri":"https://acct.blob.core.windows.net/cont/job/Patient-1.ndjson"},
			{"name":"etag","valueUri":"\"0x8D92A7342657F4F\""}]},
		{"name":"input","part":[
			{"name":"type","valueString":"Observation"},
			{"name":"url","valueUri":"https://acct.blob.core.windows.net/cont/job/Observation-1.ndjson"}]}]}`, string(r.Body))
}

func TestImportKickoffDefaultModeIsIncremental(t *testing.T) {
	t.Parallel()
	body, err := importBody(ImportRequest{Inputs: []ImportInput{{URL: "https://a.blob.core.windows.net/c/x.ndjson"}}})
	require.NoError(t, err)
	require.JSONEq(t, `{"resourceType":"Parameters","parameter":[
		{"name":"inputFormat","valueString":"application/fhir+ndjson"},
		{"name":"mode","valueString":"IncrementalLoad"},
		{"name":"input","part":[{"name":"url","valueUri":"https://a.blob.core.windows.net/c/x.ndjson"}]}]}`, string(body))
}

func TestImportKickoffRefusals(t *testing.T) {
	t.Parallel()
	srv := newFHIRServer(t, func(w http.ResponseWriter, _ *http.Request, _ []byte, _ int) { w.WriteHeader(http.StatusAccepted) })
	c := newTestClient(t, srv.URL, "127.0.0.1")
	in := func(u string) ImportInput { return ImportInput{Type: "Patient", URL: u} }
	many := make([]ImportInput, MaxImportInputs+1)
	for i := range many {
		many[i] = in(fmt.Sprintf("https://a.blob.core.windows.net/c/%d.ndjson", i))
	}
	tests := []struct {
		name    string
		req     ImportRequest
		wantErr string
	}{
		{name: "no inputs", req: ImportRequest{}, wantErr: "no inputs"},
		{name: "too many", req: ImportRequest{Inputs: many}, wantErr: "more than the 10000"},
		{name: "sas url", req: ImportRequest{Inputs: []ImportInput{in("https://a.blob.core.windows.net/c/p.ndjson?sv=1&sig=x")}}, wantErr: "query string"},
		{name: "empty query", req: ImportRequest{Inputs: []ImportInput{in("https://a.blob.core.windows.net/c/p.ndjson?")}}, wantErr: "query string"},
		{name: "search parameter", req: ImportRequest{Inputs: []ImportInput{{Type: "SearchParameter", URL: "https://a.blob.core.windows.net/c/s.ndjson"}}}, wantErr: "SearchParameter"},
		{name: "duplicate", req: ImportRequest{Inputs: []ImportInput{in("https://a.blob.core.windows.net/c/p.ndjson"), in("https://a.blob.core.windows.net/c/p.ndjson")}}, wantErr: "duplicate"},
		{name: "relative", req: ImportRequest{Inputs: []ImportInput{in("/c/p.ndjson")}}, wantErr: "absolute"},
		{name: "bad mode", req: ImportRequest{Mode: "Merge", Inputs: []ImportInput{in("https://a.blob.core.windows.net/c/p.ndjson")}}, wantErr: "mode"},
		{name: "fragment", req: ImportRequest{Inputs: []ImportInput{in("https://a.blob.core.windows.net/c/p.ndjson#x")}}, wantErr: "fragment"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := c.ImportKickoff(context.Background(), tt.req)
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
	t.Cleanup(func() { require.Empty(t, srv.requests()) })
}

func TestImportKickoffAcceptsTheMaximum(t *testing.T) {
	t.Parallel()
	inputs := make([]ImportInput, MaxImportInputs)
	for i := range inputs {
		inputs[i] = ImportInput{Type: "Patient", URL: fmt.Sprintf("https://a.blob.core.windows.net/c/%d.ndjson", i)}
	}
	_, err := importBody(ImportRequest{Inputs: inputs})
	require.NoError(t, err)
}

func TestImportStatus(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		status   int
		body     string
		wantDone bool
		wantCode int
		wantMsg  string
	}{
		{name: "running with partial body", status: 202, body: `{"output":[{"type":"Patient","count":5}]}`},
		{name: "done", status: 200, body: goodImportResult, wantDone: true},
		{name: "canceled", status: 400, body: `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"processing","diagnostics":"User requested cancellation of operation."}]}`,
			wantCode: 400, wantMsg: "User requested cancellation"},
		{name: "unknown", status: 404, wantCode: 404},
		{name: "malformed", status: 200, body: `{"output":[{"count":-4}]}`, wantMsg: "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := newFHIRServer(t, func(w http.ResponseWriter, _ *http.Request, _ []byte, _ int) {
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			})
			c := newTestClient(t, srv.URL, "127.0.0.1")
			st, err := c.ImportStatus(context.Background(), srv.URL+"/_operations/import/3")
			require.Equal(t, "application/json", srv.requests()[0].Header.Get("Accept"))
			switch {
			case tt.wantCode != 0:
				var fe *Error
				require.ErrorAs(t, err, &fe)
				require.Equal(t, tt.wantCode, fe.StatusCode)
				require.Contains(t, fe.Message, tt.wantMsg)
			case tt.wantMsg != "":
				require.ErrorContains(t, err, tt.wantMsg)
			default:
				require.NoError(t, err)
				require.Equal(t, tt.wantDone, st.Done)
				if tt.wantDone {
					require.Equal(t, int64(10000), st.Result.Output[0].Count)
					require.Equal(t, int64(51), st.Result.Error[0].Count)
				} else {
					require.Nil(t, st.Result)
				}
			}
		})
	}
}

func TestImportStatusUsesStatusTimeout(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	srv := newFHIRServer(t, func(w http.ResponseWriter, r *http.Request, _ []byte, _ int) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	c := newTestClient(t, srv.URL, "127.0.0.1", func(cfg *Config) {
		cfg.StatusTimeout = 20 * time.Millisecond
		cfg.RequestTimeout = time.Hour
	})
	require.Equal(t, 20*time.Millisecond, c.statusTimeout)
	_, err := c.ImportStatus(context.Background(), srv.URL+"/_operations/import/3")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Len(t, srv.requests(), 1, "a timed-out status poll is not retried")

	def := newTestClient(t, srv.URL, "127.0.0.1")
	require.Equal(t, 90*time.Second, def.statusTimeout)
}

func TestCancelJob(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status   int
		wantCode int
	}{
		{status: 202}, {status: 204}, {status: 200}, {status: 404}, {status: 409},
		{status: 400, wantCode: 400}, {status: 403, wantCode: 403},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.status), func(t *testing.T) {
			t.Parallel()
			srv := newFHIRServer(t, func(w http.ResponseWriter, _ *http.Request, _ []byte, _ int) {
				w.WriteHeader(tt.status)
			})
			c := newTestClient(t, srv.URL, "127.0.0.1")
			err := c.CancelJob(context.Background(), srv.URL+"/_operations/export/5")
			reqs := srv.requests()
			require.Len(t, reqs, 1)
			require.Equal(t, http.MethodDelete, reqs[0].Method)
			require.Equal(t, bearerFor(srv.URL), reqs[0].Header.Get("Authorization"))
			if tt.wantCode == 0 {
				require.NoError(t, err)
				return
			}
			var fe *Error
			require.ErrorAs(t, err, &fe)
			require.Equal(t, tt.wantCode, fe.StatusCode)
		})
	}
}

func writeBundle(w http.ResponseWriter, resources []string, next string) {
	type entry struct {
		Resource json.RawMessage `json:"resource"`
	}
	b := map[string]any{"resourceType": "Bundle", "type": "searchset"}
	var entries []entry
	for _, r := range resources {
		entries = append(entries, entry{Resource: json.RawMessage(r)})
	}
	b["entry"] = entries
	if next != "" {
		b["link"] = []map[string]string{{"relation": "self", "url": "x"}, {"relation": "next", "url": next}}
	}
	w.Header().Set("Content-Type", "application/fhir+json")
	_ = json.NewEncoder(w).Encode(b)
}

func TestCount(t *testing.T) {
	t.Parallel()
	srv := newFHIRServer(t, func(w http.ResponseWriter, r *http.Request, _ []byte, _ int) {
		switch r.URL.Path {
		case "/fhir/Observation":
			_, _ = io.WriteString(w, `{"resourceType":"Bundle","type":"searchset","total":1234}`)
		case "/fhir":
			_, _ = io.WriteString(w, `{"resourceType":"Bundle","type":"searchset","total":99999}`)
		case "/fhir/Patient":
			_, _ = io.WriteString(w, `{"resourceType":"Bundle","type":"searchset"}`)
		default:
			_, _ = io.WriteString(w, `{"resourceType":"OperationOutcome"}`)
		}
	})
	c := newTestClient(t, srv.URL+"/fhir", "127.0.0.1")
	ctx := context.Background()
	q := url.Values{"_lastUpdated": {"le2026-01-01T00:00:00Z"}}
	n, err := c.Count(ctx, "Observation", q)
	require.NoError(t, err)
	require.Equal(t, int64(1234), n)
	require.Equal(t, url.Values{"_lastUpdated": {"le2026-01-01T00:00:00Z"}}, q, "caller's query is not changed")

	n, err = c.Count(ctx, "", nil)
	require.NoError(t, err)
	require.Equal(t, int64(99999), n)

	_, err = c.Count(ctx, "Patient", nil)
	require.ErrorContains(t, err, "no total")
	_, err = c.Count(ctx, "Encounter", nil)
	require.ErrorContains(t, err, "expected a Bundle")
	_, err = c.Count(ctx, "../x", nil)
	require.ErrorContains(t, err, "invalid resource type")

	reqs := srv.requests()
	require.Equal(t, url.Values{"_lastUpdated": {"le2026-01-01T00:00:00Z"}, "_summary": {"count"}}, reqs[0].Query)
	require.Equal(t, "application/fhir+json", reqs[0].Header.Get("Accept"))
	for _, r := range reqs {
		// An unknown parameter must be a 400, never dropped: a count without the filter would be too large.
		require.Equal(t, "handling=strict", r.Header.Get("Prefer"), r.Path)
	}
	require.Equal(t, "/fhir", reqs[1].Path)
	require.Equal(t, url.Values{"_summary": {"count"}}, reqs[1].Query)
	require.Len(t, reqs, 4)
}

func TestSearchPaging(t *testing.T) {
	t.Parallel()
	srv := newFHIRServer(t, func(w http.ResponseWriter, r *http.Request, _ []byte, _ int) {
		switch r.URL.Query().Get("ct") {
		case "":
			writeBundle(w, []string{`{"resourceType":"Patient","id":"1"}`, `{"resourceType":"Patient","id":"2"}`}, "Patient?ct=two")
		case "two":
			_, _ = io.WriteString(w, `{"resourceType":"Bundle","type":"searchset","entry":[
				{"resource":{"resourceType":"OperationOutcome"},"search":{"mode":"outcome"}},
				{"fullUrl":"x"},
				{"resource":{"resourceType":"Patient","id":"3"},"search":{"mode":"match"}}],
				"link":[{"relation":"next","url":"`+"http://"+r.Host+`/Patient?ct=three"}]}`)
		case "three":
			writeBundle(w, []string{`{"resourceType":"Patient","id":"4"}`}, "")
		case "loop":
			writeBundle(w, nil, "Patient?ct=loop")
		}
	})
	c := newTestClient(t, srv.URL, "127.0.0.1")
	var got []string
	err := c.Search(context.Background(), "Patient", url.Values{"_count": {"2"}}, func(res json.RawMessage) error {
		var p struct{ ID string }
		require.NoError(t, json.Unmarshal(res, &p))
		got = append(got, p.ID)
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, []string{"1", "2", "3", "4"}, got)
	require.Equal(t, "2", srv.requests()[0].Query.Get("_count"))

	stop := errors.New("stop")
	calls := 0
	err = c.Search(context.Background(), "Patient", nil, func(json.RawMessage) error { calls++; return stop })
	require.ErrorIs(t, err, stop)
	require.Equal(t, 1, calls)

	err = c.Search(context.Background(), "Patient", url.Values{"ct": {"loop"}}, func(json.RawMessage) error { return nil })
	require.ErrorContains(t, err, "repeats")
}

func TestBatch(t *testing.T) {
	t.Parallel()
	srv := newFHIRServer(t, func(w http.ResponseWriter, _ *http.Request, body []byte, _ int) {
		var in struct {
			Entry []json.RawMessage `json:"entry"`
		}
		_ = json.Unmarshal(body, &in)
		statuses := []string{"201", "400 Bad Request", "200"}
		var out []string
		for i := range in.Entry {
			out = append(out, fmt.Sprintf(`{"response":{"status":%q}}`, statuses[i%3]))
		}
		_, _ = io.WriteString(w, `{"resourceType":"Bundle","type":"batch-response","entry":[`+strings.Join(out, ",")+`]}`)
	})
	c := newTestClient(t, srv.URL, "127.0.0.1")
	res, err := c.Batch(context.Background(), []BatchEntry{
		{Type: "SearchParameter", ID: "sp-1", Resource: []byte(`{"resourceType":"SearchParameter","id":"sp-1","url":"http://x/sp"}`)},
		{Type: "SearchParameter", ID: "sp-2", Resource: []byte(`{"resourceType":"SearchParameter","id":"sp-2"}`)},
	})
	require.NoError(t, err)
	require.Equal(t, []string{"201", "400 Bad Request"}, res.Status, "the status code alone, as the service writes it, or with its phrase")
	r := srv.requests()[0]
	require.Equal(t, http.MethodPost, r.Method)
	require.Equal(t, "/", r.Path)
	require.Equal(t, "application/fhir+json", r.Header.Get("Content-Type"))
	require.JSONEq(t, `{"resourceType":"Bundle","type":"batch","entry":[
		{"resource":{"resourceType":"SearchParameter","id":"sp-1","url":"http://x/sp"},"request":{"method":"PUT","url":"SearchParameter/sp-1"}},
		{"resource":{"resourceType":"SearchParameter","id":"sp-2"},"request":{"method":"PUT","url":"SearchParameter/sp-2"}}]}`, string(r.Body))

	for _, bad := range [][]BatchEntry{
		nil,
		{{Type: "Patient", ID: "a", Resource: []byte(`{"resourceType":"Observation","id":"a"}`)}},
		{{Type: "Patient", ID: "a/b", Resource: []byte(`{"resourceType":"Patient","id":"a/b"}`)}},
		{{Type: "Patient", ID: "a", Resource: []byte(`not json`)}},
	} {
		_, err := c.Batch(context.Background(), bad)
		require.Error(t, err)
	}
	require.Len(t, srv.requests(), 1)
}

func TestBatchAnswerMustMatch(t *testing.T) {
	t.Parallel()
	srv := newFHIRServer(t, func(w http.ResponseWriter, _ *http.Request, _ []byte, _ int) {
		_, _ = io.WriteString(w, `{"resourceType":"Bundle","type":"batch-response","entry":[]}`)
	})
	c := newTestClient(t, srv.URL, "127.0.0.1")
	_, err := c.Batch(context.Background(), []BatchEntry{{Type: "Patient", ID: "a", Resource: []byte(`{"resourceType":"Patient","id":"a"}`)}})
	require.ErrorContains(t, err, "0 entries for 1 sent")
}

func TestResourceTypes(t *testing.T) {
	t.Parallel()
	srv := newFHIRServer(t, func(w http.ResponseWriter, r *http.Request, _ []byte, _ int) {
		_, _ = io.WriteString(w, `{"resourceType":"CapabilityStatement","rest":[{"mode":"server","resource":[{"type":"Patient"},{"type":"Observation"}]}]}`)
	})
	c := newTestClient(t, srv.URL+"/r4", "127.0.0.1")
	types, err := c.ResourceTypes(context.Background())
	require.NoError(t, err)
	require.Equal(t, []string{"Patient", "Observation"}, types)
	require.Equal(t, "/r4/metadata", srv.requests()[0].Path)
}

func TestTokenCachedUntilNearExpiry(t *testing.T) {
	t.Parallel()
	srv := newFHIRServer(t, func(w http.ResponseWriter, _ *http.Request, _ []byte, _ int) { w.WriteHeader(http.StatusAccepted) })
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	c := newTestClient(t, srv.URL, "127.0.0.1", func(cfg *Config) { cfg.Now = clock })
	c.cred.expiry = now.Add(time.Hour)
	ctx := context.Background()
	for range 3 {
		_, err := c.ExportStatus(ctx, srv.URL+"/_operations/export/1")
		require.NoError(t, err)
	}
	require.Len(t, c.cred.asked(), 1)
	mu.Lock()
	now = now.Add(56 * time.Minute)
	mu.Unlock()
	_, err := c.ExportStatus(ctx, srv.URL+"/_operations/export/1")
	require.NoError(t, err)
	require.Len(t, c.cred.asked(), 2, "a token within the refresh margin is renewed")
}

func TestUnauthorizedDropsCachedToken(t *testing.T) {
	t.Parallel()
	srv := newFHIRServer(t, func(w http.ResponseWriter, _ *http.Request, _ []byte, n int) {
		if n == 0 {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})
	c := newTestClient(t, srv.URL, "127.0.0.1")
	_, err := c.ExportStatus(context.Background(), srv.URL+"/_operations/export/1")
	require.Error(t, err)
	_, err = c.ExportStatus(context.Background(), srv.URL+"/_operations/export/1")
	require.NoError(t, err)
	require.Len(t, c.cred.asked(), 2)
}

func TestCredentialFailureMakesNoCall(t *testing.T) {
	t.Parallel()
	srv := newFHIRServer(t, func(w http.ResponseWriter, _ *http.Request, _ []byte, _ int) { w.WriteHeader(http.StatusAccepted) })
	p, err := ParseHostPolicy("127.0.0.1")
	require.NoError(t, err)
	// localhost and 127.0.0.1 are different audiences; DevCredential refuses a non-loopback one, simulated here.
	c, err := New(srv.URL, Config{Credential: failingCredential{}, Policy: p})
	require.NoError(t, err)
	_, err = c.ExportStatus(context.Background(), srv.URL+"/_operations/export/1")
	require.ErrorContains(t, err, "get token")
	require.Empty(t, srv.requests())
}

type failingCredential struct{}

func (failingCredential) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{}, errors.New("no identity")
}

func TestLogsCarryNoTokenAndNoQuery(t *testing.T) {
	t.Parallel()
	srv := newFHIRServer(t, func(w http.ResponseWriter, _ *http.Request, _ []byte, n int) {
		if n == 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		writeBundle(w, nil, "")
	})
	var buf bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(&lockedWriter{w: &buf, mu: &mu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c := newTestClient(t, srv.URL, "127.0.0.1", func(cfg *Config) { cfg.Logger = logger })
	require.NoError(t, c.Search(context.Background(), "Patient", url.Values{"sig": {"s3cr3t"}}, func(json.RawMessage) error { return nil }))
	mu.Lock()
	out := buf.String()
	mu.Unlock()
	require.Contains(t, out, "/Patient")
	require.Contains(t, out, "status=503")
	require.NotContains(t, out, "s3cr3t")
	require.NotContains(t, out, identity.DevTokenPrefix)
	require.NotContains(t, out, "Bearer")
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestConnectionErrorsCarryNoQuery: a failed connection is reported and logged with the redacted URL only.
func TestConnectionErrorsCarryNoQuery(t *testing.T) {
	t.Parallel()
	srv := newFHIRServer(t, hangUp)
	var buf bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(&lockedWriter{w: &buf, mu: &mu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c := newTestClient(t, srv.URL, "127.0.0.1", func(cfg *Config) { cfg.Logger = logger })
	err := c.Search(context.Background(), "Patient", url.Values{"sig": {"s3cr3t"}}, func(json.RawMessage) error { return nil })
	require.Error(t, err)
	require.Contains(t, err.Error(), srv.URL+"/Patient")
	require.NotContains(t, err.Error(), "s3cr3t")
	mu.Lock()
	out := buf.String()
	mu.Unlock()
	require.Contains(t, out, "fhir call failed")
	require.NotContains(t, out, "s3cr3t")
}

func TestErrorClassification(t *testing.T) {
	t.Parallel()
	for status, want := range map[int][3]bool{ // refused, throttled, temporary
		400: {true, false, false}, 403: {true, false, false}, 404: {true, false, false}, 408: {false, false, true},
		423: {false, false, true}, 429: {false, true, true}, 500: {false, false, true}, 501: {false, false, false},
		503: {false, false, true},
	} {
		err := fmt.Errorf("wrapped: %w", &Error{Op: "count", StatusCode: status})
		var fe *Error
		require.ErrorAs(t, err, &fe)
		require.Equal(t, want, [3]bool{Refused(err), Throttled(err), fe.Temporary()}, "HTTP %d", status)
	}
	require.False(t, Refused(errors.New("dial tcp: refused")), "not a server's answer")
	require.False(t, Throttled(nil))
}

func TestExportKickoffPaths(t *testing.T) {
	t.Parallel()
	var srv *fhirServer
	srv = newFHIRServer(t, func(w http.ResponseWriter, r *http.Request, _ []byte, _ int) {
		w.Header().Set("Content-Location", srv.URL+"/fhir/_operations/export/42")
		w.WriteHeader(http.StatusAccepted)
	})
	c := newTestClient(t, srv.URL+"/fhir/", "127.0.0.1")
	for _, path := range []string{"Patient/$export", "Group/cohort-1/$export"} {
		_, err := c.ExportKickoff(context.Background(), ExportRequest{Path: path})
		require.NoError(t, err)
		reqs := srv.requests()
		require.Equal(t, "/fhir/"+path, reqs[len(reqs)-1].Path)
	}
	for _, path := range []string{"../$export", "Group/a/b/$export", "Group//$export", "Observation/$export", "Patient/$export?x=1"} {
		_, err := c.ExportKickoff(context.Background(), ExportRequest{Path: path})
		require.ErrorContains(t, err, "is not $export", path)
	}
	require.Len(t, srv.requests(), 2, "a refused path is never sent")

	until := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	_, err := c.ExportKickoff(context.Background(), ExportRequest{Path: "Patient/$export", Until: &until})
	require.NoError(t, err)
	reqs := srv.requests()
	require.Equal(t, url.Values{"_until": {"2024-05-06T07:08:09.0000000Z"}}, reqs[len(reqs)-1].Query)
	later := until.Add(time.Hour)
	_, err = c.ExportKickoff(context.Background(), ExportRequest{Since: &later, Until: &until})
	require.ErrorContains(t, err, "until is before since")
}
