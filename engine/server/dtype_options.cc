#include "engine/server/dtype_options.h"

#include "absl/strings/str_cat.h"

namespace colo::engine {
namespace kc = ::colo::kernels::cuda;

absl::Status ValidateDTypeFlags(const std::string& dtype, const std::string& kv_cache_dtype) {
  if (dtype != "auto" && dtype != "bfloat16" && dtype != "float16" && dtype != "float32") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--dtype must be auto, bfloat16, float16 or float32, got '", dtype, "'"));
  }
  if (kv_cache_dtype != "auto" && kv_cache_dtype != "bfloat16" && kv_cache_dtype != "float16" &&
      kv_cache_dtype != "fp8_e4m3") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--kv_cache_dtype must be auto, bfloat16, float16 or fp8_e4m3, got '", kv_cache_dtype,
        "'"));
  }
  return absl::OkStatus();
}

absl::StatusOr<EngineDTypes> ResolveDTypes(const std::string& dtype,
                                           const std::string& kv_cache_dtype,
                                           const std::string& device, kc::DType checkpoint) {
  if (absl::Status s = ValidateDTypeFlags(dtype, kv_cache_dtype); !s.ok()) return s;
  EngineDTypes out;
  if (device != "cuda") {
    if (dtype != "auto" && dtype != "float32") {
      return absl::FailedPreconditionError(absl::StrCat(
          "--dtype=", dtype, ": the CPU engine computes in float32 only (bf16/fp16 on the CPU "
          "is not built yet); use --dtype=float32 (or auto) on the CPU, or --device=cuda"));
    }
    if (kv_cache_dtype != "auto") {
      return absl::FailedPreconditionError(absl::StrCat(
          "--kv_cache_dtype=", kv_cache_dtype, ": the CPU engine keeps its KV cache in float32 "
          "only; use --kv_cache_dtype=auto on the CPU, or --device=cuda"));
    }
    return out;
  }
  if (dtype == "auto") {
    if (!kc::IsComputeDType(checkpoint)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--dtype=auto: the checkpoint is stored as ", kc::DTypeName(checkpoint),
          "; pass --dtype=bfloat16, float16 or float32"));
    }
    out.compute = checkpoint;
  } else {
    out.compute = *kc::ParseDType(dtype);
  }
  out.kv_cache = kv_cache_dtype == "auto" ? out.compute : *kc::ParseDType(kv_cache_dtype);
  if (out.kv_cache != out.compute && out.kv_cache != kc::DType::kFp8E4M3) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--kv_cache_dtype=", kv_cache_dtype, " with a ", kc::DTypeName(out.compute),
        " model: the KV cache has the compute dtype (--kv_cache_dtype=auto) or fp8_e4m3"));
  }
  return out;
}

}  // namespace colo::engine
