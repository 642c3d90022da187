// connector-grader in one subscription: `azd up` provisions this and deploys the app.
//
// What it creates (resource group rg-<environment>):
//   - a user-assigned managed identity the app runs as (modules/identity.bicep)
//   - a storage account without shared keys, with the grader's tables, queues and sweep-report
//     container (modules/storage.bicep)
//   - a Log Analytics workspace and Application Insights with Entra authentication, and an alert
//     rule on failed or incomplete sweeps (modules/monitoring.bicep)
//   - a Linux Python 3.11 function app on the Flex Consumption plan (modules/function-app.bicep)
//   - Log Analytics Reader on the Sentinel workspace, wherever it is (modules/sentinel-access.bicep)
//   - with grantGraphPermissions, the Microsoft Graph and Exchange.ManageAsApp app roles the
//     enabled features need (modules/graph-permissions.bicep); by default, and always for the
//     Exchange Online role group, infra/grant-permissions.ps1 grants them (connector cmdlets, and
//     Get-TransportRule, Disable-/Enable-TransportRule for the rules linked to a connector)
//   - with a notification webhook, a Key Vault holding its URL (modules/key-vault.bicep)
//
// Every setting the code reads (grading/settings.py) is a parameter here with a safe default:
// remediation starts in report mode and changes nothing in the tenant. tests/test_infra.py holds
// the template and the code to that. docs/operations.md walks through the deployment.

targetScope = 'subscription'

// ---------------------------------------------------------------------------------------------
// Deployment

@minLength(1)
@maxLength(64)
@description('azd environment name; names the resource group and seeds the resource names.')
param environmentName string

@minLength(1)
@description('Azure region for everything (one that offers Flex Consumption).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Resource group to create or reuse; empty: rg-<environmentName>.')
param resourceGroupName string = ''

@description('Resource id of the Microsoft Sentinel Log Analytics workspace (/subscriptions/.../workspaces/<name>), possibly in another resource group or subscription. Required for the loganalytics source; empty grants nothing.')
param sentinelWorkspaceResourceId string = ''

@description('Grant the Microsoft Graph and Exchange.ManageAsApp app roles from this template. Off by default: it needs Privileged Role Administrator (an Owner of the subscription alone sees azd up fail), and a first run can fail while the new identity replicates in Entra ID (run azd provision again). Off: run infra/grant-permissions.ps1 as someone who may grant app roles.')
param grantGraphPermissions bool = false

@description('Optional: object id of the analysts\' group (or a user) that uses the CLI against the deployed storage (verdicts, suppress, approve, deny).')
param operatorPrincipalId string = ''

@description('Kind of principal operatorPrincipalId names.')
@allowed([
  'User'
  'Group'
])
param operatorPrincipalType string = 'Group'

@description('Optional: e-mail address told when a sweep fails or is incomplete.')
param alertEmail string = ''

@description('Memory of one function instance, in MB.')
@allowed([
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Upper bound on function instances per function group. Flex Consumption accepts 1 to 1000 (Azure Functions "Event-driven scaling", limit scale-out); the grader needs few.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

// ---------------------------------------------------------------------------------------------
// Telemetry source (TelemetrySettings)

@description('GRADER_SOURCE: defender (Defender advanced hunting through Microsoft Graph) or loganalytics (the Sentinel workspace). The local source reads files and has no place in Azure.')
@allowed([
  'defender'
  'loganalytics'
])
param graderSource string = 'defender'

@description('GRADER_QUERY_TIMEOUT_SECONDS: server-side timeout of one hunting query.')
@minValue(1)
@maxValue(600)
param queryTimeoutSeconds int = 180

@description('GRADER_QUERY_MAX_ATTEMPTS: sends of one query when the service throttles or fails.')
@minValue(1)
@maxValue(10)
param queryMaxAttempts int = 4

@description('GRADER_QUERY_RETRY_BUDGET_SECONDS: longest one query may take with its retries.')
@minValue(1)
param queryRetryBudgetSeconds int = 300

@description('LOG_ANALYTICS_ENDPOINT: Log Analytics query endpoint; change only for a sovereign cloud.')
param logAnalyticsEndpoint string = 'https://api.loganalytics.io'

@description('GRAPH_ENDPOINT: Microsoft Graph endpoint; change only for a national cloud.')
param graphEndpoint string = 'https://graph.microsoft.com'

// ---------------------------------------------------------------------------------------------
// Windows (WindowSettings)

@description('GRADER_INGESTION_DELAY: how far behind the clock telemetry is complete.')
param ingestionDelay string = '30m'

@description('GRADER_FIRST_WINDOW: what the first sweep grades.')
param firstWindow string = '24h'

@description('GRADER_CHANGE_LOOKBACK: how far back connector changes and admin logons are examined.')
param changeLookback string = '7d'

@description('GRADER_BASELINE_LOOKBACK: history used to learn what is normal.')
param baselineLookback string = '14d'

@description('GRADER_MAX_WINDOW: longest window one sweep grades when catching up.')
param maxWindow string = '3d'

@description('GRADER_EVALUATION_SPAN: the least traffic each verdict weighs (an hourly sweep still judges 24 h).')
param evaluationSpan string = '24h'

@description('GRADER_SWEEP_DEADLINE: how long one sweep may spend sending queries before it stops and is recorded incomplete; below host.json functionTimeout (30 minutes) minus one query\'s retry budget.')
param sweepDeadline string = '20m'

// ---------------------------------------------------------------------------------------------
// Tenant facts (TenantSettings)

@description('GRADER_TENANT_DOMAINS: the tenant\'s own mail domains, comma-separated (added to those inferred).')
param tenantDomains string = ''

@description('GRADER_OWN_OBJECT_IDS: other identities whose connector changes are the grader\'s own (the app\'s managed identity is always included).')
param ownObjectIds string = ''

@description('GRADER_POLICY_FILE: JSON file overriding the grading policy, a path inside the deployed app (e.g. /home/site/wwwroot/policy.json); empty: built-in defaults.')
param policyFile string = ''

// ---------------------------------------------------------------------------------------------
// Remediation (RemediationSettings)

@description('REMEDIATION_MODE: report records and notifies what would be done and changes nothing; enforce acts.')
@allowed([
  'report'
  'enforce'
])
param remediationMode string = 'report'

@description('REMEDIATION_PROTECTED_CONNECTORS: connectors never touched (comma-separated, or a JSON array).')
param protectedConnectors string = ''

@description('REMEDIATION_MAX_DISABLES_PER_HOUR: connectors disabled or removed per hour at most; the rest wait for approval.')
@minValue(0)
param maxDisablesPerHour int = 3

@description('REMEDIATION_ALLOW_REMOVE: opt-in, remove an attacker-created connector instead of disabling it.')
param allowRemove bool = false

@description('REMEDIATION_ALLOW_REVERT: opt-in, restore a changed connector\'s previous settings.')
param allowRevert bool = false

@description('REMEDIATION_REVOKE_SESSIONS: revoke a compromised admin\'s sign-in sessions (enforce mode).')
param revokeSessions bool = true

@description('REMEDIATION_DISABLE_ACCOUNT: opt-in (tier 0), disable a compromised admin\'s account.')
param disableAccount bool = false

@description('REMEDIATION_REQUIRE_PASSWORD_CHANGE: opt-in (tier 0), force a compromised admin to change password.')
param requirePasswordChange bool = false

@description('REMEDIATION_ALERT_WRITEBACK: opt-in, write the verdict back to the linked Defender alerts.')
param alertWriteback bool = false

@description('REMEDIATION_RESWEEP: sweep all connectors again right after a true positive (read-only).')
param resweep bool = true

@description('SWEEP_REQUEST_QUEUE: queue of requests for an immediate sweep of all connectors (after a true positive).')
param sweepRequestQueue string = 'grader-sweep-requests'

@description('REMEDIATION_WEBHOOK_URL: Teams or Slack incoming-webhook URL. It is a credential: the template keeps it in a Key Vault and sets a Key Vault reference as the app setting; a value that is already a reference @Microsoft.KeyVault(SecretUri=...) to your own vault is used as it is. Never commit it.')
@secure()
param notificationWebhookUrl string = ''

@description('EXCHANGE_TENANT_ID: tenant whose connectors are remediated; empty: this deployment\'s tenant.')
param exchangeTenantId string = ''

@description('EXCHANGE_ORGANIZATION_DOMAIN: the tenant\'s initial domain (contoso.onmicrosoft.com); required for enforce (the deployment fails without it) and for the connector inventory. Empty: no Exchange.ManageAsApp grant.')
param exchangeOrganizationDomain string = ''

@description('EXCHANGE_ENDPOINT: Exchange Online endpoint; change only for a national cloud.')
param exchangeEndpoint string = 'https://outlook.office365.com'

// ---------------------------------------------------------------------------------------------
// Storage and schedule (StorageSettings)

@description('GRADER_TABLE_PREFIX: prefix of the grader\'s table names (letters and digits).')
param graderTablePrefix string = 'grader'

@description('REMEDIATION_QUEUE: queue of true-positive incidents (lowercase letters, digits, hyphens).')
param remediationQueue string = 'grader-remediation'

@description('GRADER_REPORT_CONTAINER: blob container of the sweep reports, one HTML page per sweep (lowercase letters, digits, hyphens).')
@minLength(3)
@maxLength(63)
param reportContainer string = 'sweep-reports'

@description('SWEEP_SCHEDULE: NCRONTAB schedule of the sweep timer, in UTC (Flex Consumption has no time zone setting).')
param sweepSchedule string = '0 5 * * * *'

@description('GRADER_RETENTION_DAYS: verdicts, sweeps and incidents older than this are removed daily.')
@minValue(1)
param retentionDays int = 90

@description('GRADER_INCOMPLETE_RETRIES: re-grades of an incomplete window before moving on.')
@minValue(0)
param incompleteRetries int = 3

// ---------------------------------------------------------------------------------------------
// Many tenants (TenancySettings): unused until a tenant is registered (python -m grading tenants add)

@description('TENANT_SWEEP_QUEUE: queue of tenant sweeps, one message per due registered tenant each hour.')
param tenantSweepQueue string = 'grader-tenant-sweeps'

@description('TENANT_REMEDIATION_QUEUE: queue of the registered tenants\' true-positive incidents.')
param tenantRemediationQueue string = 'grader-tenant-remediation'

@description('TENANT_APP_CLIENT_ID: client id of the multi-tenant app whose federated credential is the app\'s managed identity (docs/operations.md, onboarding a customer tenant); empty: none.')
param tenantAppClientId string = ''

@description('TENANT_MAX_CONCURRENT_SWEEPS: tenant sweeps running at once across every instance.')
@minValue(1)
param tenantMaxConcurrentSweeps int = 8

// ---------------------------------------------------------------------------------------------
// Names

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var functionAppName = 'func-grader-${resourceToken}'
var deploymentContainerName = 'app-package-${take(resourceToken, 7)}'

// The tables are <GRADER_TABLE_PREFIX><role>: the grader's (grading/storage/tables.py) and the
// remediation's (grading/remediation/tables.py). The host adds <queue>-poison for a queue trigger
// itself; created here too so an operator can watch them from the first day.
var tableRoles = [
  'Connectors'
  'Verdicts'
  'Sweeps'
  'Incidents'
  'Scheduler'
  'Aggregates'
  'RemediationAudit'
  'RemediationActions'
  'RemediationPending'
  'ConnectorInventory'
]
var tableNames = map(tableRoles, role => '${graderTablePrefix}${role}')
var queueNames = [
  remediationQueue
  '${remediationQueue}-poison'
  sweepRequestQueue
  '${sweepRequestQueue}-poison'
  tenantSweepQueue
  '${tenantSweepQueue}-poison'
  tenantRemediationQueue
  '${tenantRemediationQueue}-poison'
]

// The Sentinel workspace's subscription, resource group and name, from its resource id. A dummy
// id keeps the split well-formed when no workspace is given (the module is then not deployed).
var sentinelIdParts = split(empty(sentinelWorkspaceResourceId) ? '/subscriptions/${subscription().subscriptionId}/resourceGroups/none/providers/Microsoft.OperationalInsights/workspaces/none' : sentinelWorkspaceResourceId, '/')

// Microsoft Graph application permissions: only what the enabled features use. Report mode needs
// none beyond the telemetry source's; each remediation action adds its own in enforce mode.
var enforce = remediationMode == 'enforce'
var graphAppRoles = concat(
  graderSource == 'defender' ? ['ThreatHunting.Read.All'] : [],
  enforce && revokeSessions ? ['User.RevokeSessions.All'] : [],
  enforce && alertWriteback ? ['SecurityAlert.ReadWrite.All'] : [],
  enforce && (disableAccount || requirePasswordChange) ? ['User.Read.All'] : [],
  enforce && disableAccount ? ['User.EnableDisableAccount.All'] : [],
  enforce && requirePasswordChange ? ['User-PasswordProfile.ReadWrite.All'] : []
)

// Exchange Online is called only with an organisation to route to: without it, no Exchange.ManageAsApp.
var exchangeConfigured = !empty(exchangeOrganizationDomain)

// The notification webhook URL is a credential: it goes only to the Key Vault module (a @secure()
// parameter there too), and the app setting is a Key Vault reference the app resolves with its
// identity. A value that is already a Key Vault reference is used as it is.
var webhookIsReference = startsWith(notificationWebhookUrl, '@Microsoft.KeyVault(')
var webhookInVault = !empty(notificationWebhookUrl) && !webhookIsReference

// ---------------------------------------------------------------------------------------------
// Resources

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: !empty(resourceGroupName) ? resourceGroupName : 'rg-${environmentName}'
  location: location
  tags: tags
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-grader-${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: 'stgrader${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
    blobContainerNames: [
      reportContainer
    ]
    tableNames: tableNames
    queueNames: queueNames
    appPrincipalId: identity.outputs.principalId
    operatorPrincipalId: operatorPrincipalId
    operatorPrincipalType: operatorPrincipalType
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: 'log-grader-${resourceToken}'
    applicationInsightsName: 'appi-grader-${resourceToken}'
    location: location
    tags: tags
    appPrincipalId: identity.outputs.principalId
    alertEmail: alertEmail
  }
}

module sentinelAccess 'modules/sentinel-access.bicep' = if (!empty(sentinelWorkspaceResourceId)) {
  name: 'sentinel-access-${resourceToken}'
  scope: resourceGroup(sentinelIdParts[2], sentinelIdParts[4])
  params: {
    workspaceName: last(sentinelIdParts)
    appPrincipalId: identity.outputs.principalId
  }
}

module graphPermissions 'modules/graph-permissions.bicep' = if (grantGraphPermissions) {
  name: 'graph-permissions'
  scope: rg
  params: {
    appPrincipalId: identity.outputs.principalId
    graphAppRoles: graphAppRoles
    grantExchangeManageAsApp: exchangeConfigured
  }
}

module keyVault 'modules/key-vault.bicep' = if (webhookInVault) {
  name: 'key-vault'
  scope: rg
  params: {
    name: 'kv-grader-${resourceToken}'
    location: location
    tags: tags
    appPrincipalId: identity.outputs.principalId
    notificationWebhookUrl: notificationWebhookUrl
  }
}

// Every setting grading/settings.py reads, except the two that only make sense on a laptop:
// AzureWebJobsStorage (a connection string; here the identity-based AzureWebJobsStorage__*
// settings of modules/function-app.bicep take its place) and GRADER_DATA_DIR (the local source).
var appSettings = {
  GRADER_SOURCE: graderSource
  LOG_ANALYTICS_WORKSPACE_ID: empty(sentinelWorkspaceResourceId) ? '' : (sentinelAccess!.outputs.customerId)
  GRADER_QUERY_TIMEOUT_SECONDS: string(queryTimeoutSeconds)
  LOG_ANALYTICS_ENDPOINT: logAnalyticsEndpoint
  GRAPH_ENDPOINT: graphEndpoint
  GRADER_QUERY_MAX_ATTEMPTS: string(queryMaxAttempts)
  GRADER_QUERY_RETRY_BUDGET_SECONDS: string(queryRetryBudgetSeconds)
  GRADER_INGESTION_DELAY: ingestionDelay
  GRADER_FIRST_WINDOW: firstWindow
  GRADER_CHANGE_LOOKBACK: changeLookback
  GRADER_BASELINE_LOOKBACK: baselineLookback
  GRADER_MAX_WINDOW: maxWindow
  GRADER_EVALUATION_SPAN: evaluationSpan
  GRADER_SWEEP_DEADLINE: sweepDeadline
  GRADER_TENANT_DOMAINS: tenantDomains
  GRADER_POLICY_FILE: policyFile
  GRADER_OWN_OBJECT_IDS: empty(ownObjectIds) ? identity.outputs.principalId : '${identity.outputs.principalId},${ownObjectIds}'
  REMEDIATION_MODE: remediationMode
  REMEDIATION_PROTECTED_CONNECTORS: protectedConnectors
  REMEDIATION_MAX_DISABLES_PER_HOUR: string(maxDisablesPerHour)
  REMEDIATION_ALLOW_REMOVE: allowRemove ? 'true' : 'false'
  REMEDIATION_ALLOW_REVERT: allowRevert ? 'true' : 'false'
  REMEDIATION_REVOKE_SESSIONS: revokeSessions ? 'true' : 'false'
  REMEDIATION_DISABLE_ACCOUNT: disableAccount ? 'true' : 'false'
  REMEDIATION_REQUIRE_PASSWORD_CHANGE: requirePasswordChange ? 'true' : 'false'
  REMEDIATION_ALERT_WRITEBACK: alertWriteback ? 'true' : 'false'
  REMEDIATION_RESWEEP: resweep ? 'true' : 'false'
  SWEEP_REQUEST_QUEUE: sweepRequestQueue
  REMEDIATION_WEBHOOK_URL: webhookInVault ? '@Microsoft.KeyVault(SecretUri=${keyVault!.outputs.webhookSecretUri})' : (webhookIsReference ? notificationWebhookUrl : '')
  EXCHANGE_TENANT_ID: empty(exchangeTenantId) ? tenant().tenantId : exchangeTenantId
  // Enforce mode without an Exchange organisation would deploy and then poison every message: refuse it here.
  EXCHANGE_ORGANIZATION_DOMAIN: enforce && !exchangeConfigured ? fail('EXCHANGE_ORGANIZATION_DOMAIN is required when REMEDIATION_MODE=enforce: azd env set EXCHANGE_ORGANIZATION_DOMAIN <tenant>.onmicrosoft.com, then azd provision') : exchangeOrganizationDomain
  EXCHANGE_ENDPOINT: exchangeEndpoint
  GRADER_TABLE_PREFIX: graderTablePrefix
  REMEDIATION_QUEUE: remediationQueue
  GRADER_REPORT_CONTAINER: reportContainer
  SWEEP_SCHEDULE: sweepSchedule
  GRADER_RETENTION_DAYS: string(retentionDays)
  GRADER_INCOMPLETE_RETRIES: string(incompleteRetries)
  TENANT_SWEEP_QUEUE: tenantSweepQueue
  TENANT_REMEDIATION_QUEUE: tenantRemediationQueue
  TENANT_APP_CLIENT_ID: tenantAppClientId
  TENANT_MAX_CONCURRENT_SWEEPS: string(tenantMaxConcurrentSweeps)
}

module functionApp 'modules/function-app.bicep' = {
  name: 'function-app'
  scope: rg
  params: {
    name: functionAppName
    planName: 'plan-grader-${resourceToken}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerName: deploymentContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    appSettings: appSettings
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
  }
}

// ---------------------------------------------------------------------------------------------
// Outputs: azd stores them in .azure/<env>/.env. The storage ones let an analyst point the CLI at
// the deployed tables with their own sign-in (see docs/operations.md, "Reading the verdicts").

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output GRADER_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output GRADER_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output GRADER_GRAPH_APP_ROLES array = graphAppRoles
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AzureWebJobsStorage__tableServiceUri string = storage.outputs.tableEndpoint
output AzureWebJobsStorage__queueServiceUri string = storage.outputs.queueEndpoint
output AzureWebJobsStorage__blobServiceUri string = storage.outputs.blobEndpoint
output GRADER_TABLE_PREFIX string = graderTablePrefix
output REMEDIATION_QUEUE string = remediationQueue
output GRADER_REPORT_CONTAINER string = reportContainer
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
