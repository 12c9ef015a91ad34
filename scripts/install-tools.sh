#!/usr/bin/env bash
# Installs the pinned tools the local stack and the tests need into .tools/ (idempotent).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
AZURITE_VERSION="3.35.0"
dir="$root/.tools"
bin="$dir/node_modules/.bin/azurite-blob"
have=""
if [ -x "$bin" ]; then
  have="$(node -p "require('$dir/node_modules/azurite/package.json').version" 2>/dev/null || true)"
fi
if [ "$have" != "$AZURITE_VERSION" ]; then
  command -v npm >/dev/null || { echo "install-tools: npm is required (Node 20+)" >&2; exit 1; }
  echo "install-tools: installing azurite@$AZURITE_VERSION into .tools/" >&2
  mkdir -p "$dir"
  [ -f "$dir/package.json" ] || echo '{"name":"fhir-migrator-tools","private":true}' > "$dir/package.json"
  (cd "$dir" && npm install --no-audit --no-fund --loglevel=error "azurite@$AZURITE_VERSION" >&2)
fi
