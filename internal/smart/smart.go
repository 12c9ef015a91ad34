// Package smart is a SMART Backend Services client (HL7 SMART App Launch 2.x, "Backend Services"): it finds the
// token endpoint in the FHIR server's /.well-known/smart-configuration, asks it for an access token with the
// client_credentials grant and a private_key_jwt client assertion (RFC 7523) signed RS384 or ES384, caches the
// token and renews it before it expires. The key stays in Azure Key Vault (KeyVaultSigner); for the local stack
// only, a PEM file may hold it (FileSigner, loopback token endpoints only).
//
// Credential implements azcore.TokenCredential, so the project's FHIR client uses it as it uses a managed
// identity. No token, assertion or key is ever logged.
package smart

import (
	"context"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// Signer signs a JWS signing input's SHA-384 digest. Sign returns the JWS signature bytes: PKCS #1 v1.5 for
// RS384, the 96-byte r||s for ES384.
type Signer interface {
	// Alg is "RS384" or "ES384".
	Alg() string
	Sign(ctx context.Context, digest []byte) ([]byte, error)
	// LoopbackOnly is true for a signer whose key is on this machine: only a loopback token endpoint may be used.
	LoopbackOnly() bool
}

// Scopes asked for: SMART v2 first, v1 when the server lists only that.
const (
	ScopeV2 = "system/*.rs"
	ScopeV1 = "system/*.read"
)

// assertionLifetime is the client assertion's exp from now; the IG allows at most five minutes.
const assertionLifetime = 4 * time.Minute

// maxRenewMargin bounds how long before its expiry a token is renewed; shorter-lived tokens renew at a fifth of
// their lifetime before it.
const maxRenewMargin = time.Minute

// Config configures a Credential.
type Config struct {
	// FHIRBaseURL is the FHIR server whose smart-configuration names the token endpoint.
	FHIRBaseURL string
	ClientID    string
	// Scope overrides the scope asked for (default: system/*.rs, or system/*.read when the server lists only it).
	Scope string
	// KeyID is the assertion's kid header: the key's id in the JWKS the server holds for the client (optional).
	KeyID  string
	Signer Signer
	// HTTPClient is used for discovery and the token endpoint (default: a client with a 30 s timeout).
	HTTPClient *http.Client
	Logger     *slog.Logger
	// Now is the clock of the token cache (tests); the assertion's exp is always wall-clock time, the server's.
	Now func() time.Time
}

// Credential gets and renews SMART Backend Services tokens for one client at one server.
type Credential struct {
	cfg  Config
	http *http.Client
	log  *slog.Logger
	now  func() time.Time

	mu       sync.Mutex
	endpoint string // the token endpoint, once discovered
	scope    string
	token    azcore.AccessToken
	margin   time.Duration
}

// New checks cfg; the token endpoint is discovered on the first GetToken.
func New(cfg Config) (*Credential, error) {
	switch {
	case cfg.ClientID == "":
		return nil, errors.New("smart: the client id is required")
	case cfg.Signer == nil:
		return nil, errors.New("smart: a signer is required")
	case cfg.Signer.Alg() != "RS384" && cfg.Signer.Alg() != "ES384":
		return nil, fmt.Errorf("smart: the signing algorithm %q is neither RS384 nor ES384", cfg.Signer.Alg())
	}
	if _, err := checkURL(cfg.FHIRBaseURL, cfg.Signer.LoopbackOnly()); err != nil {
		return nil, fmt.Errorf("smart: FHIR base URL: %w", err)
	}
	c := &Credential{cfg: cfg, http: cfg.HTTPClient, log: cfg.Logger, now: cfg.Now}
	if c.http == nil {
		c.http = &http.Client{Timeout: 30 * time.Second}
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	return c, nil
}

// checkURL requires https, or http on a loopback host; loopbackOnly requires a loopback host.
func checkURL(raw string, loopbackOnly bool) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil {
		return nil, fmt.Errorf("%q is not an absolute URL without user info", raw)
	}
	loopback := isLoopback(u.Hostname())
	switch {
	case loopbackOnly && !loopback:
		return nil, fmt.Errorf("%s is not a loopback host: a key file is for the local stack only; use a Key Vault key", u.Hostname())
	case u.Scheme == "https", u.Scheme == "http" && loopback:
		return u, nil
	}
	return nil, fmt.Errorf("%q must be https (http only on a loopback host)", raw)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// GetToken implements azcore.TokenCredential: the cached token while it is far enough from expiry, else a new one.
// The scopes asked for are ignored: the token is the SMART one for the configured server.
func (c *Credential) GetToken(ctx context.Context, _ policy.TokenRequestOptions) (azcore.AccessToken, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.token.Token != "" && c.now().Before(c.token.ExpiresOn.Add(-c.margin)) {
		return c.token, nil
	}
	if c.endpoint == "" {
		if err := c.discoverLocked(ctx); err != nil {
			return azcore.AccessToken{}, err
		}
	}
	tok, lifetime, err := c.requestLocked(ctx)
	if err != nil {
		return azcore.AccessToken{}, err
	}
	c.token, c.margin = tok, min(maxRenewMargin, lifetime/5)
	c.log.InfoContext(ctx, "smart token issued", "client_id", c.cfg.ClientID, "expires_in", lifetime, "scope", c.scope)
	return tok, nil
}

// Invalidate drops token if it is the cached one (the server answered 401 to it): the next GetToken renews.
func (c *Credential) Invalidate(token string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if token != "" && c.token.Token == token {
		c.token = azcore.AccessToken{}
	}
}

// smartConfiguration is the part of /.well-known/smart-configuration the client reads.
type smartConfiguration struct {
	TokenEndpoint     string   `json:"token_endpoint"`
	AuthMethods       []string `json:"token_endpoint_auth_methods_supported"`
	SigningAlgs       []string `json:"token_endpoint_auth_signing_alg_values_supported"`
	ScopesSupported   []string `json:"scopes_supported"`
	GrantTypes        []string `json:"grant_types_supported"`
	CapabilitiesNames []string `json:"capabilities"`
}

// Discover reads the server's smart-configuration and returns its token endpoint (also cached for GetToken).
func (c *Credential) Discover(ctx context.Context) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.endpoint == "" {
		if err := c.discoverLocked(ctx); err != nil {
			return "", err
		}
	}
	return c.endpoint, nil
}

func (c *Credential) discoverLocked(ctx context.Context) error {
	u := strings.TrimSuffix(c.cfg.FHIRBaseURL, "/") + "/.well-known/smart-configuration"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("smart: discovery request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("smart: read %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("smart: %s answered %d: the server does not advertise SMART Backend Services", u, resp.StatusCode)
	}
	var sc smartConfiguration
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&sc); err != nil {
		return fmt.Errorf("smart: %s is not JSON: %w", u, err)
	}
	if _, err := checkURL(sc.TokenEndpoint, c.cfg.Signer.LoopbackOnly()); err != nil {
		return fmt.Errorf("smart: token_endpoint: %w", err)
	}
	if len(sc.AuthMethods) > 0 && !slices.Contains(sc.AuthMethods, "private_key_jwt") {
		return fmt.Errorf("smart: the server does not take private_key_jwt (it lists %v)", sc.AuthMethods)
	}
	if len(sc.SigningAlgs) > 0 && !slices.Contains(sc.SigningAlgs, c.cfg.Signer.Alg()) {
		return fmt.Errorf("smart: the server does not take %s assertions (it lists %v)", c.cfg.Signer.Alg(), sc.SigningAlgs)
	}
	if len(sc.GrantTypes) > 0 && !slices.Contains(sc.GrantTypes, "client_credentials") {
		return fmt.Errorf("smart: the server does not take the client_credentials grant (it lists %v)", sc.GrantTypes)
	}
	c.scope = c.cfg.Scope
	if c.scope == "" {
		c.scope = ScopeV2
		if len(sc.ScopesSupported) > 0 && !slices.Contains(sc.ScopesSupported, ScopeV2) && slices.Contains(sc.ScopesSupported, ScopeV1) {
			c.scope = ScopeV1
		}
	}
	c.endpoint = sc.TokenEndpoint
	return nil
}

// requestLocked asks the token endpoint for a token with a fresh assertion.
func (c *Credential) requestLocked(ctx context.Context) (azcore.AccessToken, time.Duration, error) {
	assertion, err := c.assertion(ctx)
	if err != nil {
		return azcore.AccessToken{}, 0, err
	}
	form := url.Values{
		"grant_type":            {"client_credentials"},
		"scope":                 {c.scope},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion":      {assertion},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return azcore.AccessToken{}, 0, fmt.Errorf("smart: token request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	sent := c.now()
	resp, err := c.http.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return azcore.AccessToken{}, 0, fmt.Errorf("smart: token endpoint %s: %w", c.endpoint, err)
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		ExpiresIn   int64  `json:"expires_in"`
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body); err != nil {
		return azcore.AccessToken{}, 0, fmt.Errorf("smart: token endpoint %s answered %d, not JSON", c.endpoint, resp.StatusCode)
	}
	if resp.StatusCode != http.StatusOK || body.AccessToken == "" {
		return azcore.AccessToken{}, 0, fmt.Errorf("smart: token endpoint %s refused client %s: %d %s: %s",
			c.endpoint, c.cfg.ClientID, resp.StatusCode, body.Error, body.Description)
	}
	if !strings.EqualFold(body.TokenType, "bearer") {
		return azcore.AccessToken{}, 0, fmt.Errorf("smart: token endpoint %s issued a %q token, not a bearer token", c.endpoint, body.TokenType)
	}
	lifetime := time.Duration(body.ExpiresIn) * time.Second
	if lifetime <= 0 {
		lifetime = 5 * time.Minute // RFC 6749: expires_in is recommended; SMART servers issue five-minute tokens
	}
	return azcore.AccessToken{Token: body.AccessToken, ExpiresOn: sent.Add(lifetime)}, lifetime, nil
}

// assertion builds and signs the client assertion JWT: iss = sub = client id, aud = token endpoint, exp within
// five minutes, a random jti.
func (c *Credential) assertion(ctx context.Context) (string, error) {
	header := map[string]string{"alg": c.cfg.Signer.Alg(), "typ": "JWT"}
	if c.cfg.KeyID != "" {
		header["kid"] = c.cfg.KeyID
	}
	var jti [16]byte
	_, _ = rand.Read(jti[:])
	claims := map[string]any{
		"iss": c.cfg.ClientID, "sub": c.cfg.ClientID, "aud": c.endpoint,
		"exp": time.Now().Add(assertionLifetime).Unix(), "jti": hex.EncodeToString(jti[:]),
	}
	h, err := json.Marshal(header)
	if err != nil {
		return "", fmt.Errorf("smart: assertion header: %w", err)
	}
	p, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("smart: assertion claims: %w", err)
	}
	input := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(p)
	digest := sha512.Sum384([]byte(input))
	sig, err := c.cfg.Signer.Sign(ctx, digest[:])
	if err != nil {
		return "", fmt.Errorf("smart: sign the client assertion: %w", err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}
