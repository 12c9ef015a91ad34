package fhir

import (
	"errors"
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseHostPolicy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		setting string
		wantErr string
	}{
		{name: "empty uses default", setting: ""},
		{name: "wildcard", setting: "*.azurehealthcareapis.com"},
		{name: "several with ports", setting: "a.example.com:8443, 127.0.0.1 ,[::1]:8081,localhost"},
		{name: "bare ipv6", setting: "::1"},
		{name: "url not host", setting: "https://a.example.com", wantErr: "not a URL"},
		{name: "userinfo", setting: "u@a.example.com", wantErr: "not a URL"},
		{name: "bad port", setting: "a.example.com:99999", wantErr: "port"},
		{name: "empty port", setting: "a.example.com:", wantErr: "port"},
		{name: "bare star", setting: "*", wantErr: "not a valid host"},
		{name: "star one label", setting: "*.com", wantErr: "wildcard"},
		{name: "star in middle", setting: "a.*.example.com", wantErr: "not a valid host"},
		{name: "double star", setting: "*.*.example.com", wantErr: "wildcard"},
		{name: "only commas", setting: " , ,", wantErr: "no entries"},
		{name: "bad ipv6", setting: "[zz::1]", wantErr: "IPv6"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := ParseHostPolicy(tt.setting)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.NotEmpty(t, p.entries)
		})
	}
}

func TestDefaultPolicyIsAzureHealthcareAPIs(t *testing.T) {
	t.Parallel()
	p, err := ParseHostPolicy("  ")
	require.NoError(t, err)
	require.True(t, p.Allows(mustURL(t, "https://ws-fhir.fhir.azurehealthcareapis.com/x")))
	require.False(t, p.Allows(mustURL(t, "http://127.0.0.1:8080")))
}

func TestCheckBaseURL(t *testing.T) {
	t.Parallel()
	p, err := ParseHostPolicy("*.azurehealthcareapis.com, fhir.example.org:8443, exact.example.org, 127.0.0.1, [::1], localhost, 10.1.2.3")
	require.NoError(t, err)
	tests := []struct {
		raw     string
		want    string
		wantErr string
	}{
		{raw: "https://src.azurehealthcareapis.com", want: "https://src.azurehealthcareapis.com"},
		{raw: "https://SRC.AzureHealthcareAPIs.com/", want: "https://src.azurehealthcareapis.com"},
		{raw: "https://ws-fhir.fhir.azurehealthcareapis.com/base/", want: "https://ws-fhir.fhir.azurehealthcareapis.com/base"},
		{raw: "https://src.azurehealthcareapis.com:443", want: "https://src.azurehealthcareapis.com"},
		{raw: "  https://exact.example.org/fhir//  ", want: "https://exact.example.org/fhir"},
		{raw: "https://fhir.example.org:8443/r4", want: "https://fhir.example.org:8443/r4"},
		{raw: "http://127.0.0.1:8081", want: "http://127.0.0.1:8081"},
		{raw: "http://127.0.0.1:40123/fhir", want: "http://127.0.0.1:40123/fhir"},
		{raw: "http://[::1]:8082", want: "http://[::1]:8082"},
		{raw: "http://[0:0::1]:8082", want: "http://[::1]:8082"},
		{raw: "http://localhost:7071", want: "http://localhost:7071"},
		{raw: "https://10.1.2.3", want: "https://10.1.2.3"},
		{raw: "", wantErr: "empty"},
		{raw: "https://azurehealthcareapis.com", wantErr: "not on the allowed hosts"},
		{raw: "https://evilazurehealthcareapis.com", wantErr: "not on the allowed hosts"},
		{raw: "https://src.azurehealthcareapis.com.evil.com", wantErr: "not on the allowed hosts"},
		{raw: "https://src.azurehealthcareapis.com:8443", wantErr: "port 8443"},
		{raw: "https://fhir.example.org", wantErr: "port 443"},
		{raw: "https://fhir.example.org:9443", wantErr: "port 9443"},
		{raw: "http://src.azurehealthcareapis.com", wantErr: "https is required"},
		{raw: "http://exact.example.org", wantErr: "https is required"},
		{raw: "https://exact.example.org:8443", wantErr: "port 8443"},
		{raw: "ftp://src.azurehealthcareapis.com", wantErr: "scheme"},
		{raw: "src.azurehealthcareapis.com", wantErr: "absolute"},
		{raw: "https://user:pw@src.azurehealthcareapis.com", wantErr: "user info"},
		{raw: "https://src.azurehealthcareapis.com?x=1", wantErr: "query"},
		{raw: "https://src.azurehealthcareapis.com?", wantErr: "query"},
		{raw: "https://src.azurehealthcareapis.com#frag", wantErr: "fragment"},
		{raw: "https://", wantErr: "no host"},
		{raw: "https://1.2.3.4", wantErr: "IP address 1.2.3.4"},
		{raw: "http://10.1.2.3", wantErr: "https is required"},
		{raw: "http://127.0.0.2:80", wantErr: "IP address 127.0.0.2"},
		{raw: "https://src.azurehealthcareapis.com/a/../b", wantErr: ".."},
		{raw: "https://bad_host!.azurehealthcareapis.com", wantErr: "not"},
		{raw: "https://src.azurehealthcareapis.com:0", wantErr: "port"},
		{raw: "https://src.azurehealthcareapis.com:", wantErr: "port"},
		{raw: "mailto:a@src.azurehealthcareapis.com", wantErr: "scheme"},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			t.Parallel()
			got, err := p.CheckBaseURL(tt.raw)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestAllows(t *testing.T) {
	t.Parallel()
	p, err := ParseHostPolicy("*.azurehealthcareapis.com,127.0.0.1:8081,localhost,acct.blob.core.windows.net")
	require.NoError(t, err)
	tests := []struct {
		raw  string
		want bool
	}{
		{"https://a.b.c.azurehealthcareapis.com/_operations/export/1?x=y", true},
		{"https://a.azurehealthcareapis.com:443/x", true},
		{"https://azurehealthcareapis.com/x", false},
		{"https://a.azurehealthcareapis.com:444/x", false},
		{"http://127.0.0.1:8081/x", true},
		{"http://127.0.0.1:8082/x", false},
		{"http://localhost:1234/x", true},
		{"http://localhost/x", true},
		{"https://localhost:9/x", true},
		{"http://acct.blob.core.windows.net/x", false},
		{"https://acct.blob.core.windows.net/x", true},
		{"https://other.blob.core.windows.net/x", false},
		{"https://u@a.azurehealthcareapis.com/x", false},
		{"https://[::1]/x", false},
		{"/relative", false},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, p.Allows(mustURL(t, tt.raw)))
		})
	}
	require.False(t, p.Allows(nil))
}

func TestPolicyErrorsWrapErrHostNotAllowed(t *testing.T) {
	t.Parallel()
	p, err := ParseHostPolicy("")
	require.NoError(t, err)
	_, err = p.CheckBaseURL("https://example.com")
	require.True(t, errors.Is(err, ErrHostNotAllowed))
}

func TestOriginString(t *testing.T) {
	t.Parallel()
	require.Equal(t, "https://a.example.com", originOf(mustURL(t, "https://A.example.com:443/x")).String())
	require.Equal(t, "http://127.0.0.1:8081", originOf(mustURL(t, "http://127.0.0.1:8081/x")).String())
	require.Equal(t, "http://[::1]:8081", originOf(mustURL(t, "http://[::1]:8081")).String())
	require.NotEqual(t, originOf(mustURL(t, "http://127.0.0.1:8081")), originOf(mustURL(t, "http://localhost:8081")))
	require.NotEqual(t, originOf(mustURL(t, "http://127.0.0.1:8081")), originOf(mustURL(t, "https://127.0.0.1:8081")))
}

func mustURL(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	require.NoError(t, err)
	return u
}
