# Checks what `azd up` needs before it provisions, on Windows (PowerShell 5.1 or 7): the same checks, messages and
# environment values as scripts/deploy-check.sh, which azure.yaml runs on Linux and macOS.
#   - azd 1.26.0 or later (earlier versions drop bin/handler's exec bit from the zip they deploy);
#   - azd's alpha feature for `language: custom` services, decided as azd decides it;
#   - Go 1.26 or later, to build the package (scripts/package.ps1);
#   - with WIRE_STAGING_STORAGE=true and an existing staging account: whether each FHIR service's identity already
#     holds Storage Blob Data Contributor there, setting SOURCE_STAGING_ACCESS_EXISTS and
#     DESTINATION_STAGING_ACCESS_EXISTS in azd's environment.
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 2.0

$minAzd = [version]'1.26.0'
$minGo = [version]'1.26'
$blobContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
$script:problems = 0
function Fail([string]$message) {
    [Console]::Error.WriteLine("deploy-check: $message")
    $script:problems++
}

# A dotted version without its pre-release or build suffix, or $null.
function ConvertTo-Version([string]$text) {
    $core = ($text -split '[-+]')[0]
    $parts = @($core -split '\.')
    while ($parts.Count -lt 3) { $parts += '0' }
    try { return [version]($parts[0..2] -join '.') } catch { return $null }
}

# Go's strconv.ParseBool: $true, $false, or $null when it cannot parse the value.
function ConvertFrom-GoBool([string]$value) {
    if (@('1', 't', 'T', 'TRUE', 'true', 'True') -ccontains $value) { return $true }
    if (@('0', 'f', 'F', 'FALSE', 'false', 'False') -ccontains $value) { return $false }
    return $null
}

function Get-AzdConfig([string]$key) {
    $out = & azd config get $key 2>$null
    if ($LASTEXITCODE -ne 0 -or $null -eq $out) { return '' }
    return (($out -join '') -replace '["\s]', '').ToLowerInvariant()
}

# azd's own rule (cli/azd/pkg/alpha/alpha_feature_manager.go, IsEnabled): the feature's environment variable, when
# it parses as a bool, decides either way; then config alpha.all, then alpha.language.custom, each on only when
# exactly "on". Returns 'on', 'off' or 'invalid' (already reported).
function Get-CustomLanguageState {
    $envValue = ConvertFrom-GoBool $env:AZD_ALPHA_ENABLE_LANGUAGE_CUSTOM
    if ($null -ne $envValue) {
        if ($envValue) { return 'on' }
        Fail "AZD_ALPHA_ENABLE_LANGUAGE_CUSTOM=$($env:AZD_ALPHA_ENABLE_LANGUAGE_CUSTOM) turns azd's alpha feature for 'language: custom' off: unset it or set it to true"
        return 'invalid'
    }
    foreach ($key in @('alpha.all', 'alpha.language.custom')) {
        $value = Get-AzdConfig $key
        if ($value -eq 'on') { return 'on' }
        if ($value -ne '' -and $value -ne 'off') {
            Fail "azd config $key is `"$value`": azd accepts only on or off there (any other value stops it): run  azd config set $key on"
            return 'invalid'
        }
    }
    return 'off'
}

$azdVersion = ''
if (-not (Get-Command azd -ErrorAction SilentlyContinue)) {
    Fail "azd not found: install the Azure Developer CLI $minAzd or later (https://aka.ms/azd-install)"
} else {
    try { $azdVersion = ((& azd version --output json 2>$null) -join "`n" | ConvertFrom-Json).azd.version } catch { $azdVersion = '' }
    $parsed = ConvertTo-Version $azdVersion
    if (-not $azdVersion -or $null -eq $parsed) {
        Fail "could not read the azd version from 'azd version --output json'; azd $minAzd or later is needed"
    } elseif ($parsed -lt $minAzd) {
        Fail "azd $azdVersion is older than $minAzd, which is the first to keep bin/handler executable in the zip: upgrade azd"
    }
    if ((Get-CustomLanguageState) -eq 'off') {
        Fail "azd's alpha feature for 'language: custom' is off: run  azd config set alpha.language.custom on  (or set AZD_ALPHA_ENABLE_LANGUAGE_CUSTOM=true)"
    }
}

if (-not (Get-Command go -ErrorAction SilentlyContinue)) {
    Fail "go not found: Go $minGo or later builds bin/handler (scripts/package.ps1)"
} else {
    $goVersion = ((& go env GOVERSION) -join '') -replace '^go', ''
    $parsed = ConvertTo-Version $goVersion
    if ($null -eq $parsed -or $parsed -lt $minGo) {
        Fail "go $goVersion is older than $minGo, which go.mod needs: install Go $minGo or later"
    }
}

# Sets $envName in azd's environment to whether the service's system-assigned identity already holds Storage Blob
# Data Contributor on the staging account, at its own scope.
function Test-StagingAccess([string]$who, [string]$resourceId, [string]$envName, [string]$scope) {
    $principal = & az resource show --ids $resourceId --query identity.principalId -o tsv 2>$null
    if ($LASTEXITCODE -ne 0) {
        Fail "could not read the $who FHIR service $resourceId with az: run  az login  (and check the name and resource group)"
        return
    }
    $exists = $false
    if ($principal -and $principal -ne 'None') {
        $n = & az role assignment list --scope $scope --query "length([?principalId=='$principal' && ends_with(roleDefinitionId, '$blobContributor')])" -o tsv 2>$null
        if ($LASTEXITCODE -ne 0) {
            Fail "could not list the role assignments on $scope with az"
            return
        }
        $exists = [int]$n -gt 0
    }
    if ($exists) {
        Write-Output "deploy-check: the $who service's identity already holds Storage Blob Data Contributor on the staging account: not assigned again"
    }
    & azd env set $envName $(if ($exists) { 'true' } else { 'false' }) *> $null
    if ($LASTEXITCODE -ne 0) { Fail "could not set $envName in azd's environment" }
}

# Sign-in: AUTH_MODE is entra (the Bicep's default) or keys; entra needs the app registration's client id.
$authMode = if ($env:AUTH_MODE) { $env:AUTH_MODE } else { 'entra' }
switch -CaseSensitive ($authMode) {
    'entra' {
        $clientId = "$env:AUTH_CLIENT_ID"
        if (-not $clientId) {
            Fail "AUTH_MODE is entra (the default) and AUTH_CLIENT_ID is not set: create the app registration (docs/deploy.md, Deploying into a locked-down tenant) and run  azd env set AUTH_CLIENT_ID <client id>  (or  azd env set AUTH_MODE keys)"
        } elseif ($clientId -cnotmatch '^[0-9a-fA-F-]{36}$') {
            Fail "AUTH_CLIENT_ID `"$clientId`" is not an application (client) id: a GUID of 36 characters"
        }
    }
    'keys' { }
    default { Fail "AUTH_MODE is `"$authMode`": it takes entra or keys" }
}

$wire = ConvertFrom-GoBool $(if ($env:WIRE_STAGING_STORAGE) { $env:WIRE_STAGING_STORAGE } else { 'false' })
if ($wire -eq $true -and $env:STAGING_STORAGE_ACCOUNT_NAME) {
    if (-not (Get-Command az -ErrorAction SilentlyContinue)) {
        Fail "az not found: with WIRE_STAGING_STORAGE=true and an existing staging account, the Azure CLI finds the role assignments that exist already"
    } elseif (-not $env:AZURE_SUBSCRIPTION_ID -or -not $env:AZURE_RESOURCE_GROUP) {
        Fail "AZURE_SUBSCRIPTION_ID and AZURE_RESOURCE_GROUP must be set in azd's environment to check the staging account"
    } else {
        function Get-Group([string]$name) { if ($name) { $name } else { $env:AZURE_RESOURCE_GROUP } }
        $sub = "/subscriptions/$($env:AZURE_SUBSCRIPTION_ID)/resourceGroups"
        $scope = "$sub/$(Get-Group $env:STAGING_STORAGE_RESOURCE_GROUP)/providers/Microsoft.Storage/storageAccounts/$($env:STAGING_STORAGE_ACCOUNT_NAME)"
        Test-StagingAccess 'source' "$sub/$(Get-Group $env:SOURCE_FHIR_RESOURCE_GROUP)/providers/Microsoft.HealthcareApis/services/$($env:SOURCE_FHIR_SERVICE_NAME)" 'SOURCE_STAGING_ACCESS_EXISTS' $scope
        Test-StagingAccess 'destination' "$sub/$(Get-Group $env:DESTINATION_RESOURCE_GROUP)/providers/Microsoft.HealthcareApis/workspaces/$($env:DESTINATION_WORKSPACE_NAME)/fhirservices/$($env:DESTINATION_FHIR_SERVICE_NAME)" 'DESTINATION_STAGING_ACCESS_EXISTS' $scope
    }
}

if ($script:problems -gt 0) {
    [Console]::Error.WriteLine("deploy-check: $($script:problems) problem(s); fix them and run again")
    exit 1
}
Write-Output "deploy-check: azd $azdVersion with language 'custom' enabled, and go: ready for azd up"
