# azd's postprovision hook on Windows: the same as scripts/after-provision.sh. After a provision that wired the
# staging storage (WIRE_STAGING_STORAGE=true), it records what the wiring replaced in
# .azure/<env>/storage-wiring-<time>.json and turns the wiring off for later provisions.
$ErrorActionPreference = 'Stop'
if (@('1', 't', 'T', 'TRUE', 'true', 'True') -cnotcontains "$($env:WIRE_STAGING_STORAGE)") { exit 0 }
$envName = if ($env:AZURE_ENV_NAME) { $env:AZURE_ENV_NAME } else { 'default' }
$dir = Join-Path '.azure' $envName
New-Item -ItemType Directory -Force -Path $dir | Out-Null
$record = Join-Path $dir ("storage-wiring-{0}.json" -f (Get-Date).ToUniversalTime().ToString('yyyyMMddTHHmmssZ'))
$import = if ($env:PREVIOUS_DESTINATION_IMPORT_CONFIGURATION) { $env:PREVIOUS_DESTINATION_IMPORT_CONFIGURATION } else { '{}' }
Set-Content -Path $record -Encoding utf8 -Value ('{{"previousSourceExportStorage": "{0}", "previousDestinationImportConfiguration": {1}}}' -f $env:PREVIOUS_SOURCE_EXPORT_STORAGE, $import)
Write-Output "after-provision: the FHIR services now export to and import from the staging account; what they used before is in $record (README: Storage wiring, to restore it)"
& azd env set WIRE_STAGING_STORAGE false
if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE }
Write-Output "after-provision: WIRE_STAGING_STORAGE is false again: later provisions leave the FHIR services alone"
