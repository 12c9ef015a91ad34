package main

// Issue 21, "Deployable in a locked-down healthcare tenant": private networking (networkIsolation), Microsoft Entra
// authentication in front of the app (authMode) and the alerts, pinned against the Bicep text (no Bicep compiler or
// Azure is reachable here) and, for the alert queries, parsed by Microsoft's KQL parser and held to the lines the
// handler logs.

import (
	"encoding/json"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// privateLinkZones is Microsoft's list of private endpoint sub-resources (group ids) and the private DNS zones their
// records go in, for the resource types the deployment reaches privately (commercial cloud):
//   - https://learn.microsoft.com/azure/private-link/private-endpoint-dns ("Azure Private Endpoint private DNS zone
//     values", Azure services DNS zone configuration: Storage account blob, table, queue, file; Azure Service Bus
//     namespace; Azure Key Vault vault; Azure Health Data Services healthcareworkspace);
//   - https://learn.microsoft.com/azure/healthcare-apis/azure-api-for-fhir/configure-private-link (Azure API for
//     FHIR: target sub-resource fhir, "(New)privatelink.azurehealthcareapis.com").
var privateLinkZones = map[string][]string{
	"Microsoft.Storage/storageAccounts#blob":    {"privatelink.blob.core.windows.net"},
	"Microsoft.Storage/storageAccounts#table":   {"privatelink.table.core.windows.net"},
	"Microsoft.Storage/storageAccounts#queue":   {"privatelink.queue.core.windows.net"},
	"Microsoft.Storage/storageAccounts#file":    {"privatelink.file.core.windows.net"},
	"Microsoft.ServiceBus/namespaces#namespace": {"privatelink.servicebus.windows.net"},
	"Microsoft.KeyVault/vaults#vault":           {"privatelink.vaultcore.azure.net"},
	"Microsoft.HealthcareApis/services#fhir":    {"privatelink.azurehealthcareapis.com"},
	"Microsoft.HealthcareApis/workspaces#healthcareworkspace": {"privatelink.workspace.azurehealthcareapis.com",
		"privatelink.fhir.azurehealthcareapis.com", "privatelink.dicom.azurehealthcareapis.com"},
}

// The value of environment().suffixes.storage in the commercial cloud, which the zone names above are for.
const commercialStorageSuffix = "core.windows.net"

// privateEndpoint is one entry of private-network.bicep's endpoints list.
type privateEndpoint struct {
	name, target, groupID string
	zones                 []string
	branch                string // "always", or the condition that leaves it out (concat(..., cond ? [] : [it]))
}

// privateEndpoints reads private-network.bicep's `var endpoints = concat([...], cond ? [] : [...], ...)`.
func privateEndpoints(t *testing.T, src string) []privateEndpoint {
	t.Helper()
	start := strings.Index(src, "var endpoints = concat([")
	require.NotEqual(t, -1, start, "private-network.bicep: var endpoints = concat([...")
	end := strings.Index(src[start:], "\n])\n")
	require.NotEqual(t, -1, end)
	text := src[start : start+end]
	entry := regexp.MustCompile(`(?s)name: '([^']+)'\s+target: (\w+)\s+groupId: '([^']+)'\s+zones: \[([^\]]*)\]`)
	branch := regexp.MustCompile(`\], (.+?) \? \[\] : \[`)
	quoted := regexp.MustCompile(`'([^']*)'`)
	// Each entry belongs to the last branch opened before it.
	branches := branch.FindAllStringSubmatchIndex(text, -1)
	var out []privateEndpoint
	for _, m := range entry.FindAllStringSubmatchIndex(text, -1) {
		e := privateEndpoint{name: text[m[2]:m[3]], target: text[m[4]:m[5]], groupID: text[m[6]:m[7]], branch: "always"}
		for _, b := range branches {
			if b[0] < m[0] {
				e.branch = text[b[2]:b[3]]
			}
		}
		for _, z := range quoted.FindAllStringSubmatch(text[m[8]:m[9]], -1) {
			e.zones = append(e.zones, strings.ReplaceAll(z[1], "${storageSuffix}", commercialStorageSuffix))
		}
		out = append(out, e)
	}
	require.NotEmpty(t, out)
	return out
}

// callOf is the module call of main.bicep with that symbol.
func callOf(t *testing.T, files map[string]string, symbol string) bicepModuleCall {
	t.Helper()
	for _, c := range moduleCalls(t, files) {
		if c.file == "infra/main.bicep" && c.symbol == symbol {
			return c
		}
	}
	require.FailNow(t, "module not found", "infra/main.bicep: module %s", symbol)
	return bicepModuleCall{}
}

// moduleBody is the text of main.bicep's `module symbol ...` declaration, its condition line included.
func moduleBody(t *testing.T, src, symbol string) (decl, body string) {
	t.Helper()
	m := regexp.MustCompile(`(?m)^module ` + symbol + ` '[^']+' = [^\n{]*\{`).FindStringIndex(src)
	require.NotNil(t, m, "module %s", symbol)
	return src[m[0]:m[1]], block(t, src, m[1]-1)
}

// With networkIsolation, every storage account, the Service Bus namespace (and a Key Vault, were there one) has a
// private endpoint whose group id and DNS zones are the ones Microsoft lists for its resource type, and the FHIR
// services get theirs when asked for.
func TestPrivateEndpointsUseMicrosoftsGroupIdsAndZones(t *testing.T) {
	t.Parallel()
	files := bicepFiles(t)
	pn := files["infra/modules/private-network.bicep"]
	require.Contains(t, pn, "var storageSuffix = environment().suffixes.storage")

	// What each target parameter of private-network.bicep is, as main.bicep passes it.
	main := files["infra/main.bicep"]
	call := callOf(t, files, "privateNetwork")
	targetTypes := map[string]string{}
	for param, want := range map[string]struct{ arg, typ string }{
		"hostStorageId":          {"hostStorage.outputs.id", "Microsoft.Storage/storageAccounts"},
		"stagingStorageId":       {"stagingStorageId", "Microsoft.Storage/storageAccounts"},
		"serviceBusId":           {"serviceBus.outputs.id", "Microsoft.ServiceBus/namespaces"},
		"sourceFhirServiceId":    {"sourceFhirPrivateEndpoint ? sourceFhirServiceId : ''", "Microsoft.HealthcareApis/services"},
		"destinationWorkspaceId": {"destinationFhirPrivateEndpoint ? destinationWorkspaceId : ''", "Microsoft.HealthcareApis/workspaces"},
	} {
		require.Equal(t, want.arg, call.args[param], "main.bicep passes %s", param)
		targetTypes[param] = want.typ
	}
	require.Contains(t, files["infra/modules/storage-account.bicep"], "output id string = account.id")
	require.Regexp(t, `resource account 'Microsoft\.Storage/storageAccounts@`, files["infra/modules/storage-account.bicep"])
	require.Contains(t, files["infra/modules/servicebus.bicep"], "output id string = namespace.id")
	require.Regexp(t, `resource namespace 'Microsoft\.ServiceBus/namespaces@`, files["infra/modules/servicebus.bicep"])
	for v, typ := range map[string]string{
		"stagingStorageId":       "Microsoft.Storage/storageAccounts",
		"sourceFhirServiceId":    "Microsoft.HealthcareApis/services",
		"destinationWorkspaceId": "Microsoft.HealthcareApis/workspaces",
	} {
		require.Regexp(t, `(?m)^var `+v+` = resourceId\(subscription\(\)\.subscriptionId, \w+, '`+regexp.QuoteMeta(typ)+`', `, main)
	}

	endpoints := privateEndpoints(t, pn)
	byName := map[string]privateEndpoint{}
	for _, e := range endpoints {
		typ, ok := targetTypes[e.target]
		require.True(t, ok, "%s: target %s is not a parameter this test knows the type of", e.name, e.target)
		listed, ok := privateLinkZones[typ+"#"+e.groupID]
		require.True(t, ok, "%s: %s has no sub-resource %q in Microsoft's list", e.name, typ, e.groupID)
		require.NotEmpty(t, e.zones, e.name)
		for _, z := range e.zones {
			require.Contains(t, listed, z, "%s: zone %s is not one Microsoft lists for %s %s", e.name, z, typ, e.groupID)
		}
		byName[e.name] = e
	}
	// What each account and service needs, and when.
	want := map[string]struct{ target, group, branch string }{
		"host-blob":             {"hostStorageId", "blob", "always"},
		"host-table":            {"hostStorageId", "table", "always"},
		"host-file":             {"hostStorageId", "file", "isFlex"}, // Elastic Premium only: its content share
		"staging-blob":          {"stagingStorageId", "blob", "always"},
		"servicebus":            {"serviceBusId", "namespace", "always"},
		"source-fhir":           {"sourceFhirServiceId", "fhir", "empty(sourceFhirServiceId)"},
		"destination-workspace": {"destinationWorkspaceId", "healthcareworkspace", "empty(destinationWorkspaceId)"},
	}
	require.Len(t, byName, len(want))
	for name, w := range want {
		e, ok := byName[name]
		require.True(t, ok, "no private endpoint %s", name)
		require.Equal(t, w.target, e.target, name)
		require.Equal(t, w.group, e.groupID, name)
		require.Equal(t, w.branch, e.branch, "%s: added when", name)
	}
	// The AHDS workspace endpoint carries its FHIR services' records: the FHIR zone must be in its group.
	require.Contains(t, byName["destination-workspace"].zones, "privatelink.fhir.azurehealthcareapis.com")
	require.Contains(t, byName["destination-workspace"].zones, "privatelink.workspace.azurehealthcareapis.com")

	// Every endpoint gets a zone group with all its zones, and the zones are linked to the network.
	for _, r := range resources(t) {
		if r.file != "infra/modules/private-network.bicep" {
			continue
		}
		switch r.typ {
		case "Microsoft.Network/privateEndpoints":
			require.Contains(t, r.body, "privateLinkServiceId: e.target")
			require.Regexp(t, `groupIds: \[\s+e\.groupId\s+\]`, r.body)
			require.Contains(t, r.body, "id: privateEndpointSubnetId")
		case "Microsoft.Network/privateEndpoints/privateDnsZoneGroups":
			require.Contains(t, r.body, "parent: privateEndpoints[i]")
			require.Contains(t, r.body, "privateDnsZoneConfigs: map(e.zones, z => {")
			require.Contains(t, r.body, "privateDnsZoneId: zoneIds[z]")
		case "Microsoft.Network/privateDnsZones/virtualNetworkLinks":
			require.Contains(t, r.body, "id: vnetId")
			require.Contains(t, r.body, "registrationEnabled: false")
		}
	}
	require.Regexp(t, `resource privateEndpoints 'Microsoft\.Network/privateEndpoints@[^']+' = \[for e in endpoints: \{`, pn)
	require.Regexp(t, `resource zoneGroups 'Microsoft\.Network/privateEndpoints/privateDnsZoneGroups@[^']+' = \[for \(e, i\) in endpoints: \{`, pn)
	require.Regexp(t, `resource zones 'Microsoft\.Network/privateDnsZones@[^']+' = \[for zone in zoneNames: if \(createZones\) \{`, pn)
	require.Regexp(t, `resource zoneLinks 'Microsoft\.Network/privateDnsZones/virtualNetworkLinks@[^']+' = \[for \(zone, i\) in zoneNames: if \(createZones\) \{`, pn)
	require.Contains(t, pn, "var zoneNames = union(flatten(map(endpoints, e => e.zones)), [])")

	// No Key Vault is deployed: nothing of the deployment would need its private endpoint.
	for file, src := range files {
		require.NotContains(t, src, "Microsoft.KeyVault/", "%s: a Key Vault needs a private endpoint (vault, privatelink.vaultcore.azure.net) and public access disabled", file)
	}
}

// With networkIsolation, the storage accounts and the namespace take no public traffic but what must come that way:
// the host account and the namespace none at all, the staging account only the FHIR services (resource instances and
// trusted services, as Microsoft's $export/$import guides configure it).
func TestNetworkIsolationClosesPublicAccess(t *testing.T) {
	t.Parallel()
	files := bicepFiles(t)
	st := files["infra/modules/storage-account.bicep"]
	require.Contains(t, st, "param networkIsolation bool = false")
	require.Contains(t, st, "param firewallExceptionResourceIds array = []")
	require.Contains(t, st, "var withExceptions = !empty(firewallExceptionResourceIds)")
	require.Contains(t, st, "publicNetworkAccess: networkIsolation && !withExceptions ? 'Disabled' : 'Enabled'")
	require.Contains(t, st, "networkAcls: networkIsolation ? closedAcls : openAcls")
	closed := namedObject(t, st, "closedAcls")
	require.Equal(t, "'Deny'", closed["defaultAction"])
	require.Equal(t, "withExceptions ? 'AzureServices' : 'None'", closed["bypass"], "trusted services only for the staging account")
	require.Equal(t, "[]", closed["ipRules"])
	require.Equal(t, "[]", closed["virtualNetworkRules"])
	require.Equal(t, "map(firewallExceptionResourceIds, id => {", closed["resourceAccessRules"])
	open := namedObject(t, st, "openAcls")
	require.Equal(t, "'Allow'", open["defaultAction"], "without networkIsolation every network, as before")

	host := callOf(t, files, "hostStorage")
	require.Equal(t, "networkIsolation", host.args["networkIsolation"])
	require.NotContains(t, host.args, "firewallExceptionResourceIds", "the host account takes no public traffic at all")

	staging := callOf(t, files, "stagingStorage")
	require.Equal(t, "networkIsolation", staging.args["networkIsolation"])
	_, body := moduleBody(t, files["infra/main.bicep"], "stagingStorage")
	require.Regexp(t, `firewallExceptionResourceIds: networkIsolation \? \[\s+sourceFhirServiceId\s+destinationWorkspaceId\s+destinationFhirServiceId\s+\] : \[\]`, body,
		"the source service, the destination workspace and its FHIR service, and only with networkIsolation")
	require.Regexp(t, `(?m)^var destinationFhirServiceId = resourceId\(subscription\(\)\.subscriptionId, destinationFhirResourceGroup, 'Microsoft\.HealthcareApis/workspaces/fhirservices', destinationWorkspaceName, destinationFhirServiceName\)$`, files["infra/main.bicep"])

	sb := files["infra/modules/servicebus.bicep"]
	require.Contains(t, sb, "param premium bool = false")
	require.Contains(t, sb, "sku: premium ? premiumSku : standardSku")
	require.Equal(t, "'Premium'", namedObject(t, sb, "premiumSku")["name"], "private endpoints need the Premium tier")
	require.Contains(t, sb, "publicNetworkAccess: premium ? 'Disabled' : 'Enabled'")
	require.Regexp(t, `resource namespace 'Microsoft\.ServiceBus/namespaces@2024-01-01' = \{`, sb, "the first stable version with publicNetworkAccess")
	bus := callOf(t, files, "serviceBus")
	require.Equal(t, "networkIsolation", bus.args["premium"])
	require.Equal(t, "networkIsolation ? 'sbp-${resourceToken}' : 'sb-${resourceToken}'", bus.args["name"],
		"a Standard namespace does not become Premium in place: the Premium one has a name of its own")
}

// The function app is integrated with the delegated subnet at creation, all its outbound traffic through the
// virtual network: by design on Flex Consumption, by Route All on Elastic Premium.
func TestFunctionAppRoutesThroughTheDelegatedSubnet(t *testing.T) {
	t.Parallel()
	files := bicepFiles(t)
	pn := files["infra/modules/private-network.bicep"]
	// Microsoft Learn, "Azure Functions networking options": Microsoft.App/environments for Flex Consumption,
	// Microsoft.Web/serverFarms for Elastic Premium (and Dedicated).
	require.Contains(t, pn, "var appSubnetDelegation = isFlex ? 'Microsoft.App/environments' : 'Microsoft.Web/serverFarms'")
	require.Contains(t, pn, "var isFlex = hostingPlan == 'FlexConsumption'")
	vnet := ""
	for _, r := range resources(t) {
		if r.file == "infra/modules/private-network.bicep" && r.typ == "Microsoft.Network/virtualNetworks" {
			vnet = r.body
		}
	}
	require.NotEmpty(t, vnet)
	require.Regexp(t, `name: appSubnetName\s+properties: \{\s+addressPrefix: appSubnetPrefix\s+delegations: \[\s+\{\s+name: '[^']+'\s+properties: \{\s+serviceName: appSubnetDelegation`, vnet)
	require.Regexp(t, `name: privateEndpointSubnetName\s+properties: \{\s+addressPrefix: privateEndpointSubnetPrefix`, vnet)
	for _, name := range regexp.MustCompile(`(?m)^var (?:appSubnetName|privateEndpointSubnetName) = '([^']+)'$`).FindAllStringSubmatch(pn, -1) {
		require.NotContains(t, name[1], "_", "Flex Consumption does not support subnet names with underscores")
	}
	require.Contains(t, pn, "var appSubnetId = createVnet ? resourceId('Microsoft.Network/virtualNetworks/subnets', vnetName, appSubnetName) : existingAppSubnetId")
	require.Contains(t, pn, "output appSubnetId string = appSubnetId")
	require.Equal(t, "hostingPlan", callOf(t, files, "privateNetwork").args["hostingPlan"])

	fn := files["infra/modules/function-app.bicep"]
	require.Contains(t, fn, "param virtualNetworkSubnetId string = ''")
	flex := regexp.MustCompile(`var vnetConfig = !vnetIntegrated \? \{\} : isFlex \? \{\s+virtualNetworkSubnetId: virtualNetworkSubnetId\s+\} : \{\s+virtualNetworkSubnetId: virtualNetworkSubnetId\s+vnetRouteAllEnabled: true\s+vnetContentShareEnabled: true\s+\}`)
	require.Regexp(t, flex, fn, "Flex: the subnet (all traffic goes through it); Elastic Premium: the subnet, Route All, the content share through it")
	var site string
	for _, r := range resources(t) {
		if r.file == "infra/modules/function-app.bicep" && r.typ == "Microsoft.Web/sites" {
			site = r.body
		}
	}
	require.Contains(t, site, "}, isFlex ? flexConfig : {}, vnetConfig)", "the site is created on the subnet")
	require.Regexp(t, `\}, vnetIntegrated && !isFlex \? \{\s+functionsRuntimeScaleMonitoringEnabled: true\s+\} : \{\}\)`, site,
		"Elastic Premium scales on a network-restricted Service Bus only with runtime scale monitoring")

	app := callOf(t, files, "functionApp")
	require.Equal(t, "networkIsolation ? privateNetwork.outputs.appSubnetId : ''", app.args["virtualNetworkSubnetId"])
	_, body := moduleBody(t, files["infra/main.bicep"], "functionApp")
	require.Regexp(t, `dependsOn: \[[^\]]*\bprivateNetwork\b[^\]]*\]`, body, "the endpoints and their DNS records exist before the site")
}

// With networkIsolation off, none of it is created: everything of the private network is in one module deployed only
// with it, nothing else refers to it unguarded, and the other modules' switches default to off.
func TestNetworkIsolationOffCreatesNothing(t *testing.T) {
	t.Parallel()
	files := bicepFiles(t)
	main := files["infra/main.bicep"]
	require.Contains(t, main, "param networkIsolation bool = false")
	decl, _ := moduleBody(t, main, "privateNetwork")
	require.Equal(t, "module privateNetwork 'modules/private-network.bicep' = if (networkIsolation) {", decl)
	for file, src := range files {
		if file != "infra/main.bicep" {
			require.NotContains(t, src, "private-network.bicep'", "%s deploys the private network", file)
		}
	}
	// Every network resource is in the private network module.
	for _, r := range resources(t) {
		if strings.HasPrefix(r.typ, "Microsoft.Network/") {
			require.Equal(t, "infra/modules/private-network.bicep", r.file, "%s %s outside the networkIsolation module", r.file, r.symbol)
		}
	}
	// Its outputs are read only under networkIsolation.
	for _, m := range regexp.MustCompile(`[^\n]*privateNetwork\.outputs\.[^\n]*`).FindAllString(main, -1) {
		require.Contains(t, m, "networkIsolation ? privateNetwork.outputs.", "unguarded: %s", strings.TrimSpace(m))
	}
	// The switches of the other modules are off by default and on only with networkIsolation.
	require.Contains(t, files["infra/modules/storage-account.bicep"], "param networkIsolation bool = false")
	require.Contains(t, files["infra/modules/servicebus.bicep"], "param premium bool = false")
	require.Contains(t, files["infra/modules/function-app.bicep"], "param virtualNetworkSubnetId string = ''")
	for _, c := range moduleCalls(t, files) {
		if c.file != "infra/main.bicep" {
			continue
		}
		for arg, value := range c.args {
			if strings.Contains(value, "networkIsolation") || arg == "networkIsolation" || arg == "premium" {
				require.True(t, value == "networkIsolation" || strings.HasPrefix(value, "networkIsolation ? "),
					"module %s: %s: %s depends on networkIsolation only as a switch", c.symbol, arg, value)
			}
		}
	}
	// The parameter is set from the azd environment.
	var params struct {
		Parameters map[string]struct {
			Value any `json:"value"`
		} `json:"parameters"`
	}
	require.NoError(t, json.Unmarshal([]byte(readRepoFile(t, "infra/main.parameters.json")), &params))
	for name, env := range map[string]string{
		"networkIsolation":                "${NETWORK_ISOLATION=false}",
		"existingAppSubnetId":             "${EXISTING_APP_SUBNET_ID=}",
		"existingPrivateEndpointSubnetId": "${EXISTING_PRIVATE_ENDPOINT_SUBNET_ID=}",
		"privateDnsZonesResourceGroupId":  "${PRIVATE_DNS_ZONES_RESOURCE_GROUP_ID=}",
		"sourceFhirPrivateEndpoint":       "${SOURCE_FHIR_PRIVATE_ENDPOINT=false}",
		"destinationFhirPrivateEndpoint":  "${DESTINATION_FHIR_PRIVATE_ENDPOINT=false}",
		"authMode":                        "${AUTH_MODE=entra}",
		"authClientId":                    "${AUTH_CLIENT_ID=}",
		"authTenantId":                    "${AUTH_TENANT_ID=}",
		"alertEmail":                      "${ALERT_EMAIL=}",
		"alertWebhookUrl":                 "${ALERT_WEBHOOK_URL=}",
		"syncLagAlertMinutes":             "${SYNC_LAG_ALERT_MINUTES=30}",
	} {
		require.Equal(t, env, params.Parameters[name].Value, "main.parameters.json: %s", name)
	}
}

// authMode entra puts App Service authentication in front of the app (401 for a request without a token for the
// app registration); keys leaves the function keys alone. The handler learns which from AUTH_MODE.
func TestAuthModeEntraRequiresAToken(t *testing.T) {
	t.Parallel()
	files := bicepFiles(t)
	main := files["infra/main.bicep"]
	p := bicepParams(main)["authMode"]
	require.Equal(t, []string{"entra", "keys"}, p.allowed)
	require.Contains(t, main, "param authMode string = 'entra'", "entra for new deployments")
	decl, _ := moduleBody(t, main, "appAuthentication")
	require.Equal(t, "module appAuthentication 'modules/app-authentication.bicep' = if (authMode == 'entra') {", decl)
	call := callOf(t, files, "appAuthentication")
	require.Equal(t, "functionApp.outputs.name", call.args["siteName"])
	require.Equal(t, "authClientId", call.args["authClientId"])
	require.Equal(t, "empty(authTenantId) ? tenant().tenantId : authTenantId", call.args["authTenantId"])

	auth := files["infra/modules/app-authentication.bicep"]
	require.Regexp(t, `@minLength\(36\)\s+@maxLength\(36\)\s+param authClientId string`, auth, "entra without a client id fails the deployment")
	n := 0
	for _, r := range resources(t) {
		if r.typ != "Microsoft.Web/sites/config" || !strings.Contains(r.body, "name: 'authsettingsV2'") {
			continue
		}
		n++
		require.Equal(t, "infra/modules/app-authentication.bicep", r.file, "authsettingsV2 only with authMode entra")
		for _, want := range []string{"requireAuthentication: true", "unauthenticatedClientAction: 'Return401'",
			"clientId: authClientId", "openIdIssuer: 'https://sts.windows.net/${authTenantId}/v2.0'",
			"'api://${authClientId}'", "requireHttps: true"} {
			require.Contains(t, r.body, want)
		}
		require.Regexp(t, `azureActiveDirectory: \{\s+enabled: true`, r.body)
		require.Regexp(t, `platform: \{\s+enabled: true`, r.body)
	}
	require.Equal(t, 1, n)

	require.Regexp(t, `var authSettings = authMode == 'entra' \? \{\s+AUTH_MODE: 'entra'\s+AUTH_CLIENT_ID: authClientId\s+\} : \{\s+AUTH_MODE: 'keys'\s+\}`, main)
	require.Equal(t, "union(handlerSettings, authSettings)", callOf(t, files, "functionApp").args["appSettings"])
	for _, role := range []string{"Migration.Read", "Migration.Operate"} {
		require.Contains(t, main, role, "main.bicep names the app roles the handler checks")
	}
}

// handlerLines are the lines the handler itself writes that an alert reads, besides the engine's change lines, with
// the fields they carry; each is pinned to the handler's source below.
var handlerLines = map[string][]string{
	// handler/http.go invocation: log := a.logger.With("function", name, "invocationId", ...);
	// log.Error("invocation failed", "err", err), as a JSON line (time, level, msg: slog's JSON handler).
	"invocation failed": {"time", "level", "msg", "function", "invocationId", "err"},
}

// The alert rules exist, each sends to the action group, and each log query parses with Microsoft's KQL parser and
// reads only messages and fields the handler logs (the engine's change lines as captured in test migrations,
// internal/migration/testdata/change-lines.json, and the handler's invocation lines).
func TestAlertsReadWhatTheHandlerLogs(t *testing.T) {
	t.Parallel()
	files := bicepFiles(t)
	al := files["infra/modules/alerts.bicep"]
	main := files["infra/main.bicep"]
	decl, _ := moduleBody(t, main, "alerts")
	require.Equal(t, "module alerts 'modules/alerts.bicep' = {", decl, "alerts with every deployment")
	call := callOf(t, files, "alerts")
	require.Equal(t, "monitoring.outputs.applicationInsightsId", call.args["applicationInsightsId"])
	require.Equal(t, "serviceBus.outputs.id", call.args["serviceBusNamespaceId"])
	require.Equal(t, "alertEmail", call.args["alertEmail"])
	require.Equal(t, "alertWebhookUrl", call.args["alertWebhookUrl"])
	require.Equal(t, "syncLagAlertMinutes", call.args["syncLagAlertMinutes"])
	require.Contains(t, main, "param syncLagAlertMinutes int = 30")

	// The action group sends to the email and the webhook given.
	var group, logRules, metric string
	for _, r := range resources(t) {
		if r.file != "infra/modules/alerts.bicep" {
			continue
		}
		switch r.typ {
		case "Microsoft.Insights/actionGroups":
			group = r.body
		case "Microsoft.Insights/scheduledQueryRules":
			logRules = r.body
		case "Microsoft.Insights/metricAlerts":
			metric = r.body
		}
	}
	require.Regexp(t, `emailReceivers: empty\(alertEmail\) \? \[\] : \[\s+\{\s+name: 'email'\s+emailAddress: alertEmail`, group)
	require.Regexp(t, `webhookReceivers: empty\(alertWebhookUrl\) \? \[\] : \[\s+\{\s+name: 'webhook'\s+serviceUri: alertWebhookUrl`, group)
	short := regexp.MustCompile(`groupShortName: '([^']*)'`).FindStringSubmatch(group)
	require.NotNil(t, short)
	require.LessOrEqual(t, len(short[1]), 12, "groupShortName: 12 characters at most (actionGroups@2023-01-01)")

	// Every log rule and the metric rule send to it.
	require.Regexp(t, `actions: \{\s+actionGroups: \[\s+actionGroup\.id\s+\]`, logRules)
	require.Regexp(t, `actions: \[\s+\{\s+actionGroupId: actionGroup\.id\s+\}\s+\]`, metric)
	require.Regexp(t, `resource logRules 'Microsoft\.Insights/scheduledQueryRules@[^']+' = \[for rule in logAlerts: \{`, al)
	for _, want := range []string{"query: rule.query", "metricMeasureColumn: rule.measure", "threshold: rule.threshold",
		"timeAggregation: rule.aggregation", "operator: rule.operator", "applicationInsightsId", "kind: 'LogAlert'"} {
		require.Contains(t, logRules, want)
	}

	// A message dead-lettered: Service Bus's DeadletteredMessages (dimension EntityName) on the namespace.
	for _, want := range []string{"metricName: 'DeadletteredMessages'", "metricNamespace: 'Microsoft.ServiceBus/namespaces'",
		"timeAggregation: 'Maximum'", "operator: 'GreaterThan'", "threshold: 0", "name: 'EntityName'", "serviceBusNamespaceId"} {
		require.Contains(t, metric, want)
	}

	// The log rules: their queries, measure and dimension columns, and thresholds.
	type logRule struct {
		name, file, measure, aggregation, operator, threshold, window string
		dimensions                                                    []string
	}
	start := strings.Index(al, "var logAlerts = [")
	require.NotEqual(t, -1, start)
	text := al[start : start+strings.Index(al[start:], "\n]\n")]
	entry := regexp.MustCompile(`(?s)\{\s+name: '([^']+)'.*?query: loadTextContent\('([^']+)'\)\s+measure: '([^']+)'\s+aggregation: '([^']+)'\s+operator: '([^']+)'\s+threshold: (\w+)\s+dimensions: \[([^\]]*)\]\s+windowSize: '([^']+)'`)
	var rules []logRule
	for _, m := range entry.FindAllStringSubmatch(text, -1) {
		r := logRule{name: m[1], file: m[2], measure: m[3], aggregation: m[4], operator: m[5], threshold: m[6], window: m[8]}
		for _, d := range regexp.MustCompile(`'([^']+)'`).FindAllStringSubmatch(m[7], -1) {
			r.dimensions = append(r.dimensions, d[1])
		}
		rules = append(rules, r)
	}
	byName := map[string]logRule{}
	for _, r := range rules {
		byName[r.name] = r
	}
	want := map[string]logRule{
		"migration-failed": {measure: "failures", aggregation: "Total", operator: "GreaterThan", threshold: "0", dimensions: []string{"migration", "code"}},
		"sync-lag":         {measure: "lagMinutes", aggregation: "Maximum", operator: "GreaterThan", threshold: "syncLagAlertMinutes", dimensions: []string{"migration"}},
		"poll-stopped":     {measure: "sweeps", aggregation: "Total", operator: "LessThan", threshold: "1", window: "PT10M"},
	}
	require.Len(t, byName, len(want), "the log rules")
	for name, w := range want {
		r, ok := byName[name]
		require.True(t, ok, "no log alert %s", name)
		require.Equal(t, w.measure, r.measure, name)
		require.Equal(t, w.aggregation, r.aggregation, name)
		require.Equal(t, w.operator, r.operator, name)
		require.Equal(t, w.threshold, r.threshold, name)
		require.Equal(t, w.dimensions, r.dimensions, name)
		if w.window != "" {
			require.Equal(t, w.window, r.window, "%s: no sweep for 10 minutes", name)
		}
	}

	// The queries parse, with Microsoft's parser, against the Application Insights traces table.
	var queries []kqlQuery
	texts := map[string]string{}
	for _, r := range rules {
		q := readRepoFile(t, "infra/modules/"+r.file)
		texts[r.name] = q
		queries = append(queries, kqlQuery{Name: r.name, Text: q})
	}
	res := checkKQL(t, queries, nil)
	for _, r := range res.Results {
		for _, d := range r.Diagnostics {
			t.Errorf("%s: line %d col %d: %s %s %q: %s", r.Name, d.Line, d.Column, d.Severity, d.Code, d.Snippet, d.Message)
		}
	}
	require.Zero(t, res.Errors)

	// The lines they read, and the fields and values of those lines.
	var captured struct {
		Lines map[string]struct {
			Fields []string
			Values map[string][]string
		}
	}
	require.NoError(t, json.Unmarshal([]byte(readRepoFile(t, "internal/migration/testdata/change-lines.json")), &captured))
	http := readRepoFile(t, "handler/http.go")
	for _, pinned := range []string{
		`log := a.logger.With("function", name, "invocationId", `,
		`log.Error("invocation failed", "err", err)`,
		`Logs: []string{name + " done"}`,
	} {
		require.Contains(t, http, pinned, "handler/http.go: the invocation lines the alerts read")
	}
	app := readRepoFile(t, "handler/app.go")
	functionNames := map[string]bool{}
	for _, m := range regexp.MustCompile(`a\.invocation\("(\w+)", `).FindAllStringSubmatch(app, -1) {
		functionNames[m[1]] = true
	}
	require.True(t, functionNames["PollJob"], "handler/app.go: the PollJob invocation")

	msgLiteral := regexp.MustCompile(`msg\) == "([^"]*)"|msg == "([^"]*)"`)
	fieldRef := regexp.MustCompile(`\bl(?:\.(\w+)|\['(\w+)'\])`)
	compared := regexp.MustCompile(`tostring\(l(?:\.(\w+)|\['(\w+)'\])\) == "([^"]*)"`)
	messageLiteral := regexp.MustCompile(`\bmessage == "([^"]*)"`)
	for _, r := range rules {
		q := texts[r.name]
		require.NotRegexp(t, `\bcount\(\)`, q, "%s: count() counts sampled items: sum(itemCount)", r.name)
		allowed := map[string]bool{}
		values := map[string][]string{}
		msgs := msgLiteral.FindAllStringSubmatch(q, -1)
		require.NotEmpty(t, msgs, "%s reads no line by its msg", r.name)
		for _, m := range msgs {
			msg := m[1] + m[2]
			if l, ok := captured.Lines[msg]; ok {
				for _, f := range l.Fields {
					allowed[f] = true
				}
				for f, vs := range l.Values {
					values[f] = append(values[f], vs...)
				}
				continue
			}
			fields, ok := handlerLines[msg]
			require.True(t, ok, "%s: %q is neither a captured change line nor a handler line", r.name, msg)
			for _, f := range fields {
				allowed[f] = true
			}
		}
		for _, m := range fieldRef.FindAllStringSubmatch(q, -1) {
			require.True(t, allowed[m[1]+m[2]], "%s: l.%s is on none of the lines it reads", r.name, m[1]+m[2])
		}
		for _, m := range compared.FindAllStringSubmatch(q, -1) {
			field := m[1] + m[2]
			if field == "function" {
				require.True(t, functionNames[m[3]], "%s: no function %q", r.name, m[3])
				continue
			}
			if field == "msg" {
				continue // checked above
			}
			require.Contains(t, values[field], m[3], "%s: %s was never %q on the captured lines", r.name, field, m[3])
		}
		// A whole message compared: only the invocation log of a sweep that ended well.
		for _, m := range messageLiteral.FindAllStringSubmatch(q, -1) {
			name, ok := strings.CutSuffix(m[1], " done")
			require.True(t, ok && functionNames[name], "%s: message %q is not the invocation log of a function", r.name, m[1])
		}
		// The last step makes the measure column and the dimension columns.
		lines := strings.Split(strings.TrimSpace(q), "\n")
		last := lines[len(lines)-1]
		require.Regexp(t, `^\| summarize `+regexp.QuoteMeta(r.measure)+` = `, last, "%s: the measure column", r.name)
		by := ""
		if _, after, ok := strings.Cut(last, " by "); ok {
			by = after
		}
		var cols []string
		for _, c := range strings.Split(by, ",") {
			if c = strings.TrimSpace(c); c != "" {
				cols = append(cols, c)
			}
		}
		dims := slices.Clone(r.dimensions)
		sort.Strings(dims)
		sort.Strings(cols)
		require.Equal(t, dims, cols, "%s: the dimensions are the summarize's by columns", r.name)
	}
	// What each rule is about.
	require.Contains(t, texts["migration-failed"], `msg == "migration status changed" and tostring(l['to']) == "failed"`)
	require.Contains(t, texts["sync-lag"], `msg == "sync round ended"`)
	require.Contains(t, texts["sync-lag"], "todouble(l.lagSeconds) / 60.0", "the lag in minutes, the threshold's unit")
	require.Contains(t, texts["poll-stopped"], `message == "PollJob done"`)
	require.Contains(t, texts["poll-stopped"], `tostring(l.msg) == "invocation failed" and tostring(l['function']) == "PollJob"`)
	require.NotContains(t, texts["poll-stopped"], " by ", "no group: one row (sum 0) when nothing ran")
}
