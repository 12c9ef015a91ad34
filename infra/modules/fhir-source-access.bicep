// The source (Azure API for FHIR): $export and reads (counts, CapabilityStatement). There is no Importer role here.
param fhirServiceName string
param principalId string

resource source 'Microsoft.HealthcareApis/services@2023-11-01' existing = {
  name: fhirServiceName
}

resource fhirDataExporter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(source.id, principalId, '3db33094-8700-4567-8da5-1501d4e7e843')
  scope: source
  properties: {
    // FHIR Data Exporter
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '3db33094-8700-4567-8da5-1501d4e7e843')
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource fhirDataReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(source.id, principalId, '4c8d0bbc-75d3-4935-991f-5f3c56d81508')
  scope: source
  properties: {
    // FHIR Data Reader
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '4c8d0bbc-75d3-4935-991f-5f3c56d81508')
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
