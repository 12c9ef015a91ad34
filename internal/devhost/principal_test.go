package devhost

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParsePrincipal(t *testing.T) {
	t.Parallel()
	p, err := ParsePrincipal("olga@contoso.com:Migration.Operate, Migration.Read")
	require.NoError(t, err)
	require.Equal(t, "olga@contoso.com", p.Name)
	require.Equal(t, []string{"Migration.Operate", "Migration.Read"}, p.Roles)
	require.Regexp(t, `^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`, p.ObjectID)
	again, err := ParsePrincipal("olga@contoso.com")
	require.NoError(t, err)
	require.Equal(t, p.ObjectID, again.ObjectID, "the same name, the same object id")
	require.Empty(t, again.Roles)

	p, err = ParsePrincipal(`{"objectId":"oid-1","name":"rita","roles":["Migration.Read"]}`)
	require.NoError(t, err)
	require.Equal(t, &Principal{ObjectID: "oid-1", Name: "rita", Roles: []string{"Migration.Read"}}, p)

	p, err = ParsePrincipal("  ")
	require.NoError(t, err)
	require.Nil(t, p, "none")
	for _, bad := range []string{`{"name":"x","role":["a"]}`, ":Migration.Read", `{"roles":["a"]}`} {
		_, err := ParsePrincipal(bad)
		require.Error(t, err, bad)
	}
	var stderr bytes.Buffer
	err = RunCLI(t.Context(), []string{"--addr", "127.0.0.1:0", "--principal", ":Role"}, io.Discard, &stderr)
	require.ErrorContains(t, err, "--principal")
}

// The local host drops the principal headers a client sends, as App Service does, and puts the configured
// principal on each request in their place, in App Service's form; with none configured the handler gets none.
func TestPrincipalIsInjectedAndClientHeadersDropped(t *testing.T) {
	t.Parallel()
	fn := `{"bindings":[{"type":"httpTrigger","direction":"in","name":"req","authLevel":"function","methods":["get"],"route":"migrations/{id?}"},{"type":"http","direction":"out","name":"res"}]}`
	th := startHost(t, hostOptions{spec: appSpec{functions: map[string]string{"Migrations": fn}},
		settings: map[string]string{"AUTH_CLIENT_ID": "0b9e6c3a-1d2f-4e5a-8b7c-6d5e4f3a2b1c"},
		answer:   func(inv invocation) reply { return reply{Status: 200, Body: "ok"} }})
	send := func() http.Header {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, th.URL()+"/api/migrations", nil)
		require.NoError(t, err)
		req.Header.Set("X-MS-CLIENT-PRINCIPAL", base64.StdEncoding.EncodeToString([]byte(`{"claims":[{"typ":"roles","val":"Migration.Operate"}]}`)))
		req.Header.Set("X-MS-CLIENT-PRINCIPAL-NAME", "mallory")
		req.Header.Set("x-ms-token-aad-access-token", "forged")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		calls := th.rec.calls("")
		return calls[len(calls)-1].Header
	}
	got := send()
	for k := range got {
		require.False(t, strings.HasPrefix(strings.ToLower(k), "x-ms-client-principal") || strings.HasPrefix(strings.ToLower(k), "x-ms-token-"),
			"a client's %s reached the handler", k)
	}

	p, err := ParsePrincipal("olga@contoso.com:Migration.Operate")
	require.NoError(t, err)
	th.SetPrincipal(p)
	got = send()
	require.Equal(t, "olga@contoso.com", got.Get("X-MS-CLIENT-PRINCIPAL-NAME"))
	require.Equal(t, p.ObjectID, got.Get("X-MS-CLIENT-PRINCIPAL-ID"))
	require.Equal(t, "aad", got.Get("X-MS-CLIENT-PRINCIPAL-IDP"))
	require.Empty(t, got.Get("X-MS-TOKEN-AAD-ACCESS-TOKEN"))
	raw, err := base64.StdEncoding.DecodeString(got.Get("X-MS-CLIENT-PRINCIPAL"))
	require.NoError(t, err)
	var cp struct {
		AuthType string `json:"auth_typ"`
		NameType string `json:"name_typ"`
		RoleType string `json:"role_typ"`
		Claims   []struct{ Typ, Val string }
	}
	require.NoError(t, json.Unmarshal(raw, &cp))
	require.Equal(t, "aad", cp.AuthType)
	require.NotEmpty(t, cp.NameType)
	require.NotEmpty(t, cp.RoleType)
	claims := map[string][]string{}
	for _, c := range cp.Claims {
		claims[c.Typ] = append(claims[c.Typ], c.Val)
	}
	require.Equal(t, []string{"Migration.Operate"}, claims["roles"])
	require.Equal(t, []string{"api://0b9e6c3a-1d2f-4e5a-8b7c-6d5e4f3a2b1c"}, claims["aud"], "a token for the app's audience")
	require.Equal(t, []string{p.ObjectID}, claims["oid"])

	th.SetPrincipal(nil)
	require.Empty(t, send().Get("X-MS-CLIENT-PRINCIPAL"))
}
