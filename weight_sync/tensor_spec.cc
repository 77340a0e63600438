#include "weight_sync/tensor_spec.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace colo {
namespace weight_sync {

int64_t TensorSpec::NumElements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

size_t TensorSpec::ElementBytes() const { return engine::TensorDtypeBytes(dtype); }

size_t TensorSpec::Bytes() const {
  return static_cast<size_t>(NumElements()) * ElementBytes();
}

absl::StatusOr<TensorDtype> ParseWireDtype(absl::string_view name) {
  if (name == "float32" || name == "F32") return TensorDtype::kF32;
  if (name == "float16" || name == "F16") return TensorDtype::kF16;
  if (name == "bfloat16" || name == "BF16") return TensorDtype::kBF16;
  return absl::InvalidArgumentError(absl::StrCat(
      "unsupported dtype \"", name, "\" (want float32, float16 or bfloat16)"));
}

absl::string_view WireDtypeName(TensorDtype dtype) {
  switch (dtype) {
    case TensorDtype::kF32:
      return "float32";
    case TensorDtype::kF16:
      return "float16";
    case TensorDtype::kBF16:
      return "bfloat16";
    default:
      return "unsupported";
  }
}

std::string ShapeToString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

absl::StatusOr<std::vector<TensorSpec>> SpecsFromArrays(
    const std::vector<std::string>& names,
    const std::vector<std::string>& dtypes,
    const std::vector<std::vector<int64_t>>& shapes) {
  if (names.size() != dtypes.size() || names.size() != shapes.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "names, dtypes and shapes must have the same length; got ",
        names.size(), ", ", dtypes.size(), ", ", shapes.size()));
  }
  std::vector<std::string> errors;
  std::vector<TensorSpec> specs(names.size());
  for (size_t i = 0; i < names.size(); ++i) {
    specs[i].name = names[i];
    specs[i].shape = shapes[i];
    absl::StatusOr<TensorDtype> dtype = ParseWireDtype(dtypes[i]);
    if (!dtype.ok()) {
      errors.push_back(absl::StrCat("\"", names[i], "\": ",
                                    dtype.status().message()));
    } else {
      specs[i].dtype = *dtype;
    }
    for (int64_t d : shapes[i]) {
      if (d < 0) {
        errors.push_back(absl::StrCat("\"", names[i], "\": negative dimension in ",
                                      ShapeToString(shapes[i])));
        break;
      }
    }
  }
  if (!errors.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid tensor specs: ", absl::StrJoin(errors, "; ")));
  }
  return specs;
}

}  // namespace weight_sync
}  // namespace colo
