#!/usr/bin/env bash
# Installs the pinned tools the local stack and the tests need into .tools/ (idempotent): Azurite, Microsoft's
# KQL parser (scripts/kql-check.js checks the dashboard's queries with it), an OpenAPI 3.1 validator
# (scripts/openapi-check.mjs checks the served description with it) and Newman (the e2e tests run the Postman
# collection with it); with --browser also the browser the tests drive (apt).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
# Pinned: Azurite 3.35.0 is the last to run on Node 20; the KQL parser is the one the Azure portal's editor uses;
# @seriousme/openapi-schema-validator checks a document against the OpenAPI Initiative's own OpenAPI 3.1 JSON Schema
# and resolves every $ref (its Ajv also checks each Schema Object as JSON Schema 2020-12); Newman 6 is Postman's
# collection runner (Node >= 16).
PACKAGES="azurite@3.35.0 @kusto/language-service-next@12.4.1 @seriousme/openapi-schema-validator@2.11.0 newman@6.2.2"
dir="$root/.tools"
missing=""
for p in $PACKAGES; do
  name="${p%@*}"
  have="$(node -p "require('$dir/node_modules/$name/package.json').version" 2>/dev/null || true)"
  [ "$name@$have" = "$p" ] || missing="$missing $p"
done
if [ -n "$missing" ]; then
  command -v npm >/dev/null || { echo "install-tools: npm is required (Node 20+)" >&2; exit 1; }
  echo "install-tools: installing$missing into .tools/" >&2
  mkdir -p "$dir"
  [ -f "$dir/package.json" ] || echo '{"name":"fhir-migrator-tools","private":true}' > "$dir/package.json"
  # shellcheck disable=SC2086 # one argument per package
  (cd "$dir" && npm install --no-audit --no-fund --loglevel=error --save-exact $PACKAGES >&2)
fi

# With --browser: a real browser for the report page's tests, Debian's chromium (driven from Go with chromedp).
if [ "${1:-}" = "--browser" ] && ! command -v chromium >/dev/null 2>&1; then
  sudo=""
  if [ "$(id -u)" != "0" ]; then
    command -v sudo >/dev/null && sudo="sudo -n" || { echo "install-tools: chromium is missing and apt needs root: apt-get install chromium" >&2; exit 1; }
  fi
  echo "install-tools: installing chromium (apt)" >&2
  export DEBIAN_FRONTEND=noninteractive
  if ! $sudo apt-get install -y --no-install-recommends chromium >&2; then
    $sudo apt-get update >&2
    $sudo apt-get install -y --no-install-recommends chromium >&2
  fi
fi
