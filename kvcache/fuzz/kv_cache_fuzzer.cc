// libFuzzer target: the fuzz input chooses the configuration (page size,
// window, sessions) and then every operation of the same op stream the
// property test runs (kvcache/testing/op_driver.h); any invariant violation,
// wrong KV content or leak aborts. Build with kvcache/fuzz/run_fuzz.sh
// (clang, -fsanitize=fuzzer,address,undefined); the Bazel target
// :kv_cache_fuzz_replay links the same function with a replay main (gcc).
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "kvcache/testing/op_driver.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using colo::kvcache::test_support::ByteEntropy;
  using colo::kvcache::test_support::DriverConfig;
  using colo::kvcache::test_support::OpDriver;
  if (size < 2) return 0;
  ByteEntropy entropy(data, size);
  static constexpr int32_t kPages[] = {1, 4, 16, 64};
  DriverConfig config;
  config.page_size = kPages[entropy.Next(4)];
  const int32_t p = config.page_size;
  const int32_t windows[] = {0, p / 2 + 1, p, 3 * p + 1};
  config.sliding_window = windows[entropy.Next(4)];
  config.sessions = entropy.Next(2) == 0;
  config.full_capacity_tokens = p >= 64 ? 1280 : 256;
  config.swa_capacity_tokens = p >= 64 ? 1024 : 192;
  config.max_prompt = p >= 64 ? 160 : 96;
  auto driver = OpDriver::Create(config);
  if (!driver.ok()) {
    std::fprintf(stderr, "driver: %s\n", driver.status().ToString().c_str());
    std::abort();
  }
  for (int ops = 0; ops < 4000 && !entropy.Exhausted(); ++ops) {
    absl::Status s = (*driver)->Step(entropy);
    if (!s.ok()) {
      std::fprintf(stderr, "%s: %s\n", config.Describe().c_str(), s.ToString().c_str());
      std::abort();
    }
  }
  absl::Status drained = (*driver)->Drain();
  if (!drained.ok()) {
    std::fprintf(stderr, "%s: %s\n", config.Describe().c_str(), drained.ToString().c_str());
    std::abort();
  }
  return 0;
}
