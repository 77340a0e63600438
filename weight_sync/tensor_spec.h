// TensorSpec: what a weight update says about one tensor (name, wire dtype,
// shape), shared by the sender, the receiver and every UpdateSink.
//
// Wire dtype names are the strings of the public API ("float32", "float16",
// "bfloat16"); they map onto engine::TensorDtype (F32/F16/BF16).
#ifndef COLO_WEIGHT_SYNC_TENSOR_SPEC_H_
#define COLO_WEIGHT_SYNC_TENSOR_SPEC_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/model/safetensors.h"

namespace colo {
namespace weight_sync {

using engine::TensorDtype;

struct TensorSpec {
  std::string name;
  TensorDtype dtype = TensorDtype::kF32;
  std::vector<int64_t> shape;

  int64_t NumElements() const;  // 1 for a scalar (empty shape)
  size_t ElementBytes() const;  // 0 for kOther
  size_t Bytes() const;         // NumElements() * ElementBytes()
  bool operator==(const TensorSpec& o) const {
    return name == o.name && dtype == o.dtype && shape == o.shape;
  }
};

// "float32" / "float16" / "bfloat16" (also accepts "F32"/"F16"/"BF16").
// INVALID_ARGUMENT naming the string otherwise.
absl::StatusOr<TensorDtype> ParseWireDtype(absl::string_view name);
// "float32" / "float16" / "bfloat16"; "unsupported" for kOther.
absl::string_view WireDtypeName(TensorDtype dtype);

// "[2, 3]".
std::string ShapeToString(const std::vector<int64_t>& shape);

// Builds specs from the parallel arrays of an update request. INVALID_ARGUMENT
// when the lengths differ, a dtype is unknown or a dimension is negative
// (every offender is listed).
absl::StatusOr<std::vector<TensorSpec>> SpecsFromArrays(
    const std::vector<std::string>& names,
    const std::vector<std::string>& dtypes,
    const std::vector<std::vector<int64_t>>& shapes);

}  // namespace weight_sync
}  // namespace colo

#endif  // COLO_WEIGHT_SYNC_TENSOR_SPEC_H_
