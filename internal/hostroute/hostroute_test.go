package hostroute

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestMatch: the rules of RoutePatternMatcher and PathTokenizer (aspnetcore src/Http/Routing/src), case by case.
func TestMatch(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 10000)
	tests := []struct {
		template, path string
		want           map[string]string // nil: no match
	}{
		{"api/migrations", "/api/migrations", map[string]string{}},
		{"api/migrations", "/API/Migrations/", map[string]string{}},                       // literals ignore case; one trailing slash ignored
		{"api/migrations", "/api/migrations//", nil},                                      // a second one is an empty segment
		{"api/migrations", "/api//migrations", nil},                                       // an empty segment never matches
		{"api/migrations", "//api/migrations", nil},                                       // nor a leading one
		{"api/migrations", "/api/migrations/x", nil},                                      // more segments than the template
		{"api/migrations", "/api/migr%61tions", map[string]string{}},                      // the route sees the decoded path
		{"api/migrations/{id?}", "/api/migrations", map[string]string{}},                  // an optional parameter may be absent
		{"api/migrations/{id?}", "/api/migrations/", map[string]string{}},                 // also before a trailing slash
		{"api/migrations/{id?}", "/api/migrations/m%2F1", map[string]string{"id": "m/1"}}, // %2F stays in its segment
		{"api/migrations/{id}/cleanup", "/api/migrations/m-1/cleanup", map[string]string{"id": "m-1"}},
		{"api/migrations/{id}/cleanup", "/api/migrations/m-1", nil},
		{"api/migrations/{id}/{action:alpha}", "/api/migrations/m-1/verify", map[string]string{"id": "m-1", "action": "verify"}},
		{"api/migrations/{id}/{action:alpha}", "/api/migrations/m-1/verify2", nil}, // the constraint is enforced
		{"api/migrations/{id}/{action:alpha}", "/api/migrations/m-1/ve%2Fify", nil},
		{"api/migrations/{id}/report/{part?}", "/api/migrations/m-1/report", map[string]string{"id": "m-1"}},
		{"api/migrations/{id}/report/{part?}", "/api/migrations/m-1/report/missing", map[string]string{"id": "m-1", "part": "missing"}},
		{"api/items/{id:int}", "/api/items/42", map[string]string{"id": "42"}},
		{"api/items/{id:int}", "/api/items/4x", nil},
		{"api/items/{id:int:min(10)}", "/api/items/9", nil},
		{"api/items/{id:int:range(1,9)}", "/api/items/9", map[string]string{"id": "9"}},
		{"api/items/{id:minlength(3)?}", "/api/items", map[string]string{}}, // an absent optional value passes its constraints
		{"api/items/{id:minlength(3)?}", "/api/items/ab", nil},
		{"api/items/{id:regex(^a+$)}", "/api/items/AAA", map[string]string{"id": "AAA"}},
		{"api/items/{id:guid}", "/api/items/8d1c0b8e-4d51-4e6e-9a55-6e8c7b0e2f11", map[string]string{"id": "8d1c0b8e-4d51-4e6e-9a55-6e8c7b0e2f11"}},
		{"api/{*path}", "/api", map[string]string{}}, // a catch-all matches nothing too
		{"api/{*path}", "/api/", map[string]string{}},
		{"api/{*path}", "/api/a/b/c", map[string]string{"path": "a/b/c"}},
		{"api/{*path}", "/api/a//b/", map[string]string{"path": "a//b/"}}, // empty segments past the catch-all's start are its
		{"api/{*path}", "/api//a", nil},                                   // an empty segment before it matches nothing at all
		{"api/{*path}", "/API/" + long, map[string]string{"path": long}},
		{"api/{*path}", "/other", nil},
		{"api/{*path}", "/", nil},
		{"{*path}", "/", map[string]string{}},
		{"", "/", map[string]string{}},
		{"", "/x", nil},
	}
	for _, tt := range tests {
		tmpl, err := Parse(tt.template)
		require.NoError(t, err, tt.template)
		got, ok := tmpl.Match(tt.path)
		require.Equal(t, tt.want != nil, ok, "%s on %s", tt.template, tt.path)
		if ok {
			require.Equal(t, tt.want, got, "%s on %s", tt.template, tt.path)
		}
	}
}

func TestParseRefuses(t *testing.T) {
	t.Parallel()
	for tmpl, want := range map[string]string{
		"a/{id?}/b":        "may only be the last segment",
		"a/{*rest}/b":      "may only be the last segment",
		"a//b":             "empty segment",
		"a/x{id}":          "mixes literal text",
		"a/{id}.{ext}":     "mixes literal text",
		"a/{id=1}":         "default values",
		"a/{id:nosuch}":    "unknown route constraint",
		"a/{id:min}":       "want 1 integer",
		"a/{id}/{ID}":      "twice",
		"a/{}":             "bad name",
		"a/{*rest?}":       "cannot be optional",
		"a/{id:regex(a(b}": "unterminated",
	} {
		_, err := Parse(tmpl)
		require.ErrorContains(t, err, want, tmpl)
	}
}

func TestRemoveDotSegments(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"/api/migrations":        "/api/migrations",
		"/api/./migrations":      "/api/migrations",
		"/api/x/../migrations":   "/api/migrations",
		"/api/x/%2e%2E/m":        "/api/m",
		"/..":                    "/",
		"/api/..":                "/",
		"/api/.":                 "/api/",
		"/api//x/../y":           "/api//y",
		"/api/a%2Fb/../c":        "/api/c",
		"/api/file.json":         "/api/file.json",
		"/api/migrations/m-1/..": "/api/migrations/",
	} {
		require.Equal(t, want, RemoveDotSegments(in), in)
	}
}

// TestTableOrderAndMethods: the host tries routes in the order of the function names, ignoring case, and passes
// over a route whose methods do not take the request's.
func TestTableOrderAndMethods(t *testing.T) {
	t.Parallel()
	fn := func(name, tmpl string, methods ...string) Function {
		return Function{Name: name, Template: MustParse(tmpl), Methods: methods}
	}
	table := NewTable([]Function{
		fn("StartMigration", "api/migrations", "POST"),
		fn("Migrations", "api/migrations/{id?}", "GET", "DELETE"),
		fn("MigrationActions", "api/migrations/{id}/{action:alpha}", "POST"),
		fn("ZzFallback", "api/{*path}"),
		fn("migrationReport", "api/migrations/{id}/report/{part?}", "GET"),
	})
	var names []string
	for _, f := range table {
		names = append(names, f.Name)
	}
	require.Equal(t, []string{"MigrationActions", "migrationReport", "Migrations", "StartMigration", "ZzFallback"}, names)

	for _, tt := range []struct{ method, path, want string }{
		{"POST", "/api/migrations", "StartMigration"}, // Migrations' template matches first; its methods pass it over
		{"get", "/api/migrations", "Migrations"},      // methods ignore case
		{"PUT", "/api/migrations", "ZzFallback"},
		{"GET", "/api/migrations/m-1/report", "migrationReport"}, // MigrationActions' template matches, not its method
		{"POST", "/api/migrations/m-1/report", "MigrationActions"},
		{"POST", "/api/migrations/m-1/x1", "ZzFallback"}, // alpha refuses x1
		{"GET", "/api/nothing", "ZzFallback"},
		{"HEAD", "/api/migrations", "ZzFallback"}, // no HEAD for a GET route
		{"GET", "/api//migrations", ""},           // no route at all: the host's bare 404
		{"GET", "/elsewhere", ""},
	} {
		got, _, ok := table.Route(tt.method, tt.path)
		require.Equal(t, tt.want != "", ok, "%s %s", tt.method, tt.path)
		require.Equal(t, tt.want, got.Name, "%s %s", tt.method, tt.path)
	}

	// A catch-all named before the others takes everything, as on the real host.
	shadowing := NewTable([]Function{fn("Migrations", "api/migrations/{id?}", "GET"), fn("Fallback", "api/{*path}")})
	got, _, _ := shadowing.Route("GET", "/api/migrations")
	require.Equal(t, "Fallback", got.Name)
}

func TestReadApp(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	write := func(name, data string) {
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(root, name)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(root, name), []byte(data), 0o644))
	}
	write("host.json", `{"version":"2.0","extensions":{"http":{"routePrefix":"v1"}}}`)
	write("Items/function.json", `{"bindings":[{"type":"httpTrigger","methods":["get","Post"],"route":"items/{id?}"},{"type":"http","direction":"out","name":"res"}]}`)
	write("Named/function.json", `{"bindings":[{"type":"HttpTrigger"}]}`)
	write("Off/function.json", `{"disabled":true,"bindings":[{"type":"httpTrigger"}]}`)
	write("Queue/function.json", `{"bindings":[{"type":"serviceBusTrigger","queueName":"q"}]}`)
	write("notes/readme.txt", "not a function")
	table, err := ReadApp(root)
	require.NoError(t, err)
	require.Len(t, table, 2)
	require.Equal(t, "Items", table[0].Name)
	require.Equal(t, "v1/items/{id?}", table[0].Template.String())
	require.Equal(t, []string{"GET", "POST"}, table[0].Methods)
	require.Equal(t, "v1/Named", table[1].Template.String())
	require.Empty(t, table[1].Methods)
	require.Equal(t, []string{"id"}, table[0].Template.Params())

	write("host.json", `{"version":"2.0","extensions":{"http":{"routePrefix":""}}}`)
	table, err = ReadApp(root)
	require.NoError(t, err)
	require.Equal(t, "items/{id?}", table[0].Template.String())
}

func FuzzMatch(f *testing.F) {
	for _, s := range []string{"/api/migrations", "/api//x", "/", "", "/api/%zz", "/api/a/../b", "//", "/api/migrations/m-1/report/"} {
		f.Add(s)
	}
	templates := []Template{MustParse("api/{*path}"), MustParse("api/migrations/{id?}"),
		MustParse("api/migrations/{id}/{action:alpha}"), MustParse("api/migrations/{id}/report/{part?}")}
	f.Fuzz(func(t *testing.T, path string) {
		for _, tmpl := range templates {
			values, ok := tmpl.Match(path)
			if !ok {
				continue
			}
			for _, name := range tmpl.Params() {
				if v, set := values[name]; set && v == "" && !tmpl.IsCatchAll() {
					t.Fatalf("%s on %q: empty value for %s", tmpl, path, name)
				}
			}
		}
		_ = RemoveDotSegments(path)
	})
}
