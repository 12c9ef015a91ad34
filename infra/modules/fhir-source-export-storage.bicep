// Re-deploys the source Azure API for FHIR service with exportConfiguration set to the staging account and its
// system-assigned identity on (the service writes the export with it).
param name string
param location string
@description('The kinds Microsoft.HealthcareApis/services allows.')
@allowed([
  'fhir'
  'fhir-R4'
  'fhir-Stu3'
])
param kind string
param tags object
param properties object
param stagingStorageAccountName string

resource source 'Microsoft.HealthcareApis/services@2023-11-01' = {
  name: name
  location: location
  kind: kind
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: union(properties, {
    exportConfiguration: {
      storageAccountName: stagingStorageAccountName
    }
  })
}

output principalId string = source.identity.principalId
