#include "engine/model/forward.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/model/moe_cpu.h"
#include "engine/model/safetensors.h"
#include "kernels/cpu/embedding.h"
#include "kernels/cpu/linear.h"
#include "kernels/cpu/paged_attention.h"
#include "kernels/cpu/rms_norm.h"
#include "kernels/cpu/rope.h"
#include "kernels/cpu/swiglu.h"
#include "proto/logging/logging.h"
#include "proto/status/status_macros.h"

namespace colo {
namespace engine {
namespace {

// Transient float buffers from the CachingAllocator, freed on destruction.
class Scratch {
 public:
  explicit Scratch(CachingAllocator* allocator) : allocator_(allocator) {}
  ~Scratch() {
    for (void* p : buffers_) {
      absl::Status s = allocator_->Free(p);
      if (!s.ok()) COLO_LOG(ERROR) << "freeing activation buffer: " << s;
    }
  }
  absl::StatusOr<float*> Floats(int64_t n) {
    absl::StatusOr<void*> p =
        allocator_->Allocate(std::max<int64_t>(1, n) * sizeof(float));
    if (!p.ok()) return p.status();
    buffers_.push_back(*p);
    return static_cast<float*>(*p);
  }

 private:
  CachingAllocator* allocator_;
  std::vector<void*> buffers_;
};

void AddInPlace(float* dst, const float* src, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] += src[i];
}

}  // namespace

TransformerModel::TransformerModel(std::unique_ptr<ModelWeights> weights,
                                   CachingAllocator* allocator,
                                   kernels::ThreadPool* threads)
    : weights_(std::move(weights)),
      allocator_(allocator),
      threads_(threads != nullptr ? threads : kernels::ThreadPool::Default()) {
  const ModelConfig& c = weights_->config();
  inv_freq_ = kernels::RopeInverseFrequencies(c.head_dim, c.rope_theta,
                                              c.rope_scaling);
  rope_attention_scaling_ = kernels::RopeAttentionScaling(c.rope_scaling);
}

absl::StatusOr<std::unique_ptr<TransformerModel>> TransformerModel::Load(
    const Options& options) {
  if (options.weights_pool == nullptr || options.allocator == nullptr) {
    return absl::InvalidArgumentError(
        "TransformerModel::Load needs weights_pool and allocator");
  }
  absl::StatusOr<ModelConfig> config =
      LoadModelConfig(options.model_dir + "/config.json");
  if (!config.ok()) return config.status();
  absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> ckpt =
      SafetensorsCheckpoint::Open(options.model_dir);
  if (!ckpt.ok()) return ckpt.status();
  absl::StatusOr<std::unique_ptr<ModelWeights>> weights =
      ModelWeights::Load(*config, **ckpt, options.weights_pool);
  if (!weights.ok()) return weights.status();
  return Create(std::move(*weights), options.allocator, options.threads);
}

absl::StatusOr<std::unique_ptr<TransformerModel>> TransformerModel::Create(
    std::unique_ptr<ModelWeights> weights, CachingAllocator* allocator,
    kernels::ThreadPool* threads) {
  if (weights == nullptr || allocator == nullptr) {
    return absl::InvalidArgumentError("TransformerModel::Create needs weights and allocator");
  }
  return std::unique_ptr<TransformerModel>(
      new TransformerModel(std::move(weights), allocator, threads));
}

absl::StatusOr<KvViewSlots> ValidateKvView(const ModelConfig& c, const KvCacheView& kv) {
  if (static_cast<int>(kv.layers.size()) != c.num_layers) {
    return absl::InvalidArgumentError(absl::StrCat(
        "KV view has ", kv.layers.size(), " layers, model has ", c.num_layers));
  }
  KvViewSlots slots;
  for (int i = 0; i < c.num_layers; ++i) {
    const kvcache::LayerKv& L = kv.layers[i];
    const bool sliding = c.layer_types[i] == LayerType::kSlidingAttention;
    if (L.sliding != sliding || L.num_kv_heads != c.num_kv_heads ||
        L.head_dim != c.head_dim || L.dtype != kvcache::KvDtype::kFloat32 ||
        L.k == nullptr || L.v == nullptr || L.num_slots <= 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "KV layer ", i, " (sliding=", L.sliding, ", kv_heads=", L.num_kv_heads,
          ", head_dim=", L.head_dim, ", slots=", L.num_slots,
          ") does not match the model (sliding=", sliding, ", kv_heads=",
          c.num_kv_heads, ", head_dim=", c.head_dim, ", float32)"));
    }
    int64_t& n = sliding ? slots.swa : slots.full;
    n = n < 0 ? L.num_slots : std::min(n, L.num_slots);
  }
  if (c.HasSlidingLayers() && kv.full_to_swa == nullptr) {
    return absl::InvalidArgumentError(
        "model has sliding layers but the KV view has no full_to_swa map");
  }
  return slots;
}

absl::Status TransformerModel::Validate(absl::Span<const ForwardRequest> batch,
                                        const KvCacheView& kv) const {
  const ModelConfig& c = config();
  if (batch.empty()) return absl::InvalidArgumentError("empty batch");
  absl::StatusOr<KvViewSlots> pools = ValidateKvView(c, kv);
  if (!pools.ok()) return pools.status();
  const int64_t full_slots = pools->full, swa_slots = pools->swa;
  for (size_t r = 0; r < batch.size(); ++r) {
    const ForwardRequest& q = batch[r];
    const int64_t n = static_cast<int64_t>(q.new_tokens.size());
    const int64_t total = q.cached_len + n;
    if (n == 0 || q.cached_len < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "request ", r, ": needs >= 1 new token and cached_len >= 0, got ", n,
          " and ", q.cached_len));
    }
    if (static_cast<int64_t>(q.slots.size()) < total) {
      return absl::InvalidArgumentError(absl::StrCat(
          "request ", r, ": ", q.slots.size(), " slots for ", total, " positions"));
    }
    for (int64_t i = 0; i < n; ++i) {
      if (q.new_tokens[i] < 0 || q.new_tokens[i] >= vocab_size()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "request ", r, ": token ", q.new_tokens[i], " at position ",
            q.cached_len + i, " outside the vocabulary of ", vocab_size()));
      }
    }
    if (full_slots > 0) {
      for (int64_t p = 0; p < total; ++p) {
        if (q.slots[p] < 0 || q.slots[p] >= full_slots) {
          return absl::InvalidArgumentError(absl::StrCat(
              "request ", r, ": slot ", q.slots[p], " of position ", p,
              " outside the full KV pool of ", full_slots, " slots"));
        }
      }
    }
    if (swa_slots > 0) {
      const int64_t lo = kernels::FirstAttendedPosition(q.cached_len, c.sliding_window);
      for (int64_t p = lo; p < total; ++p) {
        const int32_t full = q.slots[p];
        if (full < 0 || full >= kv.full_to_swa_size) {
          return absl::InvalidArgumentError(absl::StrCat(
              "request ", r, ": slot ", full, " of position ", p,
              " outside the full_to_swa map of ", kv.full_to_swa_size));
        }
        const int32_t swa = kv.full_to_swa[full];
        if (swa < 0 || swa >= swa_slots) {
          return absl::InvalidArgumentError(absl::StrCat(
              "request ", r, ": position ", p, " (full slot ", full,
              ") is inside the sliding window but maps to SWA slot ", swa,
              " (pool has ", swa_slots, " slots)"));
        }
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<ForwardResult> TransformerModel::Forward(
    absl::Span<const ForwardRequest> batch, const KvCacheView& kv,
    const ForwardOptions& options) {
  absl::Status valid = Validate(batch, kv);
  if (!valid.ok()) return valid;
  const ModelConfig& c = config();
  const ModelWeights& W = *weights_;
  // On a tensor-parallel shard Q, KV, I and V are this rank's (forward.h);
  // full_vocab is the model's.
  const int64_t H = c.hidden_size, Q = c.QSize(), KV = c.KvSize(),
                QKV = Q + 2 * KV, I = c.intermediate_size, V = c.vocab_size;
  const bool sharded = tp_.size > 1;
  const int64_t full_vocab = vocab_size();
  const int hd = c.head_dim, half = hd / 2;
  const int num_requests = static_cast<int>(batch.size());
  const float eps = static_cast<float>(c.rms_norm_eps);

  // Token bookkeeping.
  int64_t T = 0;
  for (const ForwardRequest& r : batch) T += r.new_tokens.size();
  std::vector<int32_t> tokens(T), token_request(T);
  std::vector<int64_t> positions(T), last_token(num_requests);
  {
    int64_t t = 0;
    for (int r = 0; r < num_requests; ++r) {
      const ForwardRequest& q = batch[r];
      for (size_t i = 0; i < q.new_tokens.size(); ++i, ++t) {
        tokens[t] = q.new_tokens[i];
        token_request[t] = r;
        positions[t] = q.cached_len + static_cast<int64_t>(i);
      }
      last_token[r] = t - 1;
    }
  }
  // Per request: SWA slot of every position (only in-window ones are used).
  std::vector<std::vector<int32_t>> swa_slots;
  if (c.HasSlidingLayers()) {
    swa_slots.resize(num_requests);
    for (int r = 0; r < num_requests; ++r) {
      const ForwardRequest& q = batch[r];
      const int64_t total = q.cached_len + q.new_tokens.size();
      swa_slots[r].assign(total, kvcache::kNoSwaSlot);
      const int64_t lo = kernels::FirstAttendedPosition(q.cached_len, c.sliding_window);
      for (int64_t p = lo; p < total; ++p) swa_slots[r][p] = kv.full_to_swa[q.slots[p]];
    }
  }
  int64_t max_context = 0;
  for (const ForwardRequest& r : batch) {
    max_context = std::max<int64_t>(max_context, r.cached_len + r.new_tokens.size());
  }

  Scratch scratch(allocator_);
  float *hidden, *normed, *qkv, *attn, *gate_up, *act, *cos_t, *sin_t, *mlp_out = nullptr;
#define COLO_SCRATCH(var, n)                          \
  {                                                   \
    absl::StatusOr<float*> _p = scratch.Floats(n);    \
    if (!_p.ok()) return _p.status();                 \
    var = *_p;                                        \
  }
  COLO_SCRATCH(hidden, T * H);
  COLO_SCRATCH(normed, T * H);
  COLO_SCRATCH(qkv, T * QKV);
  COLO_SCRATCH(attn, T * Q);
  COLO_SCRATCH(gate_up, T * 2 * I);
  COLO_SCRATCH(act, T * I);
  COLO_SCRATCH(cos_t, T * half);
  COLO_SCRATCH(sin_t, T * half);
  MoeScratch moe;
  if (c.IsMoe()) {
    const MoeScratchSizes sizes = MoeScratchFor(c, T);
    COLO_SCRATCH(mlp_out, T * H);
    COLO_SCRATCH(moe.logits, sizes.logits);
    COLO_SCRATCH(moe.gathered, sizes.gathered);
    COLO_SCRATCH(moe.gate_up, sizes.gate_up);
    COLO_SCRATCH(moe.act, sizes.act);
    COLO_SCRATCH(moe.expert_out, sizes.expert_out);
  }

  kernels::ThreadPool* pool = threads_;
  if (sharded) {
    // Vocab-parallel embedding: each rank contributes the rows it holds.
    for (int64_t t = 0; t < T; ++t) {
      const int64_t row = tokens[t] - tp_.vocab_begin;
      if (row >= 0 && row < V) {
        std::memcpy(hidden + t * H, W.embed() + row * H, H * sizeof(float));
      } else {
        std::memset(hidden + t * H, 0, H * sizeof(float));
      }
    }
    RETURN_IF_ERROR(tp_.collectives->AllReduceSum(hidden, T * H));
  } else if (!kernels::EmbeddingLookup(W.embed(), V, H, tokens.data(), T, hidden)) {
    return absl::InvalidArgumentError("token outside the vocabulary");
  }
  kernels::RopeCosSin(inv_freq_, positions.data(), T, cos_t, sin_t, rope_attention_scaling_);

  auto linear = [&](const float* x, int64_t m, int64_t k, const float* w,
                    int64_t n, const float* bias, float* y) {
    if (!batch_invariant_ && m > 1) {
      kernels::LinearBlas(x, m, k, w, n, bias, y);
    } else {
      kernels::Linear(x, m, k, w, n, bias, y, pool);
    }
  };
  auto rows = [&](int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
    pool->ParallelFor(n, 1, fn);
  };

  for (int layer = 0; layer < c.num_layers; ++layer) {
    const LayerWeights& L = W.layer(layer);
    const kvcache::LayerKv& lkv = kv.layers[layer];
    const bool sliding = c.layer_types[layer] == LayerType::kSlidingAttention;
    float* k_pool = lkv.KFloat();
    float* v_pool = lkv.VFloat();

    rows(T, [&](int64_t b, int64_t e) {
      kernels::RmsNorm(hidden + b * H, e - b, H, L.input_norm, eps, normed + b * H);
    });
    linear(normed, T, H, L.qkv, QKV, L.qkv_bias, qkv);
    // q/k norm, RoPE, and KV write, per token.
    rows(T, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) {
        float* qt = qkv + t * QKV;
        float* kt = qt + Q;
        float* vt = kt + KV;
        if (c.qk_norm) {
          kernels::RmsNorm(qt, c.num_heads, hd, L.q_norm, eps, qt);
          kernels::RmsNorm(kt, c.num_kv_heads, hd, L.k_norm, eps, kt);
        }
        kernels::ApplyRope(qt, 1, c.num_heads, hd, cos_t + t * half, sin_t + t * half);
        kernels::ApplyRope(kt, 1, c.num_kv_heads, hd, cos_t + t * half, sin_t + t * half);
        const int r = token_request[t];
        const int64_t slot = sliding ? swa_slots[r][positions[t]]
                                     : batch[r].slots[positions[t]];
        std::memcpy(k_pool + slot * KV, kt, KV * sizeof(float));
        std::memcpy(v_pool + slot * KV, vt, KV * sizeof(float));
      }
    });
    // Attention per (token, head).
    kernels::AttentionShape shape;
    shape.num_heads = c.num_heads;
    shape.num_kv_heads = c.num_kv_heads;
    shape.head_dim = hd;
    shape.scale = 1.0f / std::sqrt(static_cast<float>(hd));
    shape.window = sliding ? c.sliding_window : 0;
    const int group = c.num_heads / c.num_kv_heads;
    // Chunks of >= ~256K multiply-adds (short decode contexts run inline
    // rather than paying a thread hand-off); per-item work is unchanged.
    const int64_t attention_chunk =
        std::max<int64_t>(1, 262144 / std::max<int64_t>(1, 2 * max_context * hd));
    pool->ParallelFor(T * c.num_heads, attention_chunk, [&](int64_t b, int64_t e) {
      std::vector<float> probs(max_context + 1);
      for (int64_t item = b; item < e; ++item) {
        const int64_t t = item / c.num_heads;
        const int h = static_cast<int>(item % c.num_heads);
        const int r = token_request[t];
        const int32_t* key_slots =
            sliding ? swa_slots[r].data() : batch[r].slots.data();
        kernels::AttendOne(qkv + t * QKV + int64_t{h} * hd, positions[t], key_slots,
                           k_pool, v_pool, h / group, shape, probs.data(),
                           attn + t * Q + int64_t{h} * hd,
                           L.sinks != nullptr ? L.sinks[h] : -INFINITY);
      }
    });
    linear(attn, T, Q, L.o, H, tp_.rank == 0 ? L.o_bias : nullptr, normed);
    if (sharded) RETURN_IF_ERROR(tp_.collectives->AllReduceSum(normed, T * H));
    rows(T, [&](int64_t b, int64_t e) {
      AddInPlace(hidden + b * H, normed + b * H, (e - b) * H);
      kernels::RmsNorm(hidden + b * H, e - b, H, L.post_norm, eps, normed + b * H);
    });
    if (c.IsMoeLayer(layer)) {
      MoeMlpCpu(c, L, normed, T, &moe, pool, mlp_out);
      // Tensor parallelism: each rank ran its slice of every expert.
      if (sharded) RETURN_IF_ERROR(tp_.collectives->AllReduceSum(mlp_out, T * H));
      rows(T, [&](int64_t b, int64_t e) {
        AddInPlace(hidden + b * H, mlp_out + b * H, (e - b) * H);
      });
      continue;
    }
    linear(normed, T, H, L.gate_up, 2 * I, nullptr, gate_up);
    rows(T, [&](int64_t b, int64_t e) {
      kernels::SwiGlu(gate_up + b * 2 * I, e - b, I, act + b * I);
    });
    linear(act, T, I, L.down, H, nullptr, normed);
    if (sharded) RETURN_IF_ERROR(tp_.collectives->AllReduceSum(normed, T * H));
    rows(T, [&](int64_t b, int64_t e) {
      AddInPlace(hidden + b * H, normed + b * H, (e - b) * H);
    });
  }

  // Final norm and logits for the last token of each request.
  float *last, *logits;
  COLO_SCRATCH(last, int64_t{num_requests} * H);
  COLO_SCRATCH(logits, int64_t{num_requests} * full_vocab);
  float *local_logits = logits, *gathered = nullptr;
  if (sharded) {
    COLO_SCRATCH(local_logits, int64_t{num_requests} * V);
    COLO_SCRATCH(gathered, int64_t{tp_.size} * num_requests * V);
  }
#undef COLO_SCRATCH
  for (int r = 0; r < num_requests; ++r) {
    kernels::RmsNorm(hidden + last_token[r] * H, 1, H, W.final_norm(), eps, last + r * H);
  }
  linear(last, num_requests, H, W.lm_head(), V, nullptr, local_logits);
  if (sharded) {
    // Vocab-parallel LM head: rank k computed the columns k * V .. of
    // every request's logits (its last rows may be padding).
    RETURN_IF_ERROR(
        tp_.collectives->AllGather(local_logits, int64_t{num_requests} * V, gathered));
    for (int k = 0; k < tp_.size; ++k) {
      const int64_t begin = int64_t{k} * V;
      const int64_t n = std::min(V, full_vocab - begin);
      if (n <= 0) break;
      for (int r = 0; r < num_requests; ++r) {
        std::memcpy(logits + r * full_vocab + begin,
                    gathered + (int64_t{k} * num_requests + r) * V, n * sizeof(float));
      }
    }
  }

  ForwardResult result;
  if (options.sample) {
    result.tokens.resize(num_requests);
    pool->ParallelFor(num_requests, 1, [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        result.tokens[r] = kernels::SampleToken(logits + r * full_vocab, full_vocab,
                                                batch[r].sampling, batch[r].sample_step);
      }
    });
  }
  if (options.return_logits) {
    result.logits.assign(logits, logits + int64_t{num_requests} * full_vocab);
  }
  return result;
}

}  // namespace engine
}  // namespace colo
