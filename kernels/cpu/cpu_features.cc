#include "kernels/cpu/cpu_features.h"

#include <cstdlib>

namespace colo {
namespace kernels {

bool HasAvx512() {
  static const bool has = __builtin_cpu_supports("avx512f") &&
                          __builtin_cpu_supports("avx2") &&
                          __builtin_cpu_supports("fma") &&
                          std::getenv("COLO_DISABLE_AVX512") == nullptr;
  return has;
}

bool HasAvx2() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
}

}  // namespace kernels
}  // namespace colo
