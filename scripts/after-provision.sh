#!/bin/sh
# azd's postprovision hook (POSIX sh; scripts/after-provision.ps1 on Windows). After a provision that wired the
# staging storage (WIRE_STAGING_STORAGE=true), it records what the wiring replaced (the deployment's
# PREVIOUS_* outputs, which azd has just put in the environment) in .azure/<env>/storage-wiring-<time>.json and
# turns the wiring off, so that the next provision does not PUT the two FHIR services again.
set -eu
case "${WIRE_STAGING_STORAGE:-false}" in
1 | t | T | TRUE | true | True) ;;
*) exit 0 ;;
esac
dir=".azure/${AZURE_ENV_NAME:-default}"
mkdir -p "$dir"
record="$dir/storage-wiring-$(date -u +%Y%m%dT%H%M%SZ).json"
import="${PREVIOUS_DESTINATION_IMPORT_CONFIGURATION:-}"
[ -n "$import" ] || import="{}"
printf '{"previousSourceExportStorage": "%s", "previousDestinationImportConfiguration": %s}\n' \
  "${PREVIOUS_SOURCE_EXPORT_STORAGE:-}" "$import" >"$record"
echo "after-provision: the FHIR services now export to and import from the staging account; what they used before is in $record (README: Storage wiring, to restore it)"
azd env set WIRE_STAGING_STORAGE false
echo "after-provision: WIRE_STAGING_STORAGE is false again: later provisions leave the FHIR services alone"
