#!/bin/bash
# run_gpu_suite.sh's device stage on a fake bundle (CI, no GPU): a SKIPPED
# line, a failure, a timeout and a missing tool are failures; a passing
# gtest, bench and sanitizer step pass; tests see COLO_REQUIRE_GPU=1 and the
# bundle's libraries; the table and the logs land in $OUT; the exit status
# is 1 when anything failed and 0 when everything passed.
set -euo pipefail
SUITE="$(cd "$(dirname "$0")" && pwd)/run_gpu_suite.sh"
[ -x "$SUITE" ] || SUITE="$TEST_SRCDIR/$TEST_WORKSPACE/tests/gpu/run_gpu_suite.sh"
work="$(mktemp -d "${TEST_TMPDIR:-/tmp}/suite.XXXXXX")"
bundle="$work/colo_gpu_bundle"
mkdir -p "$bundle/bin" "$bundle/lib"
echo test-commit >"$bundle/COMMIT"

gtest() {  # name body...
  local f="$bundle/bin/$1"
  shift
  printf '#!/bin/bash\n%s\n' "$*" >"$f"
  chmod +x "$f"
}
gtest pass_test '
[ "${COLO_REQUIRE_GPU:-}" = 1 ] || { echo "[  FAILED  ] Env.RequireGpu"; exit 1; }
case ":$LD_LIBRARY_PATH:" in *":$BUNDLE/lib:"*) ;; *) echo "[  FAILED  ] Env.LibPath"; exit 1;; esac
echo "[==========] 2 tests from 1 test suite ran. (3 ms total)"
echo "[  PASSED  ] 2 tests."'
gtest skip_test '
echo "[ RUN      ] Gpu.Thing"
echo "[  SKIPPED ] Gpu.Thing (0 ms)"
echo "[==========] 1 test from 1 test suite ran. (0 ms total)"
echo "[  PASSED  ] 0 tests."
echo "[  SKIPPED ] 1 test, listed below:"
echo "[  SKIPPED ] Gpu.Thing"'
gtest fail_test '
echo "[==========] 3 tests from 1 test suite ran. (0 ms total)"
echo "[  PASSED  ] 2 tests."
echo "[  FAILED  ] 1 test, listed below:"
echo "[  FAILED  ] Gpu.Broken"
exit 1'
gtest slow_test 'sleep 30'
gtest bench '
echo "GPU time (graph replay):  100.0 steps/s, 100.0 tokens/s, 10.000 ms/step, 1.0 GB/s = 75.0% of roofline"'
gtest bench_skip 'echo "gpu_decode_bench: skipped, no CUDA device: UNAVAILABLE"'
gtest fake-sanitizer '"$@" >/dev/null; echo "========= ERROR SUMMARY: 0 errors"'

cat >"$bundle/plan.txt" <<'PLAN'
1 driver|pass_test|gtest|bin/pass_test
2 kernels|skip_test|gtest|bin/skip_test
2 kernels|fail_test|gtest|bin/fail_test
3 forward|slow_test|gtest|bin/slow_test
5 bench|bench|bench|bin/bench
5 bench|bench_skip|bench|bin/bench_skip
6 sanitizer|memcheck ok|sanitizer|bin/fake-sanitizer bin/pass_test
6 sanitizer|memcheck missing|sanitizer|no-such-compute-sanitizer bin/pass_test
PLAN

out="$work/out"
set +e
OUT="$out" COLO_GPU_SUITE_BUDGET_S=120 COLO_GPU_SUITE_STEP_TIMEOUT_S=2 "$SUITE" run --dir "$bundle" \
  >"$work/stdout" 2>"$work/stderr"
rc=$?
set -e
cat "$work/stdout"
fail() {
  echo "FAIL: $*" >&2
  cat "$work/stderr" >&2
  exit 1
}
[ "$rc" -eq 1 ] || fail "exit status $rc, want 1"
row() { grep -E "^[^ ]+ [^ ]+ +$1 +$2 " "$out/gpu_suite_summary.txt" >/dev/null || fail "no row '$1 $2'"; }
row pass_test PASS
row skip_test FAIL
row fail_test FAIL
row bench PASS
row bench_skip FAIL
grep -q "skipped (a skip is a failure here)" "$out/gpu_suite_summary.txt" || fail "skip note"
grep -q "75.0% of roofline" "$out/gpu_suite_summary.txt" || fail "bench figure in the table"
grep -Eq "memcheck ok +PASS" "$out/gpu_suite_summary.txt" || fail "sanitizer pass"
grep -Eq "memcheck missing +FAIL" "$out/gpu_suite_summary.txt" || fail "missing sanitizer must fail"
grep -Eq "slow_test +FAIL .*timed out" "$out/gpu_suite_summary.txt" || fail "timeout must fail"
grep -q "8 steps, " "$out/gpu_suite_summary.txt" || fail "every plan line gets a row"
[ -s "$out/gpu_suite_logs.tar.gz" ] || fail "no logs archive"
tar -tzf "$out/gpu_suite_logs.tar.gz" >"$work/logs.txt"
grep -q "skip_test.log" "$work/logs.txt" || fail "logs missing"
grep -Eq "skip_test +FAIL +[0-9]+ +1 skipped" "$out/gpu_suite_summary.txt" || fail "one skipped test"

# A spent budget: the steps left are failures, not silently dropped.
cat >"$bundle/plan.txt" <<'PLAN'
3 forward|slow_test|gtest|bin/slow_test
1 driver|pass_test|gtest|bin/pass_test
PLAN
set +e
OUT="$work/out3" COLO_GPU_SUITE_BUDGET_S=8 "$SUITE" run --dir "$bundle" >/dev/null 2>&1
rc=$?
set -e
[ "$rc" -eq 1 ] || fail "a spent budget must fail"
grep -Eq "pass_test +FAIL .*not run" "$work/out3/gpu_suite_summary.txt" || fail "not-run row"

# All passing: exit 0.
cat >"$bundle/plan.txt" <<'PLAN'
1 driver|pass_test|gtest|bin/pass_test
5 bench|bench|bench|bin/bench
PLAN
OUT="$work/out2" "$SUITE" run --dir "$bundle" >/dev/null 2>&1 || fail "an all-passing plan must exit 0"
grep -q "2 steps, 0 failed" "$work/out2/gpu_suite_summary.txt" || fail "summary line"
echo PASS
