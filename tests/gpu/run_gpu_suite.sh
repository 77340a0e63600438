#!/bin/bash
# The one-shot GPU suite (API.md): build and bundle here, run on a GPU machine.
#
#   tests/gpu/run_gpu_suite.sh bundle [ARCHIVE]
#       On a build machine (Bazel, the CUDA toolkit, no GPU needed): builds
#       --config=cuda, then packs the GPU test binaries, colo-engine (as the
#       tests' runfile), gpu_decode_bench, the Debian shared libraries they
#       load (NOT libcuda, cuBLAS or NCCL: the device machine's driver and
#       pip wheels provide those; glibc/libstdc++ come from the system), this
#       script and its plan into ARCHIVE (default: tests/gpu/bundle/
#       colo_gpu_bundle.tar.xz, ignored by git: pass tests/gpu/bundle as a
#       `carry` path to the device tool). Fails when the archive would exceed
#       64 MiB.
#   tests/gpu/run_gpu_suite.sh run [ARCHIVE | --dir BUNDLE_DIR]
#       On the GPU machine (no Bazel): unpacks, finds cuBLAS/cuBLASLt and
#       NCCL in the Python site-packages (pip wheels nvidia-cublas /
#       nvidia-nccl-cu13; /usr/local/cuda as a fallback), and runs the plan in
#       order within a 9-minute budget: driver/VMM tests, kernel tests, graph
#       and forward tests, engine tests, the decode benchmark, and
#       compute-sanitizer memcheck on the attention test. Every test runs with
#       COLO_REQUIRE_GPU=1 (a GPU test that cannot open the device fails
#       instead of skipping), and a SKIPPED line counts as a failure. Prints
#       one summary table; writes it and the logs to $OUT (when set) or
#       $COLO_GPU_SUITE_OUT. Exit status 0 only when every row passed.
#   tests/gpu/run_gpu_suite.sh
#       Both, on a machine that has Bazel and a GPU.
# Environment: COLO_GPU_SUITE_BUDGET_S (540: the whole run), 
# COLO_GPU_SUITE_STEP_TIMEOUT_S (300: one step), OUT / COLO_GPU_SUITE_OUT.
#
# The plan (plan.txt in the bundle, one step per line):
#   STAGE|NAME|KIND|COMMAND
# KIND: gtest (exit 0, no FAILED or SKIPPED line, at least one PASSED line),
# bench (exit 0 and a "of roofline" line), sanitizer (exit 0 and "ERROR
# SUMMARY: 0 errors"). COMMAND runs with bash in the bundle directory;
# $BUNDLE is the bundle directory, $GPU_COUNT the number of GPUs.
set -uo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEFAULT_ARCHIVE="tests/gpu/bundle/colo_gpu_bundle.tar.xz"
MAX_ARCHIVE_BYTES=$((64 << 20))
BUDGET_S="${COLO_GPU_SUITE_BUDGET_S:-540}"
STEP_TIMEOUT_S="${COLO_GPU_SUITE_STEP_TIMEOUT_S:-300}"

die() {
  echo "run_gpu_suite: $*" >&2
  exit 2
}

# Test binaries (bazel-bin paths) by stage; the plan below names them.
TEST_BINARIES=(
  engine/device/cuda_backend_test
  engine/device/device_backend_factory_test
  engine/memory/tagged_pool_cuda_test
  kvcache/kv_cache_cuda_test
  kernels/cuda/cuda_status_test
  kernels/cuda/vector_add_test
  kernels/cuda/attention_plan_test
  kernels/cuda/sampling_plan_test
  kernels/cuda/elementwise_test
  kernels/cuda/embedding_test
  kernels/cuda/rms_norm_test
  kernels/cuda/rope_test
  kernels/cuda/swiglu_test
  kernels/cuda/gemm_test
  kernels/cuda/attention_test
  kernels/cuda/sampling_test
  kernels/cuda/cuda_graph_test
  engine/memory/decode_graph_cuda_test
  engine/model/cuda_step_inputs_test
  engine/model/cuda_forward_test
  engine/server/engine_runtime_test
  engine/server/engine_runtime_cuda_test
  tests/engine/generate_cuda_test
  weight_sync/nccl_transport_test
)
OTHER_BINARIES=(
  bench/model/gpu_decode_bench
  engine/server/colo-engine
)

write_plan() {
  local out="$1"
  {
    for t in engine/device/cuda_backend_test engine/device/device_backend_factory_test \
             engine/memory/tagged_pool_cuda_test kvcache/kv_cache_cuda_test; do
      echo "1 driver/VMM|$(basename "$t")|gtest|bin/$(basename "$t")"
    done
    for t in cuda_status_test vector_add_test attention_plan_test sampling_plan_test \
             elementwise_test embedding_test rms_norm_test rope_test swiglu_test gemm_test \
             attention_test sampling_test cuda_graph_test; do
      echo "2 kernels|$t|gtest|bin/$t"
    done
    for t in decode_graph_cuda_test cuda_step_inputs_test cuda_forward_test; do
      echo "3 graph+forward|$t|gtest|bin/$t"
    done
    echo "4 engine|engine_runtime_test|gtest|bin/engine_runtime_test"
    echo "4 engine|engine_runtime_cuda_test|gtest|bin/engine_runtime_cuda_test"
    echo "4 engine|generate_cuda_test|gtest|bin/generate_cuda_test"
    # Two ranks need two GPUs (NCCL refuses two ranks on one device).
    echo '4 engine|nccl_transport_test|gtest|if [ "$GPU_COUNT" -lt 2 ]; then f=--gtest_filter=-*TwoRanks*; fi; bin/nccl_transport_test ${f:-}'
    echo "5 bench|gpu_decode_bench 1B bf16 batch 1|bench|bin/gpu_decode_bench --size=1b --dtype=bfloat16 --batch=1 --prompt_len=512 --decode_steps=256"
    echo "5 bench|gpu_decode_bench 1B bf16 batch 32|bench|bin/gpu_decode_bench --size=1b --dtype=bfloat16 --batch=32 --prompt_len=512 --decode_steps=128"
    echo "6 sanitizer|memcheck attention_test|sanitizer|compute-sanitizer --tool memcheck --error-exitcode 1 bin/attention_test"
  } >"$out"
}

bundle() {
  local archive="${1:-$DEFAULT_ARCHIVE}"
  command -v bazel >/dev/null || die "bundle needs bazel (run it on the build machine)"
  local root
  root="$(cd "$SCRIPT_DIR/../.." && pwd)"
  cd "$root" || die "no repository root"
  local targets=()
  for b in "${TEST_BINARIES[@]}" "${OTHER_BINARIES[@]}"; do
    targets+=("//$(dirname "$b"):$(basename "$b")")
  done
  echo "run_gpu_suite: building ${#targets[@]} targets with --config=cuda" >&2
  bazel build --config=cuda "${targets[@]}" >&2 || die "bazel build --config=cuda failed"
  local bin_dir
  bin_dir="$(bazel info --config=cuda bazel-bin 2>/dev/null)" || die "bazel info failed"
  local stage
  stage="$(mktemp -d)"
  mkdir -p "$stage/colo_gpu_bundle/bin" "$stage/colo_gpu_bundle/lib" \
           "$stage/colo_gpu_bundle/runfiles/colo/engine/server"
  local dest="$stage/colo_gpu_bundle"
  for b in "${TEST_BINARIES[@]}" bench/model/gpu_decode_bench; do
    [ -x "$bin_dir/$b" ] || die "missing $bin_dir/$b"
    cp "$bin_dir/$b" "$dest/bin/"
  done
  cp "$bin_dir/engine/server/colo-engine" "$dest/runfiles/colo/engine/server/"
  # Debug info is most of the size; symbols stay for backtraces.
  find "$dest/bin" "$dest/runfiles" -type f -exec strip --strip-debug {} +
  # The shared libraries they load, but those the device machine provides:
  # glibc and the toolchain runtime (newer there), the driver, cuBLAS, NCCL.
  local libs
  libs="$(for f in "$dest"/bin/* "$dest"/runfiles/colo/engine/server/colo-engine; do
            ldd "$f" | awk '/=> \// {print $3}'
          done | sort -u)"
  local skip='/(ld-linux|libc|libm|libpthread|libdl|librt|libutil|libresolv|libgcc_s|libstdc\+\+|libcuda|libcublas|libcublasLt|libnccl|libnvidia)[.-]'
  local n=0
  while IFS= read -r lib; do
    [ -n "$lib" ] || continue
    if [[ "$lib" =~ $skip ]]; then continue; fi
    cp -L "$lib" "$dest/lib/"
    n=$((n + 1))
  done <<<"$libs"
  find "$dest/lib" -type f -exec strip --strip-unneeded {} + 2>/dev/null
  write_plan "$dest/plan.txt"
  cp "$SCRIPT_DIR/run_gpu_suite.sh" "$dest/"
  git -C "$root" rev-parse HEAD >"$dest/COMMIT" 2>/dev/null || echo unknown >"$dest/COMMIT"
  if ! git -C "$root" diff --quiet HEAD 2>/dev/null; then echo "+ uncommitted changes" >>"$dest/COMMIT"; fi
  mkdir -p "$(dirname "$archive")"
  tar -C "$stage" -cf - colo_gpu_bundle | xz -T0 -6 >"$archive" || die "packing failed"
  rm -rf "$stage"
  local size
  size="$(stat -c %s "$archive")"
  echo "run_gpu_suite: $archive: $((size >> 20)) MiB ($size bytes), $n libraries bundled" >&2
  if [ "$size" -ge "$MAX_ARCHIVE_BYTES" ]; then
    die "$archive is $size bytes, over the 64 MiB the device tool carries"
  fi
  echo "$archive"
}

# Prints the directory holding the first library matching $1 (a glob): the
# Python site-packages first (pip wheels), then the CUDA toolkit.
find_lib_dir() {
  local pattern="$1" dirs=()
  local py
  for py in python3 /usr/bin/python3; do
    command -v "$py" >/dev/null || continue
    mapfile -t -O "${#dirs[@]}" dirs < <("$py" -c \
      'import site, sys; print("\n".join(p for p in site.getsitepackages() + [site.getusersitepackages()] + sys.path if p))' 2>/dev/null)
  done
  dirs+=(/usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/lib/x86_64-linux-gnu)
  local d hit
  for d in "${dirs[@]}"; do
    [ -d "$d" ] || continue
    # "$d/": follow the start when it is a link (/usr/local/cuda is).
    hit="$(find "$d/" -maxdepth 5 -name "$pattern" 2>/dev/null | head -1)"
    if [ -n "$hit" ]; then
      dirname "$hit"
      return 0
    fi
  done
  return 1
}

# Distinct test names on gtest's "[  <tag> ] Suite.Test" lines of a log.
count_tests() {
  grep "^\[  $1 *\] [A-Za-z]" "$2" | sed 's/ (.*//' | sort -u | wc -l
}

# Classifies one step's log: PASS or FAIL, and a note.
classify() {
  local kind="$1" rc="$2" log="$3"
  local passed failed skipped
  passed="$(grep -c '^\[  PASSED  \]' "$log")"
  failed="$(grep -c '^\[  FAILED  \]' "$log")"
  skipped="$(grep -c '^\[  SKIPPED \]' "$log")"
  case "$kind" in
    gtest)
      local tests
      tests="$(sed -n 's/^\[==========\] \([0-9]*\) tests\{0,1\} from .* ran\..*/\1/p' "$log" | tail -1)"
      if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        echo "FAIL|timed out"
      elif [ "$skipped" -gt 0 ]; then
        echo "FAIL|$(count_tests SKIPPED "$log") skipped (a skip is a failure here)"
      elif [ "$rc" -ne 0 ] || [ "$failed" -gt 0 ] || [ "$passed" -eq 0 ]; then
        echo "FAIL|exit $rc, $(count_tests FAILED "$log") failed of ${tests:-?}"
      else
        echo "PASS|${tests:-?} tests"
      fi
      ;;
    bench)
      local line
      line="$(grep -m1 'of roofline' "$log" | sed 's/  */ /g')"
      if [ "$rc" -eq 0 ] && [ -n "$line" ]; then
        echo "PASS|${line}"
      else
        echo "FAIL|exit $rc: $(grep -m1 -i 'skipped\|error\|:' "$log" | cut -c1-100)"
      fi
      ;;
    sanitizer)
      if [ "$rc" -eq 0 ] && grep -q 'ERROR SUMMARY: 0 errors' "$log"; then
        echo "PASS|0 memcheck errors"
      else
        local summary
        summary="$(grep -m1 'ERROR SUMMARY' "$log")"
        echo "FAIL|exit $rc ${summary:-$(tail -1 "$log" | cut -c1-100)}"
      fi
      ;;
    *)
      echo "FAIL|unknown kind $kind"
      ;;
  esac
}

run() {
  local bundle_dir="" archive=""
  if [ "${1:-}" = "--dir" ]; then
    bundle_dir="$(cd "${2:?--dir needs a directory}" && pwd)" || die "no bundle at $2"
  else
    archive="${1:-$DEFAULT_ARCHIVE}"
    [ -f "$archive" ] || die "no archive $archive (run: $0 bundle, then carry it)"
    local unpack
    unpack="$(mktemp -d /tmp/colo_gpu_suite.XXXXXX)"
    xz -dc "$archive" | tar -C "$unpack" -xf - || die "cannot unpack $archive"
    bundle_dir="$unpack/colo_gpu_bundle"
  fi
  [ -f "$bundle_dir/plan.txt" ] || die "$bundle_dir has no plan.txt"
  local out="${OUT:-${COLO_GPU_SUITE_OUT:-$bundle_dir/results}}"
  mkdir -p "$out"
  local logs
  logs="$(mktemp -d /tmp/colo_gpu_suite_logs.XXXXXX)"

  # Libraries: the bundle's, then cuBLAS and NCCL from the machine.
  local libpath="$bundle_dir/lib" d
  for pattern in 'libcublas.so.13*' 'libcublasLt.so.13*' 'libnccl.so.2*'; do
    if d="$(find_lib_dir "$pattern")"; then
      case ":$libpath:" in *":$d:"*) ;; *) libpath="$libpath:$d" ;; esac
    else
      echo "run_gpu_suite: warning: no $pattern found (pip nvidia-cublas / nvidia-nccl-cu13?)" >&2
    fi
  done
  export LD_LIBRARY_PATH="$libpath${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export COLO_REQUIRE_GPU=1
  export BUNDLE="$bundle_dir"
  export TEST_SRCDIR="$bundle_dir/runfiles"
  export TEST_WORKSPACE=colo
  GPU_COUNT="$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)"
  export GPU_COUNT="${GPU_COUNT:-0}"
  {
    echo "colo GPU suite: commit $(tr '\n' ' ' <"$bundle_dir/COMMIT" 2>/dev/null)"
    echo "host: $(uname -n), GPUs: $GPU_COUNT $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)"
    echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  } | tee "$out/gpu_suite_summary.txt"

  local start rows=() failures=0 i=0
  start="$(date +%s)"
  while IFS='|' read -r stage name kind cmd; do
    [ -n "$stage" ] || continue
    [[ "$stage" == \#* ]] && continue
    i=$((i + 1))
    local log="$logs/$(printf '%02d' "$i")_$(printf '%s' "$name" | tr -c 'A-Za-z0-9_.-' '_').log"
    local now elapsed left
    now="$(date +%s)"
    elapsed=$((now - start))
    left=$((BUDGET_S - elapsed))
    if [ "$left" -le 5 ]; then
      rows+=("$stage|$name|FAIL|0|not run: the ${BUDGET_S}s budget is spent")
      failures=$((failures + 1))
      continue
    fi
    local per=$((left < STEP_TIMEOUT_S ? left : STEP_TIMEOUT_S))
    local t0 rc
    t0="$(date +%s)"
    echo "run_gpu_suite: [$stage] $name (timeout ${per}s)" >&2
    local tmp
    tmp="$(mktemp -d /tmp/colo_gpu_test.XXXXXX)"
    (cd "$bundle_dir" && TEST_TMPDIR="$tmp" timeout -k 10 "$per" bash -c "$cmd") >"$log" 2>&1
    rc=$?
    rm -rf "$tmp"
    local secs=$(($(date +%s) - t0))
    local verdict
    verdict="$(classify "$kind" "$rc" "$log")"
    rows+=("$stage|$name|${verdict%%|*}|$secs|${verdict#*|}")
    [ "${verdict%%|*}" = PASS ] || failures=$((failures + 1))
  done <"$bundle_dir/plan.txt"

  {
    printf '\n%-16s %-36s %-5s %6s  %s\n' STAGE STEP RESULT SECS NOTE
    printf '%s\n' "----------------------------------------------------------------------------------------------------"
    local row
    for row in "${rows[@]}"; do
      IFS='|' read -r stage name result secs note <<<"$row"
      printf '%-16s %-36s %-5s %6s  %s\n' "$stage" "$name" "$result" "$secs" "$note"
    done
    printf '%s\n' "----------------------------------------------------------------------------------------------------"
    echo "${#rows[@]} steps, $failures failed, $(($(date +%s) - start))s"
  } | tee -a "$out/gpu_suite_summary.txt"
  tar -C "$logs" -czf "$out/gpu_suite_logs.tar.gz" . 2>/dev/null
  rm -rf "$logs"
  [ "$failures" -eq 0 ]
}

case "${1:-all}" in
  bundle)
    shift
    bundle "$@" >/dev/null
    ;;
  run)
    shift
    run "$@"
    ;;
  all)
    archive="$(bundle)" || exit 2
    run "$archive"
    ;;
  *)
    die "usage: $0 [bundle [ARCHIVE] | run [ARCHIVE | --dir DIR]]"
    ;;
esac
