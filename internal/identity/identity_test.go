package identity

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/stretchr/testify/require"
)

func TestDevCredential(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		scopes  []string
		wantAud string
		wantErr string
	}{
		{name: "ipv4 loopback", scopes: []string{"http://127.0.0.1:8081/.default"}, wantAud: "http://127.0.0.1:8081"},
		{name: "ipv6 loopback", scopes: []string{"http://[::1]:8082/.default"}, wantAud: "http://[::1]:8082"},
		{name: "localhost https", scopes: []string{"https://localhost/.default"}, wantAud: "https://localhost"},
		{name: "azure host", scopes: []string{"https://src.azurehealthcareapis.com/.default"}, wantErr: "not a loopback"},
		{name: "private ip", scopes: []string{"http://10.0.0.1:8081/.default"}, wantErr: "not a loopback"},
		{name: "lookalike", scopes: []string{"http://localhost.evil.com/.default"}, wantErr: "not a loopback"},
		{name: "no default suffix", scopes: []string{"http://127.0.0.1:8081"}, wantErr: "/.default"},
		{name: "path in audience", scopes: []string{"http://127.0.0.1:8081/fhir/.default"}, wantErr: "scheme://host"},
		{name: "userinfo", scopes: []string{"http://u@127.0.0.1:8081/.default"}, wantErr: "scheme://host"},
		{name: "two scopes", scopes: []string{"http://127.0.0.1:1/.default", "http://127.0.0.1:2/.default"}, wantErr: "exactly one"},
		{name: "no scope", scopes: nil, wantErr: "exactly one"},
		{name: "other scheme", scopes: []string{"ftp://127.0.0.1/.default"}, wantErr: "http(s)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tok, err := DevCredential{}.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: tt.scopes})
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				require.Empty(t, tok.Token)
				return
			}
			require.NoError(t, err)
			require.True(t, strings.HasPrefix(tok.Token, DevTokenPrefix))
			aud, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(tok.Token, DevTokenPrefix))
			require.NoError(t, err)
			require.Equal(t, tt.wantAud, string(aud))
			require.NotContains(t, tok.Token, "=")
			require.True(t, tok.ExpiresOn.After(time.Now().Add(365*24*time.Hour)))
		})
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	c, err := New("dev", "")
	require.NoError(t, err)
	require.IsType(t, DevCredential{}, c)

	_, err = New("", "")
	require.ErrorContains(t, err, "empty")
	_, err = New("secret", "")
	require.ErrorContains(t, err, "unknown credential kind")

	// Constructing the Azure credentials makes no network call.
	c, err = New("azure", "")
	require.NoError(t, err)
	require.NotNil(t, c)
	c, err = New("azure", "00000000-0000-0000-0000-000000000001")
	require.NoError(t, err)
	require.NotNil(t, c)
}

func TestIsLoopbackHost(t *testing.T) {
	t.Parallel()
	for host, want := range map[string]bool{"localhost": true, "127.0.0.1": true, "::1": true, "127.8.9.10": true,
		"10.0.0.1": false, "localhost.evil.com": false, "example.com": false} {
		require.Equal(t, want, IsLoopbackHost(host), host)
	}
}
