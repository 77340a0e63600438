// The cost of the NaN/inf check of weight updates (weight_sync/finite_check.h):
// FirstNonFinite over --gib GiB of float32 and of bfloat16 (all finite, the
// common case: the whole buffer is read), best of --repeat, next to a plain
// memcpy of the same bytes on this machine. Prints ms per GiB and GiB/s.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/time/clock.h"
#include "weight_sync/finite_check.h"

ABSL_FLAG(double, gib, 1.0, "Bytes per pass, in GiB.");
ABSL_FLAG(int, repeat, 5, "Passes; the best is reported.");

namespace {

template <typename Fn>
double BestSeconds(int repeat, const Fn& fn) {
  double best = 1e30;
  for (int i = 0; i < repeat; ++i) {
    const absl::Time t0 = absl::Now();
    fn();
    best = std::min(best, absl::ToDoubleSeconds(absl::Now() - t0));
  }
  return best;
}

void Report(const char* what, double seconds, double gib) {
  std::printf("%-28s %8.1f ms/GiB  %6.2f GiB/s\n", what, seconds * 1000 / gib, gib / seconds);
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const double gib = absl::GetFlag(FLAGS_gib);
  const int repeat = absl::GetFlag(FLAGS_repeat);
  const size_t bytes = static_cast<size_t>(gib * (1 << 30)) / 4 * 4;
  std::vector<float> f32(bytes / 4);
  for (size_t i = 0; i < f32.size(); ++i) f32[i] = 0.001f * static_cast<float>(i % 1000) - 0.5f;
  std::vector<char> dst(bytes);
  std::memcpy(dst.data(), f32.data(), bytes);  // fault the pages in

  int64_t sink = 0;
  Report("memcpy (reference)",
         BestSeconds(repeat, [&] { std::memcpy(dst.data(), f32.data(), bytes); }), gib);
  Report("finite check, float32", BestSeconds(repeat, [&] {
           sink += colo::weight_sync::FirstNonFinite(colo::weight_sync::TensorDtype::kF32,
                                                     f32.data(), f32.size());
         }), gib);
  // bfloat16 values (the upper halves of the floats) for the 16-bit pass.
  std::vector<uint16_t> bf16(bytes / 2);
  for (size_t i = 0; i < bf16.size(); ++i) bf16[i] = static_cast<uint16_t>(0x3f80 + i % 64);
  Report("finite check, bfloat16", BestSeconds(repeat, [&] {
           sink += colo::weight_sync::FirstNonFinite(colo::weight_sync::TensorDtype::kBF16,
                                                     bf16.data(), bf16.size());
         }), gib);
  std::printf("(sum of results %lld: -%d means every value was finite)\n",
              static_cast<long long>(sink), 2 * repeat);
  return 0;
}
