// Single-threaded GEMM throughput of kernels::Linear (batch invariant) and
// LinearBlas on the 100M model's shapes, timed in thread CPU time so that a
// loaded machine distorts the figures less than wall time would.
//   linear_bench [--reps=5] [--rows=1,8,32,256]
// Prints GFLOP/s per (m, k, n) and kernel (best of --reps).
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "kernels/cpu/linear.h"

ABSL_FLAG(int, reps, 5, "Timed repetitions per shape (best is printed).");
ABSL_FLAG(std::string, rows, "1,8,32,256", "Row counts (m).");

namespace {

double ThreadSeconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

std::vector<float> Random(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const int reps = absl::GetFlag(FLAGS_reps);
  struct Shape { int64_t k, n; const char* name; };
  const Shape shapes[] = {{768, 1280, "qkv"}, {768, 768, "o"}, {768, 4096, "gate_up"},
                          {2048, 768, "down"}};
  for (absl::string_view ms : absl::StrSplit(absl::GetFlag(FLAGS_rows), ',')) {
    int64_t m;
    if (!absl::SimpleAtoi(ms, &m)) return 1;
    for (const Shape& s : shapes) {
      auto x = Random(m * s.k, 1), w = Random(s.n * s.k, 2);
      std::vector<float> y(m * s.n);
      for (int blas = 0; blas < 2; ++blas) {
        double best = 1e30;
        for (int i = 0; i <= reps; ++i) {
          double t0 = ThreadSeconds();
          if (blas) {
            colo::kernels::LinearBlas(x.data(), m, s.k, w.data(), s.n, nullptr, y.data());
          } else {
            colo::kernels::Linear(x.data(), m, s.k, w.data(), s.n, nullptr, y.data(), nullptr);
          }
          double dt = ThreadSeconds() - t0;
          if (i > 0) best = std::min(best, dt);  // first run warms up
        }
        std::printf("m %4lld %-8s k %5lld n %5lld %-6s %7.1f GFLOP/s\n",
                    static_cast<long long>(m), s.name, static_cast<long long>(s.k),
                    static_cast<long long>(s.n), blas ? "blas" : "colo",
                    2.0 * m * s.k * s.n / best * 1e-9);
      }
    }
  }
  return 0;
}
