// Element types of the GPU engine's tensors and how flags name them.
//
// Activations and weights are kFloat32, kFloat16 or kBFloat16 (math in fp32
// either way); the KV cache may also be kFp8E4M3 (stored with scale 1: the
// values are rounded to e4m3 and saturate at +-448). The numbering matches
// kvcache::KvDtype. Plain C++ (no CUDA): the engine's flag parsing and the
// CPU build use it too. Thread-safe (pure functions).
#ifndef COLO_KERNELS_CUDA_DTYPE_H_
#define COLO_KERNELS_CUDA_DTYPE_H_

#include <cstddef>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace colo::kernels::cuda {

enum class DType : int {
  kFloat32 = 0,
  kFloat16 = 1,
  kBFloat16 = 2,
  kFp8E4M3 = 3,
};

inline constexpr size_t DTypeBytes(DType d) {
  return d == DType::kFloat32 ? 4 : d == DType::kFp8E4M3 ? 1 : 2;
}

// "float32", "float16", "bfloat16", "fp8_e4m3".
absl::string_view DTypeName(DType d);

// A type activations and weights may have (not fp8).
inline constexpr bool IsComputeDType(DType d) {
  return d == DType::kFloat32 || d == DType::kFloat16 || d == DType::kBFloat16;
}

// Parses the names above and the usual aliases (fp32/f32/float, fp16/f16/half,
// bf16, fp8/fp8_e4m3/float8_e4m3fn). INVALID_ARGUMENT listing the valid
// names otherwise.
absl::StatusOr<DType> ParseDType(absl::string_view name);

}  // namespace colo::kernels::cuda

#endif  // COLO_KERNELS_CUDA_DTYPE_H_
