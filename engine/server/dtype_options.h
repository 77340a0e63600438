// --dtype and --kv_cache_dtype (API.md): which dtypes the engine computes
// and caches in, by device.
//
//   --dtype=auto|bfloat16|float16|float32      auto: the checkpoint's dtype
//   --kv_cache_dtype=auto|bfloat16|float16|fp8_e4m3   auto: the compute dtype
//
// CUDA: weights and activations in the compute dtype (fp32 accumulation);
// the KV cache in the compute dtype or fp8_e4m3 (a 16-bit cache of the other
// 16-bit type is refused: INVALID_ARGUMENT). fp8 needs compute capability
// >= 8.9 (checked when the model is built: FAILED_PRECONDITION).
// CPU: float32 only for now: auto means float32 there whatever the
// checkpoint stores (bf16 checkpoints are converted on load, as before);
// an explicit 16-bit --dtype or any --kv_cache_dtype but auto is
// FAILED_PRECONDITION naming the flag (bf16 on the CPU is not built yet).
#ifndef COLO_ENGINE_SERVER_DTYPE_OPTIONS_H_
#define COLO_ENGINE_SERVER_DTYPE_OPTIONS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/cuda/dtype.h"

namespace colo::engine {

struct EngineDTypes {
  kernels::cuda::DType compute = kernels::cuda::DType::kFloat32;
  kernels::cuda::DType kv_cache = kernels::cuda::DType::kFloat32;
};

// INVALID_ARGUMENT naming the flag for a value outside the lists above.
absl::Status ValidateDTypeFlags(const std::string& dtype, const std::string& kv_cache_dtype);

// The dtypes for a device ("cpu" or "cuda") and a checkpoint stored as
// `checkpoint` (see the file comment for the rules and errors).
absl::StatusOr<EngineDTypes> ResolveDTypes(const std::string& dtype,
                                           const std::string& kv_cache_dtype,
                                           const std::string& device,
                                           kernels::cuda::DType checkpoint);

}  // namespace colo::engine

#endif  // COLO_ENGINE_SERVER_DTYPE_OPTIONS_H_
