<#
.SYNOPSIS
    Grants connector-grader's managed identity what it needs outside Azure RBAC: Microsoft Graph
    application permissions, the Exchange.ManageAsApp app role, and an Exchange Online role group
    limited to the connector cmdlets. Idempotent: run it again at any time; it changes only what
    differs and says what it did.

.DESCRIPTION
    Bicep grants the Azure roles (storage, Application Insights, the Sentinel workspace) and, with
    grantGraphPermissions=true, the Graph and Exchange.ManageAsApp app roles. Exchange Online's own
    permissions (RBAC inside Exchange) cannot be granted by any Azure template: this script does
    that part, and the Graph part too when the one who ran `azd up` could not grant app roles.

    Microsoft Graph application permissions (which action each serves, and what breaks without it):
      ThreatHunting.Read.All               Defender source (GRADER_SOURCE=defender): runHuntingQuery.
                                           Without it every sweep fails with 403: nothing is graded.
      User.RevokeSessions.All              enforce + REMEDIATION_REVOKE_SESSIONS: revokeSignInSessions
                                           of a compromised admin. Without it the action is audited
                                           as failed; the attacker's sessions stay valid.
      SecurityAlert.ReadWrite.All          enforce + REMEDIATION_ALERT_WRITEBACK: classification and
                                           comment on the linked Defender alerts. Without it the
                                           alerts stay ungraded in Defender.
      User.Read.All                        tier 0 (with the two below): read the admin account first.
      User.EnableDisableAccount.All        tier 0, enforce + REMEDIATION_DISABLE_ACCOUNT: disable a
                                           compromised admin. Optional; also needs an Entra role on
                                           the identity able to act on that admin (see docs).
      User-PasswordProfile.ReadWrite.All   tier 0, enforce + REMEDIATION_REQUIRE_PASSWORD_CHANGE: force
                                           a password change. Optional; same Entra role caveat.

    Exchange Online (Office 365 Exchange Online app role + Exchange RBAC):
      Exchange.ManageAsApp                 the identity may call the Exchange admin API as itself.
      role group "<RoleGroupName>"         custom roles holding only the connector cmdlets:
          Inventory           Get-InboundConnector, Get-OutboundConnector (report mode: read only)
          Enforce             + Set-InboundConnector, Set-OutboundConnector (disable, revert)
          EnforceWithRemove   + Remove-InboundConnector, Remove-OutboundConnector
        and the transport-rule cmdlets:
          Inventory           Get-TransportRule (rules linked to a connector)
          Enforce             + Disable-TransportRule, Enable-TransportRule (disable a linked rule; reenable)
      The custom roles are children of the built-in "View-Only Configuration" (Get-*), "Remote
      and Accepted Domains" (Set-*, Remove-* of connectors) and "Transport Rules" (Disable-/Enable-
      TransportRule) roles with every other cmdlet removed, so the identity cannot touch accepted
      domains, remote domains or mailboxes, nor create, change or remove a transport rule. It is never
      given the Exchange Administrator directory role.

    Needs: PowerShell 7, the Microsoft.Graph.Applications and ExchangeOnlineManagement (3.x)
    modules, and an admin who may grant app roles (Privileged Role Administrator) and manage
    Exchange role groups (Organization Management).

.PARAMETER PrincipalId
    Object id of the managed identity's service principal (azd output GRADER_IDENTITY_PRINCIPAL_ID).
.PARAMETER ClientId
    Client (application) id of the managed identity (azd output GRADER_IDENTITY_CLIENT_ID).
.PARAMETER GraphPermissions
    Graph application permissions to grant (azd output GRADER_GRAPH_APP_ROLES). Only the names
    listed above are accepted.
.PARAMETER ExchangeAccess
    None, Inventory, Enforce or EnforceWithRemove (see above). Default: None when the azd
    environment has no EXCHANGE_ORGANIZATION_DOMAIN (nothing calls Exchange Online, so neither
    Exchange.ManageAsApp nor the role group is granted); else from REMEDIATION_MODE and
    REMEDIATION_ALLOW_REMOVE, Inventory in report mode.
.PARAMETER SkipGraph
    Leave the Graph and Exchange.ManageAsApp app roles alone (the template granted them).
.PARAMETER Prune
    Also remove Graph app roles of this identity that are not in GraphPermissions, and connector
    cmdlets beyond ExchangeAccess: what turning a feature off should do.
.PARAMETER RoleGroupName
    Name of the Exchange Online role group (and prefix of its two custom roles). Default:
    "Connector Grader <azd environment name>", so two environments in one tenant keep apart.
.PARAMETER ServicePrincipalName
    Display name of the identity's service principal in Exchange Online. Default:
    "connector-grader-<azd environment name>" (else "connector-grader-<ClientId>").

.EXAMPLE
    ./infra/grant-permissions.ps1                      # everything from the current azd environment
.EXAMPLE
    ./infra/grant-permissions.ps1 -SkipGraph -ExchangeAccess Enforce -WhatIf
#>
[CmdletBinding(SupportsShouldProcess = $true)]
param(
    [string]$PrincipalId,
    [string]$ClientId,
    [string[]]$GraphPermissions,
    [ValidateSet('None', 'Inventory', 'Enforce', 'EnforceWithRemove')]
    [string]$ExchangeAccess,
    [switch]$SkipGraph,
    [switch]$Prune,
    [string]$RoleGroupName,
    [string]$ServicePrincipalName
)

# Version 1 only: Exchange Online returns deserialized objects whose properties vary by version.
Set-StrictMode -Version 1
$ErrorActionPreference = 'Stop'

# The only Graph application permissions the grader ever uses, and what each is for.
$KnownGraphPermissions = [ordered]@{
    'ThreatHunting.Read.All'             = 'Defender advanced hunting (GRADER_SOURCE=defender)'
    'User.RevokeSessions.All'            = 'revoke a compromised admin''s sign-in sessions'
    'SecurityAlert.ReadWrite.All'        = 'write the verdict back to the linked Defender alerts'
    'User.Read.All'                      = 'tier 0: read the admin account before changing it'
    'User.EnableDisableAccount.All'      = 'tier 0: disable a compromised admin account'
    'User-PasswordProfile.ReadWrite.All' = 'tier 0: force a compromised admin to change password'
}
$GraphAppId = '00000003-0000-0000-c000-000000000000'
$ExchangeAppId = '00000002-0000-0ff1-ce00-000000000000'

# Cmdlets per access level, and the built-in role each is taken from.
$ConnectorReadCmdlets = @('Get-InboundConnector', 'Get-OutboundConnector')
$ConnectorWriteCmdlets = @{
    None              = @()
    Inventory         = @()
    Enforce           = @('Set-InboundConnector', 'Set-OutboundConnector')
    EnforceWithRemove = @('Set-InboundConnector', 'Set-OutboundConnector',
                          'Remove-InboundConnector', 'Remove-OutboundConnector')
}
# Transport (mail-flow) rules: read for the inventory; disable and re-enable a rule linked to a
# connector (enforce). Never New-/Set-/Remove-TransportRule.
$TransportRuleReadCmdlets = @('Get-TransportRule')
$TransportRuleWriteCmdlets = @{
    None              = @()
    Inventory         = @()
    Enforce           = @('Disable-TransportRule', 'Enable-TransportRule')
    EnforceWithRemove = @('Disable-TransportRule', 'Enable-TransportRule')
}
$RuleReadParentCandidates = @('View-Only Configuration', 'Transport Rules')
$RuleWriteParentCandidates = @('Transport Rules')
# Built-in roles the custom roles are cut from, in order of preference: the first that holds every
# wanted cmdlet is the parent (Get-*Connector sits in View-Only Configuration; Set-/Remove- in
# Remote and Accepted Domains).
$ReadParentCandidates = @('View-Only Configuration', 'Remote and Accepted Domains')
$WriteParentCandidates = @('Remote and Accepted Domains')

function Get-AzdValue([string]$Name) {
    # A value from the current azd environment, or $null when azd or the value is absent.
    if (-not (Get-Command azd -ErrorAction SilentlyContinue)) { return $null }
    $value = azd env get-value $Name 2>$null
    if ($LASTEXITCODE -ne 0 -or [string]::IsNullOrWhiteSpace($value)) { return $null }
    return $value.Trim()
}

function Resolve-Inputs {
    if (-not $script:PrincipalId) { $script:PrincipalId = Get-AzdValue 'GRADER_IDENTITY_PRINCIPAL_ID' }
    if (-not $script:ClientId) { $script:ClientId = Get-AzdValue 'GRADER_IDENTITY_CLIENT_ID' }
    if (-not $script:PrincipalId -or -not $script:ClientId) {
        throw 'PrincipalId and ClientId are required: pass them, or run from the azd project after `azd provision`.'
    }
    if ($null -eq $script:GraphPermissions) {
        $fromAzd = Get-AzdValue 'GRADER_GRAPH_APP_ROLES'
        $script:GraphPermissions = if ($fromAzd) { @($fromAzd | ConvertFrom-Json) } else { @() }
    }
    foreach ($permission in $script:GraphPermissions) {
        if (-not $KnownGraphPermissions.Contains($permission)) {
            throw "Unknown Graph permission '$permission'. The grader uses only: $($KnownGraphPermissions.Keys -join ', ')."
        }
    }
    if (-not $script:ExchangeAccess) {
        $organization = Get-AzdValue 'EXCHANGE_ORGANIZATION_DOMAIN'
        $mode = Get-AzdValue 'REMEDIATION_MODE'
        $allowRemove = Get-AzdValue 'REMEDIATION_ALLOW_REMOVE'
        $script:ExchangeAccess = if (-not $organization) { 'None' }
        elseif ($mode -eq 'enforce') {
            if ($allowRemove -eq 'true') { 'EnforceWithRemove' } else { 'Enforce' }
        } else { 'Inventory' }
    }
    # Names in Exchange Online are per tenant: one per azd environment, so two deployments in one
    # tenant never share a service principal name, a role group or its roles.
    $environment = Get-AzdValue 'AZURE_ENV_NAME'
    if (-not $script:RoleGroupName) {
        $script:RoleGroupName = if ($environment) { "Connector Grader $environment" } else { 'Connector Grader' }
    }
    if (-not $script:ServicePrincipalName) {
        $script:ServicePrincipalName = if ($environment) { "connector-grader-$environment" } else { "connector-grader-$($script:ClientId)" }
    }
}

function Set-AppRoleAssignment([object]$ResourceSp, [string]$RoleValue) {
    $role = $ResourceSp.AppRoles | Where-Object { $_.Value -eq $RoleValue -and $_.AllowedMemberTypes -contains 'Application' }
    if (-not $role) { throw "$($ResourceSp.DisplayName) has no application permission '$RoleValue'." }
    $existing = Get-MgServicePrincipalAppRoleAssignment -ServicePrincipalId $PrincipalId -All |
        Where-Object { $_.ResourceId -eq $ResourceSp.Id -and $_.AppRoleId -eq $role.Id }
    if ($existing) {
        Write-Host "  = $RoleValue on $($ResourceSp.DisplayName) (already granted)"
        return
    }
    if ($PSCmdlet.ShouldProcess("$($ResourceSp.DisplayName) $RoleValue", 'grant application permission')) {
        New-MgServicePrincipalAppRoleAssignment -ServicePrincipalId $PrincipalId -PrincipalId $PrincipalId `
            -ResourceId $ResourceSp.Id -AppRoleId $role.Id | Out-Null
        Write-Host "  + $RoleValue on $($ResourceSp.DisplayName)"
    }
}

function Remove-ExtraAppRoleAssignments([object]$ResourceSp, [string[]]$Keep) {
    $keepIds = @($ResourceSp.AppRoles | Where-Object { $Keep -contains $_.Value } | ForEach-Object { $_.Id })
    $extra = Get-MgServicePrincipalAppRoleAssignment -ServicePrincipalId $PrincipalId -All |
        Where-Object { $_.ResourceId -eq $ResourceSp.Id -and $keepIds -notcontains $_.AppRoleId }
    foreach ($assignment in $extra) {
        $value = ($ResourceSp.AppRoles | Where-Object { $_.Id -eq $assignment.AppRoleId }).Value
        if ($PSCmdlet.ShouldProcess("$($ResourceSp.DisplayName) $value", 'remove application permission')) {
            Remove-MgServicePrincipalAppRoleAssignment -ServicePrincipalId $PrincipalId -AppRoleAssignmentId $assignment.Id
            Write-Host "  - $value on $($ResourceSp.DisplayName)"
        }
    }
}

function Grant-GraphPermissions {
    Write-Host 'Microsoft Graph and Exchange.ManageAsApp app roles'
    Import-Module Microsoft.Graph.Applications
    Connect-MgGraph -Scopes 'AppRoleAssignment.ReadWrite.All', 'Application.Read.All' -NoWelcome
    $graphSp = Get-MgServicePrincipal -Filter "appId eq '$GraphAppId'"
    $exchangeSp = Get-MgServicePrincipal -Filter "appId eq '$ExchangeAppId'"
    foreach ($permission in $GraphPermissions) { Set-AppRoleAssignment $graphSp $permission }
    if ($Prune) { Remove-ExtraAppRoleAssignments $graphSp $GraphPermissions }
    if ($ExchangeAccess -ne 'None') { Set-AppRoleAssignment $exchangeSp 'Exchange.ManageAsApp' }
    elseif ($Prune) { Remove-ExtraAppRoleAssignments $exchangeSp @() }
}

function Find-ParentRole([string[]]$Candidates, [string[]]$Cmdlets) {
    foreach ($candidate in $Candidates) {
        $held = @(Get-ManagementRoleEntry "$candidate\*" | ForEach-Object { $_.Name })
        if (@($Cmdlets | Where-Object { $held -notcontains $_ }).Count -eq 0) { return $candidate }
    }
    throw "No role of '$($Candidates -join "', '")' holds all of $($Cmdlets -join ', ') in this tenant; " +
        "run Get-ManagementRole -Cmdlet <name> to see where they are, and report it."
}

function Set-ConnectorRole([string]$Name, [string]$Parent, [string[]]$Cmdlets) {
    # A custom role, child of $Parent, holding exactly $Cmdlets (a child role can only narrow its
    # parent). A new child starts with all of the parent's cmdlets; the others are removed, once.
    $role = Get-ManagementRole -Identity $Name -ErrorAction SilentlyContinue
    if (-not $role) {
        if (-not $PSCmdlet.ShouldProcess($Name, "create management role from '$Parent'")) { return }
        New-ManagementRole -Name $Name -Parent $Parent -Description 'connector-grader: connector cmdlets only' | Out-Null
        Write-Host "  + role '$Name' (from '$Parent')"
    }
    $current = @(Get-ManagementRoleEntry "$Name\*" | ForEach-Object { $_.Name })
    foreach ($cmdlet in $current) {
        if ($Cmdlets -notcontains $cmdlet -and $PSCmdlet.ShouldProcess("$Name\$cmdlet", 'remove role entry')) {
            Remove-ManagementRoleEntry -Identity "$Name\$cmdlet" -Confirm:$false
        }
    }
    foreach ($cmdlet in $Cmdlets) {
        if ($current -notcontains $cmdlet -and $PSCmdlet.ShouldProcess("$Name\$cmdlet", 'add role entry')) {
            Add-ManagementRoleEntry -Identity "$Name\$cmdlet" | Out-Null
            Write-Host "  + $cmdlet in '$Name'"
        }
    }
    Write-Host "  = role '$Name': $($Cmdlets -join ', ')"
}

function Grant-ExchangeRole {
    Write-Host "Exchange Online role group '$RoleGroupName' ($ExchangeAccess)"
    Import-Module ExchangeOnlineManagement
    Connect-ExchangeOnline -ShowBanner:$false
    try {
        $sp = Get-ServicePrincipal -Identity $PrincipalId -ErrorAction SilentlyContinue
        if (-not $sp -and $ExchangeAccess -ne 'None' -and
            $PSCmdlet.ShouldProcess($ClientId, "register the managed identity in Exchange Online as '$ServicePrincipalName'")) {
            $sp = New-ServicePrincipal -AppId $ClientId -ObjectId $PrincipalId -DisplayName $ServicePrincipalName
            Write-Host "  + Exchange service principal for $ClientId"
        }

        $readRole = "$RoleGroupName - connector read"
        $writeRole = "$RoleGroupName - connector write"
        $roles = @()
        if ($ExchangeAccess -ne 'None') {
            Set-ConnectorRole $readRole (Find-ParentRole $ReadParentCandidates $ConnectorReadCmdlets) $ConnectorReadCmdlets
            $roles += $readRole
        }
        $ruleReadRole = "$RoleGroupName - transport rule read"
        $ruleWriteRole = "$RoleGroupName - transport rule write"
        if ($ExchangeAccess -ne 'None') {
            Set-ConnectorRole $ruleReadRole (Find-ParentRole $RuleReadParentCandidates $TransportRuleReadCmdlets) $TransportRuleReadCmdlets
            $roles += $ruleReadRole
        }
        $ruleWriteCmdlets = $TransportRuleWriteCmdlets[$ExchangeAccess]
        if ($ruleWriteCmdlets.Count -gt 0) {
            Set-ConnectorRole $ruleWriteRole (Find-ParentRole $RuleWriteParentCandidates $ruleWriteCmdlets) $ruleWriteCmdlets
            $roles += $ruleWriteRole
        } elseif ($Prune -and (Get-ManagementRole -Identity $ruleWriteRole -ErrorAction SilentlyContinue)) {
            if ($PSCmdlet.ShouldProcess($ruleWriteRole, 'remove (write access no longer wanted)')) {
                Get-ManagementRoleAssignment -Role $ruleWriteRole | Remove-ManagementRoleAssignment -Confirm:$false
                Remove-ManagementRole -Identity $ruleWriteRole -Confirm:$false
                Write-Host "  - role '$ruleWriteRole'"
            }
        }
        $writeCmdlets = $ConnectorWriteCmdlets[$ExchangeAccess]
        if ($writeCmdlets.Count -gt 0) {
            Set-ConnectorRole $writeRole (Find-ParentRole $WriteParentCandidates $writeCmdlets) $writeCmdlets
            $roles += $writeRole
        } elseif ($Prune -and (Get-ManagementRole -Identity $writeRole -ErrorAction SilentlyContinue)) {
            if ($PSCmdlet.ShouldProcess($writeRole, 'remove (write access no longer wanted)')) {
                Get-ManagementRoleAssignment -Role $writeRole | Remove-ManagementRoleAssignment -Confirm:$false
                Remove-ManagementRole -Identity $writeRole -Confirm:$false
                Write-Host "  - role '$writeRole'"
            }
        }

        $group = Get-RoleGroup -Identity $RoleGroupName -ErrorAction SilentlyContinue
        if (-not $group -and $roles.Count -gt 0 -and $PSCmdlet.ShouldProcess($RoleGroupName, 'create role group')) {
            $group = New-RoleGroup -Name $RoleGroupName -Roles $roles `
                -Description 'connector-grader managed identity: Exchange Online connectors only'
            Write-Host "  + role group '$RoleGroupName'"
        }
        if (-not $group) { return }
        $assigned = @(Get-ManagementRoleAssignment -RoleAssignee $RoleGroupName -Delegating $false |
            ForEach-Object { $_.Role })
        foreach ($role in $roles) {
            if ($assigned -notcontains $role -and $PSCmdlet.ShouldProcess("$RoleGroupName <- $role", 'assign role')) {
                New-ManagementRoleAssignment -SecurityGroup $RoleGroupName -Role $role | Out-Null
                Write-Host "  + '$role' in '$RoleGroupName'"
            }
        }
        $members = @(Get-RoleGroupMember -Identity $RoleGroupName |
            ForEach-Object { "$($_.Name)"; "$($_.Identity)"; "$($_.ExternalDirectoryObjectId)" })
        $isMember = $sp -and ($members -contains $PrincipalId -or $members -contains "$($sp.Identity)")
        if ($sp -and -not $isMember -and $PSCmdlet.ShouldProcess($RoleGroupName, 'add the managed identity')) {
            try {
                Add-RoleGroupMember -Identity $RoleGroupName -Member $sp.Identity
                Write-Host "  + member $($sp.Identity)"
            }
            catch {
                if ("$_" -notmatch 'already a member') { throw }
                Write-Host "  = member $($sp.Identity) (already)"
            }
        }
    }
    finally {
        Disconnect-ExchangeOnline -Confirm:$false
    }
}

Resolve-Inputs
Write-Host "connector-grader identity $PrincipalId (client id $ClientId), Exchange access $ExchangeAccess"
Write-Host "Graph permissions: $(if ($GraphPermissions.Count) { $GraphPermissions -join ', ' } else { 'none' })"
if (-not $SkipGraph) { Grant-GraphPermissions }
if ($ExchangeAccess -ne 'None' -or $Prune) { Grant-ExchangeRole }
else { Write-Host 'Exchange Online: no EXCHANGE_ORGANIZATION_DOMAIN (ExchangeAccess None): nothing granted there.' }
Write-Host 'Done. Changes can take up to an hour to reach Exchange Online and Microsoft Graph tokens.'
