// Telemetry for the grader, and the alert that tells a human when a sweep did not do its job.
//
// Application Insights accepts only Microsoft Entra-authenticated telemetry (DisableLocalAuth), so
// the instrumentation key in the connection string is an address, not a credential: the host
// signs in as the app's managed identity (APPLICATIONINSIGHTS_AUTHENTICATION_STRING) and needs
// Monitoring Metrics Publisher, assigned below.
//
// The alert keys on what the app writes when a sweep fails or is incomplete: an ERROR log record
// from the "grading.sweep" logger whose message starts with "sweep failed" or "sweep incomplete"
// (it lands in AppTraces with SeverityLevel 3), plus any function invocation that ended in an
// exception (AppRequests with Success false). See docs/operations.md, "Alerts".

@description('Log Analytics workspace name (the grader\'s own, for its telemetry; not the Sentinel workspace).')
param logAnalyticsName string

@description('Application Insights component name.')
param applicationInsightsName string

@description('Azure region.')
param location string

@description('Tags for every resource.')
param tags object = {}

@description('Principal (object) id of the app\'s managed identity.')
param appPrincipalId string

@description('Days of telemetry kept.')
@minValue(30)
@maxValue(730)
param retentionInDays int = 30

@description('Optional: e-mail address told when a sweep fails or is incomplete. Empty: the alert fires without notifying anyone.')
param alertEmail string = ''

@description('How often the alert rule looks (ISO 8601 duration).')
param alertEvaluationFrequency string = 'PT15M'

@description('How far back each evaluation looks; longer than the frequency so a late-ingested log line is not missed (it may be reported twice).')
param alertWindowSize string = 'PT30M'

var roles = loadJsonContent('../builtin-ids.json').azureRoles

// AppTraces.SeverityLevel: 3 is Error, 4 Critical.
var sweepProblemQuery = '''
let sweepProblems = AppTraces
    | where SeverityLevel >= 3
    | where Message startswith "sweep failed" or Message startswith "sweep incomplete"
    | project TimeGenerated, Problem = Message;
let failedInvocations = AppRequests
    | where Success == false
    | project TimeGenerated, Problem = strcat("function ", Name, " failed with result ", ResultCode);
union sweepProblems, failedInvocations
'''

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    retentionInDays: retentionInDays
    sku: {
      name: 'PerGB2018'
    }
    features: {
      disableLocalAuth: true
    }
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: applicationInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    DisableLocalAuth: true
    IngestionMode: 'LogAnalytics'
  }
}

resource appMetricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, appPrincipalId, roles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: 'connector-grader: Entra-authenticated telemetry to Application Insights'
  }
}

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (!empty(alertEmail)) {
  name: '${applicationInsightsName}-sweeps'
  location: 'global'
  tags: tags
  properties: {
    enabled: true
    groupShortName: 'sweeps'
    emailReceivers: [
      {
        name: 'sweep-owner'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

resource sweepAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${applicationInsightsName}-sweep-failed-or-incomplete'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'connector-grader: sweep failed or incomplete'
    description: 'A sweep logged "sweep failed" or "sweep incomplete" at ERROR (logger grading.sweep), or a function invocation failed. Some hours were not graded, or not graded on complete data. See docs/operations.md, "Alerts".'
    severity: 2
    enabled: true
    scopes: [
      workspace.id
    ]
    evaluationFrequency: alertEvaluationFrequency
    windowSize: alertWindowSize
    autoMitigate: false
    criteria: {
      allOf: [
        {
          query: sweepProblemQuery
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: empty(alertEmail) ? [] : [
        actionGroup.id
      ]
    }
  }
}

output workspaceId string = workspace.id
output applicationInsightsId string = appInsights.id
output applicationInsightsName string = appInsights.name
output connectionString string = appInsights.properties.ConnectionString
