package devhost

import (
	"fmt"
	"net/url"
	"strings"
)

type segmentKind int

// Segment kinds, in route precedence order: a literal wins over a parameter, which wins over an optional one.
const (
	segLiteral segmentKind = iota
	segParam
	segOptional
	segCatchAll
)

type segment struct {
	kind segmentKind
	text string // literal text or parameter name
}

// route is a function's HTTP route template: literals, {name}, {name?}, {name:constraint} and {*rest}.
type route struct {
	template string
	segments []segment
}

func parseRoute(tmpl string) (route, error) {
	r := route{template: strings.Trim(tmpl, "/")}
	if r.template == "" {
		return r, nil
	}
	parts := strings.Split(r.template, "/")
	for i, p := range parts {
		if p == "" {
			return route{}, fmt.Errorf("route %q: empty segment", tmpl)
		}
		if !strings.HasPrefix(p, "{") {
			if strings.ContainsAny(p, "{}") {
				return route{}, fmt.Errorf("route %q: segment %q mixes literal text and a parameter", tmpl, p)
			}
			r.segments = append(r.segments, segment{kind: segLiteral, text: p})
			continue
		}
		if !strings.HasSuffix(p, "}") {
			return route{}, fmt.Errorf("route %q: unterminated parameter %q", tmpl, p)
		}
		name := p[1 : len(p)-1]
		kind := segParam
		switch {
		case strings.HasPrefix(name, "*"):
			kind, name = segCatchAll, strings.TrimPrefix(name, "*")
		case strings.HasSuffix(name, "?"):
			kind, name = segOptional, strings.TrimSuffix(name, "?")
		}
		// Constraints ({id:int}) narrow the match in ASP.NET; locally they are accepted and not enforced.
		if i := strings.Index(name, ":"); i >= 0 {
			name = name[:i]
		}
		name = strings.TrimSuffix(name, "?")
		if name == "" {
			return route{}, fmt.Errorf("route %q: parameter without a name", tmpl)
		}
		if (kind == segOptional || kind == segCatchAll) && i != len(parts)-1 {
			return route{}, fmt.Errorf("route %q: {%s} may only be the last segment", tmpl, p)
		}
		r.segments = append(r.segments, segment{kind: kind, text: name})
	}
	return r, nil
}

// match reports whether the path segments (after the route prefix) fit the template, with the parameters.
func (r route) match(parts []string) (map[string]string, bool) {
	params := map[string]string{}
	for i, seg := range r.segments {
		if i >= len(parts) {
			if seg.kind == segOptional || seg.kind == segCatchAll {
				return params, true
			}
			return nil, false
		}
		switch seg.kind {
		case segLiteral:
			if !strings.EqualFold(seg.text, parts[i]) {
				return nil, false
			}
		case segCatchAll:
			params[seg.text] = strings.Join(parts[i:], "/")
			return params, true
		default:
			v, err := url.PathUnescape(parts[i])
			if err != nil {
				return nil, false
			}
			params[seg.text] = v
		}
	}
	if len(parts) != len(r.segments) {
		return nil, false
	}
	return params, true
}

// before orders routes by precedence, segment by segment.
func (r route) before(o route) bool {
	for i := 0; i < len(r.segments) && i < len(o.segments); i++ {
		if r.segments[i].kind != o.segments[i].kind {
			return r.segments[i].kind < o.segments[i].kind
		}
	}
	return len(r.segments) > len(o.segments)
}

// splitPath turns an escaped URL path into its segments after the prefix; ok is false outside the prefix.
func splitPath(escapedPath, prefix string) ([]string, bool) {
	p := strings.Trim(escapedPath, "/")
	if prefix != "" {
		switch {
		case strings.EqualFold(p, prefix):
			p = ""
		case len(p) > len(prefix) && strings.EqualFold(p[:len(prefix)], prefix) && p[len(prefix)] == '/':
			p = strings.Trim(p[len(prefix)+1:], "/")
		default:
			return nil, false
		}
	}
	if p == "" {
		return nil, true
	}
	return strings.Split(p, "/"), true
}
