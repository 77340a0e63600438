// Finite-value checks for weight updates: a NaN or an infinity in new
// weights is rejected (INVALID_ARGUMENT naming the tensor and the first bad
// element) before anything is committed, on every update path (the check
// runs where every path ends: UpdateSink::CheckComplete of the model's
// sink). Engines may turn it off (--weight_update_check_finite=false).
#ifndef COLO_WEIGHT_SYNC_FINITE_CHECK_H_
#define COLO_WEIGHT_SYNC_FINITE_CHECK_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "weight_sync/tensor_spec.h"

namespace colo {
namespace weight_sync {

// Index of the first NaN or infinity among `count` elements of `dtype` at
// `data` (float32, float16 or bfloat16 bit patterns), or -1 when all are
// finite (also for kOther).
int64_t FirstNonFinite(TensorDtype dtype, const void* data, int64_t count);

// OK, or INVALID_ARGUMENT: `tensor "name": element i (flat, row-major) is
// NaN` (or +inf / -inf); nothing of the update is applied.
absl::Status CheckFinite(const TensorSpec& spec, const void* data);

// The same for `count` elements of `spec` starting at element `first` (a
// piece of the tensor at `data`); the message names the tensor's index.
absl::Status CheckFiniteRange(const TensorSpec& spec, const void* data, int64_t first,
                              int64_t count);

}  // namespace weight_sync
}  // namespace colo

#endif  // COLO_WEIGHT_SYNC_FINITE_CHECK_H_
