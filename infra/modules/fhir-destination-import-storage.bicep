// Re-deploys the destination AHDS FHIR service with importConfiguration on the staging account and its
// system-assigned identity on (the service reads and leases the NDJSON with it); user-assigned identities are kept.
param workspaceName string
param name string
param location string
@description('The kinds Microsoft.HealthcareApis/workspaces/fhirservices allows.')
@allowed([
  'fhir-R4'
  'fhir-Stu3'
])
param kind string
param tags object
param identity object
param properties object
param stagingStorageAccountName string
param initialImportMode bool

var userAssigned = identity.?userAssignedIdentities ?? {}

resource workspace 'Microsoft.HealthcareApis/workspaces@2023-11-01' existing = {
  name: workspaceName
}

resource destination 'Microsoft.HealthcareApis/workspaces/fhirservices@2023-11-01' = {
  parent: workspace
  name: name
  location: location
  kind: kind
  tags: tags
  identity: empty(userAssigned) ? {
    type: 'SystemAssigned'
  } : {
    type: 'SystemAssigned,UserAssigned'
    userAssignedIdentities: toObject(items(userAssigned), i => i.key, i => {})
  }
  properties: union(properties, {
    importConfiguration: {
      enabled: true
      initialImportMode: initialImportMode
      integrationDataStore: stagingStorageAccountName
    }
  })
}

output principalId string = destination.identity.principalId
