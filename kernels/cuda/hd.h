// COLO_HD marks functions that run on the host and on the device: under nvcc
// they are __host__ __device__, under the host compiler plain inline
// functions. The index math of the CUDA kernels (page/slot addressing, GQA
// head mapping, window bounds, split-K partition and merge, tile bounds)
// lives in such functions, in headers that the CPU tests include, so CI
// checks it on machines without a GPU.
#ifndef COLO_KERNELS_CUDA_HD_H_
#define COLO_KERNELS_CUDA_HD_H_

#if defined(__CUDACC__)
#define COLO_HD __host__ __device__
#else
#define COLO_HD
#endif

#endif  // COLO_KERNELS_CUDA_HD_H_
