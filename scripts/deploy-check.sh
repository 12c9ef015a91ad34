#!/usr/bin/env bash
# Checks what a first `azd up` needs before it starts, and says how to fix each gap:
#   - azd 1.26.0 or later (earlier versions drop bin/handler's exec bit from the zip they deploy);
#   - azd's alpha feature for `language: custom` services (without it azd stops before deploying);
#   - Go, to build the package (scripts/package.sh, the service's prepackage hook).
# Run it yourself (`make deploy-check`); azure.yaml also runs it before provisioning.
set -euo pipefail

min_azd="1.26.0"
problems=0
fail() {
  echo "deploy-check: $*" >&2
  problems=$((problems + 1))
}

# version_ge A B: A >= B for dotted numeric versions (a pre-release suffix is ignored).
version_ge() {
  local IFS=.
  local -a a b
  read -r -a a <<<"${1%%-*}"
  read -r -a b <<<"${2%%-*}"
  for i in 0 1 2; do
    local x=${a[i]:-0} y=${b[i]:-0}
    ((10#$x > 10#$y)) && return 0
    ((10#$x < 10#$y)) && return 1
  done
  return 0
}

if ! command -v azd >/dev/null 2>&1; then
  fail "azd not found: install the Azure Developer CLI $min_azd or later (https://aka.ms/azd-install)"
else
  json=$(azd version --output json 2>/dev/null || true)
  version=$(printf '%s' "$json" | tr -d '\n ' | sed -n 's/.*"azd":{[^}]*"version":"\([0-9][^"]*\)".*/\1/p')
  if [[ -z "$version" ]]; then
    fail "could not read the azd version from 'azd version --output json'; azd $min_azd or later is needed"
  elif ! version_ge "$version" "$min_azd"; then
    fail "azd $version is older than $min_azd, which is the first to keep bin/handler executable in the zip: upgrade azd"
  fi
  alpha="${AZD_ALPHA_ENABLE_LANGUAGE_CUSTOM:-}"
  case "${alpha,,}" in
  1 | true) ;;
  *)
    setting=$(azd config get alpha.language.custom 2>/dev/null | tr -d '"[:space:]' || true)
    if [[ "$setting" != "on" ]]; then
      fail "azd's alpha feature for 'language: custom' is off: run  azd config set alpha.language.custom on  (or set AZD_ALPHA_ENABLE_LANGUAGE_CUSTOM=true)"
    fi
    ;;
  esac
fi

if ! command -v go >/dev/null 2>&1; then
  fail "go not found: Go 1.26 builds bin/handler (scripts/package.sh)"
fi

if ((problems > 0)); then
  echo "deploy-check: $problems problem(s); fix them and run again" >&2
  exit 1
fi
echo "deploy-check: azd $version with language 'custom' enabled, and go: ready for azd up"
