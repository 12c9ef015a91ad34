// Azure Monitor alerts on what the migrator logs and on its Service Bus namespace, all to one action group (an email
// address and, optionally, a webhook). Four rules:
//   - migration-failed: a migration's status changed to failed (the engine's "migration status changed" line,
//     internal/migration/changes.go), one alert per migration and failure code;
//   - sync-lag: a sync round ended with the destination further behind the source than syncLagAlertMinutes (the
//     "sync round ended" line's lagSeconds: from the end of the round's window to when the round finished);
//   - poll-stopped: no PollJob sweep ran for 10 minutes (the timer stopped). Each sweep that ends well leaves the
//     invocation's log "PollJob done", which the Functions host writes to the function's log at Information
//     (handler/http.go answers Logs: [name + " done"]; azure-functions-host DefaultHttpWorkerService
//     ProcessLogsFromHttpResponse: LogInformation for each entry); one that fails leaves the handler's JSON line
//     "invocation failed" with function PollJob. The engine's sweep (internal/migration/poll.go) logs nothing of its
//     own when nothing changed, so these two are the only lines every sweep writes;
//   - dead-lettered: a message is in a queue's dead-letter queue (Service Bus metric DeadletteredMessages, "Count of
//     dead-lettered messages in a Queue/Topic", aggregations Average, Minimum, Maximum, dimension EntityName:
//     Microsoft Learn, "Supported metrics - Microsoft.ServiceBus/Namespaces").
// The log queries are the .kql files next to this one (traces of the Application Insights component, parsed as the
// workbook parses them); handler/infra_network_test.go parses them with Microsoft's KQL parser and holds their
// messages and fields to the lines the handler logs.
//
// Types: Microsoft.Insights/actionGroups@2023-01-01, scheduledQueryRules@2023-12-01 and metricAlerts@2018-03-01
// (bicep-types-az generated/monitor_1/microsoft.insights). The rules run without a managed identity: no role
// assignment is needed for them.
param location string
param tags object
param applicationInsightsId string
param serviceBusNamespaceId string
@description('Email address the alerts go to; empty: none.')
param alertEmail string = ''
@description('Webhook the alerts are posted to (common alert schema); empty: none.')
param alertWebhookUrl string = ''
@description('A sync round ending more than this many minutes behind raises the sync-lag alert.')
@minValue(1)
param syncLagAlertMinutes int = 30
@description('Appended to the rules\' names.')
param nameSuffix string

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: 'ag-fhir-migrator-${nameSuffix}'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'fhirmigrate'
    enabled: true
    emailReceivers: empty(alertEmail) ? [] : [
      {
        name: 'email'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
    webhookReceivers: empty(alertWebhookUrl) ? [] : [
      {
        name: 'webhook'
        serviceUri: alertWebhookUrl
        useCommonAlertSchema: true
      }
    ]
  }
}

// A log search alert with a measure column and dimensions fires per dimension combination, and (autoMitigate) stays
// fired, without notifying again, until an evaluation no longer meets the condition. A query without `by` returns one
// row even when nothing matched, its sum() being 0 (Microsoft Learn, "summarize operator": "If GroupExpression isn't
// provided, the output is a single (empty) row"; default value of sum() is 0): that is what lets poll-stopped see
// that nothing ran.
var logAlerts = [
  {
    name: 'migration-failed'
    displayName: 'FHIR migration failed'
    description: 'A migration\'s status changed to failed: the failure code and message are on the migration (GET /api/migrations/{id}) and on the dashboard\'s failures tile.'
    severity: 1
    query: loadTextContent('alerts/migration-failed.kql')
    measure: 'failures'
    aggregation: 'Total'
    operator: 'GreaterThan'
    threshold: 0
    dimensions: [
      'migration'
      'code'
    ]
    windowSize: 'PT15M'
    evaluationFrequency: 'PT5M'
  }
  {
    name: 'sync-lag'
    displayName: 'FHIR sync falling behind'
    description: 'A sync round ended more than ${syncLagAlertMinutes} minutes behind the source (lagSeconds of "sync round ended").'
    severity: 2
    query: loadTextContent('alerts/sync-lag.kql')
    measure: 'lagMinutes'
    aggregation: 'Maximum'
    operator: 'GreaterThan'
    threshold: syncLagAlertMinutes
    dimensions: [
      'migration'
    ]
    windowSize: 'PT30M'
    evaluationFrequency: 'PT5M'
  }
  {
    name: 'poll-stopped'
    displayName: 'FHIR migrator poll timer stopped'
    description: 'No PollJob sweep ran in the last 10 minutes: nothing advances migrations (check that the function app runs and its timer is enabled).'
    severity: 1
    query: loadTextContent('alerts/poll-sweeps.kql')
    measure: 'sweeps'
    aggregation: 'Total'
    operator: 'LessThan'
    threshold: 1
    dimensions: []
    windowSize: 'PT10M'
    evaluationFrequency: 'PT5M'
  }
]

resource logRules 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = [for rule in logAlerts: {
  name: '${rule.name}-${nameSuffix}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: rule.displayName
    description: rule.description
    severity: rule.severity
    enabled: true
    scopes: [
      applicationInsightsId
    ]
    evaluationFrequency: rule.evaluationFrequency
    windowSize: rule.windowSize
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: rule.query
          timeAggregation: rule.aggregation
          metricMeasureColumn: rule.measure
          operator: rule.operator
          threshold: rule.threshold
          dimensions: map(rule.dimensions, d => {
            name: d
            operator: 'Include'
            values: [
              '*'
            ]
          })
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}]

resource deadLettered 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: 'dead-lettered-${nameSuffix}'
  location: 'global'
  tags: tags
  properties: {
    description: 'A run-import or verify-counts message was dead-lettered after its deliveries ran out: the step it carried is re-sent by the sweep once stalled; look at the message in the queue\'s dead-letter queue.'
    severity: 2
    enabled: true
    scopes: [
      serviceBusNamespaceId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT5M'
    autoMitigate: true
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'DeadletteredMessages'
          metricNamespace: 'Microsoft.ServiceBus/namespaces'
          metricName: 'DeadletteredMessages'
          timeAggregation: 'Maximum'
          operator: 'GreaterThan'
          threshold: 0
          dimensions: [
            {
              name: 'EntityName'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
        }
      ]
    }
    actions: [
      {
        actionGroupId: actionGroup.id
      }
    ]
  }
}

output actionGroupId string = actionGroup.id
