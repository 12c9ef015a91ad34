// A StorageV2 account with private blob containers; no public blob access, TLS 1.2.
//
// With networkIsolation the account's public endpoint is closed to the handler, which reaches it through the private
// endpoints of private-network.bicep (Microsoft Learn, "Configure Azure Storage firewalls and virtual networks":
// "Storage firewall rules only apply to the public endpoints of a storage account, not private endpoints"):
//   - no exception (the host account): publicNetworkAccess Disabled, every network denied;
//   - with firewallExceptionResourceIds (the staging account the FHIR services export into and import from):
//     public access only "from selected virtual networks and IP addresses" with no network selected (defaultAction
//     Deny), the FHIR services allowed as resource instances and trusted Azure services let through (bypass
//     AzureServices). That is the configuration Microsoft's FHIR guides give for $export and $import to a storage
//     account behind a firewall (Microsoft Learn, "Configure export settings and set up a storage account" and
//     "Configure import settings", "Securing the FHIR service $export / $import operation": "Enabled from selected
//     virtual networks and IP addresses", resource type Microsoft.HealthcareApis/workspaces and the FHIR service as
//     resource instances, "Allow Azure services on the trusted services list"); Azure API for FHIR
//     (Microsoft.HealthcareApis/services) is on the storage trusted-services list for managed-identity access too
//     ("Configure Azure Storage firewalls and virtual networks", "Trusted access based on a managed identity").
param name string
param location string
param tags object
@description('false keeps the account keyless: every client uses Microsoft Entra ID.')
param allowSharedKeyAccess bool
param containers array
@description('true: close the public endpoint (see above); the private endpoints are made by private-network.bicep.')
param networkIsolation bool = false
@description('With networkIsolation: resource ids let through the firewall as resource instances (the FHIR services); empty: public network access disabled.')
param firewallExceptionResourceIds array = []

var withExceptions = !empty(firewallExceptionResourceIds)
// Without networkIsolation: every network allowed, as a new account's defaults are (and as before this setting).
var openAcls = {
  defaultAction: 'Allow'
  bypass: 'AzureServices'
}
var closedAcls = {
  defaultAction: 'Deny'
  bypass: withExceptions ? 'AzureServices' : 'None'
  ipRules: []
  virtualNetworkRules: []
  resourceAccessRules: map(firewallExceptionResourceIds, id => {
    tenantId: tenant().tenantId
    resourceId: id
  })
}

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: allowSharedKeyAccess
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: networkIsolation && !withExceptions ? 'Disabled' : 'Enabled'
    networkAcls: networkIsolation ? closedAcls : openAcls
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource blobContainers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [for container in containers: {
  parent: blobService
  name: container
  properties: {
    publicAccess: 'None'
  }
}]

output name string = account.name
output id string = account.id
output blobEndpoint string = account.properties.primaryEndpoints.blob
