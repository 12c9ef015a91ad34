package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/azuritetest"
	"github.com/fhir-migrator/fhir-migrator/internal/devhost"
	"github.com/fhir-migrator/fhir-migrator/internal/fhirsim"
	"github.com/fhir-migrator/fhir-migrator/internal/localstack"
)

// secureStack is a stack whose local host and handler output are both captured, and whose FHIR servers sit
// behind recorders of every request's Authorization.
type secureStack struct {
	*stack
	hostLogs *localstack.SyncBuffer
	source   *recorder
	dest     *recorder
}

// recorder fronts a FHIR server and remembers the audience of every bearer token it was sent. rewrite may
// change an answer on its way back.
type recorder struct {
	srv     *httptest.Server
	next    http.Handler
	rewrite func(h http.Header)

	mu        sync.Mutex
	requests  int
	audiences []string
	raw       []string
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.requests++
	if auth := req.Header.Get("Authorization"); auth != "" {
		r.raw = append(r.raw, auth)
		r.audiences = append(r.audiences, audienceOf(auth))
	}
	r.mu.Unlock()
	if r.rewrite == nil {
		r.next.ServeHTTP(w, req)
		return
	}
	rec := httptest.NewRecorder()
	r.next.ServeHTTP(rec, req)
	res := rec.Result()
	defer res.Body.Close()
	r.rewrite(res.Header)
	for k, v := range res.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(res.StatusCode)
	_, _ = io.Copy(w, res.Body)
}

func (r *recorder) seen() (requests int, audiences, raw []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests, append([]string(nil), r.audiences...), append([]string(nil), r.raw...)
}

// audienceOf reads the audience a development token names ("dev." + base64url(audience)); other tokens are "?".
func audienceOf(auth string) string {
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok {
		return "?"
	}
	enc, ok := strings.CutPrefix(tok, "dev.")
	if !ok {
		return "?"
	}
	aud, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil {
		return "?"
	}
	return string(aud)
}

func newRecorder(t *testing.T, next http.Handler) *recorder {
	r := &recorder{next: next}
	r.srv = serveLoopback(t, r)
	return r
}

func newSecureStack(t *testing.T, patients int, sourceRewrite func(h http.Header)) *secureStack {
	t.Helper()
	if testing.Short() {
		t.Skip("stack-level test; run without -short")
	}
	s := &secureStack{stack: &stack{t: t, logs: &localstack.SyncBuffer{}}, hostLogs: &localstack.SyncBuffer{}}
	s.srcSim = fhirsim.New(fhirsim.WithFlavor(fhirsim.FlavorAPIForFHIR), fhirsim.WithStorage(azurite.ConnectionString),
		fhirsim.WithSeed(patients, 7), fhirsim.WithJobDelay(50*time.Millisecond))
	s.destSim = fhirsim.New(fhirsim.WithFlavor(fhirsim.FlavorAHDS), fhirsim.WithStorage(azurite.ConnectionString),
		fhirsim.WithJobDelay(50*time.Millisecond))
	t.Cleanup(func() { s.srcSim.Close(); s.destSim.Close() })
	s.source = newRecorder(t, s.srcSim)
	s.source.rewrite = sourceRewrite
	s.dest = newRecorder(t, s.destSim)
	s.stack.source, s.stack.dest = s.source.srv, s.dest.srv

	settings := localstack.Settings(azurite.ConnectionString, map[string]string{
		"MigrationContainer": fmt.Sprintf("sec-%d-%d", time.Now().UnixNano()%1e9, stackSeq.Add(1)),
		"AllowedHosts":       "127.0.0.1,*.azurehealthcareapis.com",
		"LogLevel":           "debug",
	})
	h, err := devhost.New(devhost.Config{
		AppRoot: repoRoot, Settings: settings, Addr: "127.0.0.1:0", ExecutablePath: handlerBin,
		HandlerStdout: s.logs, Logger: slog.New(slog.NewTextHandler(s.hostLogs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	require.NoError(t, h.Start(ctx))
	s.host = h
	t.Cleanup(func() {
		_ = h.Close()
		if t.Failed() {
			t.Logf("handler log:\n%s\nhost log:\n%s", s.logs.String(), s.hostLogs.String())
		}
	})
	return s
}

// TestNoSecretInAnyLog runs whole migrations (one completed, one canceled, refused requests) at debug level and
// scans everything the handler and the local host wrote, and the documents served, for tokens, the storage
// account key and connection strings.
func TestNoSecretInAnyLog(t *testing.T) {
	t.Parallel()
	s := newSecureStack(t, 3, nil)
	id := s.start(map[string]any{"source": s.source.srv.URL, "destination": s.dest.srv.URL})
	final, doc := s.await(id, nil)
	require.Equal(t, "completed", final.Status, string(doc))

	canceled := s.start(map[string]any{"source": s.source.srv.URL, "destination": s.dest.srv.URL, "types": []string{"Patient"}})
	status, cancelDoc := s.api(http.MethodDelete, "/api/migrations/"+canceled, nil)
	require.Contains(t, []int{http.StatusOK, http.StatusAccepted, http.StatusConflict}, status, string(cancelDoc))
	_, refused := s.api(http.MethodPost, "/api/migrations", map[string]any{"source": "https://user:secret@x.azurehealthcareapis.com", "destination": s.dest.srv.URL})
	_, list := s.api(http.MethodGet, "/api/migrations", nil)

	_, _, sourceTokens := s.source.seen()
	_, _, destTokens := s.dest.seen()
	require.NotEmpty(t, sourceTokens, "the handler did authenticate")
	require.NotEmpty(t, destTokens)

	secrets := map[string]string{
		"source token":      fhirsim.DevToken(strings.TrimSuffix(s.source.srv.URL, "/")),
		"destination token": fhirsim.DevToken(strings.TrimSuffix(s.dest.srv.URL, "/")),
		"account key":       azuritetest.AccountKey,
		"connection string": azurite.ConnectionString,
	}
	for _, raw := range append(sourceTokens, destTokens...) {
		secrets["token "+raw[:min(len(raw), 20)]] = strings.TrimPrefix(raw, "Bearer ")
	}
	patterns := map[string]*regexp.Regexp{
		"bearer header":      regexp.MustCompile(`(?i)bearer\s+[A-Za-z0-9._~+/-]{8,}`),
		"dev token":          regexp.MustCompile(`\bdev\.[A-Za-z0-9_-]{16,}`),
		"account key field":  regexp.MustCompile(`(?i)AccountKey=`),
		"SAS signature":      regexp.MustCompile(`(?i)[?&]sig=`),
		"JWT-shaped token":   regexp.MustCompile(`eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.`),
		"client secret name": regexp.MustCompile(`(?i)client_?secret["=:]\s*\S`),
	}
	outputs := map[string]string{
		"handler output":    s.logs.String(),
		"local host output": s.hostLogs.String(),
		"documents":         string(doc) + string(cancelDoc) + string(refused) + string(list),
	}
	require.NotEmpty(t, outputs["handler output"], "the handler's output was captured")
	require.NotEmpty(t, outputs["local host output"], "the local host's output was captured")
	for where, text := range outputs {
		for name, secret := range secrets {
			require.NotContains(t, text, secret, "%s holds the %s", where, name)
		}
		for name, re := range patterns {
			require.Nil(t, re.FindStringIndex(text), "%s holds a %s: %q", where, name, re.FindString(text))
		}
	}
}

// TestTokensGoOnlyToTheirOwnOrigin: every token the handler sends names the server it is sent to; a
// Content-Location on another origin (here: another port of the same host, proxied to the source) is called
// without any token, and the simulators refuse a token minted for another origin.
func TestTokensGoOnlyToTheirOwnOrigin(t *testing.T) {
	t.Parallel()
	var decoy *recorder
	var s *secureStack
	s = newSecureStack(t, 2, func(h http.Header) {
		loc := h.Get("Content-Location")
		if loc == "" {
			return
		}
		// The decoy is set before the first migration starts, so before any Content-Location is answered.
		h.Set("Content-Location", strings.Replace(loc, s.source.srv.URL, decoy.srv.URL, 1))
	})
	target, err := url.Parse(s.source.srv.URL)
	require.NoError(t, err)
	decoy = newRecorder(t, httputil.NewSingleHostReverseProxy(target))

	id := s.start(map[string]any{"source": s.source.srv.URL, "destination": s.dest.srv.URL, "types": []string{"Patient"}})
	final, doc := s.await(id, nil)
	require.NotEqual(t, "completed", final.Status, "an export polled without its token cannot complete: %s", doc)

	srcOrigin, dstOrigin := strings.TrimSuffix(s.source.srv.URL, "/"), strings.TrimSuffix(s.dest.srv.URL, "/")
	_, srcAud, _ := s.source.seen()
	require.NotEmpty(t, srcAud)
	for _, a := range srcAud {
		require.Equal(t, srcOrigin, a, "the source received a token minted for another origin")
	}
	_, dstAud, _ := s.dest.seen()
	for _, a := range dstAud {
		require.Equal(t, dstOrigin, a, "the destination received a token minted for another origin")
	}
	decoyRequests, decoyAud, _ := decoy.seen()
	require.Positive(t, decoyRequests, "the handler did poll the Content-Location on the other origin")
	require.Empty(t, decoyAud, "no token was sent to the other origin (%d requests reached it)", decoyRequests)

	// The simulators themselves refuse a token minted for another origin.
	for _, tc := range []struct{ base, token string }{
		{srcOrigin, fhirsim.DevToken(dstOrigin)},
		{dstOrigin, fhirsim.DevToken(srcOrigin)},
	} {
		req, err := http.NewRequest(http.MethodGet, tc.base+"/Patient?_summary=count", nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+tc.token)
		req.Header.Set("Accept", "application/fhir+json")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "%s accepted a token for another origin", tc.base)
	}
}

// TestSSRFGuardRefusesStartRequests: source and destination must be https on the allow-list; IP literals,
// userinfo and other ports are refused with a 400, and no migration is created.
func TestSSRFGuardRefusesStartRequests(t *testing.T) {
	t.Parallel()
	s := newSecureStack(t, 1, nil)
	for _, bad := range []string{
		"http://src.azurehealthcareapis.com",
		"https://10.0.0.5",
		"https://[::1]:443",
		"https://169.254.169.254/metadata",
		"https://user:pw@src.azurehealthcareapis.com",
		"https://src.azurehealthcareapis.com:8443",
		"https://src.azurehealthcareapis.com.evil.example",
		"https://evil.example/?x=.azurehealthcareapis.com",
		"file:///etc/passwd",
	} {
		status, raw := s.api(http.MethodPost, "/api/migrations", map[string]any{"source": bad, "destination": s.dest.srv.URL})
		require.Equal(t, http.StatusBadRequest, status, "%s: %s", bad, raw)
		var e struct {
			Error struct{ Code, Field string } `json:"error"`
		}
		require.NoError(t, json.Unmarshal(raw, &e), string(raw))
		require.Equal(t, "source", e.Error.Field, "%s: %s", bad, raw)
		require.NotEmpty(t, e.Error.Code)
	}
	_, list := s.api(http.MethodGet, "/api/migrations", nil)
	var l struct {
		Migrations []json.RawMessage `json:"migrations"`
	}
	require.NoError(t, json.Unmarshal(list, &l))
	require.Empty(t, l.Migrations)
	_, _, seen := s.source.seen()
	require.Empty(t, seen)
}

// TestHTTPFunctionsNeedAFunctionKey: every HTTP-triggered function is authLevel function in Azure.
func TestHTTPFunctionsNeedAFunctionKey(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(filepath.Join(repoRoot, "*", "function.json"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	httpFunctions := 0
	for _, f := range files {
		raw, err := os.ReadFile(f)
		require.NoError(t, err)
		var fn struct {
			Bindings []struct {
				Type      string `json:"type"`
				Direction string `json:"direction"`
				AuthLevel string `json:"authLevel"`
			} `json:"bindings"`
		}
		require.NoError(t, json.Unmarshal(raw, &fn), f)
		for _, b := range fn.Bindings {
			if b.Type == "httpTrigger" {
				httpFunctions++
				require.Equal(t, "function", b.AuthLevel, "%s: an HTTP function must not be anonymous", f)
			}
		}
	}
	require.GreaterOrEqual(t, httpFunctions, 2)
}
