#include "kernels/cuda/sampling.h"

#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/cuda_status.h"

namespace colo::kernels::cuda {
namespace {

constexpr int kThreads = 256;

// log(sum(exp(x))) over one row, in double, like kernels::LogSumExp: the max
// ignores NaN; a non-finite max is returned as is.
__device__ double RowLogSumExp(const float* x, int64_t n, double* shared) {
  double mx = -INFINITY;
  for (int64_t i = threadIdx.x; i < n; i += kThreads) {
    mx = fmax(mx, static_cast<double>(x[i]));
  }
  mx = BlockReduceMax<double, kThreads>(mx, shared);
  if (!isfinite(mx)) return mx;
  double sum = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += kThreads) {
    sum += exp(static_cast<double>(x[i]) - mx);
  }
  sum = BlockReduceSum<double, kThreads>(sum, shared);
  return mx + log(sum);
}

// One block per row.
__global__ void GreedySampleKernel(const float* logits, int64_t vocab,
                                   int32_t* tokens, float* logprobs) {
  __shared__ double shared[kThreads];
  __shared__ float best_v[kThreads];
  __shared__ int64_t best_i[kThreads];
  const int64_t r = blockIdx.x;
  const float* x = logits + r * vocab;
  const int tid = threadIdx.x;
  // Per thread: first index of its strided subset with the largest value
  // (strict > keeps the lowest index; -1 = none seen yet).
  float v = -INFINITY;
  int64_t idx = -1;
  for (int64_t i = tid; i < vocab; i += kThreads) {
    if (idx < 0 || x[i] > v) {
      v = x[i];
      idx = i;
    }
  }
  best_v[tid] = v;
  best_i[tid] = idx;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if (tid < s) {
      const int64_t oi = best_i[tid + s];
      const float ov = best_v[tid + s];
      const int64_t mi = best_i[tid];
      const bool take =
          oi >= 0 && (mi < 0 || ov > best_v[tid] || (ov == best_v[tid] && oi < mi));
      if (take) {
        best_v[tid] = ov;
        best_i[tid] = oi;
      }
    }
    __syncthreads();
  }
  const int64_t token = best_i[0];
  const double lse = RowLogSumExp(x, vocab, shared);
  if (tid == 0) {
    tokens[r] = static_cast<int32_t>(token);
    logprobs[r] = static_cast<float>(static_cast<double>(x[token]) - lse);
  }
}

__global__ void LogSoftmaxKernel(const float* logits, int64_t vocab, float* out) {
  __shared__ double shared[kThreads];
  const int64_t r = blockIdx.x;
  const float* x = logits + r * vocab;
  float* o = out + r * vocab;
  const double lse = RowLogSumExp(x, vocab, shared);
  for (int64_t i = threadIdx.x; i < vocab; i += kThreads) {
    o[i] = static_cast<float>(static_cast<double>(x[i]) - lse);
  }
}

absl::Status CheckShape(const char* what, int64_t rows, int64_t vocab) {
  if (rows < 0 || rows > 0x7fffffff || vocab <= 0 || vocab > 0x7fffffff) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": bad shape rows=", rows, " vocab=", vocab));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status GreedySample(const float* logits, int64_t rows, int64_t vocab,
                          int32_t* tokens, float* logprobs,
                          cudaStream_t stream) {
  if (absl::Status s = CheckShape("GreedySample", rows, vocab); !s.ok()) return s;
  if (rows == 0) return absl::OkStatus();
  GreedySampleKernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(
      logits, vocab, tokens, logprobs);
  return LaunchStatus("GreedySampleKernel");
}

absl::Status LogSoftmax(const float* logits, int64_t rows, int64_t vocab,
                        float* out, cudaStream_t stream) {
  if (absl::Status s = CheckShape("LogSoftmax", rows, vocab); !s.ok()) return s;
  if (rows == 0) return absl::OkStatus();
  LogSoftmaxKernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(
      logits, vocab, out);
  return LaunchStatus("LogSoftmaxKernel");
}

absl::Status SampleTokens(const float* logits, int64_t rows, int64_t vocab,
                          absl::Span<const SamplingParams> params,
                          absl::Span<const uint64_t> steps,
                          SampledToken* host_out, cudaStream_t stream) {
  if (absl::Status s = CheckShape("SampleTokens", rows, vocab); !s.ok()) return s;
  if (static_cast<int64_t>(params.size()) != rows ||
      static_cast<int64_t>(steps.size()) != rows) {
    return absl::InvalidArgumentError(absl::StrCat(
        "SampleTokens: ", rows, " rows but ", params.size(), " params and ",
        steps.size(), " steps"));
  }
  if (rows == 0) return absl::OkStatus();
  bool all_greedy = true;
  for (const SamplingParams& p : params) all_greedy &= p.temperature <= 0.0f;
  if (all_greedy) {
    int32_t* d_tokens = nullptr;
    if (absl::Status s = CudaStatus(
            cudaMallocAsync(&d_tokens, rows * (sizeof(int32_t) + sizeof(float)),
                            stream),
            "SampleTokens: cudaMallocAsync");
        !s.ok()) {
      return s;
    }
    float* d_logprobs = reinterpret_cast<float*>(d_tokens + rows);
    std::vector<int32_t> tokens(rows);
    std::vector<float> logprobs(rows);
    auto run = [&]() -> absl::Status {
      if (absl::Status s =
              GreedySample(logits, rows, vocab, d_tokens, d_logprobs, stream);
          !s.ok()) {
        return s;
      }
      if (absl::Status s = CudaStatus(
              cudaMemcpyAsync(tokens.data(), d_tokens, rows * sizeof(int32_t),
                              cudaMemcpyDeviceToHost, stream),
              "SampleTokens: cudaMemcpyAsync tokens");
          !s.ok()) {
        return s;
      }
      return CudaStatus(cudaMemcpyAsync(logprobs.data(), d_logprobs,
                                        rows * sizeof(float),
                                        cudaMemcpyDeviceToHost, stream),
                        "SampleTokens: cudaMemcpyAsync logprobs");
    };
    const absl::Status status = run();
    const absl::Status freed =
        CudaStatus(cudaFreeAsync(d_tokens, stream), "SampleTokens: cudaFreeAsync");
    const absl::Status synced = CudaStatus(cudaStreamSynchronize(stream),
                                           "SampleTokens: cudaStreamSynchronize");
    if (!status.ok()) return status;
    if (!freed.ok()) return freed;
    if (!synced.ok()) return synced;
    for (int64_t r = 0; r < rows; ++r) {
      host_out[r].token = tokens[r];
      host_out[r].logprob = logprobs[r];
    }
    return absl::OkStatus();
  }
  std::vector<float> host(static_cast<size_t>(rows * vocab));
  if (absl::Status s = CudaStatus(
          cudaMemcpyAsync(host.data(), logits, host.size() * sizeof(float),
                          cudaMemcpyDeviceToHost, stream),
          "SampleTokens: cudaMemcpyAsync logits");
      !s.ok()) {
    return s;
  }
  if (absl::Status s = CudaStatus(cudaStreamSynchronize(stream),
                                  "SampleTokens: cudaStreamSynchronize");
      !s.ok()) {
    return s;
  }
  for (int64_t r = 0; r < rows; ++r) {
    host_out[r] = SampleToken(host.data() + r * vocab, vocab, params[r], steps[r]);
  }
  return absl::OkStatus();
}

}  // namespace colo::kernels::cuda
