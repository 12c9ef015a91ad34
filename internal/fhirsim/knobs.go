package fhirsim

// DefaultFHIRVersion is the fhirVersion the simulator's CapabilityStatement declares unless told otherwise: R4, as
// both Azure services declare for an R4 server (an STU3 Azure API for FHIR declares 3.0.2).
const DefaultFHIRVersion = "4.0.1"

// knobs are the simulator's settings that change what it declares of itself.
type knobs struct {
	// fhirVersion is the CapabilityStatement's fhirVersion ("": DefaultFHIRVersion).
	fhirVersion string
}

// WithFHIRVersion sets the fhirVersion the CapabilityStatement declares (default DefaultFHIRVersion), such as
// "3.0.2" for an STU3 server.
func WithFHIRVersion(v string) Option { return func(c *config) { c.knobs.fhirVersion = v } }

// fhirVersion is the fhirVersion the CapabilityStatement declares.
func (s *Server) fhirVersion() string {
	if s.cfg.knobs.fhirVersion == "" {
		return DefaultFHIRVersion
	}
	return s.cfg.knobs.fhirVersion
}
