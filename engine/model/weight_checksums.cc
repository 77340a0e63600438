#include "engine/model/weight_checksums.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "weight_sync/crc32c.h"
#include "weight_sync/tensor_spec.h"

namespace colo {
namespace engine {

absl::StatusOr<std::vector<WeightChecksumEntry>> ComputeWeightChecksums(
    const ModelWeights& weights, const std::vector<std::string>& names) {
  std::vector<WeightInfo> infos;
  if (names.empty()) {
    infos = weights.List();
  } else {
    std::vector<std::string> unknown;
    for (const std::string& n : names) {
      absl::StatusOr<WeightInfo> info = weights.Find(n);
      if (info.ok()) {
        infos.push_back(*info);
      } else {
        unknown.push_back(absl::StrCat("\"", n, "\""));
      }
    }
    if (!unknown.empty()) {
      return absl::NotFoundError(
          absl::StrCat("unknown tensors: ", absl::StrJoin(unknown, ", ")));
    }
  }
  std::vector<WeightChecksumEntry> out;
  out.reserve(infos.size());
  for (const WeightInfo& w : infos) {
    WeightChecksumEntry e;
    e.name = w.name;
    e.dtype = std::string(weight_sync::WireDtypeName(w.dtype));
    e.shape = w.shape;
    e.crc32c = weight_sync::Crc32c(w.data, w.NumElements() * sizeof(float));
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace engine
}  // namespace colo
