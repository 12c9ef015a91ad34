package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/devhost"
	"github.com/fhir-migrator/fhir-migrator/internal/fhirsim"
)

// entraClientID is the app registration the local stacks in AUTH_MODE entra pretend their tokens are for.
const entraClientID = "0b9e6c3a-1d2f-4e5a-8b7c-6d5e4f3a2b1c"

// entraSettings put the handler in AUTH_MODE entra, logging JSON.
func entraSettings() map[string]string {
	return map[string]string{"AUTH_MODE": "entra", "AUTH_CLIENT_ID": entraClientID, "LogFormat": "json"}
}

func mustPrincipal(t *testing.T, s string) *devhost.Principal {
	t.Helper()
	p, err := devhost.ParsePrincipal(s)
	require.NoError(t, err)
	return p
}

// TestAuditTrailThroughTheLocalHost: in AUTH_MODE entra, with the local host signing every request in as an
// operator, a migration is started, canceled and cleaned up; its document's audit lists the three, each with who
// did it (the principal's object id and name, verified), when and from where, and the handler logged an audit
// line for each. A reader is refused 403 naming Migration.Operate and changes nothing; a request without a
// principal is refused 401.
func TestAuditTrailThroughTheLocalHost(t *testing.T) {
	t.Parallel()
	operator := mustPrincipal(t, "olga@contoso.com:Migration.Operate")
	s := newStack(t, stackOptions{patients: 3, settings: entraSettings(), principal: operator})
	// The source refuses every export kick-off (429), so the migration is still running when it is canceled.
	require.NoError(t, s.srcSim.SetFault(fhirsim.FaultKickoff429, 1))
	t.Cleanup(func() { _ = s.srcSim.SetFault(fhirsim.FaultKickoff429, 0) })

	id := s.start(map[string]any{"source": s.source.URL, "destination": s.dest.URL, "types": []string{"Patient"}, "verify": "counts"})
	status, raw := s.api(http.MethodDelete, "/api/migrations/"+id, nil)
	require.Equal(t, http.StatusOK, status, string(raw))
	status, raw = s.api(http.MethodPost, "/api/migrations/"+id+"/cleanup", map[string]any{"force": true})
	require.Equal(t, http.StatusOK, status, string(raw))

	// A reader may read, and is refused every change.
	reader := mustPrincipal(t, "rita@contoso.com:Migration.Read")
	s.host.SetPrincipal(reader)
	for _, c := range []struct {
		method, path string
		body         any
	}{
		{http.MethodPost, "/api/migrations", map[string]any{"source": s.source.URL, "destination": s.dest.URL}},
		{http.MethodDelete, "/api/migrations/" + id, nil},
		{http.MethodPost, "/api/migrations/" + id + "/cleanup", map[string]any{"force": true}},
		{http.MethodPost, "/api/migrations/" + id + "/verify", nil},
	} {
		status, raw := s.api(c.method, c.path, c.body)
		require.Equal(t, http.StatusForbidden, status, "%s %s: %s", c.method, c.path, raw)
		var e struct {
			Error struct{ Code, Message string }
		}
		require.NoError(t, json.Unmarshal(raw, &e))
		require.Equal(t, "forbidden", e.Error.Code)
		require.Contains(t, e.Error.Message, "Migration.Operate")
		require.Contains(t, e.Error.Message, "rita@contoso.com")
	}
	status, raw = s.api(http.MethodGet, "/api/migrations/"+id, nil)
	require.Equal(t, http.StatusOK, status, string(raw))
	var d struct {
		Status string `json:"status"`
		Audit  []struct {
			At        time.Time      `json:"at"`
			Operation string         `json:"operation"`
			Who       string         `json:"who"`
			ObjectID  string         `json:"objectId"`
			Name      string         `json:"name"`
			Verified  bool           `json:"verified"`
			Client    string         `json:"client"`
			Fields    map[string]any `json:"fields"`
		} `json:"audit"`
	}
	require.NoError(t, json.Unmarshal(raw, &d))
	require.Equal(t, "canceled", d.Status)
	var ops []string
	for _, e := range d.Audit {
		ops = append(ops, e.Operation)
		require.Equal(t, "olga@contoso.com", e.Who, e.Operation)
		require.Equal(t, "olga@contoso.com", e.Name, e.Operation)
		require.Equal(t, operator.ObjectID, e.ObjectID, e.Operation)
		require.True(t, e.Verified, e.Operation)
		require.Equal(t, "127.0.0.1", e.Client, "%s: the local host forwards the client's address", e.Operation)
		require.WithinDuration(t, time.Now(), e.At, 5*time.Minute, e.Operation)
	}
	require.Equal(t, []string{"startMigration", "cancelMigration", "cleanUp"}, ops, "the three changes, in order; the refused ones are not there")
	require.Equal(t, s.source.URL, d.Audit[0].Fields["source"])
	require.Equal(t, true, d.Audit[2].Fields["force"])

	// The handler logged each as a JSON line with msg audit and the migration's id, the refusals too.
	var lines []map[string]any
	for _, l := range strings.Split(s.logs.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "audit" {
			lines = append(lines, m)
		}
	}
	logged := map[string]int{}
	for _, l := range lines {
		if l["migration"] == id && l["who"] == "olga@contoso.com" {
			logged[l["operation"].(string)]++
		}
		if l["code"] == "forbidden" {
			logged["forbidden"]++
			require.Equal(t, "rita@contoso.com", l["name"])
		}
	}
	require.Equal(t, map[string]int{"startMigration": 1, "cancelMigration": 1, "cleanUp": 1, "forbidden": 4}, logged)

	// No principal: 401, even for a read.
	s.host.SetPrincipal(nil)
	status, raw = s.api(http.MethodGet, "/api/migrations/"+id, nil)
	require.Equal(t, http.StatusUnauthorized, status, string(raw))
	require.Contains(t, string(raw), `"unauthenticated"`)
}

// TestPostmanCollectionSignsInOnlyWhenAsked runs the checked-in collection's first request with Newman against a
// recording server: without the entra variables it sends the function key and no Authorization (the local stack's
// and keys mode's case, which TestPostmanCollectionRunsWithNewman runs whole); with entraAccessToken set it sends
// that token as Authorization: Bearer; with the client credentials variables its pre-request script gets a token
// from the authority (here the recording server) and sends it.
func TestPostmanCollectionSignsInOnlyWhenAsked(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("runs Newman; run without -short")
	}
	newman := filepath.Join(repoRoot, ".tools", "node_modules", ".bin", "newman")
	_, err := os.Stat(newman)
	require.NoError(t, err, "newman is installed by scripts/install-tools.sh (make tools)")
	var mu sync.Mutex
	type seen struct{ path, authorization, key, form string }
	var got []seen
	srv := serveLoopback(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		mu.Lock()
		got = append(got, seen{r.URL.Path, r.Header.Get("Authorization"), r.Header.Get("x-functions-key"), r.PostForm.Encode()})
		mu.Unlock()
		if strings.HasSuffix(r.URL.Path, "/oauth2/v2.0/token") {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"token_type":"Bearer","expires_in":3599,"access_token":"token-from-client-credentials"}`)
			return
		}
		w.WriteHeader(http.StatusTeapot) // the first request's tests fail, and --bail ends the run there
	}))
	run := func(vars ...string) []seen {
		t.Helper()
		mu.Lock()
		got = nil
		mu.Unlock()
		args := []string{"run", filepath.Join(repoRoot, "postman", "fhir-migrator.postman_collection.json"), "--bail",
			"--env-var", "baseUrl=" + srv.URL, "--env-var", "functionKey=the-key", "--reporters", "cli", "--color", "off"}
		for _, v := range vars {
			args = append(args, "--env-var", v)
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		out, _ := exec.CommandContext(ctx, newman, args...).CombinedOutput() // fails by design (418)
		mu.Lock()
		defer mu.Unlock()
		require.NotEmpty(t, got, "newman sent nothing:\n%s", out)
		return slices.Clone(got)
	}

	plain := run()
	require.Len(t, plain, 1)
	require.Equal(t, "the-key", plain[0].key)
	require.Empty(t, plain[0].authorization, "no token unless asked")

	manual := run("entraAccessToken=token-by-hand")
	require.Len(t, manual, 1)
	require.Equal(t, "Bearer token-by-hand", manual[0].authorization)
	require.Equal(t, "the-key", manual[0].key, "the key too")

	cc := run("entraAuthority="+srv.URL, "entraTenantId=contoso", "entraClientId=app-1", "entraClientSecret=s3cret",
		"entraScope=api://"+entraClientID+"/.default")
	require.Len(t, cc, 2, "the token, then the request")
	require.Equal(t, "/contoso/oauth2/v2.0/token", cc[0].path)
	form, err := url.ParseQuery(cc[0].form)
	require.NoError(t, err)
	require.Equal(t, url.Values{"grant_type": {"client_credentials"}, "client_id": {"app-1"}, "client_secret": {"s3cret"},
		"scope": {"api://" + entraClientID + "/.default"}}, form)
	require.Equal(t, "Bearer token-from-client-credentials", cc[1].authorization)
	require.Equal(t, "the-key", cc[1].key)
}
