#include "kernels/cuda/sampling.h"

#include <climits>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/cuda_status.h"

namespace colo::kernels::cuda {
namespace {

constexpr int kThreads = kSampleThreads;
constexpr int kWarps = kThreads / 32;
constexpr int kCand = kMaxDeviceCandidates;  // 1024, a power of two
constexpr unsigned kFullMask = 0xffffffffu;
static_assert(kThreads == 256, "the radix histogram has one bin per thread");
static_assert((kCand & (kCand - 1)) == 0, "bitonic sort needs a power of two");

// log(sum(exp(x))) over one row, in double, like kernels::LogSumExp: the max
// ignores NaN; a non-finite max is returned as is.
__device__ double RowLogSumExp(const float* x, int64_t n, double* shared) {
  double mx = -INFINITY;
  for (int64_t i = threadIdx.x; i < n; i += kThreads) mx = fmax(mx, static_cast<double>(x[i]));
  mx = BlockReduceMax<double, kThreads>(mx, shared);
  if (!isfinite(mx)) return mx;
  double sum = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += kThreads) {
    sum += exp(static_cast<double>(x[i]) - mx);
  }
  sum = BlockReduceSum<double, kThreads>(sum, shared);
  return mx + log(sum);
}

// Index of the row's largest value, lowest index among equals (every thread
// gets it).
__device__ int64_t RowArgMax(const float* x, int64_t vocab, float* best_v, int64_t* best_i) {
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
  __syncthreads();
  return token;
}

// Inclusive prefix sum over the block (thread order), deterministic; *total
// receives the sum of all threads' values (equal, bit for bit, to the last
// thread's result). `warp_totals` holds kWarps values.
template <typename T>
__device__ T BlockInclusiveScan(T v, T* warp_totals, T* total) {
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const T n = __shfl_up_sync(kFullMask, v, o);
    if (lane >= o) v += n;
  }
  if (lane == 31) warp_totals[warp] = v;
  __syncthreads();
  if (warp == 0) {
    T t = lane < kWarps ? warp_totals[lane] : T(0);
#pragma unroll
    for (int o = 1; o < kWarps; o <<= 1) {
      const T n = __shfl_up_sync(kFullMask, t, o);
      if (lane >= o) t += n;
    }
    if (lane < kWarps) warp_totals[lane] = t;
  }
  __syncthreads();
  if (warp > 0) v += warp_totals[warp - 1];
  *total = warp_totals[kWarps - 1];
  __syncthreads();  // warp_totals is reused by the next call
  return v;
}

__device__ int BlockMinInt(int v, int* shared) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = min(v, __shfl_xor_sync(kFullMask, v, o));
  if (threadIdx.x % 32 == 0) shared[threadIdx.x / 32] = v;
  __syncthreads();
  int r = INT_MAX;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) r = min(r, shared[w]);
  __syncthreads();
  return r;
}

// Shared memory of one row.
struct SampleShared {
  double reduce[kThreads];
  float best_v[kThreads];
  int64_t best_i[kThreads];
  double warp_d[kWarps];
  int warp_i[kWarps];
  int min_i[kWarps];
  int hist[256];
  int count;
  int64_t picked;
  uint32_t prefix;
  int k;
  float cand_v[kCand];
  int cand_i[kCand];
  double prob[kCand];
  double cum[kCand];
};

// Temperature sampling walks the row in chunks of kChunk = kThreads * kItems
// elements: thread t sums its kItems consecutive elements in index order,
// then a block scan orders the threads. Every pass over the row uses exactly
// these operations, so the running sums of a later pass equal the total of
// an earlier one bit for bit.
constexpr int kItems = 16;
constexpr int64_t kChunk = int64_t{kThreads} * kItems;

__device__ double ThreadExpSum(const float* x, int64_t vocab, int64_t first, double inv_t,
                               double mx) {
  double s = 0.0;
#pragma unroll
  for (int k = 0; k < kItems; ++k) {
    const int64_t i = first + k;
    if (i < vocab) s += exp(x[i] * inv_t - mx);
  }
  return s;
}

// Sum of exp(x[i] * inv_t - mx) over the row.
__device__ double VocabExpSum(const float* x, int64_t vocab, double inv_t, double mx,
                              SampleShared& sh) {
  double sum = 0.0;
  for (int64_t base = 0; base < vocab; base += kChunk) {
    const double mine = ThreadExpSum(x, vocab, base + threadIdx.x * kItems, inv_t, mx);
    double total = 0.0;
    BlockInclusiveScan<double>(mine, sh.warp_d, &total);
    sum += total;
  }
  return sum;
}

// The first index whose running sum of exp(x[i] * inv_t - mx) exceeds
// `target` (vocab - 1 when none does: rounding at the very end).
__device__ int64_t VocabFirstAbove(const float* x, int64_t vocab, double inv_t, double mx,
                                   double target, SampleShared& sh) {
  double run = 0.0;
  for (int64_t base = 0; base < vocab; base += kChunk) {
    const int64_t first = base + threadIdx.x * kItems;
    const double mine = ThreadExpSum(x, vocab, first, inv_t, mx);
    double total = 0.0;
    const double incl = BlockInclusiveScan<double>(mine, sh.warp_d, &total);
    const bool crosses = first < vocab && target < run + incl;
    const int t = BlockMinInt(crosses ? static_cast<int>(threadIdx.x) : INT_MAX, sh.min_i);
    if (t != INT_MAX) {
      // Thread t walks its elements; its last valid one if rounding keeps
      // every partial sum at or below the target.
      if (static_cast<int>(threadIdx.x) == t) {
        double cum = run + (incl - mine);
        int64_t pick = -1, last = first;
        for (int k = 0; k < kItems; ++k) {
          const int64_t i = first + k;
          if (i >= vocab) break;
          last = i;
          cum += exp(x[i] * inv_t - mx);
          if (target < cum) {
            pick = i;
            break;
          }
        }
        sh.picked = pick >= 0 ? pick : last;
      }
      __syncthreads();
      const int64_t picked = sh.picked;
      __syncthreads();
      return picked;
    }
    run += total;
  }
  return vocab - 1;
}

// Inclusive scan of sh.prob[0..n) into sh.cum[0..n) (n <= kCand), in chunks.
__device__ void ScanCandidates(int n, SampleShared& sh) {
  double run = 0.0;
  for (int base = 0; base < n; base += kThreads) {
    const int j = base + threadIdx.x;
    const double v = j < n ? sh.prob[j] : 0.0;
    double total = 0.0;
    const double incl = BlockInclusiveScan<double>(v, sh.warp_d, &total);
    if (j < n) sh.cum[j] = run + incl;
    run += total;
  }
  __syncthreads();
}

// Lowest j < n with sh.cum[j] >= threshold (at_least) or threshold <
// sh.cum[j] (!at_least); INT_MAX when none.
__device__ int FirstCum(int n, double threshold, bool at_least, SampleShared& sh) {
  int first = INT_MAX;
  for (int j = threadIdx.x; j < n; j += kThreads) {
    const bool hit = at_least ? sh.cum[j] >= threshold : threshold < sh.cum[j];
    if (hit && j < first) first = j;
  }
  return BlockMinInt(first, sh.min_i);
}

// The top `k_total` candidates by (logit desc, index asc), sorted, in
// sh.cand_v / sh.cand_i (entries past k_total are sentinels).
__device__ void SelectCandidates(const float* x, int64_t vocab, int k_total, SampleShared& sh) {
  const int tid = threadIdx.x;
  // Radix select of the k_total-th largest key, 8 bits per pass.
  if (tid == 0) {
    sh.prefix = 0;
    sh.k = k_total;
  }
  __syncthreads();
  for (int pass = 0; pass < 4; ++pass) {
    sh.hist[tid] = 0;
    __syncthreads();
    const uint32_t mask = RadixPrefixMask(pass);
    const uint32_t prefix = sh.prefix;
    for (int64_t i = tid; i < vocab; i += kThreads) {
      const uint32_t key = OrderedKey(x[i]);
      if ((key & mask) == prefix) atomicAdd(&sh.hist[RadixDigit(key, pass)], 1);
    }
    __syncthreads();
    if (tid == 0) {
      int32_t above = 0;
      const uint32_t digit = SelectDigit(sh.hist, sh.k, &above);
      sh.k -= above;
      sh.prefix = prefix | (digit << (24 - 8 * pass));
    }
    __syncthreads();
  }
  const uint32_t threshold = sh.prefix;
  const int need_equal = sh.k;
  const int greater = k_total - need_equal;
  // Keys above the threshold: all of them (any order: sorted below).
  if (tid == 0) sh.count = 0;
  __syncthreads();
  for (int64_t i = tid; i < vocab; i += kThreads) {
    if (OrderedKey(x[i]) > threshold) {
      const int pos = atomicAdd(&sh.count, 1);
      if (pos < kCand) {
        sh.cand_v[pos] = x[i];
        sh.cand_i[pos] = static_cast<int>(i);
      }
    }
  }
  // Keys equal to the threshold: the need_equal lowest indices (thread t
  // counts its kItems consecutive elements; a block scan ranks them).
  int taken = 0;
  for (int64_t base = 0; base < vocab && taken < need_equal; base += kChunk) {
    const int64_t first = base + static_cast<int64_t>(tid) * kItems;
    int mine = 0;
    for (int k = 0; k < kItems; ++k) {
      const int64_t i = first + k;
      if (i < vocab && OrderedKey(x[i]) == threshold) ++mine;
    }
    int total = 0;
    const int incl = BlockInclusiveScan<int>(mine, sh.warp_i, &total);
    int rank = taken + incl - mine;
    for (int k = 0; k < kItems && rank < need_equal; ++k) {
      const int64_t i = first + k;
      if (i < vocab && OrderedKey(x[i]) == threshold) {
        if (greater + rank < kCand) {
          sh.cand_v[greater + rank] = x[i];
          sh.cand_i[greater + rank] = static_cast<int>(i);
        }
        ++rank;
      }
    }
    taken += total;
  }
  for (int j = k_total + tid; j < kCand; j += kThreads) {
    sh.cand_v[j] = -INFINITY;
    sh.cand_i[j] = INT_MAX;
  }
  __syncthreads();
  // Bitonic sort into CandidateBefore order.
  for (int size = 2; size <= kCand; size <<= 1) {
    for (int stride = size >> 1; stride > 0; stride >>= 1) {
      for (int i = tid; i < kCand; i += kThreads) {
        const int other = i ^ stride;
        if (other > i) {
          const bool i_first =
              CandidateBefore(sh.cand_v[i], sh.cand_i[i], sh.cand_v[other], sh.cand_i[other]);
          const bool want_i_first = (i & size) == 0;
          if (i_first != want_i_first) {
            const float v = sh.cand_v[i];
            const int ix = sh.cand_i[i];
            sh.cand_v[i] = sh.cand_v[other];
            sh.cand_i[i] = sh.cand_i[other];
            sh.cand_v[other] = v;
            sh.cand_i[other] = ix;
          }
        }
      }
      __syncthreads();
    }
  }
}

// One block per row.
__global__ void __launch_bounds__(kThreads)
    SampleRowsKernel(const float* logits, int64_t vocab, const DeviceSamplingParams* params,
                     int32_t* tokens, float* logprobs, int32_t* needs_host) {
  __shared__ SampleShared sh;
  const int64_t r = blockIdx.x;
  const float* x = logits + r * vocab;
  const DeviceSamplingParams p = params[r];
  const int64_t best = RowArgMax(x, vocab, sh.best_v, sh.best_i);
  const double lse = RowLogSumExp(x, vocab, sh.reduce);
  int64_t token = best;
  int host = p.mode == kSampleHost ? 1 : 0;
  if (p.mode == kSampleTemperature || p.mode == kSampleCandidates) {
    const double inv_t = 1.0 / static_cast<double>(p.temperature);
    const double mx = x[best] * inv_t;
    const double u = CounterUniformHd(p.seed, p.step);
    if (p.mode == kSampleTemperature) {
      const double target = u * VocabExpSum(x, vocab, inv_t, mx, sh);
      token = VocabFirstAbove(x, vocab, inv_t, mx, target, sh);
    } else {
      const int k_total =
          p.top_k > 0 ? p.top_k
                      : static_cast<int>(vocab < kMaxDeviceCandidates ? vocab
                                                                      : kMaxDeviceCandidates);
      SelectCandidates(x, vocab, k_total, sh);
      for (int j = threadIdx.x; j < k_total; j += kThreads) {
        sh.prob[j] = exp(sh.cand_v[j] * inv_t - mx);
      }
      __syncthreads();
      double norm = 0.0;
      if (p.top_k > 0) {
        ScanCandidates(k_total, sh);
        norm = sh.cum[k_total - 1];
      } else {
        norm = VocabExpSum(x, vocab, inv_t, mx, sh);
      }
      for (int j = threadIdx.x; j < k_total; j += kThreads) sh.prob[j] /= norm;
      __syncthreads();
      int cut = k_total;
      if (p.top_p < 1.0f) {
        ScanCandidates(k_total, sh);
        const int first = FirstCum(k_total, static_cast<double>(p.top_p), true, sh);
        if (first != INT_MAX) {
          cut = first + 1;
        } else if (p.top_k == 0) {
          host = 1;  // the nucleus reaches past the candidates
        }
        if (!host) {
          // Renormalise the kept candidates (the CPU divides each by their sum).
          ScanCandidates(cut, sh);
          const double s = sh.cum[cut - 1];
          __syncthreads();
          for (int j = threadIdx.x; j < cut; j += kThreads) sh.prob[j] /= s;
          __syncthreads();
        }
      }
      if (!host) {
        ScanCandidates(cut, sh);
        const int first = FirstCum(cut, u, false, sh);
        token = sh.cand_i[first != INT_MAX ? first : cut - 1];
      }
    }
  }
  if (threadIdx.x == 0) {
    tokens[r] = static_cast<int32_t>(token);
    logprobs[r] = static_cast<float>(static_cast<double>(x[token]) - lse);
    needs_host[r] = host;
  }
}

// One block per row.
__global__ void GreedySampleKernel(const float* logits, int64_t vocab, int32_t* tokens,
                                   float* logprobs) {
  __shared__ double shared[kThreads];
  __shared__ float best_v[kThreads];
  __shared__ int64_t best_i[kThreads];
  const int64_t r = blockIdx.x;
  const float* x = logits + r * vocab;
  const int64_t token = RowArgMax(x, vocab, best_v, best_i);
  const double lse = RowLogSumExp(x, vocab, shared);
  if (threadIdx.x == 0) {
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

absl::Status GreedySample(const float* logits, int64_t rows, int64_t vocab, int32_t* tokens,
                          float* logprobs, cudaStream_t stream) {
  if (absl::Status s = CheckShape("GreedySample", rows, vocab); !s.ok()) return s;
  if (rows == 0) return absl::OkStatus();
  GreedySampleKernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(logits, vocab,
                                                                           tokens, logprobs);
  return LaunchStatus("GreedySampleKernel");
}

absl::Status LogSoftmax(const float* logits, int64_t rows, int64_t vocab, float* out,
                        cudaStream_t stream) {
  if (absl::Status s = CheckShape("LogSoftmax", rows, vocab); !s.ok()) return s;
  if (rows == 0) return absl::OkStatus();
  LogSoftmaxKernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(logits, vocab, out);
  return LaunchStatus("LogSoftmaxKernel");
}

absl::Status SampleRows(const float* logits, int64_t rows, int64_t vocab,
                        const DeviceSamplingParams* params, int32_t* tokens, float* logprobs,
                        int32_t* needs_host, cudaStream_t stream) {
  if (absl::Status s = CheckShape("SampleRows", rows, vocab); !s.ok()) return s;
  if (rows == 0) return absl::OkStatus();
  SampleRowsKernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(
      logits, vocab, params, tokens, logprobs, needs_host);
  return LaunchStatus("SampleRowsKernel");
}

}  // namespace colo::kernels::cuda
