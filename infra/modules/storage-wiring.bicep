// Optional, and only when asked (wireStagingStorage; azd's postprovision hook turns WIRE_STAGING_STORAGE off once
// it ran, so a later provision does not PUT the services again): make the staging account both the source's export
// storage and the destination's import storage, and let both services' system-assigned identities write and lease
// blobs there. Each service is PUT at the newest stable API version with every writable property it has, as read,
// and the etag read with them; only the storage setting changes. The accounts they used before are outputs (and
// azd's environment), with how to restore them in the README.
param sourceFhirServiceName string
param sourceFhirResourceGroup string
param destinationWorkspaceName string
param destinationFhirServiceName string
param destinationResourceGroup string
param stagingStorageAccountName string
param stagingStorageResourceGroup string
@description('Appended to the nested deployments\' names (they run in other resource groups, shared with other environments).')
param deploymentSuffix string
@description('keep: the destination\'s initial import mode stays as it is; on or off: set it (on blocks API writes, and the migrator imports with IncrementalLoad).')
@allowed([
  'keep'
  'on'
  'off'
])
param initialImportMode string = 'keep'
@description('true: the source\'s identity already holds Storage Blob Data Contributor on the staging account (found by the deploy check).')
param sourceStagingAccessExists bool = false
@description('true: the destination\'s identity already holds Storage Blob Data Contributor on the staging account.')
param destinationStagingAccessExists bool = false

// The properties each resource type marks read-only at 2024-03-31 (bicep-types-az, healthcareapis types.json); every
// other property read is sent back. services' privateEndpointConnections is writable, fhirservices' is not.
var sourceReadOnly = [
  'provisioningState'
]
var destinationReadOnly = [
  'provisioningState'
  'privateEndpointConnections'
  'eventState'
]

resource sourceCurrent 'Microsoft.HealthcareApis/services@2024-03-31' existing = {
  name: sourceFhirServiceName
  scope: resourceGroup(sourceFhirResourceGroup)
}

resource destinationWorkspace 'Microsoft.HealthcareApis/workspaces@2024-03-31' existing = {
  name: destinationWorkspaceName
  scope: resourceGroup(destinationResourceGroup)
}

resource destinationCurrent 'Microsoft.HealthcareApis/workspaces/fhirservices@2024-03-31' existing = {
  parent: destinationWorkspace
  name: destinationFhirServiceName
}

module sourceExport 'fhir-source-export-storage.bicep' = {
  name: 'fhir-source-export-storage-${deploymentSuffix}'
  scope: resourceGroup(sourceFhirResourceGroup)
  params: {
    name: sourceFhirServiceName
    location: sourceCurrent.location
    kind: sourceCurrent.kind
    tags: sourceCurrent.?tags ?? {}
    etag: sourceCurrent.?etag ?? ''
    properties: toObject(filter(items(sourceCurrent.properties), p => !contains(sourceReadOnly, p.key)), p => p.key, p => p.value)
    stagingStorageAccountName: stagingStorageAccountName
    previousExportStorage: sourceCurrent.properties.?exportConfiguration.?storageAccountName ?? ''
  }
}

module destinationImport 'fhir-destination-import-storage.bicep' = {
  name: 'fhir-destination-import-storage-${deploymentSuffix}'
  scope: resourceGroup(destinationResourceGroup)
  params: {
    workspaceName: destinationWorkspaceName
    name: destinationFhirServiceName
    location: destinationCurrent.location
    kind: destinationCurrent.?kind ?? 'fhir-R4'
    tags: destinationCurrent.?tags ?? {}
    etag: destinationCurrent.?etag ?? ''
    identity: destinationCurrent.?identity ?? {}
    properties: toObject(filter(items(destinationCurrent.properties), p => !contains(destinationReadOnly, p.key)), p => p.key, p => p.value)
    stagingStorageAccountName: stagingStorageAccountName
    initialImportMode: initialImportMode
    previousImportConfiguration: destinationCurrent.properties.?importConfiguration ?? {}
  }
}

module servicesOnStaging 'staging-service-access.bicep' = {
  name: 'staging-service-access-${deploymentSuffix}'
  scope: resourceGroup(stagingStorageResourceGroup)
  params: {
    storageAccountName: stagingStorageAccountName
    sourcePrincipalId: sourceExport.outputs.principalId
    destinationPrincipalId: destinationImport.outputs.principalId
    sourceAccessExists: sourceStagingAccessExists
    destinationAccessExists: destinationStagingAccessExists
  }
}

output previousSourceExportStorage string = sourceExport.outputs.previousExportStorage
output previousDestinationImportConfiguration object = destinationImport.outputs.previousImportConfiguration
