// The grader's secrets: a Key Vault holding the notification webhook URL, which is a credential
// (anyone with it can post to the SOC's channel).
//
// The URL reaches this module only through a @secure() parameter, so it is never stored in the
// deployment history; the function app gets a Key Vault reference app setting
// (@Microsoft.KeyVault(SecretUri=...)) that the platform resolves with the app's managed identity
// (keyVaultReferenceIdentity in modules/function-app.bicep). The vault uses Azure RBAC only; the
// identity holds Key Vault Secrets User on that one secret, nothing else.

@description('Key Vault name (3-24 letters, digits and hyphens).')
@minLength(3)
@maxLength(24)
param name string

@description('Azure region.')
param location string

@description('Tags for every resource.')
param tags object = {}

@description('Principal (object) id of the app\'s managed identity.')
param appPrincipalId string

@description('REMEDIATION_WEBHOOK_URL: the Teams or Slack incoming-webhook URL to keep as a secret.')
@secure()
param notificationWebhookUrl string

var roles = loadJsonContent('../builtin-ids.json').azureRoles

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 7
    publicNetworkAccess: 'Enabled'
  }
}

resource webhookSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'remediation-webhook-url'
  properties: {
    value: notificationWebhookUrl
    contentType: 'text/plain'
  }
}

resource appSecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(webhookSecret.id, appPrincipalId, roles.keyVaultSecretsUser)
  scope: webhookSecret
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: 'connector-grader: read the notification webhook URL through a Key Vault reference'
  }
}

output name string = vault.name
output webhookSecretUri string = webhookSecret.properties.secretUri
