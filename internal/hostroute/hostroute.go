// Package hostroute is how the Azure Functions host routes an HTTP request to an HTTP-triggered function: each
// function's route template (function.json "route", under host.json's routePrefix) matched as ASP.NET Core
// matches it, the functions tried one after the other in the host's order, a function whose template matches but
// whose methods do not take the request's method skipped for the next. The local host (internal/devhost) routes
// with it, and the handler matches its own operations' paths with the same template rules, so a path means the
// same thing to both.
//
// What this follows, read from the sources (Azure/azure-functions-host at 89dc438d, Oct 2024; its HTTP extension
// Azure/azure-webjobs-sdk-extensions at 2e7550f7; dotnet/aspnetcore's routing):
//
//   - azure-functions-host src/WebJobs.Script.WebHost/WebScriptHostHttpRoutesManager.cs: one route per HTTP
//     function, its template the function.json route (the function's name when there is none), an
//     HttpMethodRouteConstraint when "methods" is given (none: every method), mapped in the order of
//     host.Functions.
//   - azure-functions-host src/WebJobs.Script/Host/FunctionMetadataManager.cs (GetFunctionMetadata): the functions
//     are ordered by name, OrdinalIgnoreCase; src/WebJobs.Script/Host/ScriptHost.cs keeps that order. So routes are
//     tried in the alphabetical order of the function names, not by template precedence (open requests to change
//     it: azure-functions-host#3153, #9876; azure-webjobs-sdk-extensions PR #842, unmerged).
//   - azure-webjobs-sdk-extensions src/WebJobs.Extensions.Http/Routing/WebJobsRouteBuilder.cs: the template is
//     routePrefix + "/" + route; Build() is a plain RouteCollection of those routes, unsorted.
//     src/WebJobs.Extensions.Http/Routing/WebJobsRouter.cs: proxies, then functions.
//   - aspnetcore src/Http/Routing/src/RouteCollection.cs: the first route that sets a handler wins, in order.
//     src/Http/Routing/src/RouteBase.cs: a template match whose constraints fail (the HTTP method constraint
//     among them) is no match, so the next route is tried; a method no route takes falls through to a later
//     catch-all, and nothing answers 405.
//   - aspnetcore src/Http/Routing/src/Patterns/RoutePatternMatcher.cs and src/Http/Routing/src/PathTokenizer.cs:
//     the matching rules below (one trailing slash ignored, an empty segment before a catch-all matches nothing,
//     literals compared ignoring case, a catch-all matches the rest, even nothing).
//   - aspnetcore src/Http/Routing/src/Constraints/HttpMethodRouteConstraint.cs: the method compared ignoring case.
//   - azure-functions-host src/WebJobs.Script.WebHost/WebJobsApplicationBuilderExtension.cs: the admin and
//     runtime (MVC) routes are matched before any function route, so a function's catch-all cannot shadow them;
//     a request no route takes reaches the end of the pipeline: 404 with no body.
//   - azure-functions-host src/WebJobs.Script/Host/ScriptHost.cs (ValidateHttpFunction, HttpRoutesConflict): a
//     route starting "admin" or "runtime" is refused; two functions conflict only on the same template with a
//     method in common, so a catch-all beside other routes is allowed.
package hostroute

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

type segmentKind int

const (
	segLiteral segmentKind = iota
	segParam
	segOptional
	segCatchAll
)

type segment struct {
	kind segmentKind
	// text is the literal, or the parameter's name.
	text string
	// constraints are the parameter's inline constraints ({id:int}), all of which its value must meet.
	constraints []constraint
}

type constraint struct {
	spec  string
	match func(string) bool
}

// Template is a parsed route template: literal segments, {name}, {name?} (last), {*name} (last), each parameter
// with optional inline constraints ({name:alpha}, {name:int?}, {name:minlength(3)}).
type Template struct {
	text     string
	segments []segment
}

// String is the template's text.
func (t Template) String() string { return t.text }

// Params are the template's parameter names, in order.
func (t Template) Params() []string {
	var out []string
	for _, s := range t.segments {
		if s.kind != segLiteral {
			out = append(out, s.text)
		}
	}
	return out
}

// IsCatchAll reports whether the template ends in {*name}.
func (t Template) IsCatchAll() bool {
	return len(t.segments) > 0 && t.segments[len(t.segments)-1].kind == segCatchAll
}

// Join is the template the host maps for a function: the route prefix, a slash and the route
// (WebJobsRouteBuilder.BuildRouteTemplate).
func Join(prefix, route string) string {
	prefix, route = strings.Trim(prefix, "/"), strings.Trim(route, "/")
	switch {
	case prefix == "":
		return route
	case route == "":
		return prefix
	}
	return prefix + "/" + route
}

// Parse reads a route template. Default values ({id=1}) and segments mixing literal text and parameters
// ({name}.{ext}) are refused: nothing here uses them.
func Parse(tmpl string) (Template, error) {
	t := Template{text: strings.Trim(tmpl, "/")}
	if t.text == "" {
		return t, nil
	}
	parts := strings.Split(t.text, "/")
	for i, p := range parts {
		if p == "" {
			return Template{}, fmt.Errorf("route %q: empty segment", tmpl)
		}
		if !strings.HasPrefix(p, "{") {
			if strings.ContainsAny(p, "{}") {
				return Template{}, fmt.Errorf("route %q: segment %q mixes literal text and a parameter", tmpl, p)
			}
			t.segments = append(t.segments, segment{kind: segLiteral, text: p})
			continue
		}
		if !strings.HasSuffix(p, "}") || strings.Count(p, "{") != 1 {
			return Template{}, fmt.Errorf("route %q: segment %q mixes literal text and a parameter", tmpl, p)
		}
		seg, err := parseParam(p[1 : len(p)-1])
		if err != nil {
			return Template{}, fmt.Errorf("route %q: %w", tmpl, err)
		}
		if (seg.kind == segOptional || seg.kind == segCatchAll) && i != len(parts)-1 {
			return Template{}, fmt.Errorf("route %q: {%s} may only be the last segment", tmpl, p[1:len(p)-1])
		}
		for _, s := range t.segments {
			if s.kind != segLiteral && strings.EqualFold(s.text, seg.text) {
				return Template{}, fmt.Errorf("route %q: parameter %q twice", tmpl, seg.text)
			}
		}
		t.segments = append(t.segments, seg)
	}
	return t, nil
}

// MustParse is Parse for templates written in code.
func MustParse(tmpl string) Template {
	t, err := Parse(tmpl)
	if err != nil {
		panic(err)
	}
	return t
}

var paramName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// parseParam reads the inside of {...}: [*|**]name[:constraint[(args)]]...[?].
func parseParam(body string) (segment, error) {
	seg := segment{kind: segParam}
	switch {
	case strings.HasPrefix(body, "**"):
		seg.kind, body = segCatchAll, body[2:]
	case strings.HasPrefix(body, "*"):
		seg.kind, body = segCatchAll, body[1:]
	}
	if strings.HasSuffix(body, "?") {
		if seg.kind == segCatchAll {
			return segment{}, fmt.Errorf("a catch-all {%s} cannot be optional", body)
		}
		seg.kind, body = segOptional, body[:len(body)-1]
	}
	if strings.Contains(body, "=") && !strings.Contains(body, "(") {
		return segment{}, fmt.Errorf("{%s}: default values are not supported", body)
	}
	name, rest, _ := strings.Cut(body, ":")
	if !paramName.MatchString(name) {
		return segment{}, fmt.Errorf("parameter {%s}: bad name %q", body, name)
	}
	seg.text = name
	for rest != "" {
		spec := rest
		rest = ""
		if open := strings.Index(spec, "("); open >= 0 && (strings.Index(spec, ":") < 0 || open < strings.Index(spec, ":")) {
			// The arguments run to the ")" that ends this constraint: the last one before a ":" or the end.
			end := -1
			for i := open; i < len(spec); i++ {
				if spec[i] == ')' && (i == len(spec)-1 || spec[i+1] == ':') {
					end = i
					break
				}
			}
			if end < 0 {
				return segment{}, fmt.Errorf("parameter {%s}: unterminated constraint arguments", body)
			}
			spec, rest = spec[:end+1], strings.TrimPrefix(spec[end+1:], ":")
		} else if i := strings.Index(spec, ":"); i >= 0 {
			spec, rest = spec[:i], spec[i+1:]
		}
		c, err := parseConstraint(spec)
		if err != nil {
			return segment{}, fmt.Errorf("parameter {%s}: %w", body, err)
		}
		seg.constraints = append(seg.constraints, c)
	}
	return seg, nil
}

var guidPattern = regexp.MustCompile(`^(?i:[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|\{[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\}|\([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\))$`)

// parseConstraint resolves an inline constraint as ASP.NET Core's DefaultInlineConstraintResolver does, for the
// constraints it maps by default (an unknown one fails the route, as the host fails the function).
func parseConstraint(spec string) (constraint, error) {
	name, args, hasArgs := strings.Cut(spec, "(")
	if hasArgs {
		if !strings.HasSuffix(args, ")") {
			return constraint{}, fmt.Errorf("constraint %q: unterminated arguments", spec)
		}
		args = args[:len(args)-1]
	}
	ints := func(n int) ([]int64, error) {
		fields := strings.Split(args, ",")
		if !hasArgs || len(fields) != n {
			return nil, fmt.Errorf("constraint %q: want %d integer argument(s)", spec, n)
		}
		out := make([]int64, n)
		for i, f := range fields {
			v, err := strconv.ParseInt(strings.TrimSpace(f), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("constraint %q: %w", spec, err)
			}
			out[i] = v
		}
		return out, nil
	}
	integer := func(s string) (int64, bool) {
		v, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		return v, err == nil
	}
	length := func(s string) int64 { return int64(utf8.RuneCountInString(s)) }
	noArgs := func(f func(string) bool) (constraint, error) {
		if hasArgs {
			return constraint{}, fmt.Errorf("constraint %q takes no arguments", spec)
		}
		return constraint{spec: spec, match: f}, nil
	}
	switch strings.ToLower(name) {
	case "int":
		return noArgs(func(s string) bool {
			v, ok := integer(s)
			return ok && v >= -1<<31 && v < 1<<31
		})
	case "long":
		return noArgs(func(s string) bool { _, ok := integer(s); return ok })
	case "bool":
		return noArgs(func(s string) bool {
			s = strings.TrimSpace(s)
			return strings.EqualFold(s, "true") || strings.EqualFold(s, "false")
		})
	case "decimal", "double", "float":
		return noArgs(func(s string) bool { _, err := strconv.ParseFloat(strings.TrimSpace(s), 64); return err == nil })
	case "guid":
		return noArgs(func(s string) bool { return guidPattern.MatchString(strings.TrimSpace(s)) })
	case "alpha":
		return noArgs(func(s string) bool {
			for _, r := range s {
				if (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') {
					return false
				}
			}
			return true
		})
	case "required":
		return noArgs(func(s string) bool { return s != "" })
	case "minlength", "maxlength", "min", "max":
		n, err := ints(1)
		if err != nil {
			return constraint{}, err
		}
		bound := n[0]
		var f func(string) bool
		switch strings.ToLower(name) {
		case "minlength":
			f = func(s string) bool { return length(s) >= bound }
		case "maxlength":
			f = func(s string) bool { return length(s) <= bound }
		case "min":
			f = func(s string) bool { v, ok := integer(s); return ok && v >= bound }
		default:
			f = func(s string) bool { v, ok := integer(s); return ok && v <= bound }
		}
		return constraint{spec: spec, match: f}, nil
	case "length":
		n, err := ints(1)
		if err != nil {
			if n, err = ints(2); err != nil {
				return constraint{}, fmt.Errorf("constraint %q: want length(n) or length(min,max)", spec)
			}
			return constraint{spec: spec, match: func(s string) bool { l := length(s); return l >= n[0] && l <= n[1] }}, nil
		}
		return constraint{spec: spec, match: func(s string) bool { return length(s) == n[0] }}, nil
	case "range":
		n, err := ints(2)
		if err != nil {
			return constraint{}, err
		}
		return constraint{spec: spec, match: func(s string) bool { v, ok := integer(s); return ok && v >= n[0] && v <= n[1] }}, nil
	case "regex":
		if !hasArgs {
			return constraint{}, fmt.Errorf("constraint %q: want regex(pattern)", spec)
		}
		re, err := regexp.Compile("(?i)" + args)
		if err != nil {
			return constraint{}, fmt.Errorf("constraint %q: %w", spec, err)
		}
		return constraint{spec: spec, match: re.MatchString}, nil
	}
	return constraint{}, fmt.Errorf("unknown route constraint %q", name)
}

// segments splits a request path as ASP.NET Core's PathTokenizer does: the leading slash skipped, one trailing
// slash ignored, every other slash a separator (so "//" makes an empty segment).
func segments(path string) []string {
	if len(path) <= 1 {
		return nil
	}
	return strings.Split(strings.TrimSuffix(strings.TrimPrefix(path, "/"), "/"), "/")
}

// unescape is a segment as the route sees it (Kestrel decodes the path); a malformed escape is kept as sent.
func unescape(s string) string {
	if v, err := url.PathUnescape(s); err == nil {
		return v
	}
	return s
}

// Match reports whether a request path (escaped, as r.URL.EscapedPath gives it) fits the template, with the
// parameters' values, as RoutePatternMatcher.TryMatch and the template's inline constraints decide. An optional
// parameter or a catch-all with no value is absent from the values.
func (t Template) Match(escapedPath string) (map[string]string, bool) {
	segs := segments(escapedPath)
	values := map[string]string{}
	i := 0
	catchAllFrom := -1
	for k, s := range segs {
		if s == "" {
			return nil, false
		}
		if i >= len(t.segments) {
			return nil, false
		}
		seg := t.segments[i]
		if seg.kind == segCatchAll {
			catchAllFrom = k
			break
		}
		v := unescape(s)
		if seg.kind == segLiteral {
			if !strings.EqualFold(v, seg.text) {
				return nil, false
			}
		} else {
			values[seg.text] = v
		}
		i++
	}
	if catchAllFrom >= 0 {
		// The rest of the path as sent, from this segment on (a trailing slash included).
		rest := strings.TrimPrefix(escapedPath, "/")
		for range catchAllFrom {
			rest = rest[strings.IndexByte(rest, '/')+1:]
		}
		values[t.segments[i].text] = unescape(rest)
	} else {
		for ; i < len(t.segments); i++ {
			if k := t.segments[i].kind; k != segOptional && k != segCatchAll {
				return nil, false
			}
		}
	}
	for _, seg := range t.segments {
		if seg.kind == segLiteral {
			continue
		}
		v, ok := values[seg.text]
		if !ok && seg.kind == segOptional {
			continue // RouteConstraintBuilder wraps an optional parameter's constraints: no value passes
		}
		for _, c := range seg.constraints {
			if !c.match(v) {
				return nil, false
			}
		}
	}
	return values, true
}

// RemoveDotSegments is the path as Kestrel hands it to routing: "." and ".." segments (also percent-encoded)
// resolved as RFC 3986 section 5.2.4 says, every other segment left as sent.
func RemoveDotSegments(escapedPath string) string {
	if !strings.Contains(escapedPath, ".") && !strings.Contains(escapedPath, "%2") {
		return escapedPath
	}
	in := strings.Split(escapedPath, "/")
	out := make([]string, 0, len(in))
	for k, s := range in {
		last := k == len(in)-1
		switch unescape(s) {
		case ".":
			if last {
				out = append(out, "")
			}
		case "..":
			if len(out) > 1 {
				out = out[:len(out)-1]
			}
			if last {
				out = append(out, "")
			}
		default:
			out = append(out, s)
		}
	}
	p := strings.Join(out, "/")
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	return p
}

// Function is an HTTP-triggered function as the host routes it.
type Function struct {
	Name     string
	Template Template
	// Methods are the methods it takes, upper case; none: every method (function.json without "methods").
	Methods []string
}

// Takes reports whether the function takes the method (HttpMethodRouteConstraint: ignoring case).
func (f Function) Takes(method string) bool {
	if len(f.Methods) == 0 {
		return true
	}
	for _, m := range f.Methods {
		if strings.EqualFold(m, method) {
			return true
		}
	}
	return false
}

// Table is an app's HTTP functions in the order the host tries their routes.
type Table []Function

// NewTable orders the functions as the host does: by name, ordinal ignoring case (.NET's OrdinalIgnoreCase
// compares the upper-cased names).
func NewTable(fns []Function) Table {
	t := slices.Clone(fns)
	slices.SortStableFunc(t, func(a, b Function) int {
		return strings.Compare(strings.ToUpper(a.Name), strings.ToUpper(b.Name))
	})
	return t
}

// Route is the function the host invokes for a request: the first whose template matches the path and that takes
// the method. ok is false when none does: the host then answers 404 with no body.
func (t Table) Route(method, escapedPath string) (fn Function, values map[string]string, ok bool) {
	for _, f := range t {
		v, matched := f.Template.Match(escapedPath)
		if matched && f.Takes(method) {
			return f, v, true
		}
	}
	return Function{}, nil, false
}

// ReadApp reads an app's HTTP functions: host.json's routePrefix ("api" when not set) and the httpTrigger of every
// */function.json that is not disabled.
func ReadApp(root string) (Table, error) {
	var host struct {
		Extensions struct {
			HTTP struct {
				RoutePrefix *string `json:"routePrefix"`
			} `json:"http"`
		} `json:"extensions"`
	}
	raw, err := os.ReadFile(filepath.Join(root, "host.json"))
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(raw, &host); err != nil {
		return nil, fmt.Errorf("host.json: %w", err)
	}
	prefix := "api"
	if p := host.Extensions.HTTP.RoutePrefix; p != nil {
		prefix = *p
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	var fns []Function
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(root, e.Name(), "function.json"))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var fj struct {
			Disabled bool `json:"disabled"`
			Bindings []struct {
				Type    string   `json:"type"`
				Route   string   `json:"route"`
				Methods []string `json:"methods"`
			} `json:"bindings"`
		}
		if err := json.Unmarshal(raw, &fj); err != nil {
			return nil, fmt.Errorf("%s/function.json: %w", e.Name(), err)
		}
		if fj.Disabled {
			continue
		}
		for _, b := range fj.Bindings {
			if !strings.EqualFold(b.Type, "httpTrigger") {
				continue
			}
			route := b.Route
			if route == "" {
				route = e.Name()
			}
			tmpl, err := Parse(Join(prefix, route))
			if err != nil {
				return nil, fmt.Errorf("function %s: %w", e.Name(), err)
			}
			fn := Function{Name: e.Name(), Template: tmpl}
			for _, m := range b.Methods {
				fn.Methods = append(fn.Methods, strings.ToUpper(m))
			}
			fns = append(fns, fn)
		}
	}
	return NewTable(fns), nil
}
