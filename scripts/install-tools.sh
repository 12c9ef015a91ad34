#!/usr/bin/env bash
# Installs the pinned tools the local stack needs into .tools/ (idempotent); with --browser also the browser the
# tests drive (apt).
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
