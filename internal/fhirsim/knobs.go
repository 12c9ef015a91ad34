package fhirsim

import (
	"net/http"
	"regexp"
	"strings"
)

// knobs are configurations of the real services an assessment tells apart (internal/assess): a service that
// speaks another FHIR version, one whose import is not enabled, and the initial import mode's lock of every write.
type knobs struct {
	// fhirVersion is the CapabilityStatement's fhirVersion ("" answers 4.0.1).
	fhirVersion string
	// importDisabled: the service's import is not enabled (ImportJobConfiguration.Enabled false).
	importDisabled bool
}

// DefaultFHIRVersion is the FHIR version the simulator speaks unless told otherwise (R4).
const DefaultFHIRVersion = "4.0.1"

// WithFHIRVersion sets the fhirVersion the CapabilityStatement answers (default 4.0.1): "3.0.2" stands for an
// Azure API for FHIR created for STU3. Only the CapabilityStatement changes; the resources stay R4.
func WithFHIRVersion(v string) Option { return func(c *config) { c.knobs.fhirVersion = v } }

// WithImportDisabled turns the service's import off (default on for the AHDS flavour): $import answers 400 "The
// requested "import" operation is not enabled" before it reads its body (ImportController.CheckIfImportIsEnabled),
// and the initial import mode locks nothing (InitialImportLockMiddleware checks Enabled first).
func WithImportDisabled(disabled bool) Option {
	return func(c *config) { c.knobs.importDisabled = disabled }
}

func (s *Server) fhirVersion() string {
	if v := s.cfg.knobs.fhirVersion; v != "" {
		return v
	}
	return DefaultFHIRVersion
}

// importEnabled: the service takes $import (the AHDS flavour, unless WithImportDisabled).
func (s *Server) importEnabled() bool {
	return s.cfg.flavor == FlavorAHDS && !s.cfg.knobs.importDisabled
}

// unlockedInInitialImport are the requests fhir-server's InitialImportLockMiddleware lets through in initial
// import mode: every GET, POST .../$import, and DELETE .../_operations/{x}/{y} (the cancelation of any long running
// job), each path matched as a regular expression, ignoring case; GET .../$reindex is locked too.
var (
	importPathRE     = regexp.MustCompile(`(?i).*/\$import`)
	operationsPathRE = regexp.MustCompile(`(?i).*/_operations/.+/.+`)
	reindexPathRE    = regexp.MustCompile(`(?i).*/\$reindex`)
)

// initialImportLock answers 423 as InitialImportLockMiddleware does (registered in
// FhirServerServiceCollectionExtensions.cs after authentication and before routing, so a path no route takes is
// locked as well): while import is enabled with the initial import mode on, every request but those it excludes
// gets 423 with its fixed body {"severity":"Error","code":"Locked","diagnostics":"Service is locked for initial
// import mode."}. It reports whether it answered.
func (s *Server) initialImportLock(w http.ResponseWriter, r *http.Request) bool {
	if !s.importEnabled() || !s.cfg.initialImportMode {
		return false
	}
	path := r.URL.Path
	switch {
	case strings.EqualFold(r.Method, http.MethodGet) && !reindexPathRE.MatchString(path):
		return false
	case strings.EqualFold(r.Method, http.MethodPost) && importPathRE.MatchString(path):
		return false
	case strings.EqualFold(r.Method, http.MethodDelete) && operationsPathRE.MatchString(path):
		return false
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusLocked)
	_, _ = w.Write([]byte(`{"severity":"Error","code":"Locked","diagnostics":"Service is locked for initial import mode."}`))
	return true
}
