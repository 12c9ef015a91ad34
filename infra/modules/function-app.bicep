// The Linux Function App running the Go custom handler (bin/handler, named by host.json), on Flex Consumption
// (default) or Elastic Premium, with the user-assigned identity only.
param name string
param planName string
param location string
param tags object
@allowed([
  'FlexConsumption'
  'ElasticPremium'
])
param hostingPlan string
param identityId string
param storageAccountName string
param deploymentContainer string
@description('The handler and host settings; plan-specific ones are added here.')
param appSettings object
param maximumInstanceCount int
@description('azd finds the app to deploy to by this tag (services.handler in azure.yaml).')
param serviceName string = 'handler'
@description('networkIsolation: the subnet the app is integrated with (delegated as private-network.bicep does); empty: no virtual network.')
param virtualNetworkSubnetId string = ''

var isFlex = hostingPlan == 'FlexConsumption'
var vnetIntegrated = !empty(virtualNetworkSubnetId)
// Regional virtual network integration, at the site's creation (Microsoft Learn, "Azure Functions networking
// options"; Microsoft.Web/sites@2024-04-01 virtualNetworkSubnetId, vnetRouteAllEnabled and vnetContentShareEnabled,
// bicep-types-az generated/web/microsoft.web/2024-04-01/types.json):
//   - Flex Consumption: the subnet alone. "For Flex Consumption all traffic is already routed through the virtual
//     network and Route All isn't needed", and vnetRouteAllEnabled / vnetContentShareEnabled are "not used for
//     networking in Flex Consumption" (Microsoft Learn, "App settings reference for Azure Functions", Flex
//     Consumption plan deprecations).
//   - Elastic Premium: Route All (vnetRouteAllEnabled: "all outbound traffic from the app is routed through the
//     virtual network"), and the content share reached through the network too (vnetContentShareEnabled, "required
//     ... when restricting your storage account to a virtual network"); and runtime scale monitoring, without which
//     triggers from a network-restricted Service Bus "don't cause your function app to scale beyond their prewarmed
//     instance count" ("Azure Functions networking options", Elastic Premium plan with virtual network triggers).
var vnetConfig = !vnetIntegrated ? {} : isFlex ? {
  virtualNetworkSubnetId: virtualNetworkSubnetId
} : {
  virtualNetworkSubnetId: virtualNetworkSubnetId
  vnetRouteAllEnabled: true
  vnetContentShareEnabled: true
}

resource hostStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: isFlex ? 'functionapp' : 'elastic'
  sku: isFlex ? {
    name: 'FC1'
    tier: 'FlexConsumption'
  } : {
    name: 'EP1'
    tier: 'ElasticPremium'
  }
  properties: union({
    reserved: true
  }, isFlex ? {} : {
    maximumElasticWorkerCount: 20
  })
}

// Flex takes runtime and deployment from functionAppConfig (FUNCTIONS_WORKER_RUNTIME is refused there).
var flexConfig = {
  functionAppConfig: {
    deployment: {
      storage: {
        type: 'blobContainer'
        value: '${hostStorage.properties.primaryEndpoints.blob}${deploymentContainer}'
        authentication: {
          type: 'UserAssignedIdentity'
          userAssignedIdentityResourceId: identityId
        }
      }
    }
    scaleAndConcurrency: {
      maximumInstanceCount: maximumInstanceCount
      instanceMemoryMB: 2048
    }
    runtime: {
      name: 'custom'
      version: '1.0'
    }
  }
}

// Elastic Premium keeps the app content on an Azure Files share, which only a key can mount. The share is created
// here and both settings are given at site creation: set only by a later config step, the platform does not create
// the share and the host cannot start.
var contentShareName = toLower(name)
var contentConnection = 'DefaultEndpointsProtocol=https;AccountName=${hostStorage.name};EndpointSuffix=${environment().suffixes.storage};AccountKey=${hostStorage.listKeys().keys[0].value}'
var premiumSettings = isFlex ? {} : {
  FUNCTIONS_EXTENSION_VERSION: '~4'
  FUNCTIONS_WORKER_RUNTIME: 'custom'
  WEBSITE_RUN_FROM_PACKAGE: '1'
  WEBSITE_CONTENTSHARE: contentShareName
  WEBSITE_CONTENTAZUREFILECONNECTIONSTRING: contentConnection
}

resource fileService 'Microsoft.Storage/storageAccounts/fileServices@2023-05-01' existing = if (!isFlex) {
  parent: hostStorage
  name: 'default'
}

resource contentShare 'Microsoft.Storage/storageAccounts/fileServices/shares@2023-05-01' = if (!isFlex) {
  parent: fileService
  name: contentShareName
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': serviceName
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  dependsOn: [
    contentShare
  ]
  properties: union({
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: union({
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      // Elastic Premium: what the platform needs to create the site on its content share, at creation.
      appSettings: isFlex ? [] : [
        {
          name: 'FUNCTIONS_EXTENSION_VERSION'
          value: '~4'
        }
        {
          name: 'FUNCTIONS_WORKER_RUNTIME'
          value: 'custom'
        }
        {
          name: 'WEBSITE_CONTENTAZUREFILECONNECTIONSTRING'
          value: contentConnection
        }
        {
          name: 'WEBSITE_CONTENTSHARE'
          value: contentShareName
        }
      ]
    }, vnetIntegrated && !isFlex ? {
      functionsRuntimeScaleMonitoringEnabled: true
    } : {})
  }, isFlex ? flexConfig : {}, vnetConfig)
}

// The whole set, the above included: this step replaces every app setting of the site, so a redeployment resets
// settings changed by hand since.
resource settings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: site
  name: 'appsettings'
  properties: union(appSettings, premiumSettings)
}

output name string = site.name
output url string = 'https://${site.properties.defaultHostName}'
