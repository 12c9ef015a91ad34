package main

// What the Bicep compiler and Azure Resource Manager would refuse, pinned without either (neither runs here):
// values of open string type passed into a fixed list of values (BCP036), role assignment names that a re-created
// identity cannot reuse, and the FHIR service wiring's PUT, which must carry every writable property it read.

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// bicepParam is a parameter declaration: its type and, with @allowed, its fixed list of values.
type bicepParam struct {
	name, typ string
	allowed   []string // nil: no @allowed
}

// bicepParams reads the `param` declarations of a Bicep file with the @allowed decorator before each.
func bicepParams(src string) map[string]bicepParam {
	params := map[string]bicepParam{}
	decl := regexp.MustCompile(`(?m)^param (\w+) (\w+)`)
	allowed := regexp.MustCompile(`(?s)@allowed\(\[([^\]]*)\]\)\s*(?:@\w+\([^\n]*\)\s*)*$`)
	quoted := regexp.MustCompile(`'([^']*)'`)
	for _, m := range decl.FindAllStringSubmatchIndex(src, -1) {
		p := bicepParam{name: src[m[2]:m[3]], typ: src[m[4]:m[5]]}
		// The decorators are the lines right above the declaration, back to the previous blank line or statement.
		before := src[:m[0]]
		start := strings.LastIndex(before, "\nparam ")
		if i := strings.LastIndex(before, "\n\n"); i > start {
			start = i
		}
		if a := allowed.FindStringSubmatch(before[max(start, 0):]); a != nil {
			p.allowed = []string{}
			for _, q := range quoted.FindAllStringSubmatch(a[1], -1) {
				p.allowed = append(p.allowed, q[1])
			}
		}
		params[p.name] = p
	}
	return params
}

// bicepModuleCall is one `module sym 'path' = ... { ... params: { ... } }`.
type bicepModuleCall struct {
	file, symbol, path string
	args               map[string]string
}

func moduleCalls(t *testing.T, files map[string]string) []bicepModuleCall {
	t.Helper()
	decl := regexp.MustCompile(`(?m)^module (\w+) '([^']+)' = [^\n{]*\{`)
	var calls []bicepModuleCall
	for file, src := range files {
		for _, m := range decl.FindAllStringSubmatchIndex(src, -1) {
			body := block(t, src, m[1]-1)
			c := bicepModuleCall{file: file, symbol: src[m[2]:m[3]], path: src[m[4]:m[5]], args: map[string]string{}}
			if i := strings.Index(body, "params: {"); i >= 0 {
				c.args = objectEntries(block(t, body, i+len("params: ")))
			}
			calls = append(calls, c)
		}
	}
	return calls
}

// openOrClosed is what the resource types' schemas say of the properties read from existing resources and passed
// into module parameters (bicep-types-az, generated/healthcareapis/microsoft.healthcareapis/2024-03-31/types.json):
// the values of a closed enum, or nil for an open one ('fhir-R4' | 'fhir-Stu3' | string).
var propertyValues = map[string][]string{
	"Microsoft.HealthcareApis/services@2024-03-31#kind":                    {"fhir", "fhir-R4", "fhir-Stu3"},
	"Microsoft.HealthcareApis/workspaces/fhirservices@2024-03-31#kind":     nil,
	"Microsoft.HealthcareApis/services@2023-11-01#kind":                    {"fhir", "fhir-R4", "fhir-Stu3"},
	"Microsoft.HealthcareApis/workspaces/fhirservices@2023-11-01#kind":     nil,
	"Microsoft.HealthcareApis/workspaces/fhirservices@2024-03-31#etag":     nil,
	"Microsoft.HealthcareApis/services@2024-03-31#etag":                    nil,
	"Microsoft.HealthcareApis/workspaces/fhirservices@2024-03-31#name":     nil,
	"Microsoft.HealthcareApis/workspaces/fhirservices@2024-03-31#location": nil,
}

// A value may go into a parameter with a fixed list of values (@allowed) only if the compiler can prove it is one
// of them. Azure/bicep src/Bicep.Core/TypeSystem/TypeValidator.cs, AreTypesAssignable: `case (StringType,
// StringLiteralType)` is assignable only with the AllowLooseAssignment flag, which DeclaredTypeManager gives to a
// parameter declared as a plain `string` and to nothing else (not to a resource property, a variable or a function
// result); a union source is assignable only when each member is. A module's params get no "warn instead" flag
// (only resource bodies do), so the mismatch is error BCP036 and the whole file fails to compile.
func TestModuleArgumentsFitTheirAllowedValues(t *testing.T) {
	t.Parallel()
	files := bicepFiles(t)
	for _, c := range moduleCalls(t, files) {
		require.NoError(t, checkAllowedArguments(files, c), "%s: module %s", c.file, c.symbol)
	}
}

// The check refuses what the compiler refuses: an open string property of an existing resource into a fixed list
// (storage-wiring.bicep as it was), a caller's parameter with a wider list, a literal outside the list, and any
// expression it cannot prove.
func TestAllowedArgumentCheckRefusesWhatTheCompilerRefuses(t *testing.T) {
	t.Parallel()
	callee := "@allowed([\n  'fhir-R4'\n  'fhir-Stu3'\n])\nparam kind string\n"
	caller := "@allowed([\n  'fhir-R4'\n  'fhir-Stu3'\n  'fhir'\n])\nparam wide string\nparam loose string\n" +
		"resource dest 'Microsoft.HealthcareApis/workspaces/fhirservices@2023-11-01' existing = {\n  name: 'x'\n}\n" +
		"resource src 'Microsoft.HealthcareApis/services@2024-03-31' existing = {\n  name: 'y'\n}\n"
	files := map[string]string{"infra/modules/callee.bicep": callee, "infra/caller.bicep": caller}
	check := func(arg string) error {
		return checkAllowedArguments(files, bicepModuleCall{file: "infra/caller.bicep", symbol: "m",
			path: "modules/callee.bicep", args: map[string]string{"kind": arg}})
	}
	require.ErrorContains(t, check("dest.kind"), "BCP036", "the open kind of fhirservices")
	require.ErrorContains(t, check("src.kind"), "BCP036", "'fhir' is not in the list")
	require.ErrorContains(t, check("wide"), "BCP036", "a wider list")
	require.ErrorContains(t, check("'fhir'"), "BCP036")
	require.ErrorContains(t, check("empty(loose) ? 'fhir-R4' : loose"), "cannot prove")
	require.NoError(t, check("loose"), "a plain string parameter is loose")
	require.NoError(t, check("'fhir-R4'"))
}

func checkAllowedArguments(files map[string]string, c bicepModuleCall) error {
	dir := c.file[:strings.LastIndex(c.file, "/")+1]
	calleeSrc, ok := files[dir+c.path]
	if !ok {
		return fmt.Errorf("module file %s not found", dir+c.path)
	}
	calleeParams := bicepParams(calleeSrc)
	callerParams := bicepParams(files[c.file])
	resourceTypes := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^resource (\w+) '([^']+)'`).FindAllStringSubmatch(files[c.file], -1) {
		resourceTypes[m[1]] = m[2]
	}
	for name, arg := range c.args {
		p, ok := calleeParams[name]
		if !ok {
			return fmt.Errorf("passes %s, which %s does not declare", name, c.path)
		}
		if p.allowed == nil {
			continue
		}
		values, err := argumentValues(arg, callerParams, resourceTypes)
		if err != nil {
			return fmt.Errorf("%s: %s: %w", name, arg, err)
		}
		if values == nil {
			continue // a plain string parameter: loose, accepted
		}
		for _, v := range values {
			if !slices.Contains(p.allowed, v) {
				return fmt.Errorf("%s: %s may be %q, not one of %v: error BCP036", name, arg, v, p.allowed)
			}
		}
	}
	return nil
}

// argumentValues is what an argument can be: its fixed values, nil for a loose plain-string parameter, or an error
// when it is open (BCP036) or not an expression the check can prove anything of.
func argumentValues(arg string, callerParams map[string]bicepParam, resourceTypes map[string]string) ([]string, error) {
	if m := regexp.MustCompile(`^'([^'$]*)'$`).FindStringSubmatch(arg); m != nil {
		return []string{m[1]}, nil
	}
	if p, ok := callerParams[arg]; ok {
		if p.typ == "string" && p.allowed == nil {
			return nil, nil
		}
		return p.allowed, nil
	}
	if m := regexp.MustCompile(`^(\w+)\.\??(\w+)$`).FindStringSubmatch(arg); m != nil {
		if typ, ok := resourceTypes[m[1]]; ok {
			values, known := propertyValues[typ+"#"+m[2]]
			switch {
			case !known:
				return nil, fmt.Errorf("the schema of %s.%s is not in propertyValues: cannot prove it fits", typ, m[2])
			case values == nil:
				return nil, fmt.Errorf("%s.%s is an open string: error BCP036", typ, m[2])
			}
			return values, nil
		}
	}
	return nil, fmt.Errorf("cannot prove the value fits a fixed list: pass a literal, a parameter, or a closed property")
}

// A role assignment's name is guid(its scope, the principal it grants, the role): an identity deleted and created
// again (azd down, azd up) has a new principal id, so the next provision creates a new assignment instead of
// updating one, which ARM refuses (RoleAssignmentUpdateNotPermitted; Microsoft Learn, "Troubleshoot Azure RBAC"
// and "Create Azure RBAC resources by using Bicep": guid(scope, principalId, roleDefinitionId)).
func TestRoleAssignmentNamesComeFromThePrincipal(t *testing.T) {
	t.Parallel()
	name := regexp.MustCompile(`(?m)^  name: guid\((\w+(?:\[i\])?)\.id, (\w+), '([0-9a-f-]{36})'\)$`)
	principal := regexp.MustCompile(`(?m)^    principalId: (\w+)$`)
	scope := regexp.MustCompile(`(?m)^  scope: (\S+)$`)
	role := regexp.MustCompile(`roleDefinitions', '([0-9a-f-]{36})'`)
	n := 0
	for _, r := range resources(t) {
		if r.typ != "Microsoft.Authorization/roleAssignments" {
			continue
		}
		n++
		where := r.file + " " + r.symbol
		m := name.FindStringSubmatch(r.body)
		require.NotNil(t, m, "%s: name must be guid(scope.id, principalId, 'role')", where)
		p := principal.FindStringSubmatch(r.body)
		require.NotNil(t, p, where)
		require.Equal(t, p[1], m[2], "%s: the name must be keyed on the principal it grants (%s), not on %s", where, p[1], m[2])
		require.Equal(t, scope.FindStringSubmatch(r.body)[1], m[1], "%s: keyed on its own scope", where)
		require.Equal(t, role.FindStringSubmatch(r.body)[1], m[3], "%s: keyed on its own role", where)
	}
	require.GreaterOrEqual(t, n, 14)
}

// An assignment of the services' identities on the staging account may exist already under another name (granted
// by hand, as Microsoft's import and export setup guides do): ARM refuses a second equal one (RoleAssignmentExists),
// so each is skipped when the deploy check found it.
func TestStagingAssignmentsAreSkippedWhenTheyExist(t *testing.T) {
	t.Parallel()
	files := bicepFiles(t)
	access := files["infra/modules/staging-service-access.bicep"]
	for _, who := range []string{"source", "destination"} {
		require.Regexp(t, `resource `+who+`BlobDataContributor 'Microsoft\.Authorization/roleAssignments@[^']+' = if \(!`+who+`AccessExists\) \{`, access)
		require.Contains(t, files["infra/modules/storage-wiring.bicep"], who+"AccessExists: "+who+"StagingAccessExists")
		require.Contains(t, files["infra/main.bicep"], who+"StagingAccessExists: "+who+"StagingAccessExists")
		env := strings.ToUpper(who) + "_STAGING_ACCESS_EXISTS"
		require.Contains(t, readRepoFile(t, "infra/main.parameters.json"), "${"+env+"=false}")
		for _, script := range []string{"scripts/deploy-check.sh", "scripts/deploy-check.ps1"} {
			require.True(t, strings.Contains(readRepoFile(t, script), env), "%s sets %s when it finds the assignment", script, env)
		}
	}
}

// The writable and read-only body properties of the FHIR services at the API version the wiring PUTs
// (bicep-types-az generated/healthcareapis/microsoft.healthcareapis/2024-03-31/types.json, flag 2 = ReadOnly;
// 2023-12-01 and 2024-03-01 are the same, 2023-11-01 lacks authenticationConfiguration.smartIdentityProviders).
var wiringSchemas = map[string]struct {
	writable, readOnly []string
}{
	"Microsoft.HealthcareApis/services@2024-03-31": {
		writable: []string{"accessPolicies", "cosmosDbConfiguration", "authenticationConfiguration", "corsConfiguration",
			"exportConfiguration", "privateEndpointConnections", "publicNetworkAccess", "acrConfiguration", "importConfiguration"},
		readOnly: []string{"provisioningState"},
	},
	"Microsoft.HealthcareApis/workspaces/fhirservices@2024-03-31": {
		writable: []string{"acrConfiguration", "authenticationConfiguration", "corsConfiguration", "exportConfiguration",
			"publicNetworkAccess", "resourceVersionPolicyConfiguration", "importConfiguration",
			"implementationGuidesConfiguration", "encryption"},
		readOnly: []string{"provisioningState", "privateEndpointConnections", "eventState"},
	},
}

// The wiring PUTs each service with every writable property it read, at a version that has them all, with the
// etag it read (a change made in between fails the PUT rather than being overwritten), and leaves initial import
// mode as it was unless asked.
func TestServiceWiringKeepsEveryWritableProperty(t *testing.T) {
	t.Parallel()
	files := bicepFiles(t)
	wiring := files["infra/modules/storage-wiring.bicep"]
	for sym, dropList := range map[string]string{"sourceCurrent": "sourceReadOnly", "destinationCurrent": "destinationReadOnly"} {
		m := regexp.MustCompile(`(?m)^resource ` + sym + ` '([^']+)' existing`).FindStringSubmatch(wiring)
		require.NotNil(t, m, sym)
		schema, ok := wiringSchemas[m[1]]
		require.True(t, ok, "%s is read at %s: the wiring must read and PUT at 2024-03-31, whose schema this test holds (2023-11-01 has no smartIdentityProviders, and a PUT without them drops them)", sym, m[1])
		dropped := regexp.MustCompile(`'(\w+)'`).FindAllStringSubmatch(block(t, wiring, regexp.MustCompile(`(?m)^var ` + dropList + ` = \[`).FindStringIndex(wiring)[1]-1), -1)
		var names []string
		for _, d := range dropped {
			names = append(names, d[1])
			require.NotContains(t, schema.writable, d[1], "%s drops %s, which is writable: the PUT would remove it", sym, d[1])
		}
		require.ElementsMatch(t, schema.readOnly, names, "%s: drop exactly the read-only properties", sym)
		require.Contains(t, wiring, "items("+sym+".properties), p => !contains("+dropList+", p.key)")
		require.Contains(t, wiring, "etag: "+sym+".?etag ?? ''", "%s: the etag read goes into the PUT", sym)
	}
	for file, typ := range map[string]string{
		"infra/modules/fhir-source-export-storage.bicep":      "Microsoft.HealthcareApis/services@2024-03-31",
		"infra/modules/fhir-destination-import-storage.bicep": "Microsoft.HealthcareApis/workspaces/fhirservices@2024-03-31",
	} {
		src := files[file]
		require.Contains(t, src, "'"+typ+"' = {", "%s PUTs at the version it read", file)
		require.Contains(t, src, "etag: empty(etag) ? null : etag", file)
		require.Contains(t, src, "properties: union(properties, {", "%s keeps what it was given", file)
	}
	dest := files["infra/modules/fhir-destination-import-storage.bicep"]
	require.NotRegexp(t, `initialImportMode: (true|false)\b`, dest, "initial import mode is never forced")
	require.Contains(t, dest, "param initialImportMode string = 'keep'")
	require.Contains(t, dest, "union(previousImportConfiguration, importMode, {")
	main := files["infra/main.bicep"]
	require.Contains(t, main, "param destinationInitialImportMode string = 'keep'")
	for _, out := range []string{"PREVIOUS_SOURCE_EXPORT_STORAGE", "PREVIOUS_DESTINATION_IMPORT_CONFIGURATION"} {
		require.Regexp(t, `(?m)^output `+out+` `, main, "the accounts replaced are a record of the deployment")
		require.True(t, strings.Contains(readRepoFile(t, "docs/deploy.md"), out), "docs/deploy.md names %s", out)
	}
	// The values recorded are read before the PUT: module parameters, evaluated when the nested deployment starts,
	// echoed as its outputs (an output of the existing resource would be read after the PUT, the new value).
	require.Contains(t, wiring, "previousExportStorage: sourceCurrent.properties.?exportConfiguration.?storageAccountName ?? ''")
	require.Contains(t, wiring, "previousImportConfiguration: destinationCurrent.properties.?importConfiguration ?? {}")
	require.Contains(t, files["infra/modules/fhir-source-export-storage.bicep"], "output previousExportStorage string = previousExportStorage")
}
