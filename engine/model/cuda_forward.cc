#include "engine/model/cuda_forward.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/rope.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/embedding.h"
#include "kernels/cuda/paged_attention.h"
#include "kernels/cuda/rms_norm.h"
#include "kernels/cuda/rope.h"
#include "kernels/cuda/sampling.h"
#include "kernels/cuda/swiglu.h"
#include "proto/logging/logging.h"

namespace colo {
namespace engine {
namespace kc = ::colo::kernels::cuda;

namespace {

constexpr size_t kAlign = 256;
constexpr size_t kWorkspaceBytes = size_t{32} << 20;

size_t AlignUp(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

// Hands out aligned sub-buffers of one allocation (or, with base == nullptr,
// only counts the bytes).
class Carver {
 public:
  explicit Carver(char* base) : base_(base) {}
  template <typename T>
  T* Take(int64_t n) {
    char* p = base_ == nullptr ? nullptr : base_ + used_;
    used_ += AlignUp(static_cast<size_t>(std::max<int64_t>(n, 1)) * sizeof(T));
    return reinterpret_cast<T*>(p);
  }
  size_t used() const { return used_; }

 private:
  char* base_;
  size_t used_ = 0;
};

#define COLO_RETURN_IF_ERROR_(expr)        \
  do {                                     \
    const absl::Status _colo_s = (expr);   \
    if (!_colo_s.ok()) return _colo_s;     \
  } while (0)

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

}  // namespace

CudaTransformerModel::CudaTransformerModel(const ModelConfig& config,
                                           const Options& options)
    : config_(config), options_(options) {
  inv_freq_ = kernels::RopeInverseFrequencies(config.head_dim, config.rope_theta,
                                              config.rope_scaling);
}

CudaTransformerModel::~CudaTransformerModel() {
  TaggedPool* pool = options_.device_pool;
  for (void* p : {weights_, graph_mem_}) {
    if (p == nullptr) continue;
    const absl::Status s = pool->Free(p);
    if (!s.ok()) COLO_LOG(ERROR) << "CudaTransformerModel: freeing device memory: " << s;
  }
}

absl::StatusOr<std::unique_ptr<CudaTransformerModel>> CudaTransformerModel::Create(
    const ModelWeights& host_weights, const Options& options) {
  if (options.device_pool == nullptr || options.device_pool->backend()->kind() != "cuda") {
    return absl::InvalidArgumentError(
        "CudaTransformerModel needs a device_pool over the CUDA backend");
  }
  if (options.max_tokens <= 0 || options.max_requests <= 0 ||
      options.max_context <= 0 || options.max_requests > options.max_tokens) {
    return absl::InvalidArgumentError(absl::StrCat(
        "CudaTransformerModel: bad limits max_tokens=", options.max_tokens,
        " max_requests=", options.max_requests, " max_context=", options.max_context));
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
  COLO_RETURN_IF_ERROR_(model->Init(host_weights));
  return model;
}

absl::Status CudaTransformerModel::Init(const ModelWeights& host_weights) {
  const ModelConfig& c = config_;
  TaggedPool* pool = options_.device_pool;
  if (c.head_dim > kc::kMaxAttentionHeadDim || c.head_dim % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "CudaTransformerModel: head_dim ", c.head_dim, " unsupported (even, <= ",
        kc::kMaxAttentionHeadDim, ")"));
  }
  // The host weights are one packed buffer: copy the span covering every
  // tensor and translate pointers by their offset.
  const char* lo = nullptr;
  COLO_RETURN_IF_ERROR_(PackedSpan(host_weights, &lo, &weight_bytes_));
  embed_offset_ = static_cast<size_t>(reinterpret_cast<const char*>(host_weights.embed()) - lo);
  absl::StatusOr<void*> w = pool->Allocate(MemoryTag::kWeights, weight_bytes_, "cuda model weights");
  if (!w.ok()) return w.status();
  weights_ = *w;
  COLO_RETURN_IF_ERROR_(pool->backend()->CopyToDevice(weights_, lo, weight_bytes_));
  char* dev = static_cast<char*>(weights_);
  auto to_dev = [&](const float* p) -> const float* {
    if (p == nullptr) return nullptr;
    return reinterpret_cast<const float*>(dev + (reinterpret_cast<const char*>(p) - lo));
  };
  embed_ = to_dev(host_weights.embed());
  final_norm_ = to_dev(host_weights.final_norm());
  lm_head_ = to_dev(host_weights.lm_head());
  for (int i = 0; i < c.num_layers; ++i) {
    const LayerWeights& L = host_weights.layer(i);
    layers_.push_back({to_dev(L.input_norm), to_dev(L.qkv), to_dev(L.qkv_bias), to_dev(L.o),
                       to_dev(L.o_bias), to_dev(L.q_norm), to_dev(L.k_norm),
                       to_dev(L.post_norm), to_dev(L.gate_up), to_dev(L.down)});
  }

  // Fixed buffers of the cuda_graph tag.
  const int64_t T = options_.max_tokens, R = options_.max_requests;
  const int64_t H = c.hidden_size, QKV = c.QSize() + 2 * c.KvSize(),
                I = c.intermediate_size, half = c.head_dim / 2;
  auto carve = [&](Carver& k, Buffers& b) {
    b.tokens = k.Take<int32_t>(T);
    b.positions = k.Take<int64_t>(T);
    b.token_row = k.Take<int32_t>(T);
    b.slot_table = k.Take<int32_t>(R * options_.max_context);
    b.last_index = k.Take<int32_t>(R);
    b.cos = k.Take<float>(T * half);
    b.sin = k.Take<float>(T * half);
    b.hidden = k.Take<float>(T * H);
    b.normed = k.Take<float>(T * H);
    b.qkv = k.Take<float>(T * QKV);
    b.attn = k.Take<float>(T * c.QSize());
    b.gate_up = k.Take<float>(T * 2 * I);
    b.act = k.Take<float>(T * I);
    b.last = k.Take<float>(R * H);
    b.last_normed = k.Take<float>(R * H);
    b.logits = k.Take<float>(R * c.vocab_size);
    b.out_tokens = k.Take<int32_t>(R);
    b.out_logprobs = k.Take<float>(R);
    b.workspace = k.Take<char>(kWorkspaceBytes);
    b.workspace_bytes = kWorkspaceBytes;
  };
  Carver counter(nullptr);
  Buffers unused{};
  carve(counter, unused);
  absl::StatusOr<void*> g = pool->Allocate(MemoryTag::kCudaGraph, counter.used(),
                                           "cuda model activations");
  if (!g.ok()) return g.status();
  graph_mem_ = *g;
  Carver carver(static_cast<char*>(graph_mem_));
  carve(carver, buf_);

  absl::StatusOr<kc::CublasHandle> cublas = kc::CublasHandle::Create();
  if (!cublas.ok()) return cublas.status();
  cublas_ = std::move(*cublas);
  return cublas_.SetWorkspace(buf_.workspace, buf_.workspace_bytes);
}

absl::Status CudaTransformerModel::UploadWeights(const ModelWeights& host_weights,
                                                 cudaStream_t stream) {
  const char* lo = nullptr;
  size_t bytes = 0;
  COLO_RETURN_IF_ERROR_(PackedSpan(host_weights, &lo, &bytes));
  const size_t embed_offset =
      static_cast<size_t>(reinterpret_cast<const char*>(host_weights.embed()) - lo);
  if (bytes != weight_bytes_ || embed_offset != embed_offset_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "CudaTransformerModel::UploadWeights: host weights packed as ", bytes,
        " bytes (embedding at ", embed_offset, "), the device copy as ", weight_bytes_,
        " bytes (embedding at ", embed_offset_, ")"));
  }
  COLO_RETURN_IF_ERROR_(kc::CudaStatus(
      cudaMemcpyAsync(weights_, lo, bytes, cudaMemcpyHostToDevice, stream),
      absl::StrCat("CudaTransformerModel: upload ", bytes, " bytes of weights")));
  return kc::CudaStatus(cudaStreamSynchronize(stream),
                        "CudaTransformerModel: cudaStreamSynchronize after the weight upload");
}

absl::Status CudaTransformerModel::Validate(absl::Span<const ForwardRequest> batch,
                                            const KvCacheView& kv) const {
  const ModelConfig& c = config_;
  if (batch.empty()) return absl::InvalidArgumentError("empty batch");
  if (static_cast<int64_t>(batch.size()) > options_.max_requests) {
    return absl::InvalidArgumentError(absl::StrCat(
        "batch of ", batch.size(), " requests exceeds max_requests ", options_.max_requests));
  }
  absl::StatusOr<KvViewSlots> pools = ValidateKvView(c, kv);
  if (!pools.ok()) return pools.status();
  const int64_t full_slots = pools->full;
  int64_t tokens = 0;
  for (size_t r = 0; r < batch.size(); ++r) {
    const ForwardRequest& q = batch[r];
    const int64_t n = static_cast<int64_t>(q.new_tokens.size());
    const int64_t total = q.cached_len + n;
    tokens += n;
    if (n == 0 || q.cached_len < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "request ", r, ": needs >= 1 new token and cached_len >= 0, got ", n,
          " and ", q.cached_len));
    }
    if (total > options_.max_context) {
      return absl::InvalidArgumentError(absl::StrCat(
          "request ", r, ": ", total, " positions exceed max_context ", options_.max_context));
    }
    if (static_cast<int64_t>(q.slots.size()) < total) {
      return absl::InvalidArgumentError(absl::StrCat(
          "request ", r, ": ", q.slots.size(), " slots for ", total, " positions"));
    }
    for (int64_t i = 0; i < n; ++i) {
      if (q.new_tokens[i] < 0 || q.new_tokens[i] >= c.vocab_size) {
        return absl::InvalidArgumentError(absl::StrCat(
            "request ", r, ": token ", q.new_tokens[i], " at position ",
            q.cached_len + i, " outside the vocabulary of ", c.vocab_size));
      }
    }
    for (int64_t p = 0; p < total; ++p) {
      const int64_t bound = full_slots > 0 ? full_slots : kv.full_to_swa_size;
      if (q.slots[p] < 0 || q.slots[p] >= bound) {
        return absl::InvalidArgumentError(absl::StrCat(
            "request ", r, ": slot ", q.slots[p], " of position ", p,
            " outside the full KV pool of ", bound, " slots"));
      }
      if (c.HasSlidingLayers() && q.slots[p] >= kv.full_to_swa_size) {
        return absl::InvalidArgumentError(absl::StrCat(
            "request ", r, ": slot ", q.slots[p], " of position ", p,
            " outside the full_to_swa map of ", kv.full_to_swa_size));
      }
    }
  }
  if (tokens > options_.max_tokens) {
    return absl::InvalidArgumentError(absl::StrCat(
        "batch of ", tokens, " tokens exceeds max_tokens ", options_.max_tokens));
  }
  return absl::OkStatus();
}

absl::StatusOr<CudaTransformerModel::StepShape> CudaTransformerModel::PrepareInputs(
    absl::Span<const ForwardRequest> batch, const KvCacheView& kv, cudaStream_t stream) {
  COLO_RETURN_IF_ERROR_(Validate(batch, kv));
  const int64_t stride = options_.max_context;
  const int64_t half = config_.head_dim / 2;
  StepShape shape;
  shape.num_requests = static_cast<int64_t>(batch.size());
  std::vector<int32_t> tokens, token_row, last_index;
  std::vector<int64_t> positions;
  std::vector<int32_t> table(shape.num_requests * stride, 0);
  for (int64_t r = 0; r < shape.num_requests; ++r) {
    const ForwardRequest& q = batch[r];
    for (size_t i = 0; i < q.new_tokens.size(); ++i) {
      tokens.push_back(q.new_tokens[i]);
      positions.push_back(q.cached_len + static_cast<int64_t>(i));
      token_row.push_back(static_cast<int32_t>(r));
    }
    last_index.push_back(static_cast<int32_t>(tokens.size() - 1));
    const int64_t total = q.cached_len + static_cast<int64_t>(q.new_tokens.size());
    std::copy(q.slots.begin(), q.slots.begin() + total, table.begin() + r * stride);
  }
  shape.num_tokens = static_cast<int64_t>(tokens.size());
  std::vector<float> cos(shape.num_tokens * half), sin(shape.num_tokens * half);
  kernels::RopeCosSin(inv_freq_, positions.data(), shape.num_tokens, cos.data(), sin.data());

  auto upload = [&](void* dst, const void* src, size_t bytes, const char* what) {
    return kc::CudaStatus(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream),
                          absl::StrCat("CudaTransformerModel: upload ", what));
  };
  COLO_RETURN_IF_ERROR_(upload(buf_.tokens, tokens.data(), tokens.size() * 4, "tokens"));
  COLO_RETURN_IF_ERROR_(upload(buf_.positions, positions.data(), positions.size() * 8, "positions"));
  COLO_RETURN_IF_ERROR_(upload(buf_.token_row, token_row.data(), token_row.size() * 4, "rows"));
  COLO_RETURN_IF_ERROR_(upload(buf_.slot_table, table.data(), table.size() * 4, "slot table"));
  COLO_RETURN_IF_ERROR_(upload(buf_.last_index, last_index.data(), last_index.size() * 4, "last"));
  COLO_RETURN_IF_ERROR_(upload(buf_.cos, cos.data(), cos.size() * 4, "cos"));
  COLO_RETURN_IF_ERROR_(upload(buf_.sin, sin.data(), sin.size() * 4, "sin"));
  // The host vectors die on return: make sure the copies have consumed them.
  COLO_RETURN_IF_ERROR_(kc::CudaStatus(cudaStreamSynchronize(stream),
                                       "CudaTransformerModel: cudaStreamSynchronize"));
  return shape;
}

absl::Status CudaTransformerModel::EnqueueStep(const StepShape& shape, const KvCacheView& kv,
                                               cudaStream_t stream) {
  const ModelConfig& c = config_;
  const int64_t T = shape.num_tokens, R = shape.num_requests;
  if (T <= 0 || T > options_.max_tokens || R <= 0 || R > options_.max_requests) {
    return absl::InvalidArgumentError(absl::StrCat(
        "EnqueueStep: shape ", T, " tokens / ", R, " requests outside the limits"));
  }
  const int64_t H = c.hidden_size, Q = c.QSize(), KV = c.KvSize(), QKV = Q + 2 * KV,
                I = c.intermediate_size, V = c.vocab_size;
  const int hd = c.head_dim;
  const float eps = static_cast<float>(c.rms_norm_eps);
  const Buffers& b = buf_;

  kc::TokenSlots full_slots;
  full_slots.num_tokens = T;
  full_slots.positions = b.positions;
  full_slots.token_row = b.token_row;
  full_slots.slot_table = b.slot_table;
  full_slots.slot_table_stride = options_.max_context;
  kc::TokenSlots swa_slots = full_slots;
  swa_slots.full_to_swa = kv.full_to_swa;

  COLO_RETURN_IF_ERROR_(kc::EmbeddingLookup(embed_, V, H, b.tokens, T, b.hidden, stream));
  for (int layer = 0; layer < c.num_layers; ++layer) {
    const DeviceLayer& L = layers_[layer];
    const kvcache::LayerKv& lkv = kv.layers[layer];
    const bool sliding = c.layer_types[layer] == LayerType::kSlidingAttention;
    float* k_pool = lkv.KFloat();
    float* v_pool = lkv.VFloat();

    COLO_RETURN_IF_ERROR_(kc::RmsNorm(b.hidden, T, H, L.input_norm, eps, b.normed, stream));
    COLO_RETURN_IF_ERROR_(cublas_.Linear(b.normed, T, H, L.qkv, QKV, L.qkv_bias, b.qkv, stream));
    if (c.qk_norm) {
      COLO_RETURN_IF_ERROR_(
          kc::RmsNormHeads(b.qkv, T, c.num_heads, hd, QKV, L.q_norm, eps, stream));
      COLO_RETURN_IF_ERROR_(
          kc::RmsNormHeads(b.qkv + Q, T, c.num_kv_heads, hd, QKV, L.k_norm, eps, stream));
    }
    COLO_RETURN_IF_ERROR_(kc::ApplyRope(b.qkv, T, c.num_heads, hd, QKV, b.cos, b.sin, stream));
    COLO_RETURN_IF_ERROR_(
        kc::ApplyRope(b.qkv + Q, T, c.num_kv_heads, hd, QKV, b.cos, b.sin, stream));
    const kc::TokenSlots& slots = sliding ? swa_slots : full_slots;
    COLO_RETURN_IF_ERROR_(
        kc::WritePagedKv(b.qkv + Q, b.qkv + Q + KV, QKV, slots, KV, k_pool, v_pool, stream));
    kc::AttentionShape shape_a;
    shape_a.num_heads = c.num_heads;
    shape_a.num_kv_heads = c.num_kv_heads;
    shape_a.head_dim = hd;
    shape_a.scale = 1.0f / std::sqrt(static_cast<float>(hd));
    shape_a.window = sliding ? c.sliding_window : 0;
    COLO_RETURN_IF_ERROR_(
        kc::PagedAttention(b.qkv, QKV, slots, k_pool, v_pool, shape_a, b.attn, stream));
    COLO_RETURN_IF_ERROR_(cublas_.Linear(b.attn, T, Q, L.o, H, L.o_bias, b.normed, stream));
    COLO_RETURN_IF_ERROR_(kc::AddInPlace(b.hidden, b.normed, T * H, stream));
    COLO_RETURN_IF_ERROR_(kc::RmsNorm(b.hidden, T, H, L.post_norm, eps, b.normed, stream));
    COLO_RETURN_IF_ERROR_(
        cublas_.Linear(b.normed, T, H, L.gate_up, 2 * I, nullptr, b.gate_up, stream));
    COLO_RETURN_IF_ERROR_(kc::SwiGlu(b.gate_up, T, I, b.act, stream));
    COLO_RETURN_IF_ERROR_(cublas_.Linear(b.act, T, I, L.down, H, nullptr, b.normed, stream));
    COLO_RETURN_IF_ERROR_(kc::AddInPlace(b.hidden, b.normed, T * H, stream));
  }
  COLO_RETURN_IF_ERROR_(kc::GatherRows(b.hidden, b.last_index, R, H, b.last, stream));
  COLO_RETURN_IF_ERROR_(kc::RmsNorm(b.last, R, H, final_norm_, eps, b.last_normed, stream));
  COLO_RETURN_IF_ERROR_(
      cublas_.Linear(b.last_normed, R, H, lm_head_, V, nullptr, b.logits, stream));
  return kc::GreedySample(b.logits, R, V, b.out_tokens, b.out_logprobs, stream);
}

absl::StatusOr<std::vector<kernels::SampledToken>> CudaTransformerModel::ReadGreedy(
    const StepShape& shape, cudaStream_t stream) {
  const int64_t R = shape.num_requests;
  std::vector<int32_t> tokens(R);
  std::vector<float> logprobs(R);
  COLO_RETURN_IF_ERROR_(kc::CudaStatus(
      cudaMemcpyAsync(tokens.data(), buf_.out_tokens, R * 4, cudaMemcpyDeviceToHost, stream),
      "CudaTransformerModel: read tokens"));
  COLO_RETURN_IF_ERROR_(kc::CudaStatus(
      cudaMemcpyAsync(logprobs.data(), buf_.out_logprobs, R * 4, cudaMemcpyDeviceToHost, stream),
      "CudaTransformerModel: read logprobs"));
  COLO_RETURN_IF_ERROR_(
      kc::CudaStatus(cudaStreamSynchronize(stream), "CudaTransformerModel: sync"));
  std::vector<kernels::SampledToken> out(R);
  for (int64_t r = 0; r < R; ++r) out[r] = {tokens[r], logprobs[r]};
  return out;
}

absl::StatusOr<ForwardResult> CudaTransformerModel::Forward(
    absl::Span<const ForwardRequest> batch, const KvCacheView& kv,
    const ForwardOptions& options, cudaStream_t stream) {
  absl::StatusOr<StepShape> shape = PrepareInputs(batch, kv, stream);
  if (!shape.ok()) return shape.status();
  COLO_RETURN_IF_ERROR_(EnqueueStep(*shape, kv, stream));
  const int64_t R = shape->num_requests, V = config_.vocab_size;
  ForwardResult result;
  if (options.sample) {
    bool all_greedy = true;
    for (const ForwardRequest& r : batch) all_greedy &= r.sampling.temperature <= 0.0f;
    if (all_greedy) {
      absl::StatusOr<std::vector<kernels::SampledToken>> greedy = ReadGreedy(*shape, stream);
      if (!greedy.ok()) return greedy.status();
      result.tokens = std::move(*greedy);
    } else {
      std::vector<kernels::SamplingParams> params;
      std::vector<uint64_t> steps;
      for (const ForwardRequest& r : batch) {
        params.push_back(r.sampling);
        steps.push_back(r.sample_step);
      }
      result.tokens.resize(R);
      COLO_RETURN_IF_ERROR_(kc::SampleTokens(buf_.logits, R, V, params, steps,
                                             result.tokens.data(), stream));
    }
  }
  if (options.return_logits) {
    result.logits.resize(R * V);
    COLO_RETURN_IF_ERROR_(kc::CudaStatus(
        cudaMemcpyAsync(result.logits.data(), buf_.logits, R * V * sizeof(float),
                        cudaMemcpyDeviceToHost, stream),
        "CudaTransformerModel: read logits"));
  }
  COLO_RETURN_IF_ERROR_(
      kc::CudaStatus(cudaStreamSynchronize(stream), "CudaTransformerModel: sync"));
  return result;
}

}  // namespace engine
}  // namespace colo
