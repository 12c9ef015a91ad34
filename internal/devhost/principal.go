package devhost

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// The local host stands in for App Service authentication ("Easy Auth") too, as far as the app sees it: in Azure
// the platform signs the caller in and passes the principal on to the app in X-MS-CLIENT-PRINCIPAL (Base64 JSON
// of auth_typ, claims [{typ, val}], name_typ, role_typ), X-MS-CLIENT-PRINCIPAL-ID, -NAME and -IDP, and does not let
// external requests set those headers (Microsoft Learn, "Work with user identities in Azure App Service
// authentication"). Here a principal is configured (Config.Principal; cmd/devhost --principal or
// DEVHOST_PRINCIPAL; SetPrincipal in tests) and put on every request to a function, in place of whatever principal
// headers the request came with; no token is asked for or checked. With none configured the headers are still
// dropped, so a request reaches the handler with no principal.
//
// This exists only on the local host, which listens on loopback alone (checkLoopback) and is never deployed: the
// package holds bin/handler, host.json and the function.json files, and in Azure the Functions host runs the handler.
// The handler cannot tell the two apart, so nothing here may ever be reachable from another machine.

// Principal is the signed-in caller the local host puts on each request.
type Principal struct {
	// ObjectID is the caller's object id (left out: derived from the name).
	ObjectID string `json:"objectId"`
	// Name is a human-readable name, as X-MS-CLIENT-PRINCIPAL-NAME carries it (a UPN, an email address).
	Name string `json:"name"`
	// Roles are the app roles of the app registration the caller holds (Migration.Read, Migration.Operate).
	Roles []string `json:"roles"`
}

// ParsePrincipal reads a principal: JSON {"objectId", "name", "roles"}, or "name:Role1,Role2" ("name" alone: no
// role). An empty string is no principal (nil).
func ParsePrincipal(s string) (*Principal, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	p := &Principal{}
	if strings.HasPrefix(s, "{") {
		dec := json.NewDecoder(strings.NewReader(s))
		dec.DisallowUnknownFields()
		if err := dec.Decode(p); err != nil {
			return nil, fmt.Errorf("principal %q: want {\"objectId\", \"name\", \"roles\"}: %w", s, err)
		}
	} else {
		name, roles, _ := strings.Cut(s, ":")
		p.Name = strings.TrimSpace(name)
		for r := range strings.SplitSeq(roles, ",") {
			if r = strings.TrimSpace(r); r != "" {
				p.Roles = append(p.Roles, r)
			}
		}
	}
	if p.Name == "" && p.ObjectID == "" {
		return nil, errors.New("principal: give a name (name:Role1,Role2) or an objectId")
	}
	if p.ObjectID == "" {
		p.ObjectID = nameGUID(p.Name)
	}
	return p, nil
}

// nameGUID is a stable GUID-shaped id for a name.
func nameGUID(name string) string {
	s := sha256.Sum256([]byte("devhost principal " + name))
	return fmt.Sprintf("%x-%x-%x-%x-%x", s[0:4], s[4:6], s[6:8], s[8:10], s[10:16])
}

// principalHeaderPrefixes are the headers only the platform may set: the principal's, and the provider tokens'.
var principalHeaderPrefixes = []string{"X-Ms-Client-Principal", "X-Ms-Token-"}

// dropPrincipalHeaders removes from h every header a client may not set.
func dropPrincipalHeaders(h http.Header) {
	for k := range h {
		for _, p := range principalHeaderPrefixes {
			if strings.HasPrefix(http.CanonicalHeaderKey(k), p) {
				delete(h, k)
			}
		}
	}
}

// Claim types as App Service's default claims mapping names them for a Microsoft Entra token.
const (
	claimObjectID = "http://schemas.microsoft.com/identity/claims/objectidentifier"
	claimName     = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name"
	claimRole     = "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"
)

// setHeaders puts p on h as App Service authentication does for a Microsoft Entra token issued for audience (the
// app's api://{AUTH_CLIENT_ID}; none when empty).
func (p *Principal) setHeaders(h http.Header, audience string) {
	type claim struct {
		Type  string `json:"typ"`
		Value string `json:"val"`
	}
	claims := []claim{{claimObjectID, p.ObjectID}, {"oid", p.ObjectID}}
	if p.Name != "" {
		claims = append(claims, claim{claimName, p.Name}, claim{"name", p.Name}, claim{"preferred_username", p.Name})
	}
	if audience != "" {
		claims = append(claims, claim{"aud", audience})
	}
	for _, r := range p.Roles {
		claims = append(claims, claim{"roles", r})
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(map[string]any{"auth_typ": "aad", "name_typ": claimName, "role_typ": claimRole, "claims": claims})
	h.Set("X-MS-CLIENT-PRINCIPAL", base64.StdEncoding.EncodeToString(bytes.TrimSpace(buf.Bytes())))
	h.Set("X-MS-CLIENT-PRINCIPAL-ID", p.ObjectID)
	if p.Name != "" {
		h.Set("X-MS-CLIENT-PRINCIPAL-NAME", p.Name)
	}
	h.Set("X-MS-CLIENT-PRINCIPAL-IDP", "aad")
}

// SetPrincipal changes the principal put on every request from now on (nil: none).
func (h *Host) SetPrincipal(p *Principal) {
	h.principal.Store(p)
}

// withPrincipal is r with the client's principal headers dropped and the configured principal's in their place.
func (h *Host) withPrincipal(r *http.Request) *http.Request {
	r = r.Clone(r.Context())
	dropPrincipalHeaders(r.Header)
	if p := h.principal.Load(); p != nil {
		audience := ""
		if id := strings.TrimSpace(h.cfg.Settings["AUTH_CLIENT_ID"]); id != "" {
			audience = "api://" + id
		}
		p.setHeaders(r.Header, audience)
	}
	return r
}
