// The destination (AHDS FHIR service): $import, reads (counts, verification), and writes: SearchParameter
// resources cannot be imported, so they are copied with a batch of PUTs.
param workspaceName string
param fhirServiceName string
param principalId string

resource workspace 'Microsoft.HealthcareApis/workspaces@2023-11-01' existing = {
  name: workspaceName
}

resource destination 'Microsoft.HealthcareApis/workspaces/fhirservices@2023-11-01' existing = {
  parent: workspace
  name: fhirServiceName
}

resource fhirDataImporter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(destination.id, principalId, '4465e953-8ced-4406-a58e-0f6e3f3b530b')
  scope: destination
  properties: {
    // FHIR Data Importer
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '4465e953-8ced-4406-a58e-0f6e3f3b530b')
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource fhirDataReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(destination.id, principalId, '4c8d0bbc-75d3-4935-991f-5f3c56d81508')
  scope: destination
  properties: {
    // FHIR Data Reader
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '4c8d0bbc-75d3-4935-991f-5f3c56d81508')
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource fhirDataWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(destination.id, principalId, '3f88fce4-5892-4214-ae73-ba5294559913')
  scope: destination
  properties: {
    // FHIR Data Writer (the SearchParameter copy)
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '3f88fce4-5892-4214-ae73-ba5294559913')
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
