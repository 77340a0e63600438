#include "engine/tp/tp_step.h"

#include "absl/strings/str_cat.h"
#include "kernels/cpu/paged_attention.h"

namespace colo {
namespace engine {

using colo::internal::TpSeq;
using colo::internal::TpStep;

TpStep EncodeStep(absl::Span<const ForwardRequest> batch, const KvCacheView& kv,
                  int32_t page_size, int64_t sliding_window) {
  TpStep step;
  for (const ForwardRequest& r : batch) {
    TpSeq* s = step.add_seqs();
    s->set_cached_len(r.cached_len);
    s->mutable_new_tokens()->Add(r.new_tokens.begin(), r.new_tokens.end());
    const int64_t total = r.cached_len + static_cast<int64_t>(r.new_tokens.size());
    // Pages when the slots follow them (they do for the scheduler's
    // request table), else the slots themselves.
    bool paged = page_size > 0;
    for (int64_t i = 0; paged && i < total; ++i) {
      const int32_t page_start = r.slots[i - i % page_size];
      paged = page_start % page_size == 0 && r.slots[i] == page_start + i % page_size;
    }
    if (paged) {
      for (int64_t i = 0; i < total; i += page_size) s->add_pages(r.slots[i] / page_size);
    } else {
      s->mutable_slots()->Add(r.slots.begin(), r.slots.begin() + total);
    }
    if (sliding_window > 0 && kv.full_to_swa != nullptr) {
      const int64_t lo = kernels::FirstAttendedPosition(r.cached_len, sliding_window);
      s->set_swa_first(lo);
      for (int64_t p = lo; p < total; ++p) s->add_swa_slots(kv.full_to_swa[r.slots[p]]);
    }
  }
  return step;
}

absl::StatusOr<DecodedStep> DecodeStep(const TpStep& step, int32_t page_size,
                                       int32_t* full_to_swa, int64_t full_to_swa_size) {
  DecodedStep d;
  const int n = step.seqs_size();
  d.requests.resize(n);
  d.tokens.resize(n);
  d.slots.resize(n);
  for (int i = 0; i < n; ++i) {
    const TpSeq& s = step.seqs(i);
    const int64_t total = s.cached_len() + s.new_tokens_size();
    d.tokens[i].assign(s.new_tokens().begin(), s.new_tokens().end());
    std::vector<int32_t>& slots = d.slots[i];
    if (s.pages_size() > 0) {
      if (page_size <= 0 || s.pages_size() * int64_t{page_size} < total) {
        return absl::InvalidArgumentError(absl::StrCat("step request ", i, ": ", s.pages_size(),
                                                       " pages for ", total, " positions"));
      }
      slots.resize(total);
      for (int64_t p = 0; p < total; ++p) {
        slots[p] = s.pages(static_cast<int>(p / page_size)) * page_size +
                   static_cast<int32_t>(p % page_size);
      }
    } else {
      slots.assign(s.slots().begin(), s.slots().end());
    }
    if (s.swa_slots_size() > 0) {
      if (full_to_swa == nullptr || s.swa_first() < 0 ||
          s.swa_first() + s.swa_slots_size() > static_cast<int64_t>(slots.size())) {
        return absl::InvalidArgumentError(
            absl::StrCat("step request ", i, ": SWA slots do not fit its positions"));
      }
      for (int j = 0; j < s.swa_slots_size(); ++j) {
        const int32_t full = slots[s.swa_first() + j];
        if (full < 0 || full >= full_to_swa_size) {
          return absl::InvalidArgumentError(absl::StrCat(
              "step request ", i, ": slot ", full, " outside the full_to_swa map of ",
              full_to_swa_size));
        }
        full_to_swa[full] = s.swa_slots(j);
      }
    }
    ForwardRequest& r = d.requests[i];
    r.cached_len = s.cached_len();
    r.new_tokens = absl::MakeConstSpan(d.tokens[i]);
    r.slots = absl::MakeConstSpan(slots);
  }
  return d;
}

}  // namespace engine
}  // namespace colo
