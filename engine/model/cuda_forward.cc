#include "engine/model/cuda_forward.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/rope.h"
#include "kernels/cpu/sampling.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/attention_plan.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/embedding.h"
#include "kernels/cuda/kv_write.h"
#include "kernels/cuda/rms_norm.h"
#include "kernels/cuda/rope.h"
#include "kernels/cuda/sampling.h"
#include "kernels/cuda/swiglu.h"
#include "proto/logging/logging.h"
#include "proto/status/status_macros.h"

namespace colo {
namespace engine {
namespace kc = ::colo::kernels::cuda;

namespace {

constexpr size_t kAlign = 256;
constexpr size_t kGemmWorkspaceBytes = size_t{32} << 20;
// Floats per pinned staging chunk of a weight upload (two chunks in flight).
constexpr size_t kUploadChunkFloats = size_t{4} << 20;

size_t AlignUp(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

// Hands out aligned sub-buffers of one allocation (or, with base == nullptr,
// only counts the bytes).
class Carver {
 public:
  explicit Carver(char* base) : base_(base) {}
  void* TakeBytes(size_t bytes) {
    char* p = base_ == nullptr ? nullptr : base_ + used_;
    used_ += AlignUp(std::max<size_t>(bytes, 1));
    return p;
  }
  template <typename T>
  T* Take(int64_t n) {
    return static_cast<T*>(TakeBytes(static_cast<size_t>(std::max<int64_t>(n, 1)) * sizeof(T)));
  }
  size_t used() const { return used_; }

 private:
  char* base_;
  size_t used_ = 0;
};

// The span [lo, lo + bytes) of host memory covering every tensor of the
// packed host weights.
absl::Status PackedSpan(const ModelWeights& host_weights, const char** lo, size_t* bytes) {
  const char* first = nullptr;
  const char* end = nullptr;
  for (const WeightInfo& w : host_weights.List()) {
    const char* b = reinterpret_cast<const char*>(w.data);
    const char* e = b + w.NumElements() * sizeof(float);
    if (first == nullptr || b < first) first = b;
    if (end == nullptr || e > end) end = e;
  }
  if (first == nullptr) return absl::InvalidArgumentError("model has no tensors");
  *lo = first;
  *bytes = static_cast<size_t>(end - first);
  return absl::OkStatus();
}

char* Offset(void* p, size_t bytes) { return static_cast<char*>(p) + bytes; }
const char* Offset(const void* p, size_t bytes) { return static_cast<const char*>(p) + bytes; }

}  // namespace

CudaTransformerModel::CudaTransformerModel(const ModelConfig& config, const Options& options)
    : config_(config),
      options_(options),
      limits_{options.max_tokens, options.max_requests, options.max_context, options.page_size},
      layout_(StepLayout::For(limits_)) {
  const std::vector<double> inv = kernels::RopeInverseFrequencies(
      config.head_dim, config.rope_theta, config.rope_scaling);
  inv_freq_.assign(inv.begin(), inv.end());  // float32 rounding, as the CPU kernel
  elem_bytes_ = kc::DTypeBytes(options.dtype);
}

CudaTransformerModel::~CudaTransformerModel() {
  TaggedPool* pool = options_.device_pool;
  // Nothing queued by this model may still run on memory about to be freed
  // (TaggedPool::Free synchronizes the device before unmapping as well).
  if (inputs_uploaded_ != nullptr) {
    cudaEventSynchronize(inputs_uploaded_);
    cudaEventDestroy(inputs_uploaded_);
  }
  for (void* p : {weights_, graph_mem_}) {
    if (p == nullptr) continue;
    const absl::Status s = pool->Free(p);
    if (!s.ok()) COLO_LOG(ERROR) << "CudaTransformerModel: freeing device memory: " << s;
  }
}

absl::StatusOr<std::unique_ptr<CudaTransformerModel>> CudaTransformerModel::Create(
    const ModelWeights& host_weights, const Options& options, cudaStream_t stream) {
  if (options.device_pool == nullptr || options.device_pool->backend()->kind() != "cuda") {
    return absl::InvalidArgumentError(
        "CudaTransformerModel needs a device_pool over the CUDA backend");
  }
  if (options.max_tokens <= 0 || options.max_requests <= 0 || options.max_context <= 0 ||
      options.max_requests > options.max_tokens || options.page_size <= 0 ||
      options.max_context > (int64_t{1} << 30) || options.max_tokens > (int64_t{1} << 30)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "CudaTransformerModel: bad limits max_tokens=", options.max_tokens,
        " max_requests=", options.max_requests, " max_context=", options.max_context,
        " page_size=", options.page_size));
  }
  if (!kc::IsComputeDType(options.dtype) ||
      (options.kv_dtype != options.dtype && options.kv_dtype != kc::DType::kFp8E4M3)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "CudaTransformerModel: dtype ", kc::DTypeName(options.dtype), " with a ",
        kc::DTypeName(options.kv_dtype),
        " KV cache (the KV cache has the compute dtype or fp8_e4m3)"));
  }
  if (absl::Status s = kc::CudaDeviceAvailable(options.device_pool->backend()->device());
      !s.ok()) {
    return s;
  }
  const ModelConfig& c = host_weights.config();
  if (c.IsMoe() || c.attention_sinks ||
      kernels::RopeAttentionScaling(c.rope_scaling) != 1.0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the CUDA forward does not run model_type ", c.model_type,
        " yet (MoE experts, attention sinks and YaRN run on the CPU: --device=cpu)"));
  }
  std::unique_ptr<CudaTransformerModel> model(
      new CudaTransformerModel(host_weights.config(), options));
  RETURN_IF_ERROR(model->Init(host_weights, stream));
  return model;
}

absl::Status CudaTransformerModel::Init(const ModelWeights& host_weights, cudaStream_t stream) {
  const ModelConfig& c = config_;
  TaggedPool* pool = options_.device_pool;
  if (c.head_dim > kc::kAttnMaxHeadDim || c.head_dim % 2 != 0 || c.num_kv_heads <= 0 ||
      c.num_heads % c.num_kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "CudaTransformerModel: head_dim ", c.head_dim, " (even, <= ", kc::kAttnMaxHeadDim,
        ") with ", c.num_heads, " heads / ", c.num_kv_heads, " KV heads unsupported"));
  }
  int device = 0;
  RETURN_IF_ERROR(kc::CudaStatus(cudaGetDevice(&device), "cudaGetDevice"));
  RETURN_IF_ERROR(kc::CudaStatus(
      cudaDeviceGetAttribute(&num_sms_, cudaDevAttrMultiProcessorCount, device),
      "cudaDeviceGetAttribute(MultiProcessorCount)"));
  if (options_.kv_dtype == kc::DType::kFp8E4M3) {
    int major = 0, minor = 0;
    RETURN_IF_ERROR(kc::CudaStatus(
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device),
        "cudaDeviceGetAttribute(ComputeCapabilityMajor)"));
    RETURN_IF_ERROR(kc::CudaStatus(
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device),
        "cudaDeviceGetAttribute(ComputeCapabilityMinor)"));
    if (major * 10 + minor < 89) {
      return absl::FailedPreconditionError(absl::StrCat(
          "--kv_cache_dtype=fp8_e4m3 needs a GPU with fp8 support (compute capability >= 8.9); "
          "this one is ", major, ".", minor));
    }
  }

  // Device weights: the host packing's element offsets, in the device dtype,
  // then the constants.
  const char* lo = nullptr;
  RETURN_IF_ERROR(PackedSpan(host_weights, &lo, &host_span_bytes_));
  embed_offset_ = static_cast<size_t>(reinterpret_cast<const char*>(host_weights.embed()) - lo);
  weight_bytes_ = host_span_bytes_ / sizeof(float) * elem_bytes_;
  const size_t constants_offset = AlignUp(weight_bytes_);
  const size_t constants_bytes = inv_freq_.size() * sizeof(float);
  ASSIGN_OR_RETURN(weights_, pool->Allocate(MemoryTag::kWeights,
                                            constants_offset + constants_bytes,
                                            "cuda model weights"));
  inv_freq_dev_ = reinterpret_cast<float*>(Offset(weights_, constants_offset));
  // A host tensor's device copy: same element offset from the packing's
  // start, in the device dtype.
  auto to_dev = [&](const float* p) -> const void* {
    if (p == nullptr) return nullptr;
    const size_t elements =
        static_cast<size_t>(reinterpret_cast<const char*>(p) - lo) / sizeof(float);
    return Offset(weights_, elements * elem_bytes_);
  };
  embed_ = to_dev(host_weights.embed());
  final_norm_ = to_dev(host_weights.final_norm());
  lm_head_ = to_dev(host_weights.lm_head());
  for (int i = 0; i < c.num_layers; ++i) {
    const LayerWeights& L = host_weights.layer(i);
    layers_.push_back({to_dev(L.input_norm), to_dev(L.qkv), to_dev(L.qkv_bias), to_dev(L.o),
                       to_dev(L.o_bias), to_dev(L.q_norm), to_dev(L.k_norm), to_dev(L.post_norm),
                       to_dev(L.gate_up), to_dev(L.down)});
  }

  // Fixed buffers of the cuda_graph tag.
  const int64_t T = options_.max_tokens, R = options_.max_requests;
  const int64_t H = c.hidden_size, QKV = c.QSize() + 2 * c.KvSize(), I = c.intermediate_size,
                half = c.head_dim / 2;
  const size_t e = elem_bytes_;
  const size_t ws_floats = kc::MaxDecodeWorkspaceFloats(
      static_cast<int32_t>(R), c.num_heads, c.num_kv_heads, c.head_dim, num_sms_);
  auto carve = [&](Carver& k, Buffers& b) {
    b.inputs = static_cast<char*>(k.TakeBytes(layout_.total));
    b.cos = k.Take<float>(T * half);
    b.sin = k.Take<float>(T * half);
    b.hidden = k.TakeBytes(T * H * e);
    b.normed = k.TakeBytes(T * H * e);
    b.qkv = k.TakeBytes(T * QKV * e);
    b.attn = k.TakeBytes(T * c.QSize() * e);
    b.gate_up = k.TakeBytes(T * 2 * I * e);
    b.act = k.TakeBytes(T * I * e);
    b.last = k.TakeBytes(R * H * e);
    b.last_normed = k.TakeBytes(R * H * e);
    b.logits = k.Take<float>(R * c.vocab_size);
    b.out = k.Take<int32_t>(3 * R);
    b.decode_ws = k.Take<float>(static_cast<int64_t>(ws_floats));
    b.decode_ws_floats = ws_floats;
    b.gemm_ws = k.TakeBytes(kGemmWorkspaceBytes);
    b.gemm_ws_bytes = kGemmWorkspaceBytes;
  };
  Carver counter(nullptr);
  Buffers unused{};
  carve(counter, unused);
  ASSIGN_OR_RETURN(graph_mem_, pool->Allocate(MemoryTag::kCudaGraph, counter.used(),
                                              "cuda model activations"));
  Carver carver(static_cast<char*>(graph_mem_));
  carve(carver, buf_);

  ASSIGN_OR_RETURN(inputs_pinned_, kc::PinnedBuffer::Create(layout_.total));
  ASSIGN_OR_RETURN(results_pinned_, kc::PinnedBuffer::Create(3 * R * sizeof(int32_t)));
  ASSIGN_OR_RETURN(row_pinned_, kc::PinnedBuffer::Create(c.vocab_size * sizeof(float)));
  RETURN_IF_ERROR(kc::CudaStatus(
      cudaEventCreateWithFlags(&inputs_uploaded_, cudaEventDisableTiming),
      "cudaEventCreateWithFlags"));
  ASSIGN_OR_RETURN(gemm_, kc::Gemm::Create());
  RETURN_IF_ERROR(gemm_.SetWorkspace(buf_.gemm_ws, buf_.gemm_ws_bytes));
  return UploadWeights(host_weights, stream);
}

absl::StatusOr<const char*> CudaTransformerModel::CheckPacking(
    const ModelWeights& host_weights) const {
  const char* lo = nullptr;
  size_t bytes = 0;
  RETURN_IF_ERROR(PackedSpan(host_weights, &lo, &bytes));
  const size_t embed_offset =
      static_cast<size_t>(reinterpret_cast<const char*>(host_weights.embed()) - lo);
  if (bytes != host_span_bytes_ || embed_offset != embed_offset_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "CudaTransformerModel: host weights packed as ", bytes, " bytes (embedding at ",
        embed_offset, "), the device copy as ", host_span_bytes_, " bytes (embedding at ",
        embed_offset_, ")"));
  }
  return lo;
}

absl::Status CudaTransformerModel::UploadRanges(
    const ModelWeights& host_weights, const std::vector<std::pair<size_t, size_t>>& ranges,
    cudaStream_t stream) {
  ASSIGN_OR_RETURN(const char* lo, CheckPacking(host_weights));
  const float* host = reinterpret_cast<const float*>(lo);
  // Two pinned chunks: the host fills one while the device converts the
  // other (ConvertElements reads the mapped pinned memory directly).
  kc::PinnedBuffer chunk[2];
  void* chunk_dev[2] = {nullptr, nullptr};
  cudaEvent_t done[2] = {nullptr, nullptr};
  bool used[2] = {false, false};
  auto cleanup = [&] {
    for (cudaEvent_t ev : done) {
      if (ev != nullptr) cudaEventDestroy(ev);
    }
  };
  absl::Status status = [&]() -> absl::Status {
    for (int i = 0; i < 2; ++i) {
      ASSIGN_OR_RETURN(chunk[i], kc::PinnedBuffer::Create(kUploadChunkFloats * sizeof(float)));
      ASSIGN_OR_RETURN(chunk_dev[i], chunk[i].DevicePointer());
      RETURN_IF_ERROR(kc::CudaStatus(cudaEventCreateWithFlags(&done[i], cudaEventDisableTiming),
                                     "cudaEventCreateWithFlags"));
    }
    int next = 0;
    auto push = [&](const float* src, void* dst, size_t count, kc::DType to) -> absl::Status {
      for (size_t at = 0; at < count; at += kUploadChunkFloats) {
        const size_t n = std::min(kUploadChunkFloats, count - at);
        const int b = next;
        next ^= 1;
        if (used[b]) {
          RETURN_IF_ERROR(kc::CudaStatus(cudaEventSynchronize(done[b]),
                                         "cudaEventSynchronize (weight upload chunk)"));
        }
        std::memcpy(chunk[b].data(), src + at, n * sizeof(float));
        RETURN_IF_ERROR(kc::ConvertElements(chunk_dev[b], kc::DType::kFloat32,
                                            Offset(dst, at * kc::DTypeBytes(to)), to,
                                            static_cast<int64_t>(n), stream));
        RETURN_IF_ERROR(kc::CudaStatus(cudaEventRecord(done[b], stream), "cudaEventRecord"));
        used[b] = true;
      }
      return absl::OkStatus();
    };
    for (const auto& [offset, count] : ranges) {
      RETURN_IF_ERROR(push(host + offset, Offset(weights_, offset * elem_bytes_), count,
                           options_.dtype));
    }
    RETURN_IF_ERROR(push(inv_freq_.data(), inv_freq_dev_, inv_freq_.size(), kc::DType::kFloat32));
    return kc::CudaStatus(cudaStreamSynchronize(stream),
                          "cudaStreamSynchronize after the weight upload");
  }();
  if (!status.ok()) {
    // The pinned chunks must not be freed while a conversion reads them.
    cudaStreamSynchronize(stream);
  }
  cleanup();
  return status;
}

absl::Status CudaTransformerModel::UploadWeights(const ModelWeights& host_weights,
                                                 cudaStream_t stream) {
  return UploadRanges(host_weights, {{0, host_span_bytes_ / sizeof(float)}}, stream);
}

absl::Status CudaTransformerModel::UploadTensors(const ModelWeights& host_weights,
                                                 absl::Span<const std::string> names,
                                                 cudaStream_t stream) {
  ASSIGN_OR_RETURN(const char* lo, CheckPacking(host_weights));
  std::vector<std::pair<size_t, size_t>> ranges;
  for (const std::string& name : names) {
    ASSIGN_OR_RETURN(WeightInfo w, host_weights.Find(name));
    ranges.emplace_back(
        static_cast<size_t>(reinterpret_cast<const char*>(w.data) - lo) / sizeof(float),
        static_cast<size_t>(w.NumElements()));
  }
  return UploadRanges(host_weights, ranges, stream);
}

absl::Status CudaTransformerModel::DownloadWeights(ModelWeights* host_weights,
                                                   cudaStream_t stream) {
  ASSIGN_OR_RETURN(const char* lo, CheckPacking(*host_weights));
  float* host = reinterpret_cast<float*>(const_cast<char*>(lo));
  ASSIGN_OR_RETURN(kc::PinnedBuffer chunk,
                   kc::PinnedBuffer::Create(kUploadChunkFloats * sizeof(float)));
  ASSIGN_OR_RETURN(void* chunk_dev, chunk.DevicePointer());
  const size_t total = host_span_bytes_ / sizeof(float);
  for (size_t at = 0; at < total; at += kUploadChunkFloats) {
    const size_t n = std::min(kUploadChunkFloats, total - at);
    RETURN_IF_ERROR(kc::ConvertElements(Offset(weights_, at * elem_bytes_), options_.dtype,
                                        chunk_dev, kc::DType::kFloat32,
                                        static_cast<int64_t>(n), stream));
    RETURN_IF_ERROR(kc::CudaStatus(cudaStreamSynchronize(stream),
                                   "cudaStreamSynchronize (weight download)"));
    std::memcpy(host + at, chunk.data(), n * sizeof(float));
  }
  return absl::OkStatus();
}

int32_t CudaTransformerModel::DecodeSplits(int32_t items, int32_t max_keys) const {
  const kc::RowLayout rows = kc::MakeRowLayout(config_.num_heads, config_.num_kv_heads);
  const int64_t blocks = int64_t{items} * config_.num_kv_heads * rows.head_groups;
  return kc::ChooseDecodeSplits(blocks, max_keys, num_sms_);
}

absl::StatusOr<StepPlan> CudaTransformerModel::PrepareInputs(
    absl::Span<const ForwardRequest> batch, const KvCacheView& kv, int32_t pad_to,
    cudaStream_t stream) {
  // The previous upload must have consumed the staging before it is
  // rewritten.
  RETURN_IF_ERROR(kc::CudaStatus(cudaEventSynchronize(inputs_uploaded_),
                                 "cudaEventSynchronize (previous inputs upload)"));
  ASSIGN_OR_RETURN(StepPlan plan, PackStep(batch, kv, config_, options_.kv_dtype, limits_,
                                           pad_to, 1, inputs_pinned_.data()));
  // A graph bucket's splits must serve any length: choose them for the
  // longest context; an eager step for its actual longest request.
  const int32_t keys =
      pad_to > 0 ? static_cast<int32_t>(options_.max_context) : plan.max_kv_len;
  plan.decode_splits = plan.num_decode > 0 ? DecodeSplits(plan.num_decode, keys) : 1;
  RETURN_IF_ERROR(kc::CudaStatus(
      cudaMemcpyAsync(buf_.inputs, inputs_pinned_.data(), plan.upload_bytes,
                      cudaMemcpyHostToDevice, stream),
      absl::StrCat("CudaTransformerModel: upload ", plan.upload_bytes, " bytes of step inputs")));
  RETURN_IF_ERROR(kc::CudaStatus(cudaEventRecord(inputs_uploaded_, stream),
                                 "cudaEventRecord (inputs uploaded)"));
  return plan;
}

absl::Status CudaTransformerModel::EnqueueStep(const StepPlan& plan, const KvCacheView& kv,
                                               cudaStream_t stream) {
  const ModelConfig& c = config_;
  const int64_t T = plan.num_tokens, R = plan.num_requests;
  if (T <= 0 || T > options_.max_tokens || R <= 0 || R > options_.max_requests ||
      plan.num_decode > R || plan.num_tiles > T || plan.decode_splits < 1 ||
      kc::DecodeWorkspaceFloats(plan.num_decode, plan.decode_splits, c.num_heads, c.head_dim) >
          buf_.decode_ws_floats) {
    return absl::InvalidArgumentError(absl::StrCat(
        "EnqueueStep: plan of ", T, " tokens / ", R, " requests / ", plan.num_decode,
        " decode items x ", plan.decode_splits, " splits outside the limits"));
  }
  const kc::DType dt = options_.dtype, kvt = options_.kv_dtype;
  const int64_t H = c.hidden_size, Q = c.QSize(), KV = c.KvSize(), QKV = Q + 2 * KV,
                I = c.intermediate_size, V = c.vocab_size;
  const size_t e = elem_bytes_;
  const int hd = c.head_dim;
  const float eps = static_cast<float>(c.rms_norm_eps);
  const Buffers& b = buf_;
  char* in = b.inputs;
  const int32_t* tokens = reinterpret_cast<const int32_t*>(in + layout_.tokens);
  const int32_t* positions = reinterpret_cast<const int32_t*>(in + layout_.positions);
  const int32_t* last_index = reinterpret_cast<const int32_t*>(in + layout_.last_index);
  const int32_t* decode_tokens = reinterpret_cast<const int32_t*>(in + layout_.decode_tokens);
  const kc::PrefillTile* tiles = reinterpret_cast<const kc::PrefillTile*>(in + layout_.tiles);
  const kc::DeviceSamplingParams* params =
      reinterpret_cast<const kc::DeviceSamplingParams*>(in + layout_.params);

  kc::PagedBatch full;
  full.num_tokens = static_cast<int32_t>(T);
  full.positions = positions;
  full.token_req = reinterpret_cast<const int32_t*>(in + layout_.token_req);
  full.req_page_begin = reinterpret_cast<const int32_t*>(in + layout_.page_begin);
  full.pages = reinterpret_cast<const int32_t*>(in + layout_.pages);
  full.page_size = options_.page_size;
  kc::PagedBatch swa = full;
  swa.full_to_swa = kv.full_to_swa;

  void* qkv_k = Offset(b.qkv, Q * e);
  void* qkv_v = Offset(b.qkv, (Q + KV) * e);
  RETURN_IF_ERROR(kc::RopeCosSin(inv_freq_dev_, hd / 2, positions, T, b.cos, b.sin, stream));
  RETURN_IF_ERROR(kc::EmbeddingLookup(embed_, dt, V, H, tokens, T, b.hidden, stream));
  for (int layer = 0; layer < c.num_layers; ++layer) {
    const DeviceLayer& L = layers_[layer];
    const kvcache::LayerKv& lkv = kv.layers[layer];
    const bool sliding = c.layer_types[layer] == LayerType::kSlidingAttention;
    const kc::PagedBatch& pb = sliding ? swa : full;

    RETURN_IF_ERROR(kc::RmsNorm(b.hidden, T, H, L.input_norm, eps, b.normed, dt, stream));
    RETURN_IF_ERROR(gemm_.Linear(b.normed, T, H, L.qkv, QKV, L.qkv_bias, b.qkv, dt, dt, stream));
    if (c.qk_norm) {
      RETURN_IF_ERROR(kc::RmsNormHeads(b.qkv, T, c.num_heads, hd, QKV, L.q_norm, eps, dt, stream));
      RETURN_IF_ERROR(
          kc::RmsNormHeads(qkv_k, T, c.num_kv_heads, hd, QKV, L.k_norm, eps, dt, stream));
    }
    RETURN_IF_ERROR(kc::ApplyRope(b.qkv, dt, T, c.num_heads, hd, QKV, b.cos, b.sin, stream));
    RETURN_IF_ERROR(kc::ApplyRope(qkv_k, dt, T, c.num_kv_heads, hd, QKV, b.cos, b.sin, stream));
    RETURN_IF_ERROR(
        kc::WritePagedKv(qkv_k, qkv_v, dt, QKV, pb, KV, lkv.k, lkv.v, kvt, stream));
    kc::AttentionParams ap;
    ap.num_heads = c.num_heads;
    ap.num_kv_heads = c.num_kv_heads;
    ap.head_dim = hd;
    ap.scale = 1.0f / std::sqrt(static_cast<float>(hd));
    ap.window = sliding ? static_cast<int32_t>(c.sliding_window) : 0;
    ap.sinks = nullptr;  // no model with sinks on the GPU yet (GPT-OSS is issue 16)
    if (plan.num_tiles > 0) {
      RETURN_IF_ERROR(kc::PrefillAttention(b.qkv, QKV, dt, pb, tiles, plan.num_tiles, lkv.k,
                                           lkv.v, kvt, ap, b.attn, stream));
    }
    if (plan.num_decode > 0) {
      RETURN_IF_ERROR(kc::DecodeAttention(b.qkv, QKV, dt, pb, decode_tokens, plan.num_decode,
                                          plan.decode_splits, lkv.k, lkv.v, kvt, ap,
                                          b.decode_ws, b.decode_ws_floats, b.attn, stream));
    }
    RETURN_IF_ERROR(gemm_.Linear(b.attn, T, Q, L.o, H, L.o_bias, b.normed, dt, dt, stream));
    RETURN_IF_ERROR(kc::AddInPlace(b.hidden, b.normed, T * H, dt, stream));
    RETURN_IF_ERROR(kc::RmsNorm(b.hidden, T, H, L.post_norm, eps, b.normed, dt, stream));
    RETURN_IF_ERROR(
        gemm_.Linear(b.normed, T, H, L.gate_up, 2 * I, nullptr, b.gate_up, dt, dt, stream));
    RETURN_IF_ERROR(kc::SwiGlu(b.gate_up, T, I, b.act, dt, stream));
    RETURN_IF_ERROR(gemm_.Linear(b.act, T, I, L.down, H, nullptr, b.normed, dt, dt, stream));
    RETURN_IF_ERROR(kc::AddInPlace(b.hidden, b.normed, T * H, dt, stream));
  }
  RETURN_IF_ERROR(kc::GatherRows(b.hidden, last_index, R, H, b.last, dt, stream));
  RETURN_IF_ERROR(kc::RmsNorm(b.last, R, H, final_norm_, eps, b.last_normed, dt, stream));
  RETURN_IF_ERROR(gemm_.Linear(b.last_normed, R, H, lm_head_, V, nullptr, b.logits, dt,
                               kc::DType::kFloat32, stream));
  int32_t* out_tokens = b.out;
  float* out_logprobs = reinterpret_cast<float*>(b.out + options_.max_requests);
  int32_t* out_host = b.out + 2 * options_.max_requests;
  return kc::SampleRows(b.logits, R, V, params, out_tokens, out_logprobs, out_host, stream);
}

absl::StatusOr<std::vector<kernels::SampledToken>> CudaTransformerModel::ReadResults(
    const StepPlan& plan, absl::Span<const ForwardRequest> batch, cudaStream_t stream) {
  const int64_t R = options_.max_requests, V = config_.vocab_size;
  if (static_cast<int64_t>(batch.size()) != plan.real_requests) {
    return absl::InvalidArgumentError(absl::StrCat("ReadResults: ", batch.size(),
                                                   " requests for a plan of ",
                                                   plan.real_requests));
  }
  RETURN_IF_ERROR(kc::CudaStatus(
      cudaMemcpyAsync(results_pinned_.data(), buf_.out, 3 * R * sizeof(int32_t),
                      cudaMemcpyDeviceToHost, stream),
      "CudaTransformerModel: read sampled tokens"));
  RETURN_IF_ERROR(kc::CudaStatus(cudaStreamSynchronize(stream), "CudaTransformerModel: sync"));
  const int32_t* tokens = static_cast<const int32_t*>(results_pinned_.data());
  const float* logprobs = reinterpret_cast<const float*>(tokens + R);
  const int32_t* host = tokens + 2 * R;
  std::vector<kernels::SampledToken> out(plan.real_requests);
  for (int32_t r = 0; r < plan.real_requests; ++r) {
    if (host[r] == 0) {
      out[r] = {tokens[r], logprobs[r]};
      continue;
    }
    // The device could not finish this row: sample it on the host.
    RETURN_IF_ERROR(kc::CudaStatus(
        cudaMemcpyAsync(row_pinned_.data(), buf_.logits + int64_t{r} * V, V * sizeof(float),
                        cudaMemcpyDeviceToHost, stream),
        "CudaTransformerModel: read a row of logits for the host sampler"));
    RETURN_IF_ERROR(kc::CudaStatus(cudaStreamSynchronize(stream), "CudaTransformerModel: sync"));
    out[r] = kernels::SampleToken(static_cast<const float*>(row_pinned_.data()), V,
                                  batch[r].sampling, batch[r].sample_step);
  }
  return out;
}

absl::StatusOr<ForwardResult> CudaTransformerModel::Forward(
    absl::Span<const ForwardRequest> batch, const KvCacheView& kv,
    const ForwardOptions& options, cudaStream_t stream) {
  ASSIGN_OR_RETURN(StepPlan plan, PrepareInputs(batch, kv, 0, stream));
  RETURN_IF_ERROR(EnqueueStep(plan, kv, stream));
  ForwardResult result;
  if (options.sample) {
    ASSIGN_OR_RETURN(result.tokens, ReadResults(plan, batch, stream));
  }
  if (options.return_logits) {
    const int64_t n = int64_t{plan.real_requests} * config_.vocab_size;
    result.logits.resize(n);
    RETURN_IF_ERROR(kc::CudaStatus(
        cudaMemcpyAsync(result.logits.data(), buf_.logits, n * sizeof(float),
                        cudaMemcpyDeviceToHost, stream),
        "CudaTransformerModel: read logits"));
  }
  RETURN_IF_ERROR(kc::CudaStatus(cudaStreamSynchronize(stream), "CudaTransformerModel: sync"));
  return result;
}

}  // namespace engine
}  // namespace colo
