// Application permissions of the app's managed identity, granted with the Microsoft Graph Bicep
// extension (app role assignments on the Microsoft Graph and Office 365 Exchange Online service
// principals). The one who deploys needs the right to grant them (Privileged Role Administrator,
// or AppRoleAssignment.ReadWrite.All with Application.Read.All); without it, deploy with
// grantGraphPermissions=false and run infra/grant-permissions.ps1 as someone who has it.
//
// Only what the enabled features use is granted (main.bicep decides from the settings), and each
// role is looked up by its name on the resource's service principal, so no permission GUID is
// copied into the template. Turning a feature off later does not remove its grant: run
// grant-permissions.ps1 -Prune for that (see docs/operations.md).

extension microsoftGraphV1

@description('Principal (object) id of the app\'s managed identity.')
param appPrincipalId string

@description('Microsoft Graph application permissions (app role values) to grant, e.g. ThreatHunting.Read.All.')
param graphAppRoles array

@description('Grant Exchange.ManageAsApp (Exchange Online admin API as the app; needed for the connector and transport-rule inventory and for any connector or rule action): only when an Exchange organisation is configured.')
param grantExchangeManageAsApp bool

var firstPartyApps = loadJsonContent('../builtin-ids.json').firstPartyApps

resource graphSp 'Microsoft.Graph/servicePrincipals@v1.0' existing = {
  appId: firstPartyApps.microsoftGraph
}

resource exchangeSp 'Microsoft.Graph/servicePrincipals@v1.0' existing = {
  appId: firstPartyApps.office365ExchangeOnline
}

// Application permission name -> app role id, as the service principals publish them.
var graphRoleIds = toObject(graphSp.appRoles, r => r.value, r => r.id)
var exchangeRoleIds = toObject(exchangeSp.appRoles, r => r.value, r => r.id)

resource graphRoleAssignments 'Microsoft.Graph/appRoleAssignedTo@v1.0' = [
  for roleValue in graphAppRoles: {
    principalId: appPrincipalId
    resourceId: graphSp.id
    appRoleId: graphRoleIds[roleValue]
  }
]

resource exchangeManageAsApp 'Microsoft.Graph/appRoleAssignedTo@v1.0' = if (grantExchangeManageAsApp) {
  principalId: appPrincipalId
  resourceId: exchangeSp.id
  appRoleId: exchangeRoleIds['Exchange.ManageAsApp']
}

output grantedGraphAppRoles array = graphAppRoles
