package fhir

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/fhir-migrator/fhir-migrator/internal/identity"
)

// DefaultAllowedHosts is the allow-list used when the AllowedHosts setting is empty.
const DefaultAllowedHosts = "*.azurehealthcareapis.com"

// ErrHostNotAllowed marks a URL whose host, port or scheme the allow-list refuses.
var ErrHostNotAllowed = errors.New("host not allowed")

// HostPolicy is the allow-list from the AllowedHosts setting (comma-separated).
type HostPolicy struct {
	entries []hostEntry
}

type hostEntry struct {
	// host is lower case; for a wildcard it is the suffix with its leading dot (".azurehealthcareapis.com").
	host     string
	wildcard bool
	// port is empty when the entry names none.
	port     string
	loopback bool
}

// ParseHostPolicy parses the AllowedHosts setting; an empty setting means DefaultAllowedHosts.
func ParseHostPolicy(allowedHosts string) (*HostPolicy, error) {
	if strings.TrimSpace(allowedHosts) == "" {
		allowedHosts = DefaultAllowedHosts
	}
	p := &HostPolicy{}
	for _, raw := range strings.Split(allowedHosts, ",") {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			continue
		}
		e, err := parseHostEntry(raw)
		if err != nil {
			return nil, fmt.Errorf("allowed hosts entry %q: %w", raw, err)
		}
		p.entries = append(p.entries, e)
	}
	if len(p.entries) == 0 {
		return nil, errors.New("allowed hosts: no entries")
	}
	return p, nil
}

func parseHostEntry(raw string) (hostEntry, error) {
	if strings.Contains(raw, "/") || strings.Contains(raw, "@") {
		return hostEntry{}, errors.New("an entry is a host or host:port, not a URL")
	}
	host, port, err := splitEntryHostPort(strings.ToLower(raw))
	if err != nil {
		return hostEntry{}, err
	}
	e := hostEntry{port: port}
	if strings.HasPrefix(host, "*.") {
		suffix := host[1:]
		if strings.Contains(suffix, "*") || !validDNSName(suffix[1:]) || !strings.Contains(suffix[1:], ".") {
			return hostEntry{}, errors.New("a wildcard must be *. followed by a domain of at least two labels")
		}
		e.host, e.wildcard = suffix, true
		return e, nil
	}
	if net.ParseIP(host) == nil && !validDNSName(host) {
		return hostEntry{}, errors.New("not a valid host name or IP address")
	}
	e.host = canonicalIP(host)
	e.loopback = identity.IsLoopbackHost(e.host)
	return e, nil
}

// splitEntryHostPort accepts "host", "host:port", "[::1]", "[::1]:port" and a bare IPv6 literal.
func splitEntryHostPort(s string) (host, port string, err error) {
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.Index(s, "]")
		if end < 0 {
			return "", "", errors.New("unclosed [ in IPv6 literal")
		}
		rest := s[end+1:]
		host = s[1:end]
		if net.ParseIP(host) == nil {
			return "", "", errors.New("not a valid IPv6 literal")
		}
		if rest == "" {
			return host, "", nil
		}
		if !strings.HasPrefix(rest, ":") {
			return "", "", errors.New("unexpected text after IPv6 literal")
		}
		port = rest[1:]
	case strings.Count(s, ":") > 1:
		if net.ParseIP(s) == nil {
			return "", "", errors.New("not a valid IPv6 literal")
		}
		return s, "", nil
	case strings.Contains(s, ":"):
		i := strings.LastIndex(s, ":")
		host, port = s[:i], s[i+1:]
	default:
		return s, "", nil
	}
	if !validPort(port) {
		return "", "", fmt.Errorf("port %q is not a number in 1-65535", port)
	}
	return host, port, nil
}

// CheckBaseURL validates a FHIR base URL from outside (start request) and returns it normalised
// (scheme+host[:port]+path, no trailing slash, no query/fragment). The default port is dropped.
func (p *HostPolicy) CheckBaseURL(raw string) (string, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return "", errors.New("FHIR base URL is empty")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("FHIR base URL is not a URL: %w", err)
	}
	if u.RawQuery != "" || u.ForceQuery {
		return "", errors.New("FHIR base URL must not have a query string")
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return "", errors.New("FHIR base URL must not have a fragment")
	}
	origin, err := p.check(u)
	if err != nil {
		return "", err
	}
	path := strings.TrimRight(u.EscapedPath(), "/")
	for _, seg := range strings.Split(path, "/") {
		if seg == "." || seg == ".." {
			return "", errors.New("FHIR base URL path must not contain . or .. segments")
		}
	}
	return origin.String() + path, nil
}

// Allows reports whether a request to u may be made at all (scheme, host, port and userinfo rules).
// It does not look at the query: Content-Location and next links carry one.
func (p *HostPolicy) Allows(u *url.URL) bool {
	if u == nil {
		return false
	}
	_, err := p.check(u)
	return err == nil
}

// check applies every rule but the query/fragment ones and returns the URL's canonical origin.
func (p *HostPolicy) check(u *url.URL) (origin, error) {
	scheme := strings.ToLower(u.Scheme)
	if scheme != "https" && scheme != "http" {
		if u.Scheme == "" {
			return origin{}, fmt.Errorf("%w: URL must be absolute with scheme https", ErrHostNotAllowed)
		}
		return origin{}, fmt.Errorf("%w: scheme %q is not https", ErrHostNotAllowed, u.Scheme)
	}
	if u.Opaque != "" {
		return origin{}, fmt.Errorf("%w: URL must be scheme://host/path", ErrHostNotAllowed)
	}
	if u.User != nil {
		return origin{}, fmt.Errorf("%w: URL must not contain user info", ErrHostNotAllowed)
	}
	host := strings.ToLower(u.Hostname())
	if host == "" {
		return origin{}, fmt.Errorf("%w: URL has no host", ErrHostNotAllowed)
	}
	port := u.Port()
	if port != "" && !validPort(port) {
		return origin{}, fmt.Errorf("%w: port %q is not a number in 1-65535", ErrHostNotAllowed, port)
	}
	if strings.HasSuffix(u.Host, ":") {
		return origin{}, fmt.Errorf("%w: empty port", ErrHostNotAllowed)
	}
	ip := net.ParseIP(host)
	if ip == nil && !validDNSName(host) {
		return origin{}, fmt.Errorf("%w: %q is not a valid host name", ErrHostNotAllowed, host)
	}
	host = canonicalIP(host)
	o := newOrigin(scheme, host, port)
	var matched *hostEntry
	portRefused := false
	for i := range p.entries {
		e := &p.entries[i]
		if !e.matchesHost(host) {
			continue
		}
		if !e.allowsPort(o) {
			portRefused = true
			continue
		}
		matched = e
		break
	}
	if matched == nil {
		switch {
		case portRefused:
			return origin{}, fmt.Errorf("%w: port %s of host %s is not on the allowed hosts list", ErrHostNotAllowed, o.port, host)
		case ip != nil:
			return origin{}, fmt.Errorf("%w: IP address %s is not on the allowed hosts list", ErrHostNotAllowed, host)
		default:
			return origin{}, fmt.Errorf("%w: host %s is not on the allowed hosts list", ErrHostNotAllowed, host)
		}
	}
	if scheme == "http" && !matched.loopback {
		return origin{}, fmt.Errorf("%w: https is required (http only for loopback hosts)", ErrHostNotAllowed)
	}
	return o, nil
}

func (e *hostEntry) matchesHost(host string) bool {
	if e.wildcard {
		return len(host) > len(e.host) && strings.HasSuffix(host, e.host)
	}
	return host == e.host
}

// allowsPort: an entry's own port; else the scheme's default port, or any port for loopback entries.
func (e *hostEntry) allowsPort(o origin) bool {
	switch {
	case e.port != "":
		return o.port == e.port
	case e.loopback:
		return true
	default:
		return o.port == defaultPort(o.scheme)
	}
}

// origin is scheme, host and effective port: the unit a token belongs to.
type origin struct {
	scheme, host, port string
}

func newOrigin(scheme, host, port string) origin {
	if port == "" {
		port = defaultPort(scheme)
	}
	return origin{scheme: scheme, host: host, port: port}
}

// originOf returns the canonical origin of an absolute http(s) URL.
func originOf(u *url.URL) origin {
	return newOrigin(strings.ToLower(u.Scheme), canonicalIP(strings.ToLower(u.Hostname())), u.Port())
}

// String is scheme://host[:port] with the default port left out: the token audience.
func (o origin) String() string {
	host := o.host
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if o.port == defaultPort(o.scheme) {
		return o.scheme + "://" + host
	}
	return o.scheme + "://" + host + ":" + o.port
}

func defaultPort(scheme string) string {
	if scheme == "http" {
		return "80"
	}
	return "443"
}

func validPort(s string) bool {
	if s == "" || len(s) > 5 {
		return false
	}
	n, err := strconv.Atoi(s)
	return err == nil && n >= 1 && n <= 65535 && strconv.Itoa(n) == s
}

// validDNSName accepts LDH labels, underscores tolerated, separated by dots (no empty label, no trailing dot).
func validDNSName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// canonicalIP rewrites IP literals to one spelling so "::1" and "0:0::1" compare equal.
func canonicalIP(host string) string {
	if ip := net.ParseIP(host); ip != nil {
		return ip.String()
	}
	return host
}
