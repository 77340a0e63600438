#include "kernels/cuda/vector_add.h"

#include <cuda_runtime.h>

namespace colo::kernels::cuda {
namespace {

__global__ void VectorAddKernel(const float* a, const float* b, float* out,
                                int64_t n) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) out[i] = a[i] + b[i];
}

std::string Describe(const char* call, cudaError_t err) {
  return std::string(call) + ": " + cudaGetErrorName(err) + " (" +
         cudaGetErrorString(err) + ")";
}

}  // namespace

int UsableDeviceCount(std::string* why) {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    if (why != nullptr) *why = Describe("cudaGetDeviceCount", err);
    return 0;
  }
  if (count == 0 && why != nullptr) *why = "no CUDA device";
  return count;
}

std::string VectorAdd(const float* a, const float* b, float* out, int64_t n) {
  const size_t bytes = static_cast<size_t>(n) * sizeof(float);
  float* d = nullptr;
  cudaError_t err = cudaMalloc(&d, 3 * bytes);
  if (err != cudaSuccess) return Describe("cudaMalloc", err);
  std::string result;
  if ((err = cudaMemcpy(d, a, bytes, cudaMemcpyHostToDevice)) != cudaSuccess ||
      (err = cudaMemcpy(d + n, b, bytes, cudaMemcpyHostToDevice)) != cudaSuccess) {
    result = Describe("cudaMemcpy H2D", err);
  } else {
    const int threads = 256;
    const int blocks = static_cast<int>((n + threads - 1) / threads);
    VectorAddKernel<<<blocks, threads>>>(d, d + n, d + 2 * n, n);
    if ((err = cudaGetLastError()) != cudaSuccess) {
      result = Describe("VectorAddKernel launch", err);
    } else if ((err = cudaMemcpy(out, d + 2 * n, bytes, cudaMemcpyDeviceToHost)) !=
               cudaSuccess) {
      result = Describe("cudaMemcpy D2H", err);
    }
  }
  cudaFree(d);
  return result;
}

}  // namespace colo::kernels::cuda
