// Both FHIR services' own identities on the staging account: the source writes the export there, the destination
// reads the files and takes blob leases during $import. Each assignment is named from the principal it grants
// (a re-created identity gets a new name, never RoleAssignmentUpdateNotPermitted), and one that already exists
// under another name (granted by hand, as Microsoft's setup guides do) is not created again: the deploy check
// finds it and sets the *AccessExists parameter (ARM refuses a second equal assignment: RoleAssignmentExists).
param storageAccountName string
param sourcePrincipalId string
param destinationPrincipalId string
@description('true: the source\'s identity already holds Storage Blob Data Contributor on the account.')
param sourceAccessExists bool = false
@description('true: the destination\'s identity already holds Storage Blob Data Contributor on the account.')
param destinationAccessExists bool = false

resource staging 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource sourceBlobDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!sourceAccessExists) {
  name: guid(staging.id, sourcePrincipalId, 'ba92f5b4-2d11-453d-a403-e96b0029c9fe')
  scope: staging
  properties: {
    // Storage Blob Data Contributor
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'ba92f5b4-2d11-453d-a403-e96b0029c9fe')
    principalId: sourcePrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource destinationBlobDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!destinationAccessExists) {
  name: guid(staging.id, destinationPrincipalId, 'ba92f5b4-2d11-453d-a403-e96b0029c9fe')
  scope: staging
  properties: {
    // Storage Blob Data Contributor
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'ba92f5b4-2d11-453d-a403-e96b0029c9fe')
    principalId: destinationPrincipalId
    principalType: 'ServicePrincipal'
  }
}
