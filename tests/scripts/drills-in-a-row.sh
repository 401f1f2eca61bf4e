#!/usr/bin/env bash
# Runs one end-to-end drill suite N times in a row on this machine and stops at the first
# failure: a drill that passes only sometimes is a failing drill. Needs root and the inputs
# `make test` builds (charms, catalog, wheelhouse).
#
#   tests/scripts/drills-in-a-row.sh bundle_drills 5
#   tests/scripts/drills-in-a-row.sh pg_drills 3
#
# Each run's output goes to build/drills-in-a-row/<suite>-<i>.log; the summary line per run
# (passed/failed, minutes) is printed and appended to build/drills-in-a-row/summary.txt.
set -uo pipefail
cd "$(dirname "$0")/../.."
suite=${1:?usage: $0 SUITE [RUNS]}
runs=${2:-5}
out=build/drills-in-a-row
mkdir -p "$out"
cargo build -q -p e2e --tests || exit 1
passed=0
for i in $(seq 1 "$runs"); do
    start=$(date +%s)
    if cargo test -q -p e2e --test "$suite" -- --nocapture >"$out/$suite-$i.log" 2>&1; then
        result=passed
        passed=$((passed + 1))
    else
        result=FAILED
    fi
    line="$(date -u +%FT%TZ) $suite run $i/$runs $result in $(( ($(date +%s) - start) / 60 )) min (log $out/$suite-$i.log)"
    echo "$line" | tee -a "$out/summary.txt"
    [ "$result" = passed ] || { tail -30 "$out/$suite-$i.log"; break; }
done
echo "$suite: $passed of $runs in a row passed"
[ "$passed" = "$runs" ]
