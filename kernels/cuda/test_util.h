// Helpers for the GPU kernel tests: skip without a device (fail under
// COLO_REQUIRE_GPU=1), random inputs, element-wise comparison with a
// tolerance, and host-side rounding and transfer of float data as any DType
// (the references compute on the host from the values the device sees).
#ifndef COLO_KERNELS_CUDA_TEST_UTIL_H_
#define COLO_KERNELS_CUDA_TEST_UTIL_H_

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gtest/gtest.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/device_array.h"
#include "kernels/cuda/dtype.h"
#include "tests/util/gpu_required.h"

// Skips the current test, with the runtime's reason, when there is no GPU
// (fails it under COLO_REQUIRE_GPU=1).
#define COLO_SKIP_WITHOUT_GPU() \
  COLO_SKIP_OR_FAIL_WITHOUT_GPU(::colo::kernels::cuda::CudaDeviceAvailable())

namespace colo::kernels::cuda::testing {

inline std::vector<float> RandomFloats(size_t n, uint32_t seed, float lo = -1.0f,
                                       float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// |got - want| <= atol + rtol * |want| for every element; reports the first
// few mismatches and their count.
inline void ExpectAllNear(const std::vector<float>& got, const std::vector<float>& want,
                          float atol, float rtol = 0.0f) {
  ASSERT_EQ(got.size(), want.size());
  int64_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const float tol = atol + rtol * std::fabs(want[i]);
    if (!(std::fabs(got[i] - want[i]) <= tol)) {
      if (++bad <= 5) {
        ADD_FAILURE() << "element " << i << ": got " << got[i] << " want " << want[i]
                      << " (tol " << tol << ")";
      }
    }
  }
  EXPECT_EQ(bad, 0) << "elements outside tolerance out of " << got.size();
}

// Bytes of x stored as `d` (round to nearest even; fp8 saturates).
inline void StoreAs(DType d, float x, uint8_t* out) {
  switch (d) {
    case DType::kFloat32:
      std::memcpy(out, &x, 4);
      return;
    case DType::kFloat16: {
      const __half h = __float2half_rn(x);
      std::memcpy(out, &h, 2);
      return;
    }
    case DType::kBFloat16: {
      const __nv_bfloat16 b = __float2bfloat16_rn(x);
      std::memcpy(out, &b, 2);
      return;
    }
    case DType::kFp8E4M3:
      *out = __nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3);
      return;
  }
}

inline float LoadAs(DType d, const uint8_t* in) {
  switch (d) {
    case DType::kFloat32: {
      float x;
      std::memcpy(&x, in, 4);
      return x;
    }
    case DType::kFloat16: {
      __half h;
      std::memcpy(&h, in, 2);
      return __half2float(h);
    }
    case DType::kBFloat16: {
      __nv_bfloat16 b;
      std::memcpy(&b, in, 2);
      return __bfloat162float(b);
    }
    case DType::kFp8E4M3: {
      const __half h(__nv_cvt_fp8_to_halfraw(*in, __NV_E4M3));
      return __half2float(h);
    }
  }
  return 0.0f;
}

// x rounded to `d` and back.
inline float RoundTo(DType d, float x) {
  uint8_t bytes[4];
  StoreAs(d, x, bytes);
  return LoadAs(d, bytes);
}

inline std::vector<float> RoundAll(DType d, std::vector<float> v) {
  for (float& x : v) x = RoundTo(d, x);
  return v;
}

// Device bytes of `v` stored as `d`.
inline absl::StatusOr<DeviceArray<uint8_t>> Upload(const std::vector<float>& v, DType d,
                                                   cudaStream_t stream) {
  std::vector<uint8_t> bytes(v.size() * DTypeBytes(d));
  for (size_t i = 0; i < v.size(); ++i) StoreAs(d, v[i], &bytes[i * DTypeBytes(d)]);
  return DeviceArray<uint8_t>::FromHost(bytes, stream);
}

inline absl::StatusOr<std::vector<float>> Download(const DeviceArray<uint8_t>& a, DType d,
                                                   cudaStream_t stream) {
  absl::StatusOr<std::vector<uint8_t>> bytes = a.ToHost(stream);
  if (!bytes.ok()) return bytes.status();
  std::vector<float> v(bytes->size() / DTypeBytes(d));
  for (size_t i = 0; i < v.size(); ++i) v[i] = LoadAs(d, &(*bytes)[i * DTypeBytes(d)]);
  return v;
}

// Relative tolerance of one rounding to `d` (half an ulp, with margin).
inline float Eps(DType d) {
  switch (d) {
    case DType::kFloat32:
      return 1e-6f;
    case DType::kFloat16:
      return 1e-3f;
    case DType::kBFloat16:
      return 8e-3f;
    case DType::kFp8E4M3:
      return 7e-2f;
  }
  return 0.0f;
}

inline constexpr DType kComputeDTypes[] = {DType::kFloat32, DType::kFloat16, DType::kBFloat16};

}  // namespace colo::kernels::cuda::testing

#endif  // COLO_KERNELS_CUDA_TEST_UTIL_H_
