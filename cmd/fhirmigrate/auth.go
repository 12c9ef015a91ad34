package main

import (
	"context"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// Sign-in with Microsoft Entra ID, for a Function App deployed with AUTH_MODE entra: App Service authentication
// lets a request in only with an access token for the app registration, and the handler then requires the app
// role of each operation. Given an audience (--audience or FHIRMIGRATE_AUDIENCE: the app's scope,
// api://<AUTH_CLIENT_ID>/.default), the CLI gets a token for it with azidentity, from the Azure CLI's sign-in
// (az login) or, with --device-code, by a device code sign-in, and sends it as Authorization: Bearer on every
// request. The function key (--key) is still sent when given: the functions stay authLevel function, so the
// Functions host still wants one (Azure/azure-functions-host#11394).

// The variables of the sign-in options.
const (
	envAudience   = "FHIRMIGRATE_AUDIENCE"
	envTenant     = "FHIRMIGRATE_TENANT"
	envClientID   = "FHIRMIGRATE_CLIENT_ID"
	envDeviceCode = "FHIRMIGRATE_DEVICE_CODE"
)

// signIn is how the CLI gets its token.
type signIn struct {
	// scope is the token's scope (the app's audience with /.default); "" signs in to nothing (AUTH_MODE keys).
	scope string
	// deviceCode signs in with a device code (prompt gets the instructions) instead of the Azure CLI's sign-in.
	deviceCode bool
	// tenant is the tenant to sign in to ("": the Azure CLI's, or the organizations endpoint for a device code);
	// clientID the public client application a device code sign-in uses ("": azidentity's default).
	tenant, clientID string
	prompt           io.Writer
}

var guidPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// scopeOf is the token scope of an audience: api://<id>/.default for a bare application id, the audience with
// /.default added when it has no scope.
func scopeOf(audience string) string {
	a := strings.TrimSpace(audience)
	switch {
	case a == "":
		return ""
	case guidPattern.MatchString(a):
		return "api://" + a + "/.default"
	case strings.HasSuffix(a, "/.default"):
		return a
	}
	return strings.TrimSuffix(a, "/") + "/.default"
}

// newCredential makes the credential of a sign-in: the Azure CLI's, or a device code's.
func newCredential(s signIn) (azcore.TokenCredential, error) {
	if s.deviceCode {
		return azidentity.NewDeviceCodeCredential(&azidentity.DeviceCodeCredentialOptions{TenantID: s.tenant, ClientID: s.clientID,
			UserPrompt: func(_ context.Context, m azidentity.DeviceCodeMessage) error {
				_, err := fmt.Fprintln(s.prompt, m.Message)
				return err
			}})
	}
	return azidentity.NewAzureCLICredential(&azidentity.AzureCLICredentialOptions{TenantID: s.tenant})
}

// tokenSource hands out the sign-in's token, getting a new one shortly before the last one expires (watch polls
// every second; the Azure CLI is not asked every time).
type tokenSource struct {
	cred  azcore.TokenCredential
	scope string

	mu  sync.Mutex
	tok azcore.AccessToken
}

// tokenMargin is how long before its expiry a token is replaced.
const tokenMargin = 2 * time.Minute

func (t *tokenSource) token(ctx context.Context) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tok.Token != "" && time.Now().Add(tokenMargin).Before(t.tok.ExpiresOn) {
		return t.tok.Token, nil
	}
	tok, err := t.cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{t.scope}})
	if err != nil {
		return "", fmt.Errorf("sign in for %s: %w (az login first, or --device-code; %s names the app's scope)", t.scope, err, envAudience)
	}
	t.tok = tok
	return tok.Token, nil
}
