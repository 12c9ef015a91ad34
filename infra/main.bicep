// FHIR migrator: the Function App (custom handler, Go) and what it needs, wired with one user-assigned identity and
// role assignments scoped to each resource. The two FHIR services are existing resources given as parameters.
targetScope = 'resourceGroup'

@minLength(1)
@maxLength(64)
@description('Name of the environment (azd environment name); part of every generated resource name.')
param environmentName string

@description('Region of the new resources. Flex Consumption is offered in a subset of regions (az functionapp list-flexconsumption-locations).')
param location string = resourceGroup().location

@description('FlexConsumption (FC1, default) or ElasticPremium (EP1).')
@allowed([
  'FlexConsumption'
  'ElasticPremium'
])
param hostingPlan string = 'FlexConsumption'

@description('Name of the source Azure API for FHIR service (Microsoft.HealthcareApis/services).')
param sourceFhirServiceName string

@description('Resource group of the source service; empty: this resource group.')
param sourceFhirResourceGroup string = ''

@description('Name of the destination AHDS workspace (Microsoft.HealthcareApis/workspaces).')
param destinationWorkspaceName string

@description('Name of the destination FHIR service inside the workspace.')
param destinationFhirServiceName string

@description('Resource group of the destination workspace; empty: this resource group.')
param destinationResourceGroup string = ''

@description('Existing staging storage account the source exports into and the destination imports from; empty: create one here. It must be in the same subscription as the source service.')
param stagingStorageAccountName string = ''

@description('Resource group of an existing staging account; empty: this resource group.')
param stagingStorageResourceGroup string = ''

@description('true: point the source export storage and the destination import configuration at the staging account and grant both services Storage Blob Data Contributor on it (PUTs both services with every writable property as read; the accounts they used before are outputs). azd turns it off again after a provision that ran it.')
param wireStagingStorage bool = false

@description('With wireStagingStorage: keep the destination\'s initial import mode as it is, or set it on or off.')
@allowed([
  'keep'
  'on'
  'off'
])
param destinationInitialImportMode string = 'keep'

@description('With wireStagingStorage: the source service\'s identity already holds Storage Blob Data Contributor on the staging account, so it is not assigned again (the deploy check finds it).')
param sourceStagingAccessExists bool = false

@description('With wireStagingStorage: the same for the destination service\'s identity.')
param destinationStagingAccessExists bool = false

@description('NCRONTAB (6 fields, UTC) of PollJob.')
param pollSchedule string = '*/30 * * * * *'

@description('Container of the migration documents in the host storage account.')
param migrationContainer string = 'fhir-migrations'

@description('Exports running at once on one source, across all migrations.')
@minValue(1)
param maxExportsPerSource int = 4

@description('Imports running at once on one destination, across all migrations (the service documents up to five).')
@minValue(1)
param maxImportsPerDestination int = 5

@description('First status poll delay (Go duration).')
param pollInitial string = '5s'

@description('Cap of the status poll backoff (Go duration).')
param pollMax string = '2m'

@description('Delay of a scheduled retry when the destination is busy (Go duration).')
param retryDelay string = '30s'

@description('A chained step without progress for this long is re-sent by the timer (Go duration).')
param redriveAfter string = '2m'

@description('A running export older than this is canceled and exported again.')
param exportDeadline string = '6h'

@description('Wait before re-polling an export manifest whose counts fall short of the counts taken at kick-off.')
param confirmDelay string = '1m'

@description('Re-runs of one export (stalled, short or failed) before the migration fails.')
param maxReexports int = 3

@description('debug, info, warn or error.')
@allowed([
  'debug'
  'info'
  'warn'
  'error'
])
param logLevel string = 'info'

@description('Upper bound of Flex Consumption instances.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

// Locked-down tenants (docs section "Deploying into a locked-down tenant"; handler/infra_network_test.go).
@description('true: private networking. The function app is integrated with a subnet (all its outbound traffic through the virtual network), the storage accounts and the Service Bus namespace (Premium) are reached through private endpoints and closed to public traffic, with private DNS zones. false: none of it is created.')
param networkIsolation bool = false

@description('With networkIsolation: an existing subnet for the app\'s virtual network integration, delegated to Microsoft.App/environments (Flex Consumption) or Microsoft.Web/serverFarms (Elastic Premium), /27 or larger; empty: a virtual network is created here.')
param existingAppSubnetId string = ''

@description('With existingAppSubnetId: an existing subnet of the same virtual network for the private endpoints.')
param existingPrivateEndpointSubnetId string = ''

@description('With networkIsolation and no existing subnets: address space of the virtual network created here.')
param vnetAddressPrefix string = '10.40.0.0/24'

@description('The app\'s subnet in it: /26 covers Flex Consumption (/27 recommended) and Elastic Premium on Linux (/26 recommended).')
param appSubnetPrefix string = '10.40.0.0/26'

@description('The private endpoints\' subnet in it.')
param privateEndpointSubnetPrefix string = '10.40.0.64/27'

@description('With networkIsolation: resource id of a resource group holding the privatelink DNS zones, already linked to the network (a hub); empty: the zones are created here and linked to the network.')
param privateDnsZonesResourceGroupId string = ''

@description('With networkIsolation: a private endpoint to the source Azure API for FHIR service as well. Creating it turns off the service\'s public network access for every client.')
param sourceFhirPrivateEndpoint bool = false

@description('With networkIsolation: a private endpoint to the destination AHDS workspace as well (all its FHIR services). Creating it turns off their public network access for every client.')
param destinationFhirPrivateEndpoint bool = false

@description('entra: App Service authentication in front of the app, requiring an Entra access token for the app registration AUTH_CLIENT_ID (401 without one); the handler authorizes by app role. keys: function keys alone.')
@allowed([
  'entra'
  'keys'
])
param authMode string = 'entra'

@description('With authMode entra: application (client) id of the migrator\'s Entra app registration (app roles Migration.Read and Migration.Operate).')
param authClientId string = ''

@description('bulk-data sources only: the SMART Backend Services client_id registered with the source (empty: no SMART client).')
param smartClientId string = ''

@description('bulk-data sources only: the Key Vault key that signs the SMART client assertions, https://{vault}.vault.azure.net/keys/{name}[/{version}]; grant the identity the key\'s sign permission (Key Vault Crypto User).')
param smartSigningKey string = ''

@description('bulk-data sources only: RS384 (RSA key) or ES384 (P-384 key).')
param smartSigningAlg string = ''

@description('bulk-data sources only: system/*.rs (default) or system/*.read.')
param smartScope string = ''

@description('bulk-data sources only: the kid of the SMART client assertions (the key\'s id in the JWKS registered with the source).')
param smartKeyId string = ''

@description('With authMode entra: tenant of the app registration; empty: this deployment\'s tenant.')
param authTenantId string = ''

@description('Email address the alerts are sent to; empty: the alerts fire in Azure Monitor without notification.')
param alertEmail string = ''

@description('Webhook the alerts are posted to (common alert schema); empty: none.')
param alertWebhookUrl string = ''

@description('A sync round ending more than this many minutes behind the source raises an alert.')
@minValue(1)
param syncLagAlertMinutes int = 30

// Every generated name, module deployment names included, carries the token: two environments deploying at once
// never overwrite each other's deployment records.
var resourceToken = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName))
var tags = {
  'azd-env-name': environmentName
}
var createStaging = empty(stagingStorageAccountName)
var stagingAccountName = createStaging ? 'stg${resourceToken}' : stagingStorageAccountName
var stagingResourceGroup = createStaging || empty(stagingStorageResourceGroup) ? resourceGroup().name : stagingStorageResourceGroup
var sourceResourceGroup = empty(sourceFhirResourceGroup) ? resourceGroup().name : sourceFhirResourceGroup
var destinationFhirResourceGroup = empty(destinationResourceGroup) ? resourceGroup().name : destinationResourceGroup
var hostStorageName = 'st${resourceToken}'
var functionAppName = 'func-${resourceToken}'
var deploymentContainer = 'app-package'
var sourceFhirHost = '${sourceFhirServiceName}.azurehealthcareapis.com'
var destinationFhirHost = '${destinationWorkspaceName}-${destinationFhirServiceName}.fhir.azurehealthcareapis.com'
var blobSuffix = 'blob.${environment().suffixes.storage}'
var sourceFhirServiceId = resourceId(subscription().subscriptionId, sourceResourceGroup, 'Microsoft.HealthcareApis/services', sourceFhirServiceName)
var destinationWorkspaceId = resourceId(subscription().subscriptionId, destinationFhirResourceGroup, 'Microsoft.HealthcareApis/workspaces', destinationWorkspaceName)
var destinationFhirServiceId = resourceId(subscription().subscriptionId, destinationFhirResourceGroup, 'Microsoft.HealthcareApis/workspaces/fhirservices', destinationWorkspaceName, destinationFhirServiceName)
var stagingStorageId = resourceId(subscription().subscriptionId, stagingResourceGroup, 'Microsoft.Storage/storageAccounts', stagingAccountName)

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-${resourceToken}'
  location: location
  tags: tags
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring-${resourceToken}'
  params: {
    location: location
    tags: tags
    logAnalyticsName: 'log-${resourceToken}'
    applicationInsightsName: 'appi-${resourceToken}'
    principalId: identity.properties.principalId
  }
}

module dashboard 'modules/dashboard.bicep' = {
  name: 'dashboard-${resourceToken}'
  params: {
    location: location
    tags: tags
    applicationInsightsId: monitoring.outputs.applicationInsightsId
  }
}

module hostStorage 'modules/storage-account.bicep' = {
  name: 'host-storage-${resourceToken}'
  params: {
    name: hostStorageName
    location: location
    tags: tags
    // Only Elastic Premium's Azure Files content share needs a key; Flex runs keyless.
    allowSharedKeyAccess: hostingPlan == 'ElasticPremium'
    containers: [
      deploymentContainer
      migrationContainer
    ]
    // Only the app uses it: public network access disabled, reached through private endpoints.
    networkIsolation: networkIsolation
  }
}

module hostStorageAccess 'modules/host-storage-access.bicep' = {
  name: 'host-storage-access-${resourceToken}'
  params: {
    storageAccountName: hostStorage.outputs.name
    principalId: identity.properties.principalId
  }
}

module stagingStorage 'modules/storage-account.bicep' = if (createStaging) {
  name: 'staging-storage-${resourceToken}'
  params: {
    name: stagingAccountName
    location: location
    tags: tags
    // Both FHIR services and the handler reach it with managed identities.
    allowSharedKeyAccess: false
    containers: []
    networkIsolation: networkIsolation
    // The FHIR services write and read it from outside any network of ours: let them through the firewall as
    // resource instances (the workspace and its FHIR service, as Microsoft's AHDS $export/$import guides do) and as
    // trusted services (storage-account.bicep). The handler comes through its private endpoint.
    firewallExceptionResourceIds: networkIsolation ? [
      sourceFhirServiceId
      destinationWorkspaceId
      destinationFhirServiceId
    ] : []
  }
}

module stagingAccess 'modules/staging-access.bicep' = {
  name: 'staging-access-${resourceToken}'
  scope: resourceGroup(stagingResourceGroup)
  dependsOn: [
    stagingStorage
  ]
  params: {
    storageAccountName: stagingAccountName
    principalId: identity.properties.principalId
  }
}

module serviceBus 'modules/servicebus.bicep' = {
  name: 'servicebus-${resourceToken}'
  params: {
    // A Standard namespace cannot become Premium by a PUT (servicebus.bicep): the Premium one is a namespace of its own.
    name: networkIsolation ? 'sbp-${resourceToken}' : 'sb-${resourceToken}'
    location: location
    tags: tags
    principalId: identity.properties.principalId
    premium: networkIsolation
  }
}

// networkIsolation: the virtual network (or existing subnets), the private endpoints and their DNS zones.
module privateNetwork 'modules/private-network.bicep' = if (networkIsolation) {
  name: 'private-network-${resourceToken}'
  dependsOn: [
    stagingStorage
  ]
  params: {
    location: location
    tags: tags
    hostingPlan: hostingPlan
    vnetName: 'vnet-${resourceToken}'
    vnetAddressPrefix: vnetAddressPrefix
    appSubnetPrefix: appSubnetPrefix
    privateEndpointSubnetPrefix: privateEndpointSubnetPrefix
    existingAppSubnetId: existingAppSubnetId
    existingPrivateEndpointSubnetId: existingPrivateEndpointSubnetId
    privateDnsZonesResourceGroupId: privateDnsZonesResourceGroupId
    hostStorageId: hostStorage.outputs.id
    stagingStorageId: stagingStorageId
    serviceBusId: serviceBus.outputs.id
    sourceFhirServiceId: sourceFhirPrivateEndpoint ? sourceFhirServiceId : ''
    destinationWorkspaceId: destinationFhirPrivateEndpoint ? destinationWorkspaceId : ''
    nameSuffix: resourceToken
  }
}

module sourceAccess 'modules/fhir-source-access.bicep' = {
  name: 'fhir-source-access-${resourceToken}'
  scope: resourceGroup(sourceResourceGroup)
  params: {
    fhirServiceName: sourceFhirServiceName
    principalId: identity.properties.principalId
  }
}

module destinationAccess 'modules/fhir-destination-access.bicep' = {
  name: 'fhir-destination-access-${resourceToken}'
  scope: resourceGroup(destinationFhirResourceGroup)
  params: {
    workspaceName: destinationWorkspaceName
    fhirServiceName: destinationFhirServiceName
    principalId: identity.properties.principalId
  }
}

module storageWiring 'modules/storage-wiring.bicep' = if (wireStagingStorage) {
  name: 'storage-wiring-${resourceToken}'
  dependsOn: [
    stagingStorage
  ]
  params: {
    sourceFhirServiceName: sourceFhirServiceName
    sourceFhirResourceGroup: sourceResourceGroup
    destinationWorkspaceName: destinationWorkspaceName
    destinationFhirServiceName: destinationFhirServiceName
    destinationResourceGroup: destinationFhirResourceGroup
    stagingStorageAccountName: stagingAccountName
    stagingStorageResourceGroup: stagingResourceGroup
    deploymentSuffix: resourceToken
    initialImportMode: destinationInitialImportMode
    sourceStagingAccessExists: sourceStagingAccessExists
    destinationStagingAccessExists: destinationStagingAccessExists
  }
}

// Every setting the handler reads in Azure (handler/config.go), plus what the host needs for identity-based
// connections; handler/infra_test.go keeps this list and LoadConfig in step.
var handlerSettings = {
  AzureWebJobsStorage__accountName: hostStorageName
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identity.properties.clientId
  MigrationContainer: migrationContainer
  StagingStorage__blobServiceUri: 'https://${stagingAccountName}.${blobSuffix}/'
  ServiceBusConnection__fullyQualifiedNamespace: serviceBus.outputs.fullyQualifiedNamespace
  ServiceBusConnection__credential: 'managedidentity'
  ServiceBusConnection__clientId: identity.properties.clientId
  AllowedHosts: '${sourceFhirHost},${destinationFhirHost}'
  FhirCredential: 'azure'
  AZURE_CLIENT_ID: identity.properties.clientId
  PollSchedule: pollSchedule
  PollInitial: pollInitial
  PollMax: pollMax
  RetryDelay: retryDelay
  RedriveAfter: redriveAfter
  ExportDeadline: exportDeadline
  ConfirmDelay: confirmDelay
  MaxReexports: string(maxReexports)
  MaxExportsPerSource: string(maxExportsPerSource)
  MaxImportsPerDestination: string(maxImportsPerDestination)
  LogLevel: logLevel
  SmartClientId: smartClientId
  SmartSigningKey: smartSigningKey
  SmartSigningAlg: smartSigningAlg
  SmartScope: smartScope
  SmartKeyId: smartKeyId
  // One JSON object per line: the dashboard (modules/dashboard.bicep) reads its fields.
  LogFormat: 'json'
  APPLICATIONINSIGHTS_CONNECTION_STRING: monitoring.outputs.connectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identity.properties.clientId};Authorization=AAD'
}

// How the handler authorizes HTTP calls: AUTH_MODE entra (App Service authentication in front; the handler checks
// the caller's app roles, Migration.Read and Migration.Operate, in X-MS-CLIENT-PRINCIPAL, and AUTH_CLIENT_ID is the
// app registration the tokens are for) or keys (function keys alone). Kept out of handlerSettings until LoadConfig
// reads them: handler/infra_test.go holds handlerSettings to what LoadConfig reads.
var authSettings = authMode == 'entra' ? {
  AUTH_MODE: 'entra'
  AUTH_CLIENT_ID: authClientId
} : {
  AUTH_MODE: 'keys'
}

module functionApp 'modules/function-app.bicep' = {
  name: 'function-app-${resourceToken}'
  dependsOn: [
    hostStorageAccess
    stagingAccess
    sourceAccess
    destinationAccess
    // The private endpoints and their DNS records first: the site is created on its network (and, on Elastic
    // Premium, on its content share through it).
    privateNetwork
  ]
  params: {
    name: functionAppName
    planName: 'plan-${resourceToken}'
    location: location
    tags: tags
    hostingPlan: hostingPlan
    identityId: identity.id
    storageAccountName: hostStorage.outputs.name
    deploymentContainer: deploymentContainer
    appSettings: union(handlerSettings, authSettings)
    maximumInstanceCount: maximumInstanceCount
    virtualNetworkSubnetId: networkIsolation ? privateNetwork.outputs.appSubnetId : ''
  }
}

// authMode entra: Microsoft Entra authentication in front of the app (401 without a token for the app registration).
module appAuthentication 'modules/app-authentication.bicep' = if (authMode == 'entra') {
  name: 'app-authentication-${resourceToken}'
  params: {
    siteName: functionApp.outputs.name
    authClientId: authClientId
    authTenantId: empty(authTenantId) ? tenant().tenantId : authTenantId
  }
}

// Alerts: a migration failed, a sync falls behind, the poll timer stopped, a message was dead-lettered.
module alerts 'modules/alerts.bicep' = {
  name: 'alerts-${resourceToken}'
  params: {
    location: location
    tags: tags
    applicationInsightsId: monitoring.outputs.applicationInsightsId
    serviceBusNamespaceId: serviceBus.outputs.id
    alertEmail: alertEmail
    alertWebhookUrl: alertWebhookUrl
    syncLagAlertMinutes: syncLagAlertMinutes
    nameSuffix: resourceToken
  }
}

output AZURE_LOCATION string = location
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output FUNCTION_APP_URL string = functionApp.outputs.url
output MIGRATIONS_URL string = '${functionApp.outputs.url}/api/migrations'
output MANAGED_IDENTITY_CLIENT_ID string = identity.properties.clientId
output MANAGED_IDENTITY_PRINCIPAL_ID string = identity.properties.principalId
output HOST_STORAGE_ACCOUNT string = hostStorage.outputs.name
output STAGING_STORAGE_ACCOUNT string = stagingAccountName
output STAGING_STORAGE_RESOURCE_GROUP string = stagingResourceGroup
output SERVICE_BUS_NAMESPACE string = serviceBus.outputs.fullyQualifiedNamespace
output SOURCE_FHIR_URL string = 'https://${sourceFhirHost}'
output DESTINATION_FHIR_URL string = 'https://${destinationFhirHost}'
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
output DASHBOARD_WORKBOOK_ID string = dashboard.outputs.workbookId
output ALERTS_ACTION_GROUP_ID string = alerts.outputs.actionGroupId
output VIRTUAL_NETWORK_ID string = networkIsolation ? privateNetwork.outputs.vnetId : ''
// What the storage wiring replaced (empty when it did not run): README "Storage wiring" says how to restore it.
output PREVIOUS_SOURCE_EXPORT_STORAGE string = wireStagingStorage ? storageWiring.outputs.previousSourceExportStorage : ''
output PREVIOUS_DESTINATION_IMPORT_CONFIGURATION object = wireStagingStorage ? storageWiring.outputs.previousDestinationImportConfiguration : {}
