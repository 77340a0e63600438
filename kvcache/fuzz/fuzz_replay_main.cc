// Replay main for the fuzz target when libFuzzer is not linked (gcc builds):
//   kv_cache_fuzz_replay FILE...        runs each file as one input;
//   kv_cache_fuzz_replay --random=N     runs N seeded pseudo-random inputs.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int main(int argc, char** argv) {
  int runs = 0;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--random=", 9) == 0) {
      const int n = std::atoi(argv[i] + 9);
      const uint64_t seed = 20261123;
      std::printf("fuzz replay: %d random inputs, seed=%llu\n", n,
                  static_cast<unsigned long long>(seed));
      std::mt19937_64 rng(seed);
      for (int k = 0; k < n; ++k) {
        std::vector<uint8_t> input(64 + rng() % 4096);
        for (auto& b : input) b = static_cast<uint8_t>(rng());
        LLVMFuzzerTestOneInput(input.data(), input.size());
        ++runs;
      }
      continue;
    }
    std::ifstream in(argv[i], std::ios::binary);
    std::vector<uint8_t> input((std::istreambuf_iterator<char>(in)),
                               std::istreambuf_iterator<char>());
    LLVMFuzzerTestOneInput(input.data(), input.size());
    ++runs;
  }
  std::printf("fuzz replay: %d inputs passed\n", runs);
  return 0;
}
