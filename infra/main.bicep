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
    name: 'sb-${resourceToken}'
    location: location
    tags: tags
    principalId: identity.properties.principalId
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
  // One JSON object per line: the dashboard (modules/dashboard.bicep) reads its fields.
  LogFormat: 'json'
  APPLICATIONINSIGHTS_CONNECTION_STRING: monitoring.outputs.connectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identity.properties.clientId};Authorization=AAD'
}

module functionApp 'modules/function-app.bicep' = {
  name: 'function-app-${resourceToken}'
  dependsOn: [
    hostStorageAccess
    stagingAccess
    sourceAccess
    destinationAccess
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
    appSettings: handlerSettings
    maximumInstanceCount: maximumInstanceCount
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
// What the storage wiring replaced (empty when it did not run): README "Storage wiring" says how to restore it.
output PREVIOUS_SOURCE_EXPORT_STORAGE string = wireStagingStorage ? storageWiring.outputs.previousSourceExportStorage : ''
output PREVIOUS_DESTINATION_IMPORT_CONFIGURATION object = wireStagingStorage ? storageWiring.outputs.previousDestinationImportConfiguration : {}
