package fhirsim

// The bulk-data flavor: a FHIR server that speaks the HL7 Bulk Data Access IG (v2.0.0) as an EHR vendor's or HAPI
// FHIR's bulk API does, rather than as Azure API for FHIR does.
//
//   - $export at system level, Patient/$export and Group/{id}/$export, with only _outputFormat, _since, _type and
//     _typeFilter (declared in its OperationDefinitions, served at /OperationDefinition/{id}); no _till, _until or
//     _container, no includeAssociatedData, refused with 400 like any unknown parameter.
//   - Output files are held by the server and served at its own URLs behind the bearer token
//     (requiresAccessToken: true), with Range requests honoured (206) so an interrupted download can be resumed.
//   - Authorisation is SMART Backend Services: /.well-known/smart-configuration names the token endpoint, which
//     takes client_credentials with a private_key_jwt client assertion (RS384 or ES384) checked against the
//     client's registered public key, and issues short-lived opaque tokens.
//   - DELETE on a completed export's status URL removes its files (the IG's "client SHOULD delete"), 202.
//
// Group membership follows the export code of microsoft/fhir-server (GroupMemberExtractor.cs): active members only,
// Patient members and the patients of nested Groups (loops ignored), the export being those patients' compartment.

import (
	"bytes"
	"cmp"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// FlavorBulkData is a generic HL7 Bulk Data Access server with SMART Backend Services authorisation.
const FlavorBulkData Flavor = "bulk-data"

// Paths of the bulk-data flavor.
const (
	SMARTConfigPath = "/.well-known/smart-configuration"
	TokenPath       = "/auth/token"
	bulkFilesPrefix = "/_bulk/"
)

// DefaultTokenLifetime is how long a token issued by the bulk-data flavor's token endpoint lives.
const DefaultTokenLifetime = 5 * time.Minute

// bulkExportParams are the kick-off parameters the bulk-data flavor declares and accepts; any other is a 400.
var bulkExportParams = map[string]bool{"_outputFormat": true, "_since": true, "_type": true, "_typeFilter": true}

// WithSMARTClient registers a SMART Backend Services client: its client_id and the public key (*rsa.PublicKey for
// RS384, *ecdsa.PublicKey on P-384 for ES384) its assertions are checked against.
func WithSMARTClient(clientID string, key crypto.PublicKey) Option {
	return func(c *config) {
		if c.smartClients == nil {
			c.smartClients = map[string]crypto.PublicKey{}
		}
		c.smartClients[clientID] = key
	}
}

// WithTokenLifetime sets the expires_in of the tokens the bulk-data flavor issues (default 5 minutes).
func WithTokenLifetime(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.tokenLifetime = d
		}
	}
}

// WithDeclaredUntil makes the bulk-data flavor declare and take _until (the IG v2's optional upper bound: only
// resources last updated at or before it), as some servers do; by default it takes no upper bound.
func WithDeclaredUntil(on bool) Option { return func(c *config) { c.declaredUntil = on } }

// WithDownloadCuts makes the first n whole-file downloads (GETs without Range) of the bulk-data flavor stop after
// half of the file's bytes with the connection closed, as a dropped download does; resumed ranges are served whole.
func WithDownloadCuts(n int) Option { return func(c *config) { c.downloadCuts = max(n, 0) } }

// WithTokenRevocationAfterFiles revokes every token issued so far once n file downloads have been answered, as
// a server whose keys rotate does: a client holding a token still in its lifetime gets 401 and must renew.
func WithTokenRevocationAfterFiles(n int) Option {
	return func(c *config) { c.revokeAfterFiles = max(n, 0) }
}

// WithExportErrors makes each bulk-data export write one error file holding an OperationOutcome per message.
func WithExportErrors(messages ...string) Option {
	return func(c *config) { c.exportErrors = append(c.exportErrors, messages...) }
}

// BulkFetch is one request the bulk-data flavor answered for an output or error file, or a status URL DELETE.
type BulkFetch struct {
	Method string `json:"method"`
	Path   string `json:"path"`
	// Token labels the bearer token presented: "token-N" for the Nth issued, "" for none, "unknown" otherwise.
	Token  string `json:"token"`
	Range  string `json:"range,omitempty"`
	Status int    `json:"status"`
	// Bytes is how many body bytes were written; Cut marks a download stopped part-way by WithDownloadCuts.
	Bytes int64 `json:"bytes"`
	Cut   bool  `json:"cut,omitempty"`
}

// TokenGrant is one answer of the token endpoint.
type TokenGrant struct {
	ClientID string `json:"clientId"`
	Alg      string `json:"alg"`
	Scope    string `json:"scope"`
	Status   int    `json:"status"`
	// Error is the OAuth error code of a refused request.
	Error string `json:"error,omitempty"`
	// Token labels the token issued ("token-N").
	Token string `json:"token,omitempty"`
}

// bulkState is the bulk-data flavor's own state, guarded by its mutex (never held with Server.mu).
type bulkState struct {
	mu          sync.Mutex
	tokens      map[string]*issuedToken // by the token's value
	issued      int
	jtis        map[string]time.Time // assertion ids seen, until they expire
	cutsLeft    int
	filesServed int
	revoked     bool
	files       map[string][]byte // by path under bulkFilesPrefix
	fetches     []BulkFetch
	grants      []TokenGrant
}

type issuedToken struct {
	label   string
	expires time.Time
	revoked bool
}

func newBulkState(cfg config) *bulkState {
	return &bulkState{tokens: map[string]*issuedToken{}, jtis: map[string]time.Time{}, cutsLeft: cfg.downloadCuts,
		files: map[string][]byte{}}
}

// BulkFetches returns the requests answered for files and status DELETEs, in order.
func (s *Server) BulkFetches() []BulkFetch {
	s.bulk.mu.Lock()
	defer s.bulk.mu.Unlock()
	return slices.Clone(s.bulk.fetches)
}

// TokenGrants returns the token endpoint's answers, in order.
func (s *Server) TokenGrants() []TokenGrant {
	s.bulk.mu.Lock()
	defer s.bulk.mu.Unlock()
	return slices.Clone(s.bulk.grants)
}

// routeBulkPublic serves what the bulk-data flavor answers without a token; it reports whether it answered.
func (s *Server) routeBulkPublic(w http.ResponseWriter, r *http.Request) bool {
	switch r.URL.Path {
	case SMARTConfigPath:
		if r.Method != http.MethodGet {
			writeOutcome(w, http.StatusMethodNotAllowed, "not-supported", "method %s is not allowed on %s", r.Method, r.URL.Path)
			return true
		}
		writeJSON(w, http.StatusOK, "application/json", map[string]any{
			"issuer":                                baseURL(r),
			"token_endpoint":                        baseURL(r) + TokenPath,
			"grant_types_supported":                 []string{"client_credentials"},
			"token_endpoint_auth_methods_supported": []string{"private_key_jwt"},
			"token_endpoint_auth_signing_alg_values_supported": []string{"RS384", "ES384"},
			"scopes_supported": []string{"system/*.rs", "system/*.read"},
			"capabilities":     []string{"client-confidential-asymmetric"},
		})
		return true
	case TokenPath:
		s.handleToken(w, r)
		return true
	}
	if strings.HasPrefix(r.URL.Path, bulkFilesPrefix) {
		s.handleBulkFile(w, r) // checks the token itself, to record refusals too
		return true
	}
	if id, ok := strings.CutPrefix(r.URL.Path, "/OperationDefinition/"); ok && r.Method == http.MethodGet {
		s.handleOperationDefinition(w, id)
		return true
	}
	return false
}

// routeBulk serves the bulk-data flavor's kick-offs (after the token check); it reports whether it answered.
func (s *Server) routeBulk(w http.ResponseWriter, r *http.Request, segs []string) bool {
	switch {
	case len(segs) == 1 && segs[0] == "$export":
		s.handleBulkKickOff(w, r, "")
	case len(segs) == 2 && segs[0] == "Patient" && segs[1] == "$export":
		s.handleBulkKickOff(w, r, "Patient")
	case len(segs) == 3 && segs[0] == "Group" && segs[2] == "$export":
		s.handleBulkKickOff(w, r, segs[1])
	default:
		return false
	}
	return true
}

// bulkAuthorized checks a token issued by the token endpoint: known, not expired, not revoked.
func (s *Server) bulkAuthorized(w http.ResponseWriter, r *http.Request) bool {
	if !s.cfg.auth {
		return true
	}
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || token == "" {
		w.Header().Set("WWW-Authenticate", "Bearer")
		writeOutcome(w, http.StatusUnauthorized, "login", "authentication failed: no bearer token")
		return false
	}
	s.bulk.mu.Lock()
	t := s.bulk.tokens[token]
	s.bulk.mu.Unlock()
	switch {
	case t == nil:
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		writeOutcome(w, http.StatusUnauthorized, "login", "authentication failed: the token was not issued here")
		return false
	case t.revoked || !time.Now().Before(t.expires):
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token", error_description="expired"`)
		writeOutcome(w, http.StatusUnauthorized, "login", "authentication failed: the token has expired")
		return false
	}
	return true
}

// IssueToken issues a token as the token endpoint does, without an assertion: for tests and tools that write to
// a bulk-data source (recorded as a grant to client "(direct)").
func (s *Server) IssueToken() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	value := hex.EncodeToString(b[:])
	s.bulk.mu.Lock()
	defer s.bulk.mu.Unlock()
	s.bulk.issued++
	label := fmt.Sprintf("token-%d", s.bulk.issued)
	s.bulk.tokens[value] = &issuedToken{label: label, expires: time.Now().Add(s.cfg.tokenLifetime)}
	s.bulk.grants = append(s.bulk.grants, TokenGrant{ClientID: "(direct)", Status: http.StatusOK, Token: label})
	return value
}

// tokenLabel names the bearer token of r for the records.
func (s *Server) tokenLabel(r *http.Request) string {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || token == "" {
		return ""
	}
	s.bulk.mu.Lock()
	defer s.bulk.mu.Unlock()
	if t := s.bulk.tokens[token]; t != nil {
		return t.label
	}
	return "unknown"
}

// handleToken is the SMART Backend Services token endpoint (RFC 6749 §4.4 with an RFC 7523 client assertion).
func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	grant := TokenGrant{}
	refuse := func(status int, code, desc string) {
		grant.Status, grant.Error = status, code
		s.bulk.mu.Lock()
		s.bulk.grants = append(s.bulk.grants, grant)
		s.bulk.mu.Unlock()
		writeJSON(w, status, "application/json", map[string]string{"error": code, "error_description": desc})
	}
	if r.Method != http.MethodPost {
		refuse(http.StatusMethodNotAllowed, "invalid_request", "the token endpoint takes POST")
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		refuse(http.StatusBadRequest, "invalid_request", "the body must be application/x-www-form-urlencoded")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		refuse(http.StatusBadRequest, "invalid_request", "the form could not be read")
		return
	}
	f := r.PostForm
	grant.Scope = f.Get("scope")
	switch {
	case f.Get("grant_type") != "client_credentials":
		refuse(http.StatusBadRequest, "unsupported_grant_type", "grant_type must be client_credentials")
		return
	case f.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
		refuse(http.StatusBadRequest, "invalid_request", "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
		return
	case grant.Scope == "":
		refuse(http.StatusBadRequest, "invalid_scope", "scope is required")
		return
	}
	for sc := range strings.FieldsSeq(grant.Scope) {
		if sc != "system/*.rs" && sc != "system/*.read" {
			refuse(http.StatusBadRequest, "invalid_scope", "only system/*.rs and system/*.read are granted")
			return
		}
	}
	clientID, alg, err := s.checkAssertion(f.Get("client_assertion"), baseURL(r)+TokenPath)
	grant.ClientID, grant.Alg = clientID, alg
	if err != nil {
		refuse(http.StatusBadRequest, "invalid_client", err.Error())
		return
	}
	var b [24]byte
	_, _ = rand.Read(b[:])
	value := hex.EncodeToString(b[:])
	s.bulk.mu.Lock()
	s.bulk.issued++
	grant.Status, grant.Token = http.StatusOK, fmt.Sprintf("token-%d", s.bulk.issued)
	s.bulk.tokens[value] = &issuedToken{label: grant.Token, expires: time.Now().Add(s.cfg.tokenLifetime)}
	s.bulk.grants = append(s.bulk.grants, grant)
	s.bulk.mu.Unlock()
	s.log.Info("token issued", "client_id", clientID, "token", grant.Token)
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, "application/json", map[string]any{
		"access_token": value, "token_type": "bearer", "expires_in": int(s.cfg.tokenLifetime / time.Second),
		"scope": grant.Scope,
	})
}

// checkAssertion verifies a client assertion as SMART Backend Services requires: iss = sub = a registered
// client_id, aud = the token endpoint, exp in the future and at most five minutes away, a jti not seen before, and
// an RS384 or ES384 signature by the client's key. It returns the client id and the algorithm.
func (s *Server) checkAssertion(assertion, audience string) (string, string, error) {
	parts := strings.Split(assertion, ".")
	if len(parts) != 3 {
		return "", "", errors.New("client_assertion is not a compact JWS")
	}
	var header struct {
		Alg string `json:"alg"`
		Typ string `json:"typ"`
		Kid string `json:"kid"`
	}
	var claims struct {
		Iss string          `json:"iss"`
		Sub string          `json:"sub"`
		Aud json.RawMessage `json:"aud"`
		Exp json.Number     `json:"exp"`
		Jti string          `json:"jti"`
	}
	if err := decodeSegment(parts[0], &header); err != nil {
		return "", "", fmt.Errorf("client_assertion header: %w", err)
	}
	if err := decodeSegment(parts[1], &claims); err != nil {
		return "", "", fmt.Errorf("client_assertion claims: %w", err)
	}
	if claims.Iss == "" || claims.Iss != claims.Sub {
		return claims.Iss, header.Alg, errors.New("iss and sub must both be the client_id")
	}
	key, ok := s.cfg.smartClients[claims.Iss]
	if !ok {
		return claims.Iss, header.Alg, errors.New("the client_id is not registered")
	}
	var aud string
	if json.Unmarshal(claims.Aud, &aud) != nil || aud != audience {
		return claims.Iss, header.Alg, fmt.Errorf("aud must be the token endpoint %s", audience)
	}
	exp, err := claims.Exp.Int64()
	now := time.Now()
	if err != nil || !time.Unix(exp, 0).After(now) || time.Unix(exp, 0).After(now.Add(5*time.Minute)) {
		return claims.Iss, header.Alg, errors.New("exp must be in the future and no more than five minutes away")
	}
	if claims.Jti == "" {
		return claims.Iss, header.Alg, errors.New("jti is required")
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return claims.Iss, header.Alg, errors.New("the signature is not base64url")
	}
	digest := sha512.Sum384([]byte(parts[0] + "." + parts[1]))
	switch k := key.(type) {
	case *rsa.PublicKey:
		if header.Alg != "RS384" || rsa.VerifyPKCS1v15(k, crypto.SHA384, digest[:], sig) != nil {
			return claims.Iss, header.Alg, errors.New("the RS384 signature does not verify against the registered key")
		}
	case *ecdsa.PublicKey:
		if header.Alg != "ES384" || len(sig) != 96 ||
			!ecdsa.Verify(k, digest[:], new(big.Int).SetBytes(sig[:48]), new(big.Int).SetBytes(sig[48:])) {
			return claims.Iss, header.Alg, errors.New("the ES384 signature does not verify against the registered key")
		}
	default:
		return claims.Iss, header.Alg, errors.New("the registered key is neither RSA nor ECDSA")
	}
	s.bulk.mu.Lock()
	defer s.bulk.mu.Unlock()
	for j, until := range s.bulk.jtis {
		if now.After(until) {
			delete(s.bulk.jtis, j)
		}
	}
	if _, seen := s.bulk.jtis[claims.Iss+"\x00"+claims.Jti]; seen {
		return claims.Iss, header.Alg, errors.New("the jti was used before")
	}
	s.bulk.jtis[claims.Iss+"\x00"+claims.Jti] = time.Unix(exp, 0)
	return claims.Iss, header.Alg, nil
}

func decodeSegment(seg string, v any) error {
	raw, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return errors.New("not base64url")
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if err := d.Decode(v); err != nil {
		return errors.New("not a JSON object")
	}
	return nil
}

// handleOperationDefinition serves the three export OperationDefinitions with the parameters this server takes.
func (s *Server) handleOperationDefinition(w http.ResponseWriter, id string) {
	levels := map[string][]string{"export": {"system"}, "patient-export": {"type"}, "group-export": {"instance"}}
	level, ok := levels[id]
	if !ok || s.cfg.flavor != FlavorBulkData {
		writeOutcome(w, http.StatusNotFound, "not-found", "OperationDefinition %q was not found", id)
		return
	}
	type param struct {
		Name string `json:"name"`
		Use  string `json:"use"`
		Min  int    `json:"min"`
		Max  string `json:"max"`
		Type string `json:"type"`
	}
	params := []param{
		{"_outputFormat", "in", 0, "1", "string"}, {"_since", "in", 0, "1", "instant"},
		{"_type", "in", 0, "*", "string"}, {"_typeFilter", "in", 0, "*", "string"},
	}
	if s.cfg.declaredUntil {
		params = append(params, param{"_until", "in", 0, "1", "instant"})
	}
	def := map[string]any{
		"resourceType": "OperationDefinition", "id": id, "status": "active", "kind": "operation", "code": "export",
		"url": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/" + id, "parameter": params,
		"system": level[0] == "system", "type": level[0] == "type", "instance": level[0] == "instance",
	}
	if id != "export" {
		def["resource"] = []string{map[string]string{"patient-export": "Patient", "group-export": "Group"}[id]}
	}
	writeJSON(w, http.StatusOK, "application/fhir+json", def)
}

// handleBulkKickOff starts a bulk-data export: level "" is system, "Patient" every patient's compartment, anything
// else a Group id.
func (s *Server) handleBulkKickOff(w http.ResponseWriter, r *http.Request, level string) {
	if r.Method != http.MethodGet {
		writeOutcome(w, http.StatusMethodNotAllowed, "not-supported", "method %s is not allowed on $export", r.Method)
		return
	}
	if accept := r.Header.Values("Accept"); len(accept) != 1 || accept[0] != "application/fhir+json" {
		writeOutcome(w, http.StatusBadRequest, "invalid", "the Accept header must be exactly application/fhir+json for $export")
		return
	}
	if err := checkExportPrefer(r.Header.Values("Prefer")); err != nil {
		writeOutcome(w, http.StatusBadRequest, "invalid", "%v", err)
		return
	}
	q := r.URL.Query()
	for name := range q {
		if !bulkExportParams[name] && (name != "_until" || !s.cfg.declaredUntil) {
			writeOutcome(w, http.StatusBadRequest, "not-supported", "the query parameter %q is not supported for $export", name)
			return
		}
	}
	created := s.now()
	parse := q
	if v, ok := q["_until"]; ok {
		// _until selects as the export's till does (le, inclusive).
		parse = url.Values{}
		for k, vs := range q {
			parse[k] = vs
		}
		delete(parse, "_until")
		parse["_till"] = v
	}
	spec, err := parseExportSpec(parse, created, FlavorBulkData)
	if err != nil {
		writeOutcome(w, http.StatusBadRequest, "invalid", "%v", err)
		return
	}
	var patients map[string]bool // nil: system level, every resource
	switch level {
	case "":
	case "Patient":
		patients = map[string]bool{}
		_, all, _ := s.resources.find(query{typ: "Patient", limit: -1})
		for _, p := range all {
			patients[p.ID] = true
		}
	default:
		if !resourceIDRE.MatchString(level) || s.resources.get("Group", level).latest() == nil ||
			s.resources.get("Group", level).latest().Deleted {
			writeOutcome(w, http.StatusNotFound, "not-found", "Group %s was not found.", level)
			return
		}
		patients = s.groupPatients(level, map[string]bool{})
	}
	snapshot := s.exportSnapshot(spec)
	if patients != nil {
		snapshot = slices.DeleteFunc(snapshot, func(res *resource) bool { return !inCompartment(res, patients) })
	}
	j := &exportJob{job: job{id: newJobID(), created: created, request: requestURL(r)}, query: q.Encode(), bulk: true}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.exports[j.id] = j
	s.stats.ExportJobs++
	s.startLocked(&j.job, "export", func(ctx context.Context) error {
		output, errorFiles := s.writeBulkFiles(baseURL(r), j.id, snapshot)
		s.mu.Lock()
		j.output, j.errorFiles = output, errorFiles
		s.mu.Unlock()
		return ctx.Err()
	})
	s.log.Info("bulk export queued", "job_id", j.id, "level", cmp.Or(level, "system"), "resources", len(snapshot))
	w.Header().Set("Content-Location", baseURL(r)+"/_operations/export/"+j.id)
	writeAccepted(w)
}

// groupPatients is the ids of the patients that are active members of the group or of groups nested in it.
func (s *Server) groupPatients(id string, seen map[string]bool) map[string]bool {
	seen[id] = true
	out := map[string]bool{}
	g := s.resources.get("Group", id).latest()
	if g == nil || g.Deleted {
		return out
	}
	var group struct {
		Member []struct {
			Entity struct {
				Reference string `json:"reference"`
			} `json:"entity"`
			Inactive bool `json:"inactive"`
		} `json:"member"`
	}
	if json.Unmarshal(g.Raw, &group) != nil {
		return out
	}
	for _, m := range group.Member {
		if m.Inactive {
			continue
		}
		typ, ref, _ := strings.Cut(m.Entity.Reference, "/")
		switch {
		case typ == "Patient":
			out[ref] = true
		case typ == "Group" && !seen[ref]:
			for p := range s.groupPatients(ref, seen) {
				out[p] = true
			}
		}
	}
	return out
}

// inCompartment reports whether res is one of the patients or refers to one as its subject or patient.
func inCompartment(res *resource, patients map[string]bool) bool {
	if res.Type == "Patient" {
		return patients[res.ID]
	}
	var refs struct {
		Subject struct {
			Reference string `json:"reference"`
		} `json:"subject"`
		Patient struct {
			Reference string `json:"reference"`
		} `json:"patient"`
	}
	if json.Unmarshal(res.Raw, &refs) != nil {
		return false
	}
	for _, ref := range []string{refs.Subject.Reference, refs.Patient.Reference} {
		if id, ok := strings.CutPrefix(ref, "Patient/"); ok && patients[id] {
			return true
		}
	}
	return false
}

// writeBulkFiles keeps the snapshot as NDJSON files served by the simulator, rolling over per type, and the
// configured error file.
func (s *Server) writeBulkFiles(base, jobID string, snapshot []*resource) (output, errorFiles []manifestFile) {
	s.bulk.mu.Lock()
	defer s.bulk.mu.Unlock()
	output = []manifestFile{}
	for len(snapshot) > 0 {
		typ := snapshot[0].Type
		end := 1
		for end < len(snapshot) && snapshot[end].Type == typ {
			end++
		}
		group := snapshot[:end]
		snapshot = snapshot[end:]
		for n := 1; len(group) > 0; n++ {
			chunk := group[:min(s.cfg.rollover, len(group))]
			group = group[len(chunk):]
			var buf bytes.Buffer
			for _, res := range chunk {
				buf.Write(res.Raw)
				buf.WriteByte('\n')
			}
			path := fmt.Sprintf("%s%s/%s-%d.ndjson", bulkFilesPrefix, jobID, typ, n)
			s.bulk.files[path] = buf.Bytes()
			output = append(output, manifestFile{Type: typ, URL: base + path, Count: len(chunk)})
		}
	}
	errorFiles = []manifestFile{}
	if len(s.cfg.exportErrors) > 0 {
		var buf bytes.Buffer
		for _, m := range s.cfg.exportErrors {
			line, _ := json.Marshal(newOutcome("processing", m))
			buf.Write(line)
			buf.WriteByte('\n')
		}
		path := bulkFilesPrefix + jobID + "/OperationOutcome-errors.ndjson"
		s.bulk.files[path] = buf.Bytes()
		errorFiles = append(errorFiles, manifestFile{Type: "OperationOutcome", URL: base + path, Count: len(s.cfg.exportErrors)})
	}
	return output, errorFiles
}

// deleteBulkFiles removes a job's files (DELETE on a completed export's status URL).
func (s *Server) deleteBulkFiles(jobID string) {
	s.bulk.mu.Lock()
	defer s.bulk.mu.Unlock()
	for path := range s.bulk.files {
		if strings.HasPrefix(path, bulkFilesPrefix+jobID+"/") {
			delete(s.bulk.files, path)
		}
	}
}

// recordDelete records a status URL DELETE in the fetch records.
func (s *Server) recordDelete(r *http.Request, status int) {
	s.bulk.mu.Lock()
	defer s.bulk.mu.Unlock()
	s.bulk.fetches = append(s.bulk.fetches, BulkFetch{Method: r.Method, Path: r.URL.Path, Status: status})
}

// handleBulkFile serves an output or error file behind the token, honouring a single "bytes=N-" or "bytes=N-M"
// range (206 with Content-Range), and cutting whole-file downloads part-way while WithDownloadCuts lasts.
func (s *Server) handleBulkFile(w http.ResponseWriter, r *http.Request) {
	rec := BulkFetch{Method: r.Method, Path: r.URL.Path, Token: s.tokenLabel(r), Range: r.Header.Get("Range")}
	defer func() {
		s.bulk.mu.Lock()
		s.bulk.fetches = append(s.bulk.fetches, rec)
		if rec.Status/100 == 2 {
			s.bulk.filesServed++
			if n := s.cfg.revokeAfterFiles; n > 0 && s.bulk.filesServed == n && !s.bulk.revoked {
				s.bulk.revoked = true
				for _, t := range s.bulk.tokens {
					t.revoked = true
				}
				s.log.Info("tokens revoked", "after_files", n)
			}
		}
		s.bulk.mu.Unlock()
	}()
	if !s.bulkAuthorized(w, r) {
		rec.Status = http.StatusUnauthorized
		return
	}
	if r.Method != http.MethodGet {
		rec.Status = http.StatusMethodNotAllowed
		writeOutcome(w, rec.Status, "not-supported", "method %s is not allowed on a file", r.Method)
		return
	}
	s.bulk.mu.Lock()
	data, ok := s.bulk.files[r.URL.Path]
	s.bulk.mu.Unlock()
	if !ok {
		rec.Status = http.StatusNotFound
		writeOutcome(w, rec.Status, "not-found", "the file %s was not found", r.URL.Path)
		return
	}
	w.Header().Set("Accept-Ranges", "bytes")
	w.Header().Set("Content-Type", "application/fhir+ndjson")
	if rec.Range != "" {
		start, end, err := parseByteRange(rec.Range, int64(len(data)))
		if err != nil {
			rec.Status = http.StatusRequestedRangeNotSatisfiable
			w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", len(data)))
			writeOutcome(w, rec.Status, "invalid", "%v", err)
			return
		}
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, end-1, len(data)))
		w.Header().Set("Content-Length", strconv.FormatInt(end-start, 10))
		rec.Status = http.StatusPartialContent
		w.WriteHeader(rec.Status)
		n, _ := w.Write(data[start:end])
		rec.Bytes = int64(n)
		return
	}
	s.bulk.mu.Lock()
	cut := s.bulk.cutsLeft > 0 && len(data) > 1
	if cut {
		s.bulk.cutsLeft--
	}
	s.bulk.mu.Unlock()
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	rec.Status = http.StatusOK
	w.WriteHeader(rec.Status)
	if !cut {
		n, _ := w.Write(data)
		rec.Bytes = int64(n)
		return
	}
	n, _ := w.Write(data[:len(data)/2])
	rec.Bytes, rec.Cut = int64(n), true
	_ = http.NewResponseController(w).Flush() // the half is on the wire before the connection drops
	s.log.Info("download cut", "path", r.URL.Path, "bytes", n, "of", len(data))
	// The connection is closed with the body short of its Content-Length: the client sees an unexpected EOF.
	panic(http.ErrAbortHandler)
}

// parseByteRange reads "bytes=N-" or "bytes=N-M" (one range) against a body of size bytes; end is exclusive.
func parseByteRange(h string, size int64) (start, end int64, err error) {
	spec, ok := strings.CutPrefix(h, "bytes=")
	if !ok || strings.Contains(spec, ",") {
		return 0, 0, fmt.Errorf("the Range %q is not one byte range", h)
	}
	a, b, _ := strings.Cut(spec, "-")
	start, err = strconv.ParseInt(a, 10, 64)
	if err != nil || start < 0 || start >= size {
		return 0, 0, fmt.Errorf("the Range %q does not start inside the file", h)
	}
	end = size
	if b != "" {
		last, err := strconv.ParseInt(b, 10, 64)
		if err != nil || last < start {
			return 0, 0, fmt.Errorf("the Range %q is not valid", h)
		}
		end = min(last+1, size)
	}
	return start, end, nil
}
