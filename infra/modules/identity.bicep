// The one identity the grader runs as. User-assigned, so its permissions (Azure roles, Microsoft
// Graph app roles, the Exchange Online role group) are granted before the app first starts and
// survive a re-created function app.

@description('Name of the user-assigned managed identity.')
param name string

@description('Azure region.')
param location string

@description('Tags for every resource.')
param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output principalId string = identity.properties.principalId
output clientId string = identity.properties.clientId
