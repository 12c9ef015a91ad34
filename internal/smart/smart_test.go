package smart_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/fhirsim"
	"github.com/fhir-migrator/fhir-migrator/internal/smart"
)

func writeKey(t *testing.T, key any) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "key.pem")
	require.NoError(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600))
	return path
}

func startBulkSim(t *testing.T, opts ...fhirsim.Option) (*fhirsim.Server, string) {
	t.Helper()
	s := fhirsim.New(append([]fhirsim.Option{fhirsim.WithFlavor(fhirsim.FlavorBulkData)}, opts...)...)
	hs := httptest.NewServer(s)
	t.Cleanup(func() {
		hs.Close()
		s.Close()
	})
	return s, hs.URL
}

// clock is a settable clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestFileSignersGetCacheRenewAndInvalidate(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	ecKey, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	require.NoError(t, err)
	for _, tc := range []struct {
		alg string
		key crypto.Signer
	}{{"RS384", rsaKey}, {"ES384", ecKey}} {
		t.Run(tc.alg, func(t *testing.T) {
			sim, base := startBulkSim(t, fhirsim.WithSMARTClient("client-1", tc.key.Public()))
			signer, err := smart.NewFileSigner(writeKey(t, tc.key))
			require.NoError(t, err)
			require.Equal(t, tc.alg, signer.Alg())
			clk := &clock{now: time.Now()}
			cred, err := smart.New(smart.Config{FHIRBaseURL: base, ClientID: "client-1", Signer: signer, Now: clk.Now})
			require.NoError(t, err)
			endpoint, err := cred.Discover(t.Context())
			require.NoError(t, err)
			require.Equal(t, base+fhirsim.TokenPath, endpoint)

			tok, err := cred.GetToken(t.Context(), policy.TokenRequestOptions{})
			require.NoError(t, err)
			again, err := cred.GetToken(t.Context(), policy.TokenRequestOptions{})
			require.NoError(t, err)
			require.Equal(t, tok.Token, again.Token, "cached while far from expiry")
			require.Len(t, sim.TokenGrants(), 1)
			require.Equal(t, smart.ScopeV2, sim.TokenGrants()[0].Scope)
			require.Equal(t, tc.alg, sim.TokenGrants()[0].Alg)

			// Five-minute tokens renew in their last minute.
			clk.Add(3*time.Minute + 59*time.Second)
			again, err = cred.GetToken(t.Context(), policy.TokenRequestOptions{})
			require.NoError(t, err)
			require.Equal(t, tok.Token, again.Token)
			clk.Add(2 * time.Second)
			renewed, err := cred.GetToken(t.Context(), policy.TokenRequestOptions{})
			require.NoError(t, err)
			require.NotEqual(t, tok.Token, renewed.Token)
			require.Len(t, sim.TokenGrants(), 2)

			// A 401 to a token that is not the cached one changes nothing; to the cached one, renews.
			cred.Invalidate(tok.Token)
			same, err := cred.GetToken(t.Context(), policy.TokenRequestOptions{})
			require.NoError(t, err)
			require.Equal(t, renewed.Token, same.Token)
			cred.Invalidate(renewed.Token)
			third, err := cred.GetToken(t.Context(), policy.TokenRequestOptions{})
			require.NoError(t, err)
			require.NotEqual(t, renewed.Token, third.Token)
			require.Len(t, sim.TokenGrants(), 3)
			for _, g := range sim.TokenGrants() {
				require.Equal(t, http.StatusOK, g.Status)
			}
		})
	}
}

func TestRefusals(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	signer, err := smart.NewFileSigner(writeKey(t, key))
	require.NoError(t, err)

	_, err = smart.New(smart.Config{FHIRBaseURL: "https://fhir.example.com", ClientID: "c", Signer: signer})
	require.ErrorContains(t, err, "local stack only", "a key file never signs for a remote server")
	_, err = smart.New(smart.Config{FHIRBaseURL: "http://127.0.0.1:1", Signer: signer})
	require.ErrorContains(t, err, "client id")

	// A client the server does not know is refused with the server's error.
	_, base := startBulkSim(t)
	cred, err := smart.New(smart.Config{FHIRBaseURL: base, ClientID: "stranger", Signer: signer})
	require.NoError(t, err)
	_, err = cred.GetToken(t.Context(), policy.TokenRequestOptions{})
	require.ErrorContains(t, err, "invalid_client")

	small, err := rsa.GenerateKey(rand.Reader, 1024)
	require.NoError(t, err)
	_, err = smart.NewFileSigner(writeKey(t, small))
	require.ErrorContains(t, err, "2048")
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	_, err = smart.NewFileSigner(writeKey(t, p256))
	require.ErrorContains(t, err, "P-384")

	for _, id := range []string{
		"http://v.vault.azure.net/keys/k", "https://v.vault.azure.net/secrets/k", "https://evil.example.com/keys/k",
		"https://v.vault.azure.net/keys/", "https://v.vault.azure.net:8443/keys/k", "https://v.vault.azure.net/keys/k/1/2",
	} {
		_, err := smart.NewKeyVaultSigner(id, "RS384", fakeCred{}, nil)
		require.Error(t, err, id)
	}
	_, err = smart.NewKeyVaultSigner("https://v.vault.azure.net/keys/k", "RS256", fakeCred{}, nil)
	require.Error(t, err)
}

type fakeCred struct{}

func (fakeCred) GetToken(_ context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: "kv-token:" + o.Scopes[0], ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// A fake Key Vault answering the sign call as the REST reference describes it signs the assertion the bulk-data
// simulator then verifies.
func TestKeyVaultSigner(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	var calls []string
	vault := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls = append(calls, r.Method+" "+r.Host+r.URL.RequestURI())
		var body struct{ Alg, Value string }
		if r.Header.Get("Authorization") != "Bearer kv-token:https://vault.azure.net/.default" ||
			json.NewDecoder(r.Body).Decode(&body) != nil || body.Alg != "RS384" {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":{"code":"Unauthorized","message":"no"}}`))
			return
		}
		digest, err := base64.RawURLEncoding.DecodeString(body.Value)
		if err != nil || len(digest) != 48 {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":{"code":"BadParameter","message":"digest"}}`))
			return
		}
		sig, _ := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA384, digest)
		_ = json.NewEncoder(w).Encode(map[string]string{"kid": "https://myvault.vault.azure.net/keys/smart/v1",
			"value": base64.RawURLEncoding.EncodeToString(sig)})
	}))
	defer vault.Close()
	tr := vault.Client().Transport.(*http.Transport).Clone()
	tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, vault.Listener.Addr().String())
	}
	tr.TLSClientConfig = &tls.Config{RootCAs: tr.TLSClientConfig.RootCAs, ServerName: "example.com"}
	signer, err := smart.NewKeyVaultSigner("https://myvault.vault.azure.net/keys/smart/v1", "RS384", fakeCred{}, &http.Client{Transport: tr})
	require.NoError(t, err)

	sim, base := startBulkSim(t, fhirsim.WithSMARTClient("kv-client", &key.PublicKey))
	cred, err := smart.New(smart.Config{FHIRBaseURL: base, ClientID: "kv-client", Signer: signer, KeyID: "k1"})
	require.NoError(t, err)
	_, err = cred.GetToken(t.Context(), policy.TokenRequestOptions{})
	require.NoError(t, err)
	require.Equal(t, []string{"POST myvault.vault.azure.net/keys/smart/v1/sign?api-version=7.4"}, calls)
	require.Equal(t, http.StatusOK, sim.TokenGrants()[0].Status)
}
