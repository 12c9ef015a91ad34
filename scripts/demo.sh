#!/usr/bin/env bash
# `make demo`: a whole migration on the local stack. Starts the stack, starts a migration over HTTP, shows its
# progress, prints the final report, stops everything, and exits 0 only when the migration completed (verified).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export STACK_DIR="${STACK_DIR:-$root/.stack}"
trap '"$root/scripts/stack.sh" down' EXIT
"$root/scripts/stack.sh" up
start=$(date +%s)
rc=0
kind=()
[ -n "${SOURCE_KIND:-}" ] && kind=(--source-kind "$SOURCE_KIND")
bin/fhirmigrate --url http://127.0.0.1:7071 start --watch \
  --source http://127.0.0.1:8081 --destination http://127.0.0.1:8082 "${kind[@]}" ${DEMO_ARGS:---verify ids --cleanup after-verify} || rc=$?
echo "demo: finished in $(( $(date +%s) - start ))s (poll schedule: $(grep -o '"PollSchedule": *"[^"]*"' local.settings.json | cut -d'"' -f4))"
exit $rc
