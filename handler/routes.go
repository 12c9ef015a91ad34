package main

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/fhir-migrator/fhir-migrator/internal/api"
	"github.com/fhir-migrator/fhir-migrator/internal/hostroute"
)

// apiRouter routes the API's requests by apiRoutes, a path matched as the Functions host matches a route template
// (internal/hostroute: literals ignoring case, one trailing slash ignored, an empty segment matching nothing), so
// that a request the host gave an API function finds its operation here. The host tries a route whose methods do
// not take the request's method no further, and hands the request to the next route that matches: in the end the
// catch-all function ZzFallback (named to sort last, since the host tries routes in the order of the function
// names), whose requests come here too. A path that is an operation's with another method is answered 405
// method_not_allowed with Allow listing the path's methods; any other path 404 no_route.
type apiRouter struct {
	ops []apiOp
}

type apiOp struct {
	method string
	path   hostroute.Template
	handle http.HandlerFunc
}

// apiPrefix is host.json's extensions.http.routePrefix, the first segment of every API path.
const apiPrefix = "api"

func newAPIRouter(routes []apiRoute) *apiRouter {
	ar := &apiRouter{}
	for _, r := range routes {
		method, path, ok := strings.Cut(r.pattern, " ")
		if !ok || !strings.HasPrefix(path, "/"+apiPrefix+"/") {
			panic(fmt.Sprintf("API route %q: want \"METHOD /%s/...\"", r.pattern, apiPrefix))
		}
		ar.ops = append(ar.ops, apiOp{method: method, path: hostroute.MustParse(path), handle: r.handle})
	}
	return ar
}

// owns reports whether the request is the API's: its path's first segment is the route prefix (ignoring case, as
// the host's templates do).
func (ar *apiRouter) owns(r *http.Request) bool {
	first, _, _ := strings.Cut(strings.TrimPrefix(r.URL.EscapedPath(), "/"), "/")
	if v, err := url.PathUnescape(first); err == nil {
		first = v
	}
	return strings.EqualFold(first, apiPrefix)
}

func (ar *apiRouter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.EscapedPath()
	var allow []string
	for _, op := range ar.ops {
		values, ok := op.path.Match(path)
		if !ok {
			continue
		}
		if !strings.EqualFold(op.method, r.Method) {
			if !slices.Contains(allow, op.method) {
				allow = append(allow, op.method)
			}
			continue
		}
		for name, v := range values {
			r.SetPathValue(name, v)
		}
		op.handle(w, r)
		return
	}
	if len(allow) > 0 {
		slices.Sort(allow)
		w.Header().Set("Allow", strings.Join(allow, ", "))
		api.Write(w, &api.Error{Status: api.StatusOf(api.Method), Code: "method_not_allowed",
			Message: fmt.Sprintf("%s is not a method of %s: use %s", r.Method, r.URL.Path, strings.Join(allow, " or "))})
		return
	}
	noRoute(w, r)
}

// noRoute answers a request to no endpoint.
func noRoute(w http.ResponseWriter, r *http.Request) {
	api.Write(w, &api.Error{Status: api.StatusOf(api.Route), Code: "no_route", Message: "no such endpoint: " + r.Method + " " + r.URL.Path})
}
