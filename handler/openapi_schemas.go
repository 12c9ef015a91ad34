package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/invopop/jsonschema"

	"github.com/fhir-migrator/fhir-migrator/internal/migration"
)

// What reflection cannot see of the request types: which fields are required, the values, defaults, formats and
// patterns validation accepts. Enums, defaults and names come from the engine's own lists and constants
// (internal/migration/choices.go), which its validation uses; the patterns below say in JSON Schema what its code
// checks. openapi_probe_test.go sends values inside and outside each through both the service and a JSON Schema
// validator and requires the same verdict.

// Go durations as the start request reads them (time.ParseDuration): a number with a unit, repeated, "0" alone;
// an interval is positive (some digit is not 0), a margin may be 0.
const (
	durationUnit            = `(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:ns|us|µs|μs|ms|s|m|h))`
	durationPattern         = `^\+?(?:0|` + durationUnit + `+)$`
	positiveDurationPattern = `^(?=.*[1-9])\+?` + durationUnit + `+$`
	// serverURLPattern: an http(s) URL without query or fragment (the host policy then decides which hosts).
	serverURLPattern = `^[Hh][Tt][Tt][Pp][Ss]?://[^?#]+$`
)

// typeFilterPattern is a typeFilter entry as the service reads it: Type?name=value&name=value, each parameter
// exactly one "=", no comma (the service splits _typeFilter on commas), no ";" and "%" only as an escape (the
// query must parse).
func typeFilterPattern() string {
	typ := strings.TrimSuffix(strings.TrimPrefix(migration.TypePattern(), "^"), "$")
	c := `(?:[^=&,;%]|%[0-9A-Fa-f]{2})`
	param := c + `+=` + c + `*`
	return `^` + typ + `\?` + param + `(?:&` + param + `)*$`
}

// schemaRule refines one reflected property.
type schemaRule func(s *jsonschema.Schema)

func enumOf(values []string) schemaRule {
	return func(s *jsonschema.Schema) { s.Enum = anyList(values) }
}

func itemsEnumOf(values []string) schemaRule {
	return func(s *jsonschema.Schema) { s.Items.Enum = anyList(values); s.UniqueItems = true }
}

func defaultOf(v any) schemaRule { return func(s *jsonschema.Schema) { s.Default = v } }

func describe(d string) schemaRule { return func(s *jsonschema.Schema) { s.Description = d } }

func pattern(p string) schemaRule { return func(s *jsonschema.Schema) { s.Pattern = p } }

func format(f string) schemaRule { return func(s *jsonschema.Schema) { s.Format = f } }

func minimum(n int64) schemaRule {
	return func(s *jsonschema.Schema) { s.Minimum = jsonNumber(n) }
}

func combine(rules ...schemaRule) schemaRule {
	return func(s *jsonschema.Schema) {
		for _, r := range rules {
			r(s)
		}
	}
}

// schemaRules are, by schema and property, what the code accepts.
func schemaRules() map[string]map[string]schemaRule {
	verifyDoc := "counts compares counts, ids looks every id up on the destination, full compares every resource's content, none skips verification"
	accept := combine(itemsEnumOf(migration.AcceptValues()),
		describe("what this verification lets pass, each once: refused-versions lets versions the destination refused that are not a resource's newest pass"))
	return map[string]map[string]schemaRule{
		"StartRequest": {
			"source": combine(format("uri"), pattern(serverURLPattern),
				describe("the source FHIR server's base URL (see sourceKind); its host must be allowed by the AllowedHosts setting")),
			"destination": combine(format("uri"), pattern(serverURLPattern),
				describe("the destination FHIR server's base URL (an Azure Health Data Services FHIR service), not the source")),
			"sourceKind": combine(enumOf(migration.SourceKinds()),
				describe("the kind of source: api-for-fhir (Azure API for FHIR), fhir-service (an Azure Health Data Services FHIR service), bulk-data (a server of the HL7 Bulk Data Access IG); default from the source's host: *.fhir.azurehealthcareapis.com is fhir-service, another *.azurehealthcareapis.com api-for-fhir, any other host must name it")),
			"group": combine(pattern(migration.IDPattern()),
				describe("bulk-data sources: the id of the Group whose patients are exported (Group/{id}/$export); absent, a system export (or Patient/$export where the server declares only that)")),
			"types": combine(func(s *jsonschema.Schema) { s.Items.Pattern = migration.TypePattern(); s.UniqueItems = true },
				describe("the resource types to migrate, each once and supported by the source (default: every type)")),
			"since": combine(format("date-time"), describe("only what was updated at or after this time (RFC 3339), in the past and before till")),
			"till":  combine(format("date-time"), describe("only what was updated before this time (RFC 3339); not with sync")),
			"typeFilter": combine(func(s *jsonschema.Schema) { s.Items.Pattern = typeFilterPattern() },
				describe("FHIR searches that narrow a type, Type?name=value&name=value (no comma; the Type among types when types is given); not with history, deletes or sync")),
			"exportStrategy": combine(enumOf(migration.ExportStrategies()),
				describe(fmt.Sprintf("%s: one $export; %s: one $export per type (default %s when types is given, else %s)",
					migration.StrategySystem, migration.StrategyPerType, migration.StrategyPerType, migration.StrategySystem))),
			"importMode": combine(enumOf(migration.ImportModes()), defaultOf(migration.DefaultImportMode),
				describe(migration.ModeIncremental+" keeps meta.versionId and meta.lastUpdated; history, deletes and sync need it")),
			"container": combine(pattern(migration.ContainerPattern()), func(s *jsonschema.Schema) {
				lo, hi := uint64(migration.ContainerMinLength), uint64(migration.ContainerMaxLength)
				s.MinLength, s.MaxLength = &lo, &hi
			}, describe("the staging container (default: the migration's id)")),
			"verify":       combine(enumOf(migration.VerifyModes()), defaultOf(migration.DefaultVerify), describe(verifyDoc)),
			"verifySample": combine(minimum(0), defaultOf(0), describe("with full: compare only this many resources per type (0: every one)")),
			"dryRun":       combine(defaultOf(false), describe("answer the plan (200) and store nothing")),
			"windowTarget": combine(minimum(1), defaultOf(migration.DefaultWindowTarget), describe("the most resources one export window holds")),
			"cleanup": combine(enumOf(migration.CleanupModes()),
				describe(migration.CleanupAfterVerify+": delete the staged export files once verification passed (empty or absent: keep them)")),
			"history": combine(defaultOf(false), describe("copy every version of each resource (needs "+migration.ModeIncremental+", no typeFilter)")),
			"deletes": combine(defaultOf(false), describe("copy the deleted resources as deletions (needs "+migration.ModeIncremental+", no typeFilter)")),
			"sync": combine(defaultOf(false),
				describe("after the full copy keep the destination in step with the source (deletions included) until POST .../cutover; no till")),
			"syncInterval": combine(pattern(positiveDurationPattern), defaultOf(time.Duration(migration.DefaultSyncInterval).String()),
				describe("with sync: the time between rounds, a positive Go duration (\"15m\", \"3s\")")),
			"syncMargin": combine(pattern(durationPattern), defaultOf(time.Duration(migration.DefaultSyncMargin).String()),
				describe("with sync: how far each round reaches back before the previous one's end, a Go duration, may be 0s")),
			"reconcile": combine(enumOf(migration.ReconcileModes()), defaultOf(migration.DefaultReconcile),
				describe("with sync: what the cutover does with the destination's resources the source no longer has: delete removes them, report only lists them")),
			"cutoverVerify": combine(enumOf(migration.CutoverVerifyModes()), defaultOf(migration.CutoverVerifyFast),
				describe("with sync: how the cutover verifies. fast checks only what changed since the checks made while syncing "+
					"(the files not checked yet, counts over _lastUpdated ranges for reconciliation); full-ids reads every staged file "+
					"again and lists every id on both servers (hours at a billion resources, all of them downtime)")),
		},
		// The accepted request, with its defaults applied, as the answers carry it.
		"Request": {
			"sourceKind":     enumOf(migration.SourceKinds()),
			"exportStrategy": enumOf(migration.ExportStrategies()),
			"importMode":     enumOf(migration.ImportModes()),
			"verify":         enumOf(migration.VerifyModes()),
			"cleanup":        enumOf(migration.CleanupModes()),
			"reconcile":      enumOf(migration.ReconcileModes()),
			"cutoverVerify":  enumOf(migration.CutoverVerifyModes()),
		},
		"ReverifyRequest": {
			"verify": combine(enumOf(migration.ReverifyModes()),
				describe("this round's mode (default: the start request's, counts when that was none)")),
			"verifySample": combine(minimum(0), describe("with full: compare only this many resources per type (0: every one)")),
			"accept":       accept,
		},
		"CutoverRequest": {"accept": accept},
		"CleanupRequest": {
			"force":      combine(defaultOf(false), describe("clean up although verification did not pass")),
			"dryRun":     combine(defaultOf(false), describe("list what would be deleted, with sizes, and delete nothing")),
			"errorFiles": combine(defaultOf(false), describe("also delete the destination's import error files")),
		},
	}
}

// requiredFields are the fields a request must have (the start request's servers: missing_field otherwise).
var requiredFields = map[string][]string{"StartRequest": {"source", "destination"}}

// refineSchemas applies schemaRules and requiredFields to the reflected schemas; a rule for a schema or property
// that is not there is an error (a renamed field must not lose its description silently).
func refineSchemas(schemas map[string]any) error {
	get := func(name string) (*jsonschema.Schema, error) {
		s, ok := schemas[name].(*jsonschema.Schema)
		if !ok || s.Properties == nil {
			return nil, fmt.Errorf("OpenAPI: no reflected schema %s to refine", name)
		}
		return s, nil
	}
	for name, rules := range schemaRules() {
		s, err := get(name)
		if err != nil {
			return err
		}
		for field, rule := range rules {
			p, ok := s.Properties.Get(field)
			if !ok {
				return fmt.Errorf("OpenAPI: schema %s has no property %s", name, field)
			}
			rule(p)
		}
	}
	for name, fields := range requiredFields {
		s, err := get(name)
		if err != nil {
			return err
		}
		for _, f := range fields {
			if _, ok := s.Properties.Get(f); !ok {
				return fmt.Errorf("OpenAPI: schema %s has no property %s to require", name, f)
			}
		}
		s.Required = fields
	}
	return nil
}

func anyList[T ~string](values []T) []any {
	out := make([]any, len(values))
	for i, v := range values {
		out[i] = string(v)
	}
	return out
}

func jsonNumber(n int64) json.Number { return json.Number(strconv.FormatInt(n, 10)) }
