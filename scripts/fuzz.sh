#!/usr/bin/env bash
# `make fuzz`: each fuzz target (pkg:FuzzName arguments) for FUZZTIME, with $GO (default go).
#
# The rule. An input the fuzzer writes under <pkg>/testdata/fuzz/<target>/ is a failing input: a finding to look
# at, so it is kept, never deleted. A target whose fuzzing fails fails `make fuzz`, and its new inputs stay where
# the fuzzer wrote them (their paths and the command to reproduce each are printed), unless both of these hold:
#   1. the fuzzer's output holds one of the Go fuzzing engine's own messages for a lost worker process
#      (src/internal/fuzz/worker.go in the Go toolchain), each at the start of a line:
#        "fuzzing process hung or terminated unexpectedly: "        a worker died or hung while fuzzing
#        "fuzzing process hung or terminated unexpectedly while minimizing: "
#        "fuzzing process terminated by unexpected signal; no crash will be recorded: "  e.g. the OOM killer's SIGKILL
#   2. `go test -run <target>` on the saved inputs, the new ones included, passes.
# Then a loaded machine killed or starved a worker: the script says so, naming the message, moves the new inputs
# (which pass) to test-output/fuzz-lost/<pkg>/<target>/ (ignored by git) to be looked at, and goes on. They leave
# testdata/fuzz so that the seed corpus every `go test` runs, and git tracks, holds only what someone chose.
# A crash that kills the worker for real (a fatal error, os.Exit) prints message 1 as well; rule 2 tells it apart,
# since its input fails again under go test -run. Any other failure (a panic or t.Error in the target, a build
# error, a failing seed) fails `make fuzz` whatever go test -run says.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
GO="${GO:-go}"
FUZZTIME="${FUZZTIME:-20000x}"  # a count of inputs: see the Makefile on why not a duration

lost_worker_signatures=(
  'fuzzing process hung or terminated unexpectedly while minimizing: '
  'fuzzing process hung or terminated unexpectedly: '
  'fuzzing process terminated by unexpected signal; no crash will be recorded: '
)

# lost_worker_signature OUTPUT: prints the first lost-worker message found at the start of a line of OUTPUT
# (after the indentation go test gives it); fails if there is none.
lost_worker_signature() {
  local sig
  for sig in "${lost_worker_signatures[@]}"; do
    if grep -Eq "^[[:space:]]*${sig}" <<<"$1"; then
      printf '%s\n' "$sig"
      return 0
    fi
  done
  return 1
}

# listing DIR: the names in DIR, one a line, sorted; nothing if DIR does not exist.
listing() {
  if [ -d "$1" ]; then
    ls -A "$1" | LC_ALL=C sort
  fi
}

status=0
for t in "$@"; do
  pkg="${t%%:*}"; fn="${t##*:}"
  corpus="$pkg/testdata/fuzz/$fn"
  lost="test-output/fuzz-lost/$pkg/$fn"
  before="$(listing "$corpus")"
  existed=0
  if [ -d "$corpus" ]; then existed=1; fi
  echo "fuzz $fn ($pkg, $FUZZTIME)"
  if out="$("$GO" test -run '^$' -fuzz "^$fn\$" -fuzztime "$FUZZTIME" "./$pkg" 2>&1)"; then
    continue
  fi
  printf '%s\n' "$out" | grep -v '^fuzz: elapsed' | tail -n 20 || true
  new=()
  while IFS= read -r f; do
    [ -n "$f" ] || continue
    if ! grep -Fxq -- "$f" <<<"$before"; then
      new+=("$f")
    fi
  done <<<"$(listing "$corpus")"

  sig=""
  if found="$(lost_worker_signature "$out")"; then
    sig="$found"
  fi
  rerun_ok=0
  if rerun="$("$GO" test -count=1 -run "^$fn\$" "./$pkg" 2>&1)"; then
    rerun_ok=1
  fi

  if [ -n "$sig" ] && [ "$rerun_ok" = 1 ]; then
    echo "fuzz $fn: LOST A FUZZING WORKER, not a finding: the fuzzer reported \"${sig%: }\" and every saved input passes under go test -run"
    for f in ${new[@]+"${new[@]}"}; do
      mkdir -p "$lost"
      mv -f -- "$corpus/$f" "$lost/$f"
      echo "fuzz $fn: kept the input the lost worker left: moved $corpus/$f to $lost/$f"
      echo "  to run it again: cp $lost/$f $corpus/ && $GO test -count=1 -run '^$fn\$/^$f\$' ./$pkg"
    done
    if [ "$existed" = 0 ]; then rmdir -p "$corpus" 2>/dev/null || true; fi
    continue
  fi

  status=1
  if [ "$rerun_ok" = 0 ]; then
    if [ -n "$rerun" ]; then printf '%s\n' "$rerun" | tail -n 40; fi
    echo "fuzz $fn: FAILED: a saved input fails under go test -run"
  elif [ -z "$sig" ]; then
    echo "fuzz $fn: FAILED: the fuzzer found a failure that is not a lost worker (none of its lost-worker messages in the output); the saved inputs pass under go test -run, so it may be flaky"
  fi
  if [ "${#new[@]}" = 0 ]; then
    echo "fuzz $fn: the fuzzer saved no input; to reproduce: $GO test -run '^\$' -fuzz '^$fn\$' -fuzztime $FUZZTIME ./$pkg"
  fi
  for f in ${new[@]+"${new[@]}"}; do
    echo "fuzz $fn: failing input kept: $corpus/$f"
    echo "  to reproduce: $GO test -count=1 -run '^$fn\$/^$f\$' ./$pkg"
  done
done
exit $status
