// Re-deploys the source Azure API for FHIR service with exportConfiguration set to the staging account and its
// system-assigned identity on (the service writes the export with it). ARM offers no other way: the PATCH body of
// Microsoft.HealthcareApis/services takes only tags and identity. So the PUT carries every writable property the
// caller read (storage-wiring.bicep; handler/infra_wiring_test.go holds the list to the API version's schema) and
// the etag read with them, so that a change made in between fails the PUT instead of being overwritten.
param name string
param location string
@description('The kinds Microsoft.HealthcareApis/services allows (a closed list in the resource type).')
@allowed([
  'fhir'
  'fhir-R4'
  'fhir-Stu3'
])
param kind string
param tags object
param etag string
@description('Every writable property of the service as read, unchanged but for exportConfiguration.')
param properties object
param stagingStorageAccountName string
@description('The export account before the change, echoed as an output: the record of what to restore.')
param previousExportStorage string

resource source 'Microsoft.HealthcareApis/services@2024-03-31' = {
  name: name
  location: location
  kind: kind
  tags: tags
  etag: empty(etag) ? null : etag
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
output previousExportStorage string = previousExportStorage
