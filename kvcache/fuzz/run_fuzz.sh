#!/bin/bash
# Builds the KV-cache libFuzzer target with clang (outside Bazel: the Bazel
# toolchain is gcc) and runs it for a bounded time.
#   kvcache/fuzz/run_fuzz.sh [SECONDS=60] [extra libFuzzer flags...]
# Output: /tmp/kv_fuzz/kv_cache_fuzzer, corpus in /tmp/kv_fuzz/corpus, crash
# reproducers in /tmp/kv_fuzz/. Exit status is libFuzzer's (non-zero on a bug).
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_TO_RUN="${1:-60}"
shift || true
OUT=/tmp/kv_fuzz
mkdir -p "$OUT/corpus"
CXX="${CXX:-clang++}"

SRCS=(
  kvcache/fuzz/kv_cache_fuzzer.cc
  kvcache/testing/op_driver.cc
  kvcache/testing/test_pool.cc
  kvcache/kv_cache_manager.cc
  kvcache/kv_storage.cc
  kvcache/radix_cache.cc
  kvcache/page_allocator.cc
  proto/logging/logging.cc
)
# The memory layer the cache allocates from (TaggedPool over the CPU backend).
for f in engine/memory/memory_tag.cc engine/memory/tagged_pool.cc \
         engine/device/device_backend.cc engine/device/cpu_backend.cc; do
  [[ -f "$f" ]] && SRCS+=("$f")
done
ABSL_LIBS=$(grep -o '"-labsl_[a-z0-9_]*"' bazel/system.BUILD | tr -d '"' | tr '\n' ' ')

echo "building $OUT/kv_cache_fuzzer with $CXX (${#SRCS[@]} sources)"
"$CXX" -std=c++17 -O1 -g -fno-omit-frame-pointer \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -I. "${SRCS[@]}" -o "$OUT/kv_cache_fuzzer" \
  -Wl,--start-group $ABSL_LIBS -Wl,--end-group -lpthread

echo "fuzzing for ${SECONDS_TO_RUN}s"
"$OUT/kv_cache_fuzzer" -max_total_time="$SECONDS_TO_RUN" -max_len=8192 \
  -print_final_stats=1 -artifact_prefix="$OUT/" "$@" "$OUT/corpus"
