#!/usr/bin/env bash
# Builds the Azure Functions package: a static linux/amd64 bin/handler, host.json and every function folder,
# staged in $DIST_DIR/app (what azd deploys) and zipped to $DIST_DIR/fhir-migrator.zip with the exec bit kept.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dist="${DIST_DIR:-$root/dist}"
stage="$dist/app"
go="${GO:-go}"

cd "$root"
rm -rf "$stage" "$dist/fhir-migrator.zip"
mkdir -p "$stage/bin"

CGO_ENABLED=0 GOOS=linux GOARCH=amd64 "$go" build -trimpath -ldflags "-s -w" -o "$stage/bin/handler" ./handler
"$go" run ./internal/pkgtest/cmd/funcpack -root "$root" -stage "$stage" -zip "$dist/fhir-migrator.zip"
