package main

// Consistency between the deployment (infra/*.bicep, azure.yaml) and the app (LoadConfig, host.json, the
// function.json files). No Bicep compiler is available here, so these tests read the Bicep text: the files keep a
// plain shape (one `var handlerSettings = {...}`, one role id per assignment) that the helpers below rely on.

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// repoRoot is the module root, one folder up from handler/.
const repoRoot = ".."

// referenceRoles are the role definition ids of the protocol reference (testdata/reference/roles.txt).
var referenceRoles = map[string]string{
	"5a1fc7df-4bf1-4951-a576-89034ee01acd": "FHIR Data Contributor",
	"3db33094-8700-4567-8da5-1501d4e7e843": "FHIR Data Exporter",
	"4465e953-8ced-4406-a58e-0f6e3f3b530b": "FHIR Data Importer",
	"4c8d0bbc-75d3-4935-991f-5f3c56d81508": "FHIR Data Reader",
	"3f88fce4-5892-4214-ae73-ba5294559913": "FHIR Data Writer",
	"ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
	"b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
	"0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
	"090c5cfd-751d-490a-894a-3ce6f1109419": "Azure Service Bus Data Owner",
	"4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0": "Azure Service Bus Data Receiver",
	"69a216fc-b8fb-44d8-bc22-1f3c2cd27a39": "Azure Service Bus Data Sender",
	"3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
}

// Resource types that role assignments are scoped to.
const (
	typeSourceFHIR      = "Microsoft.HealthcareApis/services"
	typeDestinationFHIR = "Microsoft.HealthcareApis/workspaces/fhirservices"
	typeStorageAccount  = "Microsoft.Storage/storageAccounts"
	typeServiceBus      = "Microsoft.ServiceBus/namespaces"
	typeServiceBusQueue = "Microsoft.ServiceBus/namespaces/queues"
	typeAppInsights     = "Microsoft.Insights/components"
)

// roleGrant is a role on a kind of resource: the narrowest scopes that work.
type roleGrant struct{ role, scopeType string }

// requiredGrants must each appear at least once; no other (role, scope type) pair may appear.
var requiredGrants = []roleGrant{
	{"3db33094-8700-4567-8da5-1501d4e7e843", typeSourceFHIR},      // Exporter on the source
	{"4c8d0bbc-75d3-4935-991f-5f3c56d81508", typeSourceFHIR},      // Reader on the source
	{"4465e953-8ced-4406-a58e-0f6e3f3b530b", typeDestinationFHIR}, // Importer on the destination
	{"4c8d0bbc-75d3-4935-991f-5f3c56d81508", typeDestinationFHIR}, // Reader on the destination
	{"3f88fce4-5892-4214-ae73-ba5294559913", typeDestinationFHIR}, // Writer on the destination: SearchParameter copy by PUT
	{"ba92f5b4-2d11-453d-a403-e96b0029c9fe", typeStorageAccount},  // Blob Data Contributor on staging
	{"b7e6dc6d-f1e8-4753-8033-0f276bb0955b", typeStorageAccount},  // Blob Data Owner on the host account
	{"69a216fc-b8fb-44d8-bc22-1f3c2cd27a39", typeServiceBus},      // Service Bus Data Sender
	{"4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0", typeServiceBus},      // Service Bus Data Receiver
	{"090c5cfd-751d-490a-894a-3ce6f1109419", typeServiceBusQueue}, // Data Owner on each queue: Manage, for the scale monitor
	{"0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3", typeStorageAccount},  // Table Data Contributor on the host account: diagnostic events
	{"3913510d-42f4-4e42-8a64-420c390055eb", typeAppInsights},     // telemetry with the identity
}

// settingsNotSetInAzure are read by LoadConfig but deliberately absent from the Bicep app settings.
var settingsNotSetInAzure = map[string]string{
	"FUNCTIONS_CUSTOMHANDLER_PORT":        "set by the Functions host when it starts the handler",
	"FUNCTIONS_HTTPWORKER_PORT":           "legacy name of the same, set by older hosts",
	"DEVHOST_URL":                         "set by the local host (cmd/devhost) only",
	"AzureWebJobsStorage":                 "connection-string alternative; Azure uses the identity (__accountName)",
	"AzureWebJobsStorage__blobServiceUri": "alternative to __accountName, which the Bicep sets",
	"StagingStorage":                      "connection-string alternative; Azure uses StagingStorage__blobServiceUri",
	"ServiceBusConnection":                "connection-string alternative; Azure uses __fullyQualifiedNamespace",
}

// platformSettings are set by the Bicep for the Functions host or the platform, not read by LoadConfig.
var platformSettings = map[string]string{
	"AzureWebJobsStorage__credential":           "host storage through the user-assigned identity",
	"AzureWebJobsStorage__clientId":             "which identity",
	"ServiceBusConnection__credential":          "Service Bus trigger through the user-assigned identity",
	"ServiceBusConnection__clientId":            "which identity",
	"PollSchedule":                              "%PollSchedule% of PollJob/function.json",
	"APPLICATIONINSIGHTS_CONNECTION_STRING":     "host telemetry",
	"APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "telemetry with the identity (local auth off)",
	"FUNCTIONS_EXTENSION_VERSION":               "Elastic Premium only",
	"FUNCTIONS_WORKER_RUNTIME":                  "Elastic Premium only; Flex takes functionAppConfig.runtime",
	"WEBSITE_RUN_FROM_PACKAGE":                  "Elastic Premium only",
	"WEBSITE_CONTENTSHARE":                      "Elastic Premium only",
	"WEBSITE_CONTENTAZUREFILECONNECTIONSTRING":  "Elastic Premium only",
}

func readRepoFile(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, filepath.FromSlash(name)))
	require.NoError(t, err)
	return string(data)
}

// bicepFiles maps each infra/**/*.bicep path (slash-separated, from the repo root) to its text.
func bicepFiles(t *testing.T) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(filepath.Join(repoRoot, "infra"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".bicep") {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(repoRoot, p)
		if err != nil {
			return err
		}
		files[filepath.ToSlash(rel)] = string(data)
		return nil
	})
	require.NoError(t, err)
	require.Contains(t, files, "infra/main.bicep")
	return files
}

// block returns the text between the brace or bracket at open and its match.
func block(t *testing.T, src string, open int) string {
	t.Helper()
	pairs := map[byte]byte{'{': '}', '[': ']'}
	closer, ok := pairs[src[open]]
	require.True(t, ok, "no block opens at %d", open)
	depth := 0
	for i := open; i < len(src); i++ {
		switch src[i] {
		case src[open]:
			depth++
		case closer:
			depth--
			if depth == 0 {
				return src[open+1 : i]
			}
		}
	}
	require.FailNow(t, "unbalanced block", "from offset %d", open)
	return ""
}

// objectEntries reads the top-level `key: value` lines of a Bicep object body.
func objectEntries(body string) map[string]string {
	entries := map[string]string{}
	depth := 0
	keyLine := regexp.MustCompile(`^\s*'?([A-Za-z_][A-Za-z0-9_]*)'?\s*:\s*(.*?)\s*$`)
	for _, line := range strings.Split(body, "\n") {
		if depth == 0 {
			if m := keyLine.FindStringSubmatch(line); m != nil {
				entries[m[1]] = m[2]
			}
		}
		depth += strings.Count(line, "{") + strings.Count(line, "[") - strings.Count(line, "}") - strings.Count(line, "]")
	}
	return entries
}

// namedObject finds `var name = {` (optionally `var name = cond ? {} : {`) in src and returns its last object's entries.
func namedObject(t *testing.T, src, name string) map[string]string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^var ` + name + ` = [^\n]*\{[ \t]*$`).FindStringIndex(src)
	require.NotNil(t, m, "var %s = {...} not found", name)
	return objectEntries(block(t, src, m[0]+strings.LastIndex(src[m[0]:m[1]], "{")))
}

// appSettings are the handler's app settings in the Bicep (main.bicep handlerSettings, plus the plan-specific ones).
func appSettings(t *testing.T) map[string]string {
	t.Helper()
	files := bicepFiles(t)
	settings := namedObject(t, files["infra/main.bicep"], "handlerSettings")
	for k, v := range namedObject(t, files["infra/modules/function-app.bicep"], "premiumSettings") {
		settings[k] = v
	}
	// authSettings (AUTH_MODE, AUTH_CLIENT_ID) join handlerSettings in the app's settings (union); its keys
	// branch is read first, so that the entra branch's values (the default authMode) win.
	main := files["infra/main.bicep"]
	if m := regexp.MustCompile(`(?m)^var authSettings = [^\n]*\?\s*\{`).FindStringIndex(main); m != nil {
		entra := m[1] - 1
		entraBody := block(t, main, entra)
		keys := strings.Index(main[entra+len(entraBody)+2:], "{") + entra + len(entraBody) + 2
		for _, body := range []string{block(t, main, keys), entraBody} {
			for k, v := range objectEntries(body) {
				settings[k] = v
			}
		}
	}
	return settings
}

// settingsLoadConfigReads calls LoadConfig with a getenv that records every name asked for.
func settingsLoadConfigReads(t *testing.T) map[string]bool {
	t.Helper()
	read := map[string]bool{}
	_, err := LoadConfig(func(name string) string {
		read[name] = true
		return ""
	})
	require.Error(t, err, "nothing set: LoadConfig must complain")
	require.NotEmpty(t, read)
	return read
}

func TestBicepSetsEverySettingTheHandlerReads(t *testing.T) {
	t.Parallel()
	settings := appSettings(t)
	read := settingsLoadConfigReads(t)
	for name := range read {
		if _, exempt := settingsNotSetInAzure[name]; exempt {
			continue
		}
		require.Contains(t, settings, name, "LoadConfig reads %s but infra/main.bicep handlerSettings does not set it", name)
	}
	for name := range settingsNotSetInAzure {
		require.True(t, read[name], "exempt setting %s is no longer read by LoadConfig: drop it from the list", name)
		require.NotContains(t, settings, name, "%s is exempt but the Bicep sets it", name)
	}
	for name := range settings {
		_, platform := platformSettings[name]
		require.True(t, read[name] || platform, "the Bicep sets %s, which neither LoadConfig nor the host reads", name)
	}
}

func TestBicepSettingsUseTheIdentity(t *testing.T) {
	t.Parallel()
	settings := appSettings(t)
	want := map[string]string{
		"FhirCredential":                   "'azure'",
		"AzureWebJobsStorage__credential":  "'managedidentity'",
		"ServiceBusConnection__credential": "'managedidentity'",
		"AzureWebJobsStorage__clientId":    "identity.properties.clientId",
		"ServiceBusConnection__clientId":   "identity.properties.clientId",
		"AZURE_CLIENT_ID":                  "identity.properties.clientId",
		"FUNCTIONS_WORKER_RUNTIME":         "'custom'",
		"AllowedHosts":                     "'${sourceFhirHost},${destinationFhirHost}'",
		"PollSchedule":                     "pollSchedule",
	}
	for name, value := range want {
		require.Equal(t, value, settings[name], "setting %s", name)
	}
	main := bicepFiles(t)["infra/main.bicep"]
	require.Contains(t, main, "param pollSchedule string = '*/30 * * * * *'")
	require.Contains(t, main, "var sourceFhirHost = '${sourceFhirServiceName}.azurehealthcareapis.com'")
	require.Contains(t, main, "var destinationFhirHost = '${destinationWorkspaceName}-${destinationFhirServiceName}.fhir.azurehealthcareapis.com'")
	fn := bicepFiles(t)["infra/modules/function-app.bicep"]
	for name, value := range settings {
		if name == "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING" {
			continue
		}
		require.NotContains(t, strings.ToLower(value), "accountkey", "%s: only Elastic Premium's content share may use a key", name)
	}
	require.Contains(t, fn, "var premiumSettings = isFlex ? {} : {", "Flex must run without any storage key")
	require.Regexp(t, `runtime: \{\s*name: 'custom'`, fn, "Flex runs the custom handler runtime")
}

// TestLoadConfigAcceptsTheBicepSettings feeds LoadConfig the settings as the Bicep shapes them (deployment-time
// values stubbed) and expects the Azure configuration to be valid.
func TestLoadConfigAcceptsTheBicepSettings(t *testing.T) {
	t.Parallel()
	main := bicepFiles(t)["infra/main.bicep"]
	defaults := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^param (\w+) \w+ = (.+)$`).FindAllStringSubmatch(main, -1) {
		defaults[m[1]] = strings.Trim(m[2], "'")
	}
	interpolation := regexp.MustCompile(`\$\{[^}]*\}`)
	call := regexp.MustCompile(`^string\((\w+)\)$`)
	// Realistic values of the deployment-time expressions the settings use.
	deployed := map[string]string{
		"identity.properties.clientId":               "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b",
		"serviceBus.outputs.fullyQualifiedNamespace": "sb-abc.servicebus.windows.net",
		"authClientId": "0b9e6c3a-1d2f-4e5a-8b7c-6d5e4f3a2b1c", // AUTH_CLIENT_ID: required with authMode entra
		// A deployment with a SMART client for a bulk-data source (empty is valid too: no client).
		"smartClientId": "fhir-migrator", "smartSigningKey": "https://kv-migrator.vault.azure.net/keys/smart-client",
		"smartSigningAlg": "RS384", "smartScope": "system/*.rs", "smartKeyId": "smart-client-1",
	}
	env := map[string]string{"FUNCTIONS_CUSTOMHANDLER_PORT": "34567"}
	for name, expr := range appSettings(t) {
		switch {
		case strings.HasPrefix(expr, "'"):
			env[name] = interpolation.ReplaceAllString(strings.Trim(expr, "'"), "deployed")
		case call.MatchString(expr):
			env[name] = defaults[call.FindStringSubmatch(expr)[1]]
		case defaults[expr] != "":
			env[name] = defaults[expr]
		case deployed[expr] != "":
			env[name] = deployed[expr]
		default:
			env[name] = "deployed" // a resource's property, known at deployment
		}
	}
	cfg, err := LoadConfig(func(name string) string { return env[name] })
	require.NoError(t, err)
	require.Equal(t, "azure", cfg.FHIRCredential)
	require.Equal(t, "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b", cfg.ManagedIdentityClientID)
	require.Equal(t, "sb-abc.servicebus.windows.net", cfg.ServiceBusNamespace)
	require.Empty(t, cfg.ServiceBusConnectionString)
	require.Empty(t, cfg.DocumentStorage.ConnectionString)
	require.NotEmpty(t, cfg.DocumentStorage.ServiceURL)
	require.Empty(t, cfg.StagingStorage.ConnectionString)
	require.Equal(t, "https://deployed.deployed/", cfg.StagingStorage.ServiceURL)
	require.Equal(t, AuthConfig{Mode: AuthEntra, ClientID: "0b9e6c3a-1d2f-4e5a-8b7c-6d5e4f3a2b1c"}, cfg.Auth, "authMode entra, the default")
}

type functionJSON struct {
	Bindings []struct {
		Type       string `json:"type"`
		Name       string `json:"name"`
		AuthLevel  string `json:"authLevel"`
		QueueName  string `json:"queueName"`
		Connection string `json:"connection"`
		Schedule   string `json:"schedule"`
	} `json:"bindings"`
}

// functions reads every */function.json at the repo root.
func functions(t *testing.T) map[string]functionJSON {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(repoRoot, "*", "function.json"))
	require.NoError(t, err)
	require.NotEmpty(t, paths)
	fns := map[string]functionJSON{}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		require.NoError(t, err)
		var fn functionJSON
		require.NoError(t, json.Unmarshal(data, &fn), p)
		fns[filepath.Base(filepath.Dir(p))] = fn
	}
	return fns
}

func TestFunctionQueuesAndSettingsExistInBicep(t *testing.T) {
	t.Parallel()
	sb := bicepFiles(t)["infra/modules/servicebus.bicep"]
	m := regexp.MustCompile(`(?m)^var queueNames = \[`).FindStringIndex(sb)
	require.NotNil(t, m, "servicebus.bicep: var queueNames = [...] not found")
	var queues []string
	for _, q := range regexp.MustCompile(`'([^']+)'`).FindAllStringSubmatch(block(t, sb, m[1]-1), -1) {
		queues = append(queues, q[1])
	}
	require.Regexp(t, `resource \w+ 'Microsoft\.ServiceBus/namespaces/queues@[^']+' = \[for queueName in queueNames:`, sb)

	settings := appSettings(t)
	percent := regexp.MustCompile(`%([^%]+)%`)
	used := map[string]bool{}
	for name, fn := range functions(t) {
		for _, b := range fn.Bindings {
			if b.QueueName != "" {
				used[b.QueueName] = true
				require.Contains(t, queues, b.QueueName, "%s listens on queue %s, which the Bicep does not create", name, b.QueueName)
			}
			if b.Connection != "" {
				require.Contains(t, settings, b.Connection+"__fullyQualifiedNamespace", "%s: connection %s is not set up", name, b.Connection)
			}
			for _, ref := range percent.FindAllStringSubmatch(b.Schedule+b.QueueName, -1) {
				require.Contains(t, settings, ref[1], "%s refers to %%%s%%, which the host cannot resolve unless the setting exists", name, ref[1])
			}
		}
	}
	for _, q := range queues {
		require.True(t, used[q], "the Bicep creates queue %s that no function listens on", q)
	}

	qm := regexp.MustCompile(`queues@[^']+' = \[for queueName in queueNames: \{`).FindStringIndex(sb)
	require.NotNil(t, qm)
	props := block(t, sb, strings.Index(sb[qm[1]:], "properties: {")+qm[1]+len("properties: ")) // the queue's properties
	got := objectEntries(props)
	require.Equal(t, "true", got["requiresDuplicateDetection"])
	require.Equal(t, "'PT10M'", got["duplicateDetectionHistoryTimeWindow"])
	require.Equal(t, "10", got["maxDeliveryCount"])
	require.Equal(t, "'PT5M'", got["lockDuration"])
	require.Contains(t, sb, "name: 'Standard'", "duplicate detection and scheduled messages need Standard or Premium")
}

func TestHTTPFunctionsRequireAFunctionKey(t *testing.T) {
	t.Parallel()
	http := 0
	for name, fn := range functions(t) {
		for _, b := range fn.Bindings {
			if b.Type == "httpTrigger" {
				http++
				require.Equal(t, "function", b.AuthLevel, "%s: an anonymous operational endpoint", name)
			}
		}
	}
	require.NotZero(t, http)
}

type bicepResource struct {
	file, symbol, typ, body string
}

// resources lists every `resource sym 'Type@version' ... {` of the infra files with its body.
func resources(t *testing.T) []bicepResource {
	t.Helper()
	decl := regexp.MustCompile(`(?m)^resource (\w+) '([^'@]+)@[^']+' (?:existing )?=[^\n{]*\{`)
	var out []bicepResource
	for file, src := range bicepFiles(t) {
		for _, m := range decl.FindAllStringSubmatchIndex(src, -1) {
			out = append(out, bicepResource{
				file:   file,
				symbol: src[m[2]:m[3]],
				typ:    src[m[4]:m[5]],
				body:   block(t, src, m[1]-1),
			})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].file+out[i].symbol < out[j].file+out[j].symbol })
	return out
}

func TestRoleAssignmentsAreNarrowAndFromTheReference(t *testing.T) {
	t.Parallel()
	all := resources(t)
	typeOf := map[string]string{} // file + symbol -> type
	for _, r := range all {
		typeOf[r.file+"#"+r.symbol] = r.typ
	}
	allowed := map[roleGrant]bool{}
	for _, g := range requiredGrants {
		allowed[g] = true
	}
	guid := regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)
	scope := regexp.MustCompile(`(?m)^\s*scope: (.+)$`)
	roleDef := regexp.MustCompile(`roleDefinitionId: subscriptionResourceId\('Microsoft\.Authorization/roleDefinitions', '([0-9a-f-]{36})'\)`)
	seen := map[roleGrant]bool{}
	count := 0
	for _, r := range all {
		if r.typ != "Microsoft.Authorization/roleAssignments" {
			continue
		}
		count++
		where := r.file + " " + r.symbol
		for _, id := range guid.FindAllString(r.body, -1) {
			require.Contains(t, referenceRoles, id, "%s: role id %s is not in the reference", where, id)
		}
		rd := roleDef.FindStringSubmatch(r.body)
		require.NotNil(t, rd, "%s: roleDefinitionId must name one role id literally", where)
		require.Contains(t, r.body, "principalType: 'ServicePrincipal'", where)
		require.Regexp(t, `name: guid\(`, r.body, "%s: deterministic name", where)

		sc := scope.FindStringSubmatch(r.body)
		require.NotNil(t, sc, "%s: no scope: the assignment would land on the resource group", where)
		target := strings.TrimSpace(sc[1])
		require.Regexp(t, `^\w+(\[\w+\])?$`, target, "%s: scope %q must be a resource, not resourceGroup() or subscription()", where, target)
		symbol, _, _ := strings.Cut(target, "[") // queues[i]: an element of a resource loop
		scopeType, ok := typeOf[r.file+"#"+symbol]
		require.True(t, ok, "%s: scope %s is not a resource declared in %s", where, target, r.file)
		g := roleGrant{rd[1], scopeType}
		require.True(t, allowed[g], "%s: %s on %s is not one of the grants this service needs", where, referenceRoles[g.role], scopeType)
		seen[g] = true
	}
	require.NotZero(t, count)
	for _, g := range requiredGrants {
		require.True(t, seen[g], "missing role assignment: %s on %s", referenceRoles[g.role], g.scopeType)
	}
	for file, src := range bicepFiles(t) {
		require.NotRegexp(t, `scope: (resourceGroup|subscription)\(\)`, src, "%s: nothing is scoped to a whole resource group", file)
	}
}

// TestReferenceRoleIDs keeps the table above in step with the reference's list, kept in testdata.
func TestReferenceRoleIDs(t *testing.T) {
	t.Parallel()
	listed := map[string]string{}
	for _, line := range strings.Split(readRepoFile(t, "testdata/reference/roles.txt"), "\n") {
		if line = strings.TrimSpace(line); line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		id, name, ok := strings.Cut(line, " ")
		require.True(t, ok, "%q is not an id and a name", line)
		listed[id] = name
	}
	require.Equal(t, listed, referenceRoles)
}

func TestParametersFileMatchesMainBicep(t *testing.T) {
	t.Parallel()
	main := bicepFiles(t)["infra/main.bicep"]
	declared := map[string]bool{}
	required := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^param (\w+) \w+( = .+)?$`).FindAllStringSubmatch(main, -1) {
		declared[m[1]] = true
		if m[2] == "" {
			required[m[1]] = true
		}
	}
	var file struct {
		Parameters map[string]struct {
			Value any `json:"value"`
		} `json:"parameters"`
	}
	require.NoError(t, json.Unmarshal([]byte(readRepoFile(t, "infra/main.parameters.json")), &file))
	for name := range file.Parameters {
		require.True(t, declared[name], "main.parameters.json sets %s, which main.bicep does not declare", name)
	}
	for name := range required {
		require.Contains(t, file.Parameters, name, "main.bicep requires %s but main.parameters.json does not set it", name)
	}
}

func TestAzureYAMLDeploysThePackage(t *testing.T) {
	t.Parallel()
	azd := readRepoFile(t, "azure.yaml")
	for _, line := range []string{"path: infra", "language: custom", "host: function", "dist: dist/app", "run: ./scripts/package.sh"} {
		require.Contains(t, azd, line)
	}
	script := readRepoFile(t, "scripts/package.sh")
	require.Contains(t, script, `stage="$dist/app"`)
	require.Contains(t, script, `dist="${DIST_DIR:-$root/dist}"`)
	require.Contains(t, script, "CGO_ENABLED=0 GOOS=linux GOARCH=amd64")

	var host struct {
		CustomHandler struct {
			Description struct {
				DefaultExecutablePath string `json:"defaultExecutablePath"`
			} `json:"description"`
		} `json:"customHandler"`
	}
	require.NoError(t, json.Unmarshal([]byte(readRepoFile(t, "host.json")), &host))
	require.Contains(t, script, `-o "$stage/`+host.CustomHandler.Description.DefaultExecutablePath+`"`,
		"package.sh must build the executable host.json names")
	require.Contains(t, bicepFiles(t)["infra/modules/function-app.bicep"], "param serviceName string = 'handler'",
		"azd finds the app by the azd-service-name tag of services.handler")
}
