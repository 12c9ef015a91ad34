# azd's prepackage hook on Windows: the same package as scripts/package.sh (a static linux/amd64 bin/handler,
# host.json and every function folder in dist/app, zipped to dist/fhir-migrator.zip with the exec bit kept by the
# project's own zip writer).
$ErrorActionPreference = 'Stop'
$root = Split-Path -Parent $PSScriptRoot
$dist = if ($env:DIST_DIR) { $env:DIST_DIR } else { Join-Path $root 'dist' }
$stage = Join-Path $dist 'app'
$go = if ($env:GO) { $env:GO } else { 'go' }
Set-Location $root
Remove-Item -Recurse -Force -ErrorAction SilentlyContinue $stage, (Join-Path $dist 'fhir-migrator.zip')
New-Item -ItemType Directory -Force -Path (Join-Path $stage 'bin') | Out-Null
$env:CGO_ENABLED = '0'; $env:GOOS = 'linux'; $env:GOARCH = 'amd64'
& $go build -trimpath -ldflags '-s -w' -o (Join-Path $stage 'bin/handler') ./handler
if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE }
Remove-Item Env:GOOS, Env:GOARCH
& $go run ./internal/pkgtest/cmd/funcpack -root $root -stage $stage -zip (Join-Path $dist 'fhir-migrator.zip')
exit $LASTEXITCODE
