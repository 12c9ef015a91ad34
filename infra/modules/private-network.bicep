// networkIsolation: the migrator's private network. A virtual network (or the subnets of an existing one) with one
// subnet delegated to the function app's regional virtual network integration and one for private endpoints;
// private endpoints to the host and staging storage accounts, the Service Bus namespace and, when asked, the source
// Azure API for FHIR service and the destination AHDS workspace; and the private DNS zones that resolve them, linked
// to the network (or zones that exist already, e.g. in a hub, given by their resource group).
//
// Group ids and zone names: Microsoft Learn, "Azure Private Endpoint private DNS zone values"
// (https://learn.microsoft.com/azure/private-link/private-endpoint-dns) and, for Azure API for FHIR, "Configure private
// link" (https://learn.microsoft.com/azure/healthcare-apis/azure-api-for-fhir/configure-private-link: target
// sub-resource fhir, zone privatelink.azurehealthcareapis.com). handler/infra_network_test.go holds them to that list.
// Resource types and properties: bicep-types-az generated/network/microsoft.network/2024-05-01 and
// generated/privatedns/microsoft.network/2024-06-01.
param location string
param tags object
@description('FlexConsumption or ElasticPremium: which service the app subnet is delegated to.')
@allowed([
  'FlexConsumption'
  'ElasticPremium'
])
param hostingPlan string
@description('Name of the virtual network created here (and part of the DNS links\' names).')
param vnetName string
param vnetAddressPrefix string
param appSubnetPrefix string
param privateEndpointSubnetPrefix string
@description('An existing subnet for the app, already delegated; empty: create the virtual network.')
param existingAppSubnetId string = ''
@description('An existing subnet for the private endpoints, in the same virtual network as existingAppSubnetId.')
param existingPrivateEndpointSubnetId string = ''
@description('Resource id of a resource group holding the privatelink zones, already linked to the network; empty: create and link them here.')
param privateDnsZonesResourceGroupId string = ''
param hostStorageId string
param stagingStorageId string
param serviceBusId string
@description('Resource id of the source Azure API for FHIR service; empty: no private endpoint to it.')
param sourceFhirServiceId string = ''
@description('Resource id of the destination AHDS workspace; empty: no private endpoint to it.')
param destinationWorkspaceId string = ''
@description('Appended to the private endpoints\' names.')
param nameSuffix string

var isFlex = hostingPlan == 'FlexConsumption'
var createVnet = empty(existingAppSubnetId)
var createZones = empty(privateDnsZonesResourceGroupId)

// "The subnet delegation required when running in a Flex Consumption plan is Microsoft.App/environments. This differs
// from the Elastic Premium and Dedicated (App Service) plans" (Microsoft Learn, "Azure Functions networking options",
// Regional virtual network integration), which delegate to Microsoft.Web/serverFarms ("This subnet must have a
// delegation to Microsoft.Web/serverFarms", Microsoft.Web swift virtual network connection reference). Subnet names
// carry no underscore: "The Flex Consumption plan currently doesn't support subnets with names that contain
// underscore (_) characters" (same article).
var appSubnetDelegation = isFlex ? 'Microsoft.App/environments' : 'Microsoft.Web/serverFarms'
var appSubnetName = 'snet-app'
var privateEndpointSubnetName = 'snet-pe'

resource vnet 'Microsoft.Network/virtualNetworks@2024-05-01' = if (createVnet) {
  name: vnetName
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        vnetAddressPrefix
      ]
    }
    subnets: [
      {
        name: appSubnetName
        properties: {
          addressPrefix: appSubnetPrefix
          delegations: [
            {
              name: 'function-app'
              properties: {
                serviceName: appSubnetDelegation
              }
            }
          ]
        }
      }
      {
        name: privateEndpointSubnetName
        properties: {
          addressPrefix: privateEndpointSubnetPrefix
          privateEndpointNetworkPolicies: 'Disabled'
        }
      }
    ]
  }
}

var appSubnetId = createVnet ? resourceId('Microsoft.Network/virtualNetworks/subnets', vnetName, appSubnetName) : existingAppSubnetId
var privateEndpointSubnetId = createVnet ? resourceId('Microsoft.Network/virtualNetworks/subnets', vnetName, privateEndpointSubnetName) : existingPrivateEndpointSubnetId
var vnetId = createVnet ? resourceId('Microsoft.Network/virtualNetworks', vnetName) : split(existingAppSubnetId, '/subnets/')[0]

// Every private endpoint: what it reaches, the sub-resource (group id) and the zones its DNS records go in.
//   - host storage: blob (host leases and keys, the Flex deployment package, the migration documents) and table (the
//     host's diagnostic events; host-storage-access.bicep), and on Elastic Premium file (the content share). No queue
//     endpoint: no queue trigger, and the identity holds no queue role. Microsoft's Flex Consumption sample behind a
//     virtual network runs its host account with public access disabled and a blob endpoint only
//     (github.com/Azure-Samples/functions-e2e-sb-vnet, infra/main.bicep).
//   - staging storage: blob (manifests, NDJSON, cleanup).
//   - Service Bus: namespace.
//   - source Azure API for FHIR: fhir. Destination AHDS workspace: healthcareworkspace, whose endpoint also carries
//     the records of the workspace's FHIR services (zone privatelink.fhir.azurehealthcareapis.com): "Private link is
//     configured at the workspace level, and is automatically configured for all FHIR and DICOM services within the
//     workspace" (Microsoft Learn, "Configure Private Link for Azure Health Data Services"). The DICOM zone is left
//     out: the migrator calls no DICOM service.
var storageSuffix = environment().suffixes.storage
var endpoints = concat([
  {
    name: 'host-blob'
    target: hostStorageId
    groupId: 'blob'
    zones: [
      'privatelink.blob.${storageSuffix}'
    ]
  }
  {
    name: 'host-table'
    target: hostStorageId
    groupId: 'table'
    zones: [
      'privatelink.table.${storageSuffix}'
    ]
  }
  {
    name: 'staging-blob'
    target: stagingStorageId
    groupId: 'blob'
    zones: [
      'privatelink.blob.${storageSuffix}'
    ]
  }
  {
    name: 'servicebus'
    target: serviceBusId
    groupId: 'namespace'
    zones: [
      'privatelink.servicebus.windows.net'
    ]
  }
], isFlex ? [] : [
  {
    name: 'host-file'
    target: hostStorageId
    groupId: 'file'
    zones: [
      'privatelink.file.${storageSuffix}'
    ]
  }
], empty(sourceFhirServiceId) ? [] : [
  {
    name: 'source-fhir'
    target: sourceFhirServiceId
    groupId: 'fhir'
    zones: [
      'privatelink.azurehealthcareapis.com'
    ]
  }
], empty(destinationWorkspaceId) ? [] : [
  {
    name: 'destination-workspace'
    target: destinationWorkspaceId
    groupId: 'healthcareworkspace'
    zones: [
      'privatelink.workspace.azurehealthcareapis.com'
      'privatelink.fhir.azurehealthcareapis.com'
    ]
  }
])

// Only the zones of the endpoints made here: a zone linked to the network answers for every name under it, so a zone
// without the records of a service that has private endpoints elsewhere would hide that service (Microsoft Learn,
// "Azure Private Endpoint DNS configuration": networks "already using the private DNS zone for a given type, can
// only connect to public resources if they don't have any private endpoint connections").
var zoneNames = union(flatten(map(endpoints, e => e.zones)), [])
var zoneIds = toObject(zoneNames, z => z, z => createZones ? resourceId('Microsoft.Network/privateDnsZones', z) : '${privateDnsZonesResourceGroupId}/providers/Microsoft.Network/privateDnsZones/${z}')

resource zones 'Microsoft.Network/privateDnsZones@2024-06-01' = [for zone in zoneNames: if (createZones) {
  name: zone
  location: 'global'
  tags: tags
}]

resource zoneLinks 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2024-06-01' = [for (zone, i) in zoneNames: if (createZones) {
  parent: zones[i]
  name: 'link-${uniqueString(vnetId)}'
  location: 'global'
  tags: tags
  dependsOn: [
    vnet
  ]
  properties: {
    registrationEnabled: false
    virtualNetwork: {
      id: vnetId
    }
  }
}]

// privateLinkServiceConnections: approved on creation when the deployer may approve connections on the target
// (Owner or Contributor there); "When an approved private endpoint is created for Azure API for FHIR [or Azure
// Health Data Services], public traffic to it is automatically disabled" (Microsoft Learn, "Configure private link"
// for each), which is why the FHIR endpoints are asked for separately.
resource privateEndpoints 'Microsoft.Network/privateEndpoints@2024-05-01' = [for e in endpoints: {
  name: 'pe-${e.name}-${nameSuffix}'
  location: location
  tags: tags
  dependsOn: [
    vnet
  ]
  properties: {
    subnet: {
      id: privateEndpointSubnetId
    }
    privateLinkServiceConnections: [
      {
        name: e.name
        properties: {
          privateLinkServiceId: e.target
          groupIds: [
            e.groupId
          ]
        }
      }
    ]
  }
}]

resource zoneGroups 'Microsoft.Network/privateEndpoints/privateDnsZoneGroups@2024-05-01' = [for (e, i) in endpoints: {
  parent: privateEndpoints[i]
  name: 'default'
  dependsOn: [
    zones
  ]
  properties: {
    privateDnsZoneConfigs: map(e.zones, z => {
      name: replace(z, '.', '-')
      properties: {
        privateDnsZoneId: zoneIds[z]
      }
    })
  }
}]

output appSubnetId string = appSubnetId
output privateEndpointSubnetId string = privateEndpointSubnetId
output vnetId string = vnetId
output privateDnsZoneIds object = zoneIds
