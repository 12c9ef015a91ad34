package smart

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// KeyVaultAPIVersion is the Key Vault REST version of the sign call.
const KeyVaultAPIVersion = "7.4"

// keyVaultScope is the token audience of every Key Vault in the public cloud.
const keyVaultScope = "https://vault.azure.net/.default"

// KeyVaultSigner signs with a key held in Azure Key Vault: POST {key}/sign?api-version=7.4 with {"alg","value"}
// (the digest, base64url), answered {"kid","value"} (the signature, base64url; r||s for EC keys). The key never
// leaves the vault; the identity needs the keys/sign permission (role Key Vault Crypto User).
type KeyVaultSigner struct {
	signURL string // {vault}/keys/{name}[/{version}]/sign?api-version=7.4
	alg     string
	cred    azcore.TokenCredential
	http    *http.Client
}

// NewKeyVaultSigner checks keyID, a key identifier such as https://myvault.vault.azure.net/keys/smart-client[/version],
// and alg (RS384 for an RSA key, ES384 for a P-384 key).
func NewKeyVaultSigner(keyID, alg string, cred azcore.TokenCredential, httpClient *http.Client) (*KeyVaultSigner, error) {
	if alg != "RS384" && alg != "ES384" {
		return nil, fmt.Errorf("key vault signer: the algorithm %q is neither RS384 nor ES384", alg)
	}
	if cred == nil {
		return nil, errors.New("key vault signer: a credential is required")
	}
	signURL, err := KeyVaultSignURL(keyID)
	if err != nil {
		return nil, fmt.Errorf("key vault signer: %w", err)
	}
	if httpClient == nil {
		httpClient = &http.Client{Timeout: 30 * time.Second}
	}
	return &KeyVaultSigner{signURL: signURL, alg: alg, cred: cred, http: httpClient}, nil
}

// KeyVaultSignURL checks a key identifier https://{vault}.vault.azure.net/keys/{name}[/{version}] and returns the
// URL of its sign operation.
func KeyVaultSignURL(keyID string) (string, error) {
	u, err := url.Parse(keyID)
	if err != nil || u.Scheme != "https" || !strings.HasSuffix(u.Hostname(), ".vault.azure.net") || u.Port() != "" ||
		u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("%q is not a key identifier https://{vault}.vault.azure.net/keys/{name}[/{version}]", keyID)
	}
	segs := strings.Split(strings.Trim(u.Path, "/"), "/")
	if len(segs) < 2 || len(segs) > 3 || segs[0] != "keys" || slices.Contains(segs, "") {
		return "", fmt.Errorf("%q is not a key identifier https://{vault}.vault.azure.net/keys/{name}[/{version}]", keyID)
	}
	u.Path = "/" + strings.Join(segs, "/") + "/sign"
	u.RawQuery = "api-version=" + KeyVaultAPIVersion
	return u.String(), nil
}

// Alg implements Signer.
func (s *KeyVaultSigner) Alg() string { return s.alg }

// LoopbackOnly implements Signer: a vault key may sign for any server.
func (s *KeyVaultSigner) LoopbackOnly() bool { return false }

// Sign implements Signer.
func (s *KeyVaultSigner) Sign(ctx context.Context, digest []byte) ([]byte, error) {
	tok, err := s.cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{keyVaultScope}})
	if err != nil {
		return nil, fmt.Errorf("key vault token: %w", err)
	}
	body, err := json.Marshal(map[string]string{"alg": s.alg, "value": base64.RawURLEncoding.EncodeToString(digest)})
	if err != nil {
		return nil, fmt.Errorf("key vault sign body: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.signURL, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("key vault sign request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tok.Token)
	resp, err := s.http.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return nil, fmt.Errorf("key vault sign %s: %w", s.signURL, err)
	}
	defer resp.Body.Close()
	var out struct {
		Value string `json:"value"`
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&out); err != nil {
		return nil, fmt.Errorf("key vault sign %s answered %d, not JSON", s.signURL, resp.StatusCode)
	}
	if resp.StatusCode != http.StatusOK {
		if out.Error != nil {
			return nil, fmt.Errorf("key vault sign %s answered %d %s: %s", s.signURL, resp.StatusCode, out.Error.Code, out.Error.Message)
		}
		return nil, fmt.Errorf("key vault sign %s answered %d", s.signURL, resp.StatusCode)
	}
	sig, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(out.Value, "="))
	if err != nil || len(sig) == 0 {
		return nil, fmt.Errorf("key vault sign %s: the signature is not base64url", s.signURL)
	}
	if s.alg == "ES384" && len(sig) != 96 {
		return nil, fmt.Errorf("key vault sign %s: an ES384 signature of %d bytes, not 96 (is the key P-384?)", s.signURL, len(sig))
	}
	return sig, nil
}

// FileSigner signs with a private key read from a PEM file: the local stack only (LoopbackOnly), as the project's
// development FHIR credential is.
type FileSigner struct {
	key crypto.Signer
	alg string
}

// NewFileSigner reads a PEM private key (PKCS #8, PKCS #1 RSA or SEC 1 EC): RSA signs RS384, P-384 ES384.
func NewFileSigner(path string) (*FileSigner, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	block, _ := pem.Decode(raw)
	if block == nil {
		return nil, fmt.Errorf("key file %s holds no PEM block", path)
	}
	var key any
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("key file %s holds a %q block, not a private key", path, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() < 2048 {
			return nil, fmt.Errorf("key file %s: an RSA key of %d bits; at least 2048", path, k.N.BitLen())
		}
		return &FileSigner{key: k, alg: "RS384"}, nil
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P384() {
			return nil, fmt.Errorf("key file %s: ES384 needs a P-384 key", path)
		}
		return &FileSigner{key: k, alg: "ES384"}, nil
	}
	return nil, fmt.Errorf("key file %s: neither an RSA nor an ECDSA key", path)
}

// Alg implements Signer.
func (s *FileSigner) Alg() string { return s.alg }

// LoopbackOnly implements Signer.
func (s *FileSigner) LoopbackOnly() bool { return true }

// Public is the key's public half (to register it with a server).
func (s *FileSigner) Public() crypto.PublicKey { return s.key.Public() }

// Sign implements Signer.
func (s *FileSigner) Sign(_ context.Context, digest []byte) ([]byte, error) {
	switch k := s.key.(type) {
	case *rsa.PrivateKey:
		return rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA384, digest)
	case *ecdsa.PrivateKey:
		r, ss, err := ecdsa.Sign(rand.Reader, k, digest)
		if err != nil {
			return nil, fmt.Errorf("ecdsa sign: %w", err)
		}
		return append(r.FillBytes(make([]byte, 48)), ss.FillBytes(make([]byte, 48))...), nil
	}
	return nil, errors.New("unsupported key")
}
