// The Azure portal's view of the migrations: a shared Azure Monitor workbook on the Application Insights component,
// charting the handler's JSON log lines (status changes, jobs that ended, failures and their codes), per migration.
// Its content is workbook.json, whose queries handler/infra_deploy_test.go checks against the fields the engine logs.
param location string
param tags object
param applicationInsightsId string
param displayName string = 'FHIR migrations'

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  // A workbook's name must be a GUID; this one is stable per component, so a redeployment updates it in place.
  name: guid(applicationInsightsId, 'fhir-migrator-dashboard')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: displayName
    category: 'workbook'
    sourceId: applicationInsightsId
    serializedData: loadTextContent('workbook.json')
  }
}

output workbookId string = workbook.id
