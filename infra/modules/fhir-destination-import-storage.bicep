// Re-deploys the destination AHDS FHIR service with importConfiguration on the staging account and its
// system-assigned identity on (the service reads and leases the NDJSON with it); user-assigned identities are
// kept. As for the source, only a PUT can change it (the PATCH body takes tags, identity and nothing else), so the
// PUT carries every writable property the caller read, SMART identity providers included (2023-12-01 and later),
// and the etag read with them.
param workspaceName string
param name string
param location string
@description('The service\'s kind as read. The resource type\'s kind is an open string (\'fhir-R4\' | \'fhir-Stu3\' | string): a fixed list here would refuse the value read (Bicep BCP036).')
param kind string
param tags object
param etag string
param identity object
@description('Every writable property of the service as read, unchanged but for importConfiguration.')
param properties object
param stagingStorageAccountName string
@description('keep: initial import mode stays as it is; on or off: set it.')
@allowed([
  'keep'
  'on'
  'off'
])
param initialImportMode string = 'keep'
@description('The importConfiguration before the change, echoed as an output: the record of what to restore.')
param previousImportConfiguration object

var userAssigned = identity.?userAssignedIdentities ?? {}
var importMode = initialImportMode == 'keep' ? {} : {
  initialImportMode: initialImportMode == 'on'
}

resource workspace 'Microsoft.HealthcareApis/workspaces@2024-03-31' existing = {
  name: workspaceName
}

resource destination 'Microsoft.HealthcareApis/workspaces/fhirservices@2024-03-31' = {
  parent: workspace
  name: name
  location: location
  kind: kind
  tags: tags
  etag: empty(etag) ? null : etag
  identity: empty(userAssigned) ? {
    type: 'SystemAssigned'
  } : {
    type: 'SystemAssigned,UserAssigned'
    userAssignedIdentities: toObject(items(userAssigned), i => i.key, i => {})
  }
  properties: union(properties, {
    importConfiguration: union(previousImportConfiguration, importMode, {
      enabled: true
      integrationDataStore: stagingStorageAccountName
    })
  })
}

output principalId string = destination.identity.principalId
output previousImportConfiguration object = previousImportConfiguration
