// A forward step as rank 0 sends it to the other ranks (TpStep): per request
// the cached length, the new tokens, its full-pool slots as KV pages (the
// page tables are the same on every rank: rank 0's scheduler allocates the
// pages, every rank's KV pool holds its own KV heads with the same layout)
// and, for sliding layers, the SWA slots of the positions inside the
// window, which the other ranks write into their full->SWA map.
#ifndef COLO_ENGINE_TP_TP_STEP_H_
#define COLO_ENGINE_TP_TP_STEP_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "colo/internal/tp_control.pb.h"
#include "engine/model/forward.h"

namespace colo {
namespace engine {

// `sliding_window` > 0 when the model has sliding layers (kv.full_to_swa
// is then read for the in-window positions).
colo::internal::TpStep EncodeStep(absl::Span<const ForwardRequest> batch, const KvCacheView& kv,
                                  int32_t page_size, int64_t sliding_window);

// The requests of a step, with the storage their spans point into.
struct DecodedStep {
  std::vector<ForwardRequest> requests;
  std::vector<std::vector<int32_t>> tokens;
  std::vector<std::vector<int32_t>> slots;
};

// Rebuilds the requests and writes the SWA slots into `full_to_swa`
// (`full_to_swa_size` entries; null without sliding layers).
// INVALID_ARGUMENT for a malformed step (slots outside the map).
absl::StatusOr<DecodedStep> DecodeStep(const colo::internal::TpStep& step, int32_t page_size,
                                       int32_t* full_to_swa, int64_t full_to_swa_size);

}  // namespace engine
}  // namespace colo

#endif  // COLO_ENGINE_TP_TP_STEP_H_
