// Both FHIR services' own identities on the staging account: the source writes the export there, the destination
// reads the files and takes blob leases during $import.
param storageAccountName string
param sourceServiceId string
param sourcePrincipalId string
param destinationServiceId string
param destinationPrincipalId string

resource staging 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource sourceBlobDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(staging.id, sourceServiceId, 'ba92f5b4-2d11-453d-a403-e96b0029c9fe')
  scope: staging
  properties: {
    // Storage Blob Data Contributor
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'ba92f5b4-2d11-453d-a403-e96b0029c9fe')
    principalId: sourcePrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource destinationBlobDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(staging.id, destinationServiceId, 'ba92f5b4-2d11-453d-a403-e96b0029c9fe')
  scope: staging
  properties: {
    // Storage Blob Data Contributor
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'ba92f5b4-2d11-453d-a403-e96b0029c9fe')
    principalId: destinationPrincipalId
    principalType: 'ServicePrincipal'
  }
}
