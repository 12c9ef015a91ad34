#!/usr/bin/env bash
# `make fuzz`: each fuzz target for FUZZTIME. A target that fails is judged by its saved inputs: the fuzzer writes
# a failing input under testdata/fuzz/<target>/, and `go test -run` runs every saved input again. If one still
# fails, that is a finding and this script fails. If none does, a fuzzing worker was lost (a loaded machine kills
# or starves it) and the input it left, which passes, is removed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
GO="${GO:-go}"
FUZZTIME="${FUZZTIME:-5s}"
status=0
for t in "$@"; do
  pkg="${t%%:*}"; fn="${t##*:}"
  corpus="$pkg/testdata/fuzz/$fn"
  before="$(ls "$corpus" 2>/dev/null | sort || true)"
  echo "fuzz $fn ($pkg, $FUZZTIME)"
  if out="$("$GO" test -run '^$' -fuzz "^$fn\$" -fuzztime "$FUZZTIME" "./$pkg" 2>&1)"; then
    continue
  fi
  echo "$out" | grep -v '^fuzz: elapsed' | tail -n 20
  if rerun="$("$GO" test -count=1 -run "^$fn\$" "./$pkg" 2>&1)"; then
    echo "fuzz $fn: no saved input fails under go test -run: a fuzzing worker was lost, not a finding"
    after="$(ls "$corpus" 2>/dev/null | sort || true)"
    for f in $(comm -13 <(echo "$before") <(echo "$after")); do
      echo "fuzz $fn: removing $corpus/$f (it passes)"
      rm -f "$corpus/$f"
    done
  else
    echo "$rerun" | tail -n 40
    echo "fuzz $fn: FAILED: a saved input fails under go test -run (see $corpus)"
    status=1
  fi
done
exit $status
