#!/bin/sh
# Checks what `azd up` needs before it provisions, and says how to fix each gap (POSIX sh: dash, macOS's
# /bin/sh and bash 3.2 alike; scripts/deploy-check.ps1 is the same check for Windows):
#   - azd 1.26.0 or later (earlier versions drop bin/handler's exec bit from the zip they deploy);
#   - azd's alpha feature for `language: custom` services, decided as azd decides it (without it azd stops
#     before deploying);
#   - Go 1.26 or later, to build the package (scripts/package.sh, the service's prepackage hook);
#   - with AUTH_MODE entra (the default): AUTH_CLIENT_ID, the app registration's client id (a GUID); the Bicep's
#     sign-in setup fails without it, after most resources are created;
#   - with WIRE_STAGING_STORAGE=true and an existing staging account: whether each FHIR service's identity already
#     holds Storage Blob Data Contributor there (ARM refuses a second equal assignment), setting
#     SOURCE_STAGING_ACCESS_EXISTS and DESTINATION_STAGING_ACCESS_EXISTS in azd's environment (azd reloads it after
#     the hook, before provisioning).
# Run it yourself (`make deploy-check`); azure.yaml runs it before every provision.
set -eu

min_azd="1.26.0"
min_go="1.26"
blob_contributor="ba92f5b4-2d11-453d-a403-e96b0029c9fe"
problems=0
fail() {
  echo "deploy-check: $*" >&2
  problems=$((problems + 1))
}

# version_ge A B: A >= B for dotted numeric versions (a pre-release or build suffix is ignored).
version_ge() {
  a="${1%%[-+]*}"
  b="${2%%[-+]*}"
  for _ in 1 2 3; do
    x="${a%%.*}"
    y="${b%%.*}"
    x="${x:-0}"
    y="${y:-0}"
    case "$x$y" in *[!0-9]*) return 1 ;; esac
    [ "$x" -gt "$y" ] && return 0
    [ "$x" -lt "$y" ] && return 1
    case "$a" in *.*) a="${a#*.}" ;; *) a=0 ;; esac
    case "$b" in *.*) b="${b#*.}" ;; *) b=0 ;; esac
  done
  return 0
}

# parse_bool V: prints true or false as Go's strconv.ParseBool reads V, nothing when it cannot.
parse_bool() {
  case "$1" in
  1 | t | T | TRUE | true | True) echo true ;;
  0 | f | F | FALSE | false | False) echo false ;;
  esac
}

# alpha_config KEY: the lowercased value of an azd config key, empty when unset.
alpha_config() {
  azd config get "$1" 2>/dev/null | tr -d '"[:space:]' | tr '[:upper:]' '[:lower:]' || true
}

# custom_language_enabled: azd's own rule (cli/azd/pkg/alpha/alpha_feature_manager.go, IsEnabled): the feature's
# environment variable, when it parses as a bool, decides either way; then config alpha.all, then config
# alpha.language.custom, each on only when exactly "on" (any value but on or off makes azd panic).
custom_language_enabled() {
  env_value="$(parse_bool "${AZD_ALPHA_ENABLE_LANGUAGE_CUSTOM:-}")"
  if [ -n "$env_value" ]; then
    [ "$env_value" = true ] && return 0
    fail "AZD_ALPHA_ENABLE_LANGUAGE_CUSTOM=${AZD_ALPHA_ENABLE_LANGUAGE_CUSTOM} turns azd's alpha feature for 'language: custom' off: unset it or set it to true"
    return 2
  fi
  for key in alpha.all alpha.language.custom; do
    value="$(alpha_config "$key")"
    case "$value" in
    on) return 0 ;;
    "" | off) ;;
    *)
      fail "azd config $key is \"$value\": azd accepts only on or off there (any other value stops it): run  azd config set $key on"
      return 2
      ;;
    esac
  done
  return 1
}

version=""
if ! command -v azd >/dev/null 2>&1; then
  fail "azd not found: install the Azure Developer CLI $min_azd or later (https://aka.ms/azd-install)"
else
  json="$(azd version --output json 2>/dev/null || true)"
  version="$(printf '%s' "$json" | tr -d '\n ' | sed -n 's/.*"azd":{[^}]*"version":"\([0-9][^"]*\)".*/\1/p')"
  if [ -z "$version" ]; then
    fail "could not read the azd version from 'azd version --output json'; azd $min_azd or later is needed"
  elif ! version_ge "$version" "$min_azd"; then
    fail "azd $version is older than $min_azd, which is the first to keep bin/handler executable in the zip: upgrade azd"
  fi
  rc=0
  custom_language_enabled || rc=$?
  if [ "$rc" = 1 ]; then
    fail "azd's alpha feature for 'language: custom' is off: run  azd config set alpha.language.custom on  (or set AZD_ALPHA_ENABLE_LANGUAGE_CUSTOM=true)"
  fi
fi

if ! command -v go >/dev/null 2>&1; then
  fail "go not found: Go $min_go or later builds bin/handler (scripts/package.sh)"
else
  go_version="$(go env GOVERSION 2>/dev/null || true)"
  go_version="${go_version#go}"
  if [ -z "$go_version" ] || ! version_ge "$go_version" "$min_go"; then
    fail "go ${go_version:-(unknown version)} is older than $min_go, which go.mod needs: install Go $min_go or later"
  fi
fi

# Sign-in: AUTH_MODE is entra (the Bicep's default) or keys; entra needs the app registration's client id.
auth_mode="${AUTH_MODE:-entra}"
case "$auth_mode" in
entra)
  client_id="${AUTH_CLIENT_ID:-}"
  if [ -z "$client_id" ]; then
    fail "AUTH_MODE is entra (the default) and AUTH_CLIENT_ID is not set: create the app registration (docs/deploy.md, Deploying into a locked-down tenant) and run  azd env set AUTH_CLIENT_ID <client id>  (or  azd env set AUTH_MODE keys)"
  else
    case "$client_id" in
    *[!0-9a-fA-F-]*) bad_id=true ;;
    *) bad_id=false ;;
    esac
    if [ "$bad_id" = true ] || [ "${#client_id}" -ne 36 ]; then
      fail "AUTH_CLIENT_ID \"$client_id\" is not an application (client) id: a GUID of 36 characters"
    fi
  fi
  ;;
keys) ;;
*) fail "AUTH_MODE is \"$auth_mode\": it takes entra or keys" ;;
esac

# check_staging_access WHO RESOURCE_ID ENV_NAME: sets ENV_NAME in azd's environment to whether the service's
# system-assigned identity already holds Storage Blob Data Contributor on the staging account, at its own scope.
check_staging_access() {
  principal="$(az resource show --ids "$2" --query identity.principalId -o tsv 2>/dev/null)" || {
    fail "could not read the $1 FHIR service $2 with az: run  az login  (and check the name and resource group)"
    return 0
  }
  exists=false
  if [ -n "$principal" ] && [ "$principal" != "None" ]; then
    n="$(az role assignment list --scope "$staging_scope" \
      --query "length([?principalId=='$principal' && ends_with(roleDefinitionId, '$blob_contributor')])" -o tsv 2>/dev/null)" || {
      fail "could not list the role assignments on $staging_scope with az"
      return 0
    }
    [ "${n:-0}" -gt 0 ] && exists=true
  fi
  if [ "$exists" = true ]; then
    echo "deploy-check: the $1 service's identity already holds Storage Blob Data Contributor on the staging account: not assigned again"
  fi
  azd env set "$3" "$exists" >/dev/null 2>&1 || fail "could not set $3 in azd's environment"
}

if [ "$(parse_bool "${WIRE_STAGING_STORAGE:-false}")" = true ] && [ -n "${STAGING_STORAGE_ACCOUNT_NAME:-}" ]; then
  if ! command -v az >/dev/null 2>&1; then
    fail "az not found: with WIRE_STAGING_STORAGE=true and an existing staging account, the Azure CLI finds the role assignments that exist already"
  elif [ -z "${AZURE_SUBSCRIPTION_ID:-}" ] || [ -z "${AZURE_RESOURCE_GROUP:-}" ]; then
    fail "AZURE_SUBSCRIPTION_ID and AZURE_RESOURCE_GROUP must be set in azd's environment to check the staging account"
  else
    sub="/subscriptions/$AZURE_SUBSCRIPTION_ID/resourceGroups"
    staging_scope="$sub/${STAGING_STORAGE_RESOURCE_GROUP:-$AZURE_RESOURCE_GROUP}/providers/Microsoft.Storage/storageAccounts/$STAGING_STORAGE_ACCOUNT_NAME"
    check_staging_access source \
      "$sub/${SOURCE_FHIR_RESOURCE_GROUP:-$AZURE_RESOURCE_GROUP}/providers/Microsoft.HealthcareApis/services/${SOURCE_FHIR_SERVICE_NAME:-}" \
      SOURCE_STAGING_ACCESS_EXISTS
    check_staging_access destination \
      "$sub/${DESTINATION_RESOURCE_GROUP:-$AZURE_RESOURCE_GROUP}/providers/Microsoft.HealthcareApis/workspaces/${DESTINATION_WORKSPACE_NAME:-}/fhirservices/${DESTINATION_FHIR_SERVICE_NAME:-}" \
      DESTINATION_STAGING_ACCESS_EXISTS
  fi
fi

if [ "$problems" -gt 0 ]; then
  echo "deploy-check: $problems problem(s); fix them and run again" >&2
  exit 1
fi
echo "deploy-check: azd $version with language 'custom' enabled, and go: ready for azd up"
