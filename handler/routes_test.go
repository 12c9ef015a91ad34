package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fhir-migrator/fhir-migrator/internal/hostroute"
)

// methods are the methods the route tests send: the usual ones and a made-up one (the catch-all takes any).
var methods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "PURGE"}

// hostTable is the repository's HTTP functions in the order the Functions host tries their routes, and the
// catch-all among them.
func hostTable(t testing.TB) (hostroute.Table, hostroute.Function) {
	t.Helper()
	table, err := hostroute.ReadApp(repoRoot)
	require.NoError(t, err)
	var catchAll []hostroute.Function
	for _, f := range table {
		if f.Template.IsCatchAll() {
			catchAll = append(catchAll, f)
		}
	}
	require.Len(t, catchAll, 1, "one catch-all function answers what no other function takes")
	fallback := catchAll[0]
	require.Equal(t, fallback.Name, table[len(table)-1].Name,
		"the host tries routes in the order of the function names: the catch-all's name must sort last, or it takes the others' requests")
	require.Empty(t, fallback.Methods, "the catch-all takes every method")
	require.Equal(t, hostroute.Join(apiPrefix, "{*path}"), fallback.Template.String())
	return table, fallback
}

// samplePaths fills a template's parameters with values the API knows; an optional one both left out and given,
// and each path also with a trailing slash (which the host ignores).
func samplePaths(t *testing.T, tmpl hostroute.Template) []string {
	t.Helper()
	value := map[string]string{"id": "m-1", "action": actionNames[0], "part": reportParts[0]}
	path := "/" + tmpl.String()
	var out []string
	for _, name := range tmpl.Params() {
		v, ok := value[name]
		require.True(t, ok, "%s: no sample value for {%s}", tmpl, name)
		for _, form := range []string{"{" + name + "}", "{" + name + ":alpha}"} {
			path = strings.Replace(path, form, v, 1)
		}
		if opt := "/{" + name + "?}"; strings.HasSuffix(path, opt) {
			out = append(out, strings.TrimSuffix(path, opt))
			path = strings.TrimSuffix(path, opt) + "/" + v
		}
	}
	require.NotContains(t, path, "{", tmpl.String())
	out = append(out, path)
	for _, p := range slices.Clone(out) {
		out = append(out, p+"/")
	}
	return out
}

type answer struct {
	status      int
	contentType string
	allow       string
	code        string
	raw         string
}

func send(t testing.TB, h http.Handler, method, target string) answer {
	t.Helper()
	u, err := url.ParseRequestURI(target)
	require.NoError(t, err, target)
	req := &http.Request{Method: method, URL: u, RequestURI: target, Host: "handler.test", Header: http.Header{},
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Body: http.NoBody}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	raw, err := io.ReadAll(rec.Result().Body)
	require.NoError(t, err)
	var e struct{ Error struct{ Code string } }
	_ = json.Unmarshal(raw, &e)
	return answer{status: rec.Code, contentType: rec.Header().Get("Content-Type"), allow: rec.Header().Get("Allow"),
		code: e.Error.Code, raw: string(raw)}
}

// requireRefusal: a JSON error, no_route (404) or method_not_allowed (405, with Allow); never a 5xx, never text.
func requireRefusal(t testing.TB, method, target string, got answer) {
	t.Helper()
	what := method + " " + excerptPath(target)
	require.Equal(t, "application/json; charset=utf-8", got.contentType, "%s: %s", what, got.raw)
	require.True(t, json.Valid([]byte(got.raw)), "%s: %s", what, got.raw)
	switch got.status {
	case http.StatusNotFound:
		// unknown_action: POST to an action the host's alpha constraint refused ({action:alpha}), which the
		// handler's {action} takes.
		require.Contains(t, []string{"no_route", "unknown_action"}, got.code, what)
		require.Empty(t, got.allow, what)
	case http.StatusMethodNotAllowed:
		require.Equal(t, "method_not_allowed", got.code, what)
		require.NotEmpty(t, got.allow, what)
		require.NotContains(t, strings.Split(got.allow, ", "), strings.ToUpper(method), what)
	default:
		t.Fatalf("%s: %d %s", what, got.status, got.raw)
	}
}

func excerptPath(p string) string {
	if len(p) > 100 {
		return p[:100] + "..."
	}
	return p
}

// TestEveryAPIRouteIsAFunctionsRoute: the handler's operations are the function.json files' routes. Each operation,
// sent as the host receives it, is routed by the host (its order, its template rules) to a function other than the
// catch-all that takes the operation's method; so the Allow of a 405 (the path's operations' methods) names only
// methods the host delivers to the handler.
func TestEveryAPIRouteIsAFunctionsRoute(t *testing.T) {
	t.Parallel()
	table, fallback := hostTable(t)
	routed := map[string]bool{}
	for _, r := range (&app{}).apiRoutes() {
		method, path, _ := strings.Cut(r.pattern, " ")
		for _, p := range samplePaths(t, hostroute.MustParse(path)) {
			fn, _, ok := table.Route(method, p)
			require.True(t, ok, "%s %s: no function's route takes it", method, p)
			require.NotEqual(t, fallback.Name, fn.Name, "%s %s reaches only the catch-all", method, p)
			require.True(t, fn.Takes(method))
			routed[fn.Name] = true
		}
	}
	for _, f := range table {
		if f.Name != fallback.Name {
			require.True(t, routed[f.Name], "function %s serves no operation of the handler", f.Name)
		}
	}
}

// TestWrongMethodsAndUnknownPathsAnswerJSON sends, for every route of every function.json, each method it does not
// take, and odd and unknown paths with every method. What the host hands the catch-all is answered by the handler
// with a JSON error (404 no_route, or 405 method_not_allowed with Allow when another method takes the path), never
// a 5xx or text. A method Allow names is one the path's operations take: sent, it is not refused 405.
func TestWrongMethodsAndUnknownPathsAnswerJSON(t *testing.T) {
	t.Parallel()
	table, fallback := hostTable(t)
	h := actionsApp(t).Routes()
	refusals := 0
	check := func(method, target string) {
		t.Helper()
		target = hostroute.RemoveDotSegments(target) // as Kestrel routes and the host forwards it
		fn, _, ok := table.Route(method, target)
		got := send(t, h, method, target)
		if ok && fn.Name != fallback.Name {
			require.Less(t, got.status, 500, "%s %s: %s", method, excerptPath(target), got.raw)
			return // a function's own request
		}
		// Through the catch-all, or (with an empty segment before it) no route at all: the host then answers its
		// own empty 404 and the handler never sees the request; sent to the handler directly it still refuses.
		requireRefusal(t, method, target, got)
		refusals++
		if got.status != http.StatusMethodNotAllowed {
			return
		}
		for _, m := range strings.Split(got.allow, ", ") {
			again := send(t, h, m, target)
			// (An operation may still refuse its own parameters: an unknown report part is no_route.)
			require.NotEqual(t, http.StatusMethodNotAllowed, again.status, "%s %s: allowed, then refused", m, target)
		}
	}

	for _, f := range table {
		if f.Name == fallback.Name {
			continue
		}
		for _, p := range samplePaths(t, f.Template) {
			for _, m := range methods {
				if !f.Takes(m) {
					check(m, p)
				}
			}
		}
	}
	long := strings.Repeat("x", 8000)
	for _, p := range []string{
		"/api", "/api/", "/API", "/api/nothing", "/api/nothing/", "/API/NOTHING",
		"/api/migrations/m-1/report/missing/extra", "/api/migrations/m-1/verify/extra", "/api/migrations/m-1/x1",
		"/api/openapi.json/x", "/api/openapi.yaml",
		"/api//migrations", "/api/migrations//m-1", "/api/migrations/m-1//report", "/api/migrations/m-1/report//",
		"/api/migrations%2Fm-1", "/api/migrations/m-1%2Freport", "/api/migrations/m-1/report%2Fmissing",
		"/api/migrations/m%2F1/report/x%2Fy", "/api/%E2%98%83", "/api/%2e%2e/admin", "/api/migrations/m-1/..%2F..",
		"/api/" + long, "/api/migrations/" + long + "/" + long,
		"/nothing", "/admin/functions", "/PollJob/x",
	} {
		for _, m := range methods {
			check(m, p)
		}
	}
	require.Greater(t, refusals, 300)

	// The case, and the operations' own paths with a method none of them takes (on a fresh engine: the
	// probes above canceled m-1).
	h = actionsApp(t).Routes()
	got := send(t, h, http.MethodPut, "/api/migrations/m-1")
	require.Equal(t, http.StatusMethodNotAllowed, got.status)
	require.Equal(t, "DELETE, GET", got.allow)
	require.Equal(t, "method_not_allowed", got.code)
	got = send(t, h, http.MethodDelete, "/api/migrations")
	require.Equal(t, http.StatusMethodNotAllowed, got.status, "Migrations takes DELETE at /api/migrations, no operation does")
	require.Equal(t, "GET, POST", got.allow)
	got = send(t, h, http.MethodGet, "/api/migrations/m-1/verify")
	require.Equal(t, http.StatusMethodNotAllowed, got.status)
	require.Equal(t, "POST", got.allow)
	got = send(t, h, http.MethodGet, "/api/migrations/m-1/report/")
	require.Equal(t, http.StatusOK, got.status, "a trailing slash is the host's route too: %s", got.raw)
}

// FuzzAPIRoutes: any request the host hands the catch-all is refused with a JSON error by the handler.
func FuzzAPIRoutes(f *testing.F) {
	for _, s := range []struct{ method, path string }{
		{"PUT", "/api/migrations/m-1"}, {"GET", "/api/nothing"}, {"HEAD", "/api/migrations"}, {"POST", "/api/migrations/m-1/x1"},
		{"GET", "/api/migrations//m-1"}, {"OPTIONS", "/api/"}, {"get", "/api/openapi.json/x"}, {"DELETE", "/api/migrations/m%2F1/report"},
	} {
		f.Add(s.method, s.path)
	}
	table, fallback := hostTable(f)
	h := actionsApp(f).Routes()
	f.Fuzz(func(t *testing.T, method, target string) {
		if method == "" || strings.ContainsFunc(method, func(r rune) bool { return r <= ' ' || r >= 0x7f || strings.ContainsRune("()<>@,;:\\\"/[]?={}", r) }) {
			return // not a method token: no server passes it on
		}
		u, err := url.ParseRequestURI(target)
		if err != nil || !strings.HasPrefix(target, "/") || u.RawQuery != "" || u.Fragment != "" || strings.Contains(target, "?") {
			return
		}
		target = hostroute.RemoveDotSegments(u.EscapedPath())
		fn, _, ok := table.Route(method, target)
		if !ok || fn.Name != fallback.Name {
			return
		}
		requireRefusal(t, method, target, send(t, h, method, target))
	})
}
