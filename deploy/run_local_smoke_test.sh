#!/usr/bin/env bash
# Smoke test of the README's main command: deploy/run_local.sh with the
# binaries from this test's runfiles, for a bounded number of cycles; checks
# that every cycle completed and the final rollouts came from the last
# weights.
set -euo pipefail
root="$TEST_SRCDIR/$TEST_WORKSPACE"
out="$TEST_TMPDIR/run_local.out"
# TP_SIZE (from the test's env, default 1) runs the engines tensor-parallel.
COLO_BIN="$root" CYCLES=2 TP_SIZE="${TP_SIZE:-1}" timeout 300 bash "$root/deploy/run_local.sh" \
  >"$out" 2>&1 || {
  echo "run_local.sh failed:"; tail -n 40 "$out"; exit 1; }
cat "$out"
grep -q "== rollout after the last cycle" "$out" || { echo "no final rollout"; exit 1; }
grep -Eq "engine 127\.0\.0\.1:[0-9]+: weight_version 2," "$out" || {
  echo "final rollouts are not on weight_version 2"; exit 1; }
grep -q "^phase   ROLLOUT" "$out" || { echo "node did not end in ROLLOUT"; exit 1; }
echo "PASS: 2 colocated cycles"
