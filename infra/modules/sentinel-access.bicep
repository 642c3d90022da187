// Read access to the Microsoft Sentinel workspace for the Log Analytics telemetry source.
//
// Deployed at the workspace's own resource group (it may sit in another resource group or
// subscription than the grader), so the role assignment is scoped to that one workspace: the
// identity can query it and nothing else. The workspace id the query API needs (a GUID, the
// customerId) is read here too, so nobody has to copy it by hand.

@description('Name of the existing Log Analytics workspace that Microsoft Sentinel uses.')
param workspaceName string

@description('Principal (object) id of the app\'s managed identity.')
param appPrincipalId string

var roles = loadJsonContent('../builtin-ids.json').azureRoles

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: workspaceName
}

resource appLogAnalyticsReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(workspace.id, appPrincipalId, roles.logAnalyticsReader)
  scope: workspace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.logAnalyticsReader)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: 'connector-grader: run the hunting queries on the Sentinel workspace'
  }
}

output customerId string = workspace.properties.customerId
