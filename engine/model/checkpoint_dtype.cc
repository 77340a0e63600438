#include "engine/model/checkpoint_dtype.h"

#include <fstream>
#include <map>
#include <memory>
#include <sstream>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "engine/model/safetensors.h"

namespace colo::engine {
namespace kc = ::colo::kernels::cuda;

absl::StatusOr<kc::DType> CheckpointDType(const std::string& model_dir) {
  absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> ckpt =
      SafetensorsCheckpoint::Open(model_dir);
  if (!ckpt.ok()) return ckpt.status();
  std::map<kc::DType, int> count;
  for (const auto& [name, view] : (*ckpt)->tensors()) {
    switch (view->dtype) {
      case TensorDtype::kF32:
        ++count[kc::DType::kFloat32];
        break;
      case TensorDtype::kF16:
        ++count[kc::DType::kFloat16];
        break;
      case TensorDtype::kBF16:
        ++count[kc::DType::kBFloat16];
        break;
      default:
        break;
    }
  }
  if (count.empty()) {
    std::ifstream in(model_dir + "/config.json");
    if (in) {
      std::stringstream text;
      text << in.rdbuf();
      const nlohmann::json j =
          nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
      if (!j.is_discarded() && j.is_object()) {
        for (const char* key : {"torch_dtype", "dtype"}) {
          if (!j.contains(key) || !j[key].is_string()) continue;
          absl::StatusOr<kc::DType> d = kc::ParseDType(j[key].get<std::string>());
          if (d.ok() && kc::IsComputeDType(*d)) return *d;
        }
      }
    }
    return absl::InvalidArgumentError(absl::StrCat(
        model_dir, ": neither the checkpoint's tensors nor config.json (torch_dtype) say the "
                   "weights' dtype; pass --dtype explicitly"));
  }
  kc::DType best = count.begin()->first;
  for (const auto& [d, n] : count) {
    if (n > count[best]) best = d;
  }
  return best;
}

}  // namespace colo::engine
