package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/fhir-migrator/fhir-migrator/internal/api"
	"github.com/fhir-migrator/fhir-migrator/internal/migration"
)

// Who may call the HTTP API. Every function is authLevel function, so the Functions host itself lets only
// requests with a function key through (Azure/azure-functions-host AuthenticationLevelHandler.cs and
// AuthUtility.PrincipalHasAuthLevelClaim: a signed-in App Service identity adds no key level; see
// Azure/azure-functions-host#11394). On top of that:
//
//   - AUTH_MODE keys (the default, and the local stack's): the key is the whole check. Anyone with a key may do
//     anything.
//   - AUTH_MODE entra: App Service authentication ("Easy Auth", infra/modules/app-authentication.bicep) signs the
//     caller in with a Microsoft Entra access token for the app registration AUTH_CLIENT_ID and forwards the
//     principal to the app in headers. The handler reads the caller's app roles from X-MS-CLIENT-PRINCIPAL and
//     lets each operation through only with the role apiRoutes names for it (Migration.Read to read,
//     Migration.Operate to change anything, which implies Read); a request without the principal is refused 401
//     even when it reached the handler (a platform with authentication switched off cannot open the API).
//
// The headers (Microsoft Learn, "Work with user identities in Azure App Service authentication",
// configure-authentication-user-identities.md): X-MS-CLIENT-PRINCIPAL is "a Base64-encoded JSON representation of
// available claims", {"auth_typ", "claims": [{"typ", "val"}], "name_typ", "role_typ"}; X-MS-CLIENT-PRINCIPAL-ID
// "an identifier for the caller, which the identity provider sets"; X-MS-CLIENT-PRINCIPAL-NAME "a human-readable
// name for the caller"; X-MS-CLIENT-PRINCIPAL-IDP "the name of the identity provider". "External requests aren't
// allowed to set these headers, so they're present only if set by App Service" — with authentication on. A custom
// handler with enableForwardingHttpRequest gets them: the host forwards the incoming request with every one of its
// headers (Azure/azure-functions-host src/WebJobs.Script/Workers/Http/DefaultHttpWorkerService.cs
// ProcessHttpInAndOutInvocationRequest → src/WebJobs.Script/Extensions/HttpRequestExtensions.cs
// ToHttpRequestMessage, which copies request.Headers, then adds only its own invocation id, host version and
// User-Agent). With authentication off, nothing strips them: so in keys mode they are never trusted, and serve
// only as an unverified note in the audit trail.

// Auth modes (setting AUTH_MODE).
const (
	AuthKeys  = "keys"
	AuthEntra = "entra"
)

// AuthConfig is how the HTTP API's callers are let in.
type AuthConfig struct {
	// Mode is AuthKeys (function keys alone) or AuthEntra (App Service authentication and app roles).
	Mode string
	// ClientID is the application (client) id of the app registration the tokens are issued for (AUTH_CLIENT_ID):
	// with AuthEntra, a token whose audience the principal names must be this app's.
	ClientID string
}

var guidPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// appRole is an app role of the migrator's app registration, as Entra puts it in the token's roles claim.
type appRole string

// The app roles: Read to read migrations and their reports, Operate to start and change them (and read).
const (
	roleRead    appRole = "Migration.Read"
	roleOperate appRole = "Migration.Operate"
)

// The headers App Service authentication forwards to the app.
const (
	headerPrincipal     = "X-MS-CLIENT-PRINCIPAL"
	headerPrincipalID   = "X-MS-CLIENT-PRINCIPAL-ID"
	headerPrincipalName = "X-MS-CLIENT-PRINCIPAL-NAME"
	headerPrincipalIDP  = "X-MS-CLIENT-PRINCIPAL-IDP"
)

// Claim types App Service puts in the principal for Microsoft Entra tokens (after its default claims mapping,
// which may give a claim its long URI name: configure-authentication-user-identities.md).
const (
	claimObjectID    = "http://schemas.microsoft.com/identity/claims/objectidentifier"
	claimRoleURI     = "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"
	claimNameURI     = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name"
	claimUPNURI      = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"
	maxPrincipalSize = 64 << 10
)

// principal is a caller as the platform described it.
type principal struct {
	objectID, name, idp string
	roles               []string
	audiences           []string
}

// clientPrincipal is X-MS-CLIENT-PRINCIPAL decoded.
type clientPrincipal struct {
	AuthType string `json:"auth_typ"`
	NameType string `json:"name_typ"`
	RoleType string `json:"role_typ"`
	Claims   []struct {
		Type  string `json:"typ"`
		Value string `json:"val"`
	} `json:"claims"`
}

// readPrincipal reads the principal the request's headers describe: nil without X-MS-CLIENT-PRINCIPAL (the other
// headers alone carry no roles), an error when it cannot be read.
func readPrincipal(h http.Header) (*principal, error) {
	raw := strings.TrimSpace(h.Get(headerPrincipal))
	if raw == "" {
		return nil, nil
	}
	if len(raw) > maxPrincipalSize {
		return nil, fmt.Errorf("%s is over %d bytes", headerPrincipal, maxPrincipalSize)
	}
	var data []byte
	var err error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if data, err = enc.DecodeString(raw); err == nil {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%s is not Base64", headerPrincipal)
	}
	var cp clientPrincipal
	if err := json.Unmarshal(data, &cp); err != nil {
		return nil, fmt.Errorf("%s is not the JSON of a client principal", headerPrincipal)
	}
	p := &principal{idp: cp.AuthType}
	claims := map[string][]string{}
	for _, c := range cp.Claims {
		claims[c.Type] = append(claims[c.Type], c.Value)
	}
	first := func(types ...string) string {
		for _, t := range types {
			if t == "" {
				continue
			}
			for _, v := range claims[t] {
				if v = strings.TrimSpace(v); v != "" {
					return v
				}
			}
		}
		return ""
	}
	for _, t := range []string{cp.RoleType, "roles", claimRoleURI} {
		if t == "" {
			continue
		}
		for _, v := range claims[t] {
			if !slices.Contains(p.roles, v) {
				p.roles = append(p.roles, v)
			}
		}
	}
	p.audiences = claims["aud"]
	p.objectID = first(claimObjectID, "oid")
	if p.objectID == "" {
		p.objectID = strings.TrimSpace(h.Get(headerPrincipalID))
	}
	p.name = first(cp.NameType)
	if p.name == "" {
		p.name = strings.TrimSpace(h.Get(headerPrincipalName))
	}
	if p.name == "" {
		// A service principal (client credentials) has no user name: its application id names it.
		p.name = first("name", "preferred_username", claimNameURI, claimUPNURI, "appid", "azp")
	}
	if p.idp == "" {
		p.idp = strings.TrimSpace(h.Get(headerPrincipalIDP))
	}
	return p, nil
}

// has reports whether the principal holds role r; Operate implies Read.
func (p *principal) has(r appRole) bool {
	if p == nil {
		return false
	}
	return slices.Contains(p.roles, string(r)) || (r == roleRead && slices.Contains(p.roles, string(roleOperate)))
}

// who names the principal for a message: its name, else its object id.
func (p *principal) who() string {
	if p == nil {
		return "the caller"
	}
	if p.name != "" {
		return p.name
	}
	if p.objectID != "" {
		return p.objectID
	}
	return "a principal without a name or id"
}

type principalKey struct{}

// caller is the request's caller as authenticate found it.
type caller struct {
	// p is the principal: signed in by the platform when verified, else as the request's headers claimed it.
	p        *principal
	verified bool
}

func callerOf(ctx context.Context) caller {
	c, _ := ctx.Value(principalKey{}).(caller)
	return c
}

// authenticate finds the caller of an API request. In entra mode a request without a readable principal, or with
// one whose token was for another app, is refused 401 unauthenticated; in keys mode the principal headers, if
// any, are read only as a claim.
func (a *app) authenticate(r *http.Request) (caller, *api.Error) {
	p, err := readPrincipal(r.Header)
	if a.auth.Mode != AuthEntra {
		if err != nil {
			p = nil
		}
		return caller{p: p}, nil
	}
	refuse := func(format string, args ...any) (caller, *api.Error) {
		return caller{}, &api.Error{Status: api.StatusOf(api.Unauthenticated), Code: "unauthenticated",
			Message: fmt.Sprintf(format, args...)}
	}
	switch {
	case err != nil:
		return refuse("the request's signed-in principal cannot be read (%v); sign in again", err)
	case p == nil:
		return refuse("sign in: this API takes a Microsoft Entra access token for api://%s (Authorization: Bearer); "+
			"App Service authentication passes the signed-in caller on in %s, and this request carries none", a.auth.ClientID, headerPrincipal)
	case len(p.audiences) > 0 && !slices.ContainsFunc(p.audiences, a.ownAudience):
		return refuse("the token was issued for %s, not for this API (api://%s)", strings.Join(p.audiences, ", "), a.auth.ClientID)
	}
	return caller{p: p, verified: true}, nil
}

// platformAuthWarning is what the handler warns of at start when AUTH_MODE is entra on App Service
// (WEBSITE_SITE_NAME set) and the platform's authentication looks off: the Functions host itself reads
// WEBSITE_AUTH_ENABLED to know (Azure/azure-functions-host src/WebJobs.Script/Environment/EnvironmentSettingNames.cs
// EasyAuthEnabled, HostEasyAuthOptionsSetup.cs), and the handler's process inherits the host's environment
// (DefaultWorkerProcessFactory.cs: ProcessStartInfo with UseShellExecute false, the worker's variables added). Only
// a warning: the variable is the host's convention, not a documented contract, so the handler does not refuse to
// start on it; its requests are refused 401 all the same when no principal comes.
func platformAuthWarning(auth AuthConfig, getenv func(string) string) string {
	if auth.Mode != AuthEntra || getenv("WEBSITE_SITE_NAME") == "" {
		return ""
	}
	switch strings.ToLower(strings.TrimSpace(getenv("WEBSITE_AUTH_ENABLED"))) {
	case "true", "1":
		return ""
	}
	return "AUTH_MODE is entra but App Service authentication looks off (WEBSITE_AUTH_ENABLED is not true): every request " +
		"without a signed-in principal is refused 401, and a caller holding a function key could send principal headers " +
		"of its own; turn authentication on (infra/modules/app-authentication.bicep) or set AUTH_MODE keys"
}

// ownAudience reports whether a token audience is this app's: its client id (v2 tokens) or api://client-id (v1
// tokens, and the Application ID URI the Bicep allows).
func (a *app) ownAudience(aud string) bool {
	id := strings.ToLower(a.auth.ClientID)
	aud = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(aud), "/"))
	return id != "" && (aud == id || aud == "api://"+id)
}

// guard is route rt's handler behind its app role (entra mode) and the audit trail: a request that changes a
// migration is recorded in its document (by the engine, in the save of its change) and in a log line with msg
// audit; a read of a report, the report page or the missing ids is logged the same way.
func (a *app) guard(rt apiRoute) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c := callerOf(r.Context())
		op := operationOf(rt, r)
		if a.auth.Mode == AuthEntra && !c.p.has(rt.role) {
			refusal := &api.Error{Status: api.StatusOf(api.Forbidden), Code: "forbidden",
				Message: fmt.Sprintf("%s needs the app role %s, which %s does not hold (roles: %s)", op, rt.role, c.p.who(), rolesText(c.p.roles))}
			api.Write(w, refusal)
			if rt.role == roleOperate || rt.auditRead {
				a.logAudit(r, a.auditEntry(r, c, op), http.StatusForbidden, "forbidden", "")
			}
			return
		}
		if rt.role != roleOperate && !rt.auditRead {
			rt.handle(w, r)
			return
		}
		entry := a.auditEntry(r, c, op)
		ctx := context.WithValue(r.Context(), auditEntryKey{}, entry)
		if rt.role == roleOperate {
			ctx = migration.WithAudit(ctx, r.PathValue("id"), entry)
		}
		rec := &auditRecorder{ResponseWriter: w}
		rt.handle(rec, r.WithContext(ctx))
		id := r.PathValue("id")
		if id == "" {
			// A start's new migration or assessment.
			loc := rec.Header().Get("Location")
			if rest, ok := strings.CutPrefix(loc, "/api/assessments/"); ok {
				id = rest
			} else {
				id = strings.TrimPrefix(loc, "/api/migrations/")
			}
		}
		a.logAudit(r, entry, rec.status(), rec.code(), id)
	}
}

func rolesText(roles []string) string {
	if len(roles) == 0 {
		return "none"
	}
	return strings.Join(roles, ", ")
}

// auditEntry is what the audit records of request r by caller c: who, what, from where.
func (a *app) auditEntry(r *http.Request, c caller, op string) *migration.AuditEntry {
	e := &migration.AuditEntry{Operation: op, Who: "function key", Verified: c.verified,
		InvocationID: r.Header.Get("X-Azure-Functions-InvocationId")}
	if c.p != nil {
		e.ObjectID, e.Name = clip(c.p.objectID, 128), clip(c.p.name, 256)
		if c.verified {
			e.Who = clip(c.p.who(), 256)
		}
	}
	e.Client, e.ForwardedFor = clientAddress(r.Header)
	return e
}

// logAudit writes the audit line of a request: msg audit, the migration, who, what, from where and the answer.
func (a *app) logAudit(r *http.Request, e *migration.AuditEntry, status int, code, id string) {
	args := []any{"migration", id, "operation", e.Operation, "who", e.Who, "objectId", e.ObjectID, "name", e.Name,
		"verified", e.Verified, "client", e.Client, "method", r.Method, "path", r.URL.Path, "status", status}
	if code != "" {
		args = append(args, "code", code)
	}
	if e.ForwardedFor != "" {
		args = append(args, "forwardedFor", e.ForwardedFor)
	}
	if len(e.Fields) > 0 {
		args = append(args, "fields", e.Fields)
	}
	if wantsHTML(r.Header.Get("Accept")) && r.Method == http.MethodGet {
		args = append(args, "page", "html")
	}
	args = append(args, "invocationId", e.InvocationID)
	a.logger.Info("audit", args...)
}

type auditEntryKey struct{}

// auditFields records the request body's fields that matter in the request's audit entry (when it has one): every
// field the client set, URLs without their query or user info, long values cut short. The bodies of the API hold
// no secret; a URL's query is where one would hide.
func auditFields(ctx context.Context, body any) {
	e, _ := ctx.Value(auditEntryKey{}).(*migration.AuditEntry)
	if e == nil {
		return
	}
	e.Fields = fieldsOf(body)
}

// Bounds of the audited fields.
const (
	maxAuditString = 512
	maxAuditItems  = 100
)

func fieldsOf(body any) map[string]any {
	data, err := json.Marshal(body)
	if err != nil {
		return nil
	}
	var all map[string]any
	if json.Unmarshal(data, &all) != nil {
		return nil
	}
	out := map[string]any{}
	for k, v := range all {
		switch x := v.(type) {
		case nil:
		case bool:
			if x {
				out[k] = x
			}
		case string:
			if x != "" {
				out[k] = auditString(x)
			}
		case []any:
			if len(x) == 0 {
				continue
			}
			items := make([]any, 0, min(len(x), maxAuditItems))
			for _, it := range x[:min(len(x), maxAuditItems)] {
				if s, ok := it.(string); ok {
					it = auditString(s)
				}
				items = append(items, it)
			}
			out[k] = items
			if len(x) > maxAuditItems {
				out[k+"Count"] = len(x)
			}
		default:
			out[k] = x
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// auditString is a value as the audit keeps it: an absolute URL without its user info, query and fragment, and
// nothing longer than maxAuditString.
func auditString(s string) string {
	if u, err := url.Parse(s); err == nil && u.Scheme != "" && u.Host != "" {
		u.User, u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = nil, "", false, "", ""
		s = u.String()
	}
	return clip(s, maxAuditString)
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// clientAddress is the caller's address: the first hop of X-Forwarded-For, without its port (App Service's front
// end writes "ip:port"), and the whole chain when it has more than one hop. The Functions host adds no address of
// its own to a forwarded request (HttpRequestExtensions.ToHttpRequestMessage copies the incoming headers), so the
// hops are the platform's front end's, and the local host's (httputil.ProxyRequest.SetXForwarded). A client may
// send X-Forwarded-For itself: the first hop is then its claim, and the chain's last hop the address the platform
// saw.
func clientAddress(h http.Header) (first, chain string) {
	var hops []string
	for _, v := range h.Values("X-Forwarded-For") {
		for hop := range strings.SplitSeq(v, ",") {
			if hop = strings.TrimSpace(hop); hop != "" {
				hops = append(hops, hop)
			}
		}
	}
	if len(hops) == 0 {
		return "", ""
	}
	first = hops[0]
	if host, _, err := net.SplitHostPort(first); err == nil {
		first = host
	}
	if len(hops) > 1 {
		chain = clip(strings.Join(hops, ", "), 512)
	}
	return clip(first, 64), chain
}

// auditRecorder remembers the status of an answer and, for an error, its code.
type auditRecorder struct {
	http.ResponseWriter
	wrote bool
	stat  int
	head  []byte
}

func (rec *auditRecorder) WriteHeader(code int) {
	if !rec.wrote {
		rec.wrote, rec.stat = true, code
	}
	rec.ResponseWriter.WriteHeader(code)
}

func (rec *auditRecorder) Write(p []byte) (int, error) {
	if !rec.wrote {
		rec.wrote, rec.stat = true, http.StatusOK
	}
	if rec.stat >= 400 && len(rec.head) < 4096 {
		rec.head = append(rec.head, p[:min(len(p), 4096-len(rec.head))]...)
	}
	return rec.ResponseWriter.Write(p)
}

func (rec *auditRecorder) Unwrap() http.ResponseWriter { return rec.ResponseWriter }

func (rec *auditRecorder) status() int {
	if !rec.wrote {
		return http.StatusOK
	}
	return rec.stat
}

func (rec *auditRecorder) code() string {
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	if rec.stat < 400 || json.Unmarshal(rec.head, &e) != nil {
		return ""
	}
	return e.Error.Code
}

// operationIDs maps each operation of the description, "METHOD /path" (with {id}), to its operationId.
var operationIDs = sync.OnceValue(func() map[string]string {
	out := map[string]string{}
	for _, op := range apiOperations() {
		out[op.method+" "+op.path] = op.id
	}
	return out
})

// operationOf names the operation a request of route rt is: its operationId (an action or a report part made
// concrete), or the route's pattern when the description has no such operation (an unknown action).
func operationOf(rt apiRoute, r *http.Request) string {
	pattern := rt.pattern
	for _, name := range []string{"action", "part"} {
		pattern = strings.ReplaceAll(pattern, "{"+name+"}", r.PathValue(name))
	}
	if id, ok := operationIDs()[pattern]; ok {
		return id
	}
	return pattern
}
