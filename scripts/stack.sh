#!/usr/bin/env bash
# The local stack: Azurite (10000-10002), source FHIR simulator (8081), destination FHIR simulator (8082) and the
# local Functions host (7071) running the real handler binary. All on 127.0.0.1.
#   scripts/stack.sh up     start everything in the background; returns when everything answers
#   scripts/stack.sh down   stop everything started by `up`
#   scripts/stack.sh status show what is running
# Environment: SEED_PATIENTS (default 100), SEED (default 1), SOURCE_FAULTS / DEST_FAULTS (passed to the
# simulators' --faults when set), STACK_DIR (default .stack), AZURITE_PERSIST=1 keeps blobs in STACK_DIR/azurite,
# SOURCE_KIND=bulk-data makes the source a Bulk Data server with SMART Backend Services (a client key generated in
# STACK_DIR, the handler's Smart* settings in STACK_DIR/local.settings.json; tokens of 20s, one download cut).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
STACK_DIR="${STACK_DIR:-$root/.stack}"
SEED_PATIENTS="${SEED_PATIENTS:-100}"
SEED="${SEED:-1}"
AZURITE_CONN="DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"

log() { echo "stack: $*" >&2; }

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_http() { # name url seconds
  local name=$1 url=$2 secs=$3 i
  for ((i = 0; i < secs * 5; i++)); do
    if curl -s -o /dev/null --max-time 2 "$url"; then return 0; fi
    if ! kill -0 "$(cat "$STACK_DIR/$name.pid" 2>/dev/null)" 2>/dev/null; then
      log "$name exited; its log ($STACK_DIR/$name.log) ends with:"; tail -n 20 "$STACK_DIR/$name.log" >&2; return 1
    fi
    sleep 0.2
  done
  log "$name did not answer at $url within ${secs}s; see $STACK_DIR/$name.log"; return 1
}

start() { # name command...
  local name=$1; shift
  setsid "$@" >"$STACK_DIR/$name.log" 2>&1 < /dev/null &
  echo $! >"$STACK_DIR/$name.pid"
}

up() {
  for p in 10000 10001 10002 8081 8082 7071; do
    if port_busy "$p"; then log "port $p on 127.0.0.1 is in use: run 'make stack-down' or free it"; exit 1; fi
  done
  "$root/scripts/install-tools.sh"
  mkdir -p "$STACK_DIR" bin
  log "building the handler, the simulators and the local host"
  go build -o bin/handler ./handler
  go build -o bin/fhirsim ./cmd/fhirsim
  go build -o bin/devhost ./cmd/devhost
  go build -o bin/fhirmigrate ./cmd/fhirmigrate
  [ -f local.settings.json ] || cp local.settings.json.example local.settings.json

  local persist=(--inMemoryPersistence --extentMemoryLimit 1024)
  if [ "${AZURITE_PERSIST:-0}" = 1 ]; then persist=(--location "$STACK_DIR/azurite"); fi
  start azurite "$root/.tools/node_modules/.bin/azurite" --blobHost 127.0.0.1 --queueHost 127.0.0.1 \
    --tableHost 127.0.0.1 --skipApiVersionCheck --disableTelemetry --loose "${persist[@]}"
  wait_http azurite "http://127.0.0.1:10000/devstoreaccount1?comp=list" 60

  local sf=() df=()
  [ -n "${SOURCE_FAULTS:-}" ] && sf=(--faults "$SOURCE_FAULTS")
  [ -n "${DEST_FAULTS:-}" ] && df=(--faults "$DEST_FAULTS")
  local flavor=api-for-fhir settings=local.settings.json bd=()
  if [ "${SOURCE_KIND:-api-for-fhir}" = bulk-data ]; then
    flavor=bulk-data settings="$STACK_DIR/local.settings.json"
    rm -f "$STACK_DIR/smart-client.pem"
    bd=(--smart-client-id fhir-migrator --smart-generate-key "$STACK_DIR/smart-client.pem" --token-lifetime 20s --download-cuts 1)
    awk -v key="file:$STACK_DIR/smart-client.pem" '{ print } /"Values": *[{]/ {
      print "    \"SmartClientId\": \"fhir-migrator\","; print "    \"SmartSigningKey\": \"" key "\"," }' \
      local.settings.json >"$settings"
  fi
  start source bin/fhirsim --addr 127.0.0.1:8081 --flavor "$flavor" --storage "$AZURITE_CONN" \
    --seed-patients "$SEED_PATIENTS" --seed "$SEED" "${sf[@]}" "${bd[@]}"
  start destination bin/fhirsim --addr 127.0.0.1:8082 --flavor ahds --storage "$AZURITE_CONN" "${df[@]}"
  wait_http source http://127.0.0.1:8081/metadata 60
  wait_http destination http://127.0.0.1:8082/metadata 60

  start devhost bin/devhost --app-root . --settings "$settings" --addr 127.0.0.1:7071
  wait_http devhost http://127.0.0.1:7071/api/migrations 90
  log "up: Azurite 127.0.0.1:10000, source http://127.0.0.1:8081 ($flavor), destination http://127.0.0.1:8082, functions http://127.0.0.1:7071/api"
  log "logs in $STACK_DIR/*.log; stop with 'make stack-down'"
}

down() {
  local name pid
  for name in devhost destination source azurite; do
    pid="$(cat "$STACK_DIR/$name.pid" 2>/dev/null || true)"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL -- "-$pid" 2>/dev/null || true
      log "stopped $name"
    fi
    rm -f "$STACK_DIR/$name.pid"
  done
}

status() {
  local name pid
  for name in azurite source destination devhost; do
    pid="$(cat "$STACK_DIR/$name.pid" 2>/dev/null || true)"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then echo "$name: running (pid $pid)"; else echo "$name: stopped"; fi
  done
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
