// Package identity makes the credentials the handler uses for every Azure call: storage, Service Bus and the FHIR
// services alike. In Azure that is the app's managed identity (or DefaultAzureCredential); locally, for the FHIR
// simulators only, a development credential that mints opaque tokens naming their audience.
package identity

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// DevTokenPrefix starts every token minted by DevCredential.
const DevTokenPrefix = "dev."

// devTokenLifetime is far beyond any local run so the client never refreshes.
const devTokenLifetime = 10 * 365 * 24 * time.Hour

// DevCredential is the local development credential: GetToken for exactly one scope "{aud}/.default" whose audience
// is a loopback URL returns the opaque token "dev." + base64url-no-padding(aud), far expiry; any other audience is an
// error.
type DevCredential struct{}

// GetToken implements azcore.TokenCredential.
func (DevCredential) GetToken(_ context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	if len(opts.Scopes) != 1 {
		return azcore.AccessToken{}, fmt.Errorf("dev credential: want exactly one scope, got %d", len(opts.Scopes))
	}
	aud, err := devAudience(opts.Scopes[0])
	if err != nil {
		return azcore.AccessToken{}, fmt.Errorf("dev credential: %w", err)
	}
	return azcore.AccessToken{
		Token:     DevTokenPrefix + base64.RawURLEncoding.EncodeToString([]byte(aud)),
		ExpiresOn: time.Now().Add(devTokenLifetime),
	}, nil
}

// devAudience checks a "{aud}/.default" scope for DevCredential and returns the audience: scheme://host[:port] of a
// loopback host, with no path, query or user info.
func devAudience(scope string) (string, error) {
	aud, ok := strings.CutSuffix(scope, "/.default")
	if !ok {
		return "", fmt.Errorf("scope %q does not end in /.default", scope)
	}
	u, err := url.Parse(aud)
	if err != nil {
		return "", fmt.Errorf("audience %q is not a URL: %w", aud, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("audience %q is not http(s)", aud)
	}
	if u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.Path != "" || u.Opaque != "" {
		return "", fmt.Errorf("audience %q must be scheme://host[:port] only", aud)
	}
	if !IsLoopbackHost(strings.ToLower(u.Hostname())) {
		return "", fmt.Errorf("audience %q is not a loopback host", aud)
	}
	return aud, nil
}

// Credential kinds accepted by New.
const (
	KindAzure = "azure"
	KindDev   = "dev"
)

// New picks by name: "azure" -> Azure(managedIdentityClientID); "dev" -> DevCredential (loopback audiences only).
func New(kind string, managedIdentityClientID string) (azcore.TokenCredential, error) {
	switch strings.ToLower(strings.TrimSpace(kind)) {
	case KindAzure:
		return Azure(managedIdentityClientID)
	case KindDev:
		return DevCredential{}, nil
	case "":
		return nil, errors.New("credential kind is empty (want azure or dev)")
	default:
		return nil, fmt.Errorf("unknown credential kind %q (want azure or dev)", kind)
	}
}

// Azure is the app's Azure identity: the user-assigned managed identity named by managedIdentityClientID when set,
// else DefaultAzureCredential (the system-assigned identity in Azure, a developer's login elsewhere). Making it
// calls nothing.
func Azure(managedIdentityClientID string) (azcore.TokenCredential, error) {
	if id := strings.TrimSpace(managedIdentityClientID); id != "" {
		cred, err := azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{
			ID: azidentity.ClientID(id),
		})
		if err != nil {
			return nil, fmt.Errorf("managed identity credential: %w", err)
		}
		return cred, nil
	}
	cred, err := azidentity.NewDefaultAzureCredential(nil)
	if err != nil {
		return nil, fmt.Errorf("default azure credential: %w", err)
	}
	return cred, nil
}

// IsLoopbackHost is true for localhost and loopback IP literals.
func IsLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
