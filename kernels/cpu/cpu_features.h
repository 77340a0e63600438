// Runtime dispatch for the CPU kernels: which instruction sets this machine
// has, and the function attributes that compile a kernel for them. Setting
// COLO_DISABLE_AVX512 in the environment turns the AVX-512 paths off (to
// test and compare the fallbacks).
#ifndef COLO_KERNELS_CPU_CPU_FEATURES_H_
#define COLO_KERNELS_CPU_CPU_FEATURES_H_

#define COLO_AVX512 __attribute__((target("avx512f,avx2,fma")))
#define COLO_AVX2 __attribute__((target("avx2,fma")))

namespace colo {
namespace kernels {

// AVX-512F + AVX2 + FMA, and COLO_DISABLE_AVX512 unset. Cached.
bool HasAvx512();
// AVX2 + FMA. Cached.
bool HasAvx2();

}  // namespace kernels
}  // namespace colo

#endif  // COLO_KERNELS_CPU_CPU_FEATURES_H_
