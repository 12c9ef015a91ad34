// Optional: make the staging account both the source's export storage and the destination's import storage, and
// let both services' system-assigned identities write and lease blobs there. Each service is re-deployed with its
// current properties and only the storage setting changed; read-only properties are left out.
param sourceFhirServiceName string
param sourceFhirResourceGroup string
param destinationWorkspaceName string
param destinationFhirServiceName string
param destinationResourceGroup string
param stagingStorageAccountName string
param stagingStorageResourceGroup string
@description('Appended to the nested deployments\' names (they run in other resource groups, shared with other environments).')
param deploymentSuffix string
@description('Initial import mode blocks API writes on the destination while on; the migrator uses IncrementalLoad.')
param initialImportMode bool = false

var readOnlyProperties = [
  'provisioningState'
  'privateEndpointConnections'
  'eventState'
]

resource sourceCurrent 'Microsoft.HealthcareApis/services@2023-11-01' existing = {
  name: sourceFhirServiceName
  scope: resourceGroup(sourceFhirResourceGroup)
}

resource destinationWorkspace 'Microsoft.HealthcareApis/workspaces@2023-11-01' existing = {
  name: destinationWorkspaceName
  scope: resourceGroup(destinationResourceGroup)
}

resource destinationCurrent 'Microsoft.HealthcareApis/workspaces/fhirservices@2023-11-01' existing = {
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
    properties: toObject(filter(items(sourceCurrent.properties), p => !contains(readOnlyProperties, p.key)), p => p.key, p => p.value)
    stagingStorageAccountName: stagingStorageAccountName
  }
}

module destinationImport 'fhir-destination-import-storage.bicep' = {
  name: 'fhir-destination-import-storage-${deploymentSuffix}'
  scope: resourceGroup(destinationResourceGroup)
  params: {
    workspaceName: destinationWorkspaceName
    name: destinationFhirServiceName
    location: destinationCurrent.location
    kind: destinationCurrent.kind
    tags: destinationCurrent.?tags ?? {}
    identity: destinationCurrent.?identity ?? {}
    properties: toObject(filter(items(destinationCurrent.properties), p => !contains(readOnlyProperties, p.key)), p => p.key, p => p.value)
    stagingStorageAccountName: stagingStorageAccountName
    initialImportMode: initialImportMode
  }
}

module servicesOnStaging 'staging-service-access.bicep' = {
  name: 'staging-service-access-${deploymentSuffix}'
  scope: resourceGroup(stagingStorageResourceGroup)
  params: {
    storageAccountName: stagingStorageAccountName
    sourceServiceId: sourceCurrent.id
    sourcePrincipalId: sourceExport.outputs.principalId
    destinationServiceId: destinationCurrent.id
    destinationPrincipalId: destinationImport.outputs.principalId
  }
}
