#include "kernels/cuda/dtype.h"

#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace colo::kernels::cuda {

absl::string_view DTypeName(DType d) {
  switch (d) {
    case DType::kFloat32:
      return "float32";
    case DType::kFloat16:
      return "float16";
    case DType::kBFloat16:
      return "bfloat16";
    case DType::kFp8E4M3:
      return "fp8_e4m3";
  }
  return "unknown";
}

absl::StatusOr<DType> ParseDType(absl::string_view name) {
  const std::string n = absl::AsciiStrToLower(name);
  if (n == "float32" || n == "fp32" || n == "f32" || n == "float") return DType::kFloat32;
  if (n == "float16" || n == "fp16" || n == "f16" || n == "half") return DType::kFloat16;
  if (n == "bfloat16" || n == "bf16") return DType::kBFloat16;
  if (n == "fp8_e4m3" || n == "fp8" || n == "float8_e4m3fn" || n == "e4m3") {
    return DType::kFp8E4M3;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown dtype '", name, "'; valid: float32, float16, bfloat16, fp8_e4m3"));
}

}  // namespace colo::kernels::cuda
