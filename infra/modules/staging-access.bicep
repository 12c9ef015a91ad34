// The handler reads export manifests' files, checks them and deletes staged containers on the staging account.
param storageAccountName string
param principalId string

resource staging 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource blobDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(staging.id, principalId, 'ba92f5b4-2d11-453d-a403-e96b0029c9fe')
  scope: staging
  properties: {
    // Storage Blob Data Contributor
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'ba92f5b4-2d11-453d-a403-e96b0029c9fe')
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
