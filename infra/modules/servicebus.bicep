// Service Bus for the chained steps. Standard tier: duplicate detection and scheduled messages need it. With
// networkIsolation (premium), the Premium tier: private endpoints are supported in the premium tier only
// (Microsoft Learn, "Allow access to Azure Service Bus namespaces via private endpoints", Important points), and the
// namespace takes no public traffic at all (publicNetworkAccess Disabled: "accessible only through private
// endpoints", same article). The private endpoint itself is made by private-network.bicep.
param name string
param location string
param tags object
param principalId string
@description('true (networkIsolation): Premium, one messaging unit, public network access disabled.')
param premium bool = false

// A namespace's tier is not changed by a PUT: Microsoft's way from Standard to Premium is a new Premium namespace
// and a migration ("Migrate existing Azure Service Bus standard namespaces to the premium tier"), so main.bicep
// names the Premium namespace differently.
var standardSku = {
  name: 'Standard'
  tier: 'Standard'
}
var premiumSku = {
  name: 'Premium'
  tier: 'Premium'
  capacity: 1
}

// Queue names are the queueName of RunImport/ and VerifyCounts/ function.json (checked by handler/infra_test.go).
var queueNames = [
  'run-import'
  'verify-counts'
]

// 2024-01-01: the first stable version with the namespace's publicNetworkAccess (bicep-types-az,
// generated/servicebus/microsoft.servicebus/2024-01-01/types.json; 2021-11-01 has none).
resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' = {
  name: name
  location: location
  tags: tags
  sku: premium ? premiumSku : standardSku
  properties: {
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
    publicNetworkAccess: premium ? 'Disabled' : 'Enabled'
  }
}

resource queues 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = [for queueName in queueNames: {
  parent: namespace
  name: queueName
  properties: {
    // The longest step (an import kick-off or a manifest copy) takes minutes at most; the host renews the lock too.
    lockDuration: 'PT5M'
    maxDeliveryCount: 10
    // MessageIds derive from document transitions, so a re-sent transition is dropped here.
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: 'PT10M'
    deadLetteringOnMessageExpiration: true
    defaultMessageTimeToLive: 'P14D'
    requiresSession: false
  }
}]

resource dataSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(namespace.id, principalId, '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39')
  scope: namespace
  properties: {
    // Azure Service Bus Data Sender
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39')
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource dataReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(namespace.id, principalId, '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0')
  scope: namespace
  properties: {
    // Azure Service Bus Data Receiver
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0')
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// Azure Service Bus Data Owner on each queue (not the namespace) gives the Manage right the trigger's scale monitor
// needs to read a queue's length; with Listen alone it falls back to peeking (less accurate scaling, a warning in
// the logs) and target-based scaling is off.
resource queueOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (queueName, i) in queueNames: {
  name: guid(queues[i].id, principalId, '090c5cfd-751d-490a-894a-3ce6f1109419')
  scope: queues[i]
  properties: {
    // Azure Service Bus Data Owner
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '090c5cfd-751d-490a-894a-3ce6f1109419')
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}]

output id string = namespace.id
output fullyQualifiedNamespace string = '${namespace.name}.servicebus.windows.net'
output queueNames array = queueNames
