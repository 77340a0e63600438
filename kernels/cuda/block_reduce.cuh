// Block-wide reductions for the kernels in //kernels/cuda (device code only).
// Every thread of the block must call them (they __syncthreads); kThreads is
// the block size, a power of two; `shared` holds kThreads elements and may be
// reused by the caller after the call returns.
#ifndef COLO_KERNELS_CUDA_BLOCK_REDUCE_CUH_
#define COLO_KERNELS_CUDA_BLOCK_REDUCE_CUH_

namespace colo::kernels::cuda {

template <typename T, int kThreads>
__device__ T BlockReduceSum(T value, T* shared) {
  shared[threadIdx.x] = value;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) shared[threadIdx.x] += shared[threadIdx.x + s];
    __syncthreads();
  }
  const T result = shared[0];
  __syncthreads();
  return result;
}

// Maximum ignoring NaN (fmax semantics, like std::max(acc, x) in a loop that
// starts from -inf).
template <typename T, int kThreads>
__device__ T BlockReduceMax(T value, T* shared) {
  shared[threadIdx.x] = value;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) {
      shared[threadIdx.x] = fmax(shared[threadIdx.x], shared[threadIdx.x + s]);
    }
    __syncthreads();
  }
  const T result = shared[0];
  __syncthreads();
  return result;
}

}  // namespace colo::kernels::cuda

#endif  // COLO_KERNELS_CUDA_BLOCK_REDUCE_CUH_
