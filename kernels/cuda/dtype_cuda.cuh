// Device-side element types (nvcc only): the CUDA type of each DType, float
// conversions, and dispatch from a runtime DType to a templated launcher.
// Conversions to a 16-bit type round to nearest even; to fp8 e4m3 they round
// to nearest and saturate at +-448 (finite).
#ifndef COLO_KERNELS_CUDA_DTYPE_CUDA_CUH_
#define COLO_KERNELS_CUDA_DTYPE_CUDA_CUH_

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/cuda/dtype.h"

namespace colo::kernels::cuda {

__device__ __forceinline__ float ToFloat(float x) { return x; }
__device__ __forceinline__ float ToFloat(__half x) { return __half2float(x); }
__device__ __forceinline__ float ToFloat(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float ToFloat(__nv_fp8_e4m3 x) { return static_cast<float>(x); }

template <typename T>
__device__ __forceinline__ T FromFloat(float x);
template <>
__device__ __forceinline__ float FromFloat<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ __half FromFloat<__half>(float x) {
  return __float2half_rn(x);
}
template <>
__device__ __forceinline__ __nv_bfloat16 FromFloat<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}
template <>
__device__ __forceinline__ __nv_fp8_e4m3 FromFloat<__nv_fp8_e4m3>(float x) {
  return __nv_fp8_e4m3(x);  // __NV_SATFINITE
}

template <typename T>
struct TypeTag {
  using type = T;
};

// Calls f(TypeTag<T>{}) for the CUDA type of a compute dtype (f32/f16/bf16);
// INVALID_ARGUMENT naming `what` for fp8.
template <typename F>
absl::Status DispatchCompute(DType d, const char* what, F&& f) {
  switch (d) {
    case DType::kFloat32:
      return f(TypeTag<float>{});
    case DType::kFloat16:
      return f(TypeTag<__half>{});
    case DType::kBFloat16:
      return f(TypeTag<__nv_bfloat16>{});
    default:
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": dtype ", DTypeName(d), " is not a compute dtype"));
  }
}

// Any DType (the KV cache may be fp8).
template <typename F>
absl::Status DispatchAny(DType d, const char* what, F&& f) {
  if (d == DType::kFp8E4M3) return f(TypeTag<__nv_fp8_e4m3>{});
  return DispatchCompute(d, what, static_cast<F&&>(f));
}

}  // namespace colo::kernels::cuda

#endif  // COLO_KERNELS_CUDA_DTYPE_CUDA_CUH_
