#include "engine/model/cuda_step_inputs.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"

namespace colo::engine {
namespace kc = ::colo::kernels::cuda;

namespace {

size_t Take(size_t* at, size_t bytes, size_t align) {
  *at = (*at + align - 1) / align * align;
  const size_t offset = *at;
  *at += bytes;
  return offset;
}

template <typename T>
T* At(void* base, size_t offset) {
  return reinterpret_cast<T*>(static_cast<char*>(base) + offset);
}

}  // namespace

StepLayout StepLayout::For(const StepLimits& l) {
  StepLayout s;
  const size_t t = static_cast<size_t>(std::max<int64_t>(l.max_tokens, 1));
  const size_t r = static_cast<size_t>(std::max<int64_t>(l.max_requests, 1));
  const int64_t p = std::max<int32_t>(l.page_size, 1);
  s.max_pages = std::max<int64_t>(1, (l.max_context + p - 1) / p);
  size_t at = 0;
  s.tokens = Take(&at, t * 4, 256);
  s.positions = Take(&at, t * 4, 16);
  s.token_req = Take(&at, t * 4, 16);
  s.last_index = Take(&at, r * 4, 16);
  s.page_begin = Take(&at, (r + 1) * 4, 16);
  s.decode_tokens = Take(&at, r * 4, 16);
  s.tiles = Take(&at, t * sizeof(kc::PrefillTile), 16);
  s.params = Take(&at, r * sizeof(kc::DeviceSamplingParams), 16);
  s.pages = Take(&at, r * static_cast<size_t>(s.max_pages) * 4, 16);
  s.total = at;
  return s;
}

absl::StatusOr<KvViewSlots> ValidateDeviceKvView(const ModelConfig& c, const KvCacheView& kv,
                                                 kc::DType kv_dtype) {
  if (static_cast<int>(kv.layers.size()) != c.num_layers) {
    return absl::InvalidArgumentError(
        absl::StrCat("KV view has ", kv.layers.size(), " layers, model has ", c.num_layers));
  }
  if (kv.page_size < 1) {
    return absl::InvalidArgumentError(absl::StrCat("KV view page_size ", kv.page_size));
  }
  KvViewSlots slots;
  for (int i = 0; i < c.num_layers; ++i) {
    const kvcache::LayerKv& L = kv.layers[i];
    const bool sliding = c.layer_types[i] == LayerType::kSlidingAttention;
    if (L.sliding != sliding || L.num_kv_heads != c.num_kv_heads || L.head_dim != c.head_dim ||
        static_cast<int>(L.dtype) != static_cast<int>(kv_dtype) || L.k == nullptr ||
        L.v == nullptr || L.num_slots <= 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "KV layer ", i, " (sliding=", L.sliding, ", kv_heads=", L.num_kv_heads,
          ", head_dim=", L.head_dim, ", dtype=", static_cast<int>(L.dtype),
          ", slots=", L.num_slots, ") does not match the model (sliding=", sliding,
          ", kv_heads=", c.num_kv_heads, ", head_dim=", c.head_dim, ", ",
          kc::DTypeName(kv_dtype), ")"));
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

absl::StatusOr<StepPlan> PackStep(absl::Span<const ForwardRequest> batch, const KvCacheView& kv,
                                  const ModelConfig& c, kc::DType kv_dtype,
                                  const StepLimits& limits, int32_t pad_to,
                                  int32_t decode_splits, void* staging) {
  const int64_t num = static_cast<int64_t>(batch.size());
  if (batch.empty()) return absl::InvalidArgumentError("empty batch");
  if (num > limits.max_requests || pad_to > limits.max_requests) {
    return absl::InvalidArgumentError(absl::StrCat("batch of ", num, " requests (padded to ",
                                                   pad_to, ") exceeds max_requests ",
                                                   limits.max_requests));
  }
  if (kv.page_size != limits.page_size) {
    return absl::InvalidArgumentError(absl::StrCat("KV view page_size ", kv.page_size,
                                                   " but the model was built for ",
                                                   limits.page_size));
  }
  absl::StatusOr<KvViewSlots> pools = ValidateDeviceKvView(c, kv, kv_dtype);
  if (!pools.ok()) return pools.status();
  const int32_t p = limits.page_size;
  // Pages must lie inside the full pool (and the full->SWA map).
  int64_t slot_bound = pools->full > 0 ? pools->full : kv.full_to_swa_size;
  if (c.HasSlidingLayers()) slot_bound = std::min(slot_bound, kv.full_to_swa_size);
  const StepLayout layout = StepLayout::For(limits);

  // Validate first: nothing is written for a bad batch.
  int64_t tokens = 0;
  bool all_decode = true;
  for (int64_t r = 0; r < num; ++r) {
    const ForwardRequest& q = batch[r];
    const int64_t n = static_cast<int64_t>(q.new_tokens.size());
    const int64_t total = q.cached_len + n;
    tokens += n;
    all_decode &= n == 1;
    if (n == 0 || q.cached_len < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "request ", r, ": needs >= 1 new token and cached_len >= 0, got ", n, " and ",
          q.cached_len));
    }
    if (total > limits.max_context) {
      return absl::InvalidArgumentError(absl::StrCat(
          "request ", r, ": ", total, " positions exceed max_context ", limits.max_context));
    }
    for (int64_t i = 0; i < n; ++i) {
      if (q.new_tokens[i] < 0 || q.new_tokens[i] >= c.vocab_size) {
        return absl::InvalidArgumentError(absl::StrCat(
            "request ", r, ": token ", q.new_tokens[i], " at position ", q.cached_len + i,
            " outside the vocabulary of ", c.vocab_size));
      }
    }
    const int64_t pages = (total + p - 1) / p;
    if (!q.pages.empty()) {
      if (static_cast<int64_t>(q.pages.size()) < pages) {
        return absl::InvalidArgumentError(absl::StrCat(
            "request ", r, ": ", q.pages.size(), " pages for ", total, " positions (page size ",
            p, ")"));
      }
      for (int64_t j = 0; j < pages; ++j) {
        if (q.pages[j] < 0 || (int64_t{q.pages[j]} + 1) * p > slot_bound) {
          return absl::InvalidArgumentError(absl::StrCat(
              "request ", r, ": page ", q.pages[j], " of positions ", j * p, ".. outside the KV "
              "pool of ", slot_bound, " slots"));
        }
      }
    } else {
      if (static_cast<int64_t>(q.slots.size()) < total) {
        return absl::InvalidArgumentError(
            absl::StrCat("request ", r, ": ", q.slots.size(), " slots for ", total, " positions"));
      }
      for (int64_t j = 0; j < pages; ++j) {
        const int32_t base = q.slots[j * p];
        if (base < 0 || base % p != 0 || int64_t{base} + p > slot_bound) {
          return absl::InvalidArgumentError(absl::StrCat(
              "request ", r, ": slot ", base, " of position ", j * p,
              " is not the start of a page of ", p, " inside the KV pool of ", slot_bound,
              " slots"));
        }
        for (int64_t i = j * p; i < std::min<int64_t>(total, (j + 1) * p); ++i) {
          if (q.slots[i] != base + i % p) {
            return absl::InvalidArgumentError(absl::StrCat(
                "request ", r, ": slot ", q.slots[i], " of position ", i,
                " does not follow its page (slots must be page * ", p, " + offset)"));
          }
        }
      }
    }
  }
  if (tokens > limits.max_tokens) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch of ", tokens, " tokens exceeds max_tokens ", limits.max_tokens));
  }
  if (pad_to > 0 && (!all_decode || pad_to < num)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "padding to ", pad_to, " requests needs a decode-only batch of at most that many (", num,
        " requests", all_decode ? "" : ", not all decoding", ")"));
  }

  // Pack.
  int32_t* tok = At<int32_t>(staging, layout.tokens);
  int32_t* pos = At<int32_t>(staging, layout.positions);
  int32_t* treq = At<int32_t>(staging, layout.token_req);
  int32_t* last = At<int32_t>(staging, layout.last_index);
  int32_t* page_begin = At<int32_t>(staging, layout.page_begin);
  int32_t* decode = At<int32_t>(staging, layout.decode_tokens);
  kc::PrefillTile* tiles = At<kc::PrefillTile>(staging, layout.tiles);
  kc::DeviceSamplingParams* params = At<kc::DeviceSamplingParams>(staging, layout.params);
  int32_t* pages = At<int32_t>(staging, layout.pages);

  StepPlan plan;
  plan.real_requests = static_cast<int32_t>(num);
  plan.all_decode = all_decode;
  plan.decode_splits = std::max(1, decode_splits);
  std::vector<int32_t> token_begin, new_tokens;
  int32_t t = 0, pg = 0;
  page_begin[0] = 0;
  for (int64_t r = 0; r < num; ++r) {
    const ForwardRequest& q = batch[r];
    const int32_t n = static_cast<int32_t>(q.new_tokens.size());
    const int32_t total = static_cast<int32_t>(q.cached_len) + n;
    token_begin.push_back(t);
    new_tokens.push_back(n);
    if (n == 1) decode[plan.num_decode++] = t;
    for (int32_t i = 0; i < n; ++i, ++t) {
      tok[t] = q.new_tokens[i];
      pos[t] = static_cast<int32_t>(q.cached_len) + i;
      treq[t] = static_cast<int32_t>(r);
    }
    last[r] = t - 1;
    const int32_t np = (total + p - 1) / p;
    for (int32_t j = 0; j < np; ++j) {
      pages[pg + j] = q.pages.empty() ? q.slots[int64_t{j} * p] / p : q.pages[j];
    }
    pg += np;
    page_begin[r + 1] = pg;
    params[r] = kc::PlanSampling(q.sampling, q.sample_step, c.vocab_size);
    plan.num_host_rows += params[r].mode == kc::kSampleHost ? 1 : 0;
    plan.max_kv_len = std::max(plan.max_kv_len, total);
  }
  const kc::RowLayout rows = kc::MakeRowLayout(c.num_heads, c.num_kv_heads);
  const std::vector<kc::PrefillTile> planned =
      kc::PlanPrefillTiles(token_begin, new_tokens, rows.tokens_per_block);
  std::copy(planned.begin(), planned.end(), tiles);
  plan.num_tiles = static_cast<int32_t>(planned.size());
  int32_t requests = static_cast<int32_t>(num);
  for (; requests < pad_to; ++requests, ++t) {
    // A dummy decode request on the padding page.
    tok[t] = 0;
    pos[t] = 0;
    treq[t] = requests;
    last[requests] = t;
    decode[plan.num_decode++] = t;
    pages[pg++] = kvcache::kPaddingPage;
    page_begin[requests + 1] = pg;
    params[requests] = kc::DeviceSamplingParams();
  }
  plan.num_tokens = t;
  plan.num_requests = requests;
  plan.upload_bytes = layout.pages + static_cast<size_t>(pg) * 4;
  return plan;
}

}  // namespace colo::engine
