package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/stretchr/testify/require"
)

// fakeCredential hands out numbered tokens that expire after ttl, and records what was asked.
type fakeCredential struct {
	mu     sync.Mutex
	ttl    time.Duration
	err    error
	scopes [][]string
}

func (f *fakeCredential) GetToken(_ context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return azcore.AccessToken{}, f.err
	}
	f.scopes = append(f.scopes, o.Scopes)
	return azcore.AccessToken{Token: "token-" + string(rune('0'+len(f.scopes))), ExpiresOn: time.Now().Add(f.ttl)}, nil
}

func (f *fakeCredential) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.scopes)
}

// authService answers GET /api/migrations/m-1 (completed on the third poll) and records each request's
// Authorization and x-functions-key.
func authService(t *testing.T) (*httptest.Server, func() [][2]string) {
	t.Helper()
	var mu sync.Mutex
	var seen [][2]string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, [2]string{r.Header.Get("Authorization"), r.Header.Get("x-functions-key")})
		n := len(seen)
		mu.Unlock()
		status := "exporting"
		if n >= 3 {
			status = "completed"
		}
		_, _ = io.WriteString(w, `{"id":"m-1","status":"`+status+`","jobs":[]}`)
	}))
	t.Cleanup(srv.Close)
	return srv, func() [][2]string {
		mu.Lock()
		defer mu.Unlock()
		return append([][2]string(nil), seen...)
	}
}

func runWithEnv(t *testing.T, vars map[string]string, cred func(signIn) (azcore.TokenCredential, error), args ...string) (int, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	code, err := runEnv(context.Background(), args, &env{out: &out, errOut: &errOut, now: time.Now,
		getenv: func(k string) string { return vars[k] }, credential: cred})
	return code, errOut.String(), err
}

// With an audience the CLI signs in (AUTH_MODE entra) and sends the token as Authorization: Bearer on every
// request, with the function key; the token is reused until shortly before it expires; the sign-in options reach
// the credential.
func TestSignInSendsABearerToken(t *testing.T) {
	t.Parallel()
	srv, seen := authService(t)
	cred := &fakeCredential{ttl: time.Hour}
	var got []signIn
	factory := func(s signIn) (azcore.TokenCredential, error) {
		got = append(got, s)
		return cred, nil
	}
	vars := map[string]string{envURL: srv.URL, envKey: "k", envAudience: "0b9e6c3a-1d2f-4e5a-8b7c-6d5e4f3a2b1c"}
	code, _, err := runWithEnv(t, vars, factory, "--interval", "1ms", "watch", "m-1")
	require.NoError(t, err)
	require.Equal(t, 0, code)
	reqs := seen()
	require.Len(t, reqs, 3)
	for _, r := range reqs {
		require.Equal(t, [2]string{"Bearer token-1", "k"}, r, "the token and the key on every request")
	}
	require.Equal(t, 1, cred.calls(), "one sign-in for the whole watch")
	require.Equal(t, []string{"api://0b9e6c3a-1d2f-4e5a-8b7c-6d5e4f3a2b1c/.default"}, cred.scopes[0])
	require.Equal(t, []signIn{{scope: "api://0b9e6c3a-1d2f-4e5a-8b7c-6d5e4f3a2b1c/.default", prompt: got[0].prompt}}, got,
		"the Azure CLI's sign-in by default")

	// Flags over the environment; a device code sign-in with its tenant and client.
	got = nil
	code, _, err = runWithEnv(t, vars, factory, "status", "m-1", "--audience", "api://migrator/", "--device-code",
		"--tenant", "contoso.onmicrosoft.com", "--client-id", "11111111-2222-3333-4444-555555555555")
	require.NoError(t, err)
	require.Equal(t, 0, code)
	require.Equal(t, "api://migrator/.default", got[0].scope)
	require.True(t, got[0].deviceCode)
	require.Equal(t, "contoso.onmicrosoft.com", got[0].tenant)
	require.Equal(t, "11111111-2222-3333-4444-555555555555", got[0].clientID)
	require.NotNil(t, got[0].prompt, "the device code's instructions have somewhere to go")
	vars[envDeviceCode] = "1"
	got = nil
	_, _, err = runWithEnv(t, vars, factory, "status", "m-1")
	require.NoError(t, err)
	require.True(t, got[0].deviceCode, envDeviceCode)

	// A token about to expire is replaced.
	short := &fakeCredential{ttl: time.Minute}
	ts := &tokenSource{cred: short, scope: "api://x/.default"}
	for range 3 {
		_, err := ts.token(context.Background())
		require.NoError(t, err)
	}
	require.Equal(t, 3, short.calls(), "within tokenMargin of its expiry a token is not used")
}

// Without an audience (AUTH_MODE keys) nothing signs in and no Authorization is sent; a failed sign-in is an error
// that says what to do; --device-code alone is a usage error.
func TestKeysModeSendsNoToken(t *testing.T) {
	t.Parallel()
	srv, seen := authService(t)
	never := func(signIn) (azcore.TokenCredential, error) {
		t.Fatal("no sign-in without an audience")
		return nil, nil
	}
	code, _, err := runWithEnv(t, map[string]string{envURL: srv.URL, envKey: "k"}, never, "status", "m-1")
	require.NoError(t, err)
	require.Equal(t, 0, code)
	require.Equal(t, [2]string{"", "k"}, seen()[0])

	failing := func(signIn) (azcore.TokenCredential, error) {
		return &fakeCredential{err: errors.New("Azure CLI not found on path")}, nil
	}
	code, _, err = runWithEnv(t, map[string]string{envURL: srv.URL, envAudience: "api://migrator"}, failing, "status", "m-1")
	require.Equal(t, 1, code)
	require.ErrorContains(t, err, "sign in for api://migrator/.default: Azure CLI not found on path (az login first, or --device-code")
	require.Len(t, seen(), 1, "nothing sent without the token")

	code, _, err = runWithEnv(t, map[string]string{envURL: srv.URL}, never, "status", "m-1", "--device-code")
	require.Equal(t, 2, code)
	require.ErrorContains(t, err, "--audience")
}

func TestScopeOf(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"":                                     "",
		"0b9e6c3a-1d2f-4e5a-8b7c-6d5e4f3a2b1c": "api://0b9e6c3a-1d2f-4e5a-8b7c-6d5e4f3a2b1c/.default",
		"api://0b9e6c3a-1d2f-4e5a-8b7c-6d5e4f3a2b1c": "api://0b9e6c3a-1d2f-4e5a-8b7c-6d5e4f3a2b1c/.default",
		"api://migrator/.default":                    "api://migrator/.default",
		"https://contoso.com/migrator/":              "https://contoso.com/migrator/.default",
	} {
		require.Equal(t, want, scopeOf(in), in)
	}
}
