#include "weight_sync/stream_update.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace colo {
namespace weight_sync {

absl::Status ChunkStreamUpdate::Add(const v1::TensorChunk& chunk) {
  absl::StatusOr<TensorDtype> dtype = ParseWireDtype(chunk.dtype());
  if (!dtype.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor \"", chunk.name(), "\": ", dtype.status().message()));
  }
  TensorSpec spec;
  spec.name = chunk.name();
  spec.dtype = *dtype;
  spec.shape.assign(chunk.shape().dims().begin(), chunk.shape().dims().end());
  auto it = specs_.find(spec.name);
  if (it == specs_.end()) {
    for (int64_t d : spec.shape) {
      if (d < 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "tensor \"", spec.name, "\": negative dimension in ", ShapeToString(spec.shape)));
      }
    }
    absl::Status st = sink_->Begin({spec});
    if (!st.ok()) return st;
    it = specs_.emplace(spec.name, spec).first;
  } else if (!(it->second == spec)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor \"", spec.name, "\": chunk says ", WireDtypeName(spec.dtype), " ",
        ShapeToString(spec.shape), " but its first chunk said ",
        WireDtypeName(it->second.dtype), " ", ShapeToString(it->second.shape)));
  }
  if (chunk.offset_bytes() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor \"", spec.name, "\": negative offset_bytes"));
  }
  absl::Status st = sink_->Stage(spec.name, static_cast<size_t>(chunk.offset_bytes()),
                                 chunk.data().data(), chunk.data().size());
  if (!st.ok()) return st;
  bytes_ += static_cast<int64_t>(chunk.data().size());
  return absl::OkStatus();
}

absl::Status ChunkStreamUpdate::Finish() const {
  if (specs_.empty()) {
    return absl::InvalidArgumentError("the update stream sent no tensor");
  }
  return sink_->CheckComplete();
}

absl::Status StageCheckpoint(const engine::SafetensorsCheckpoint& checkpoint,
                             UpdateSink* sink, int64_t* bytes) {
  std::vector<TensorSpec> specs;
  std::vector<const engine::TensorView*> views;
  std::vector<std::string> missing;
  std::vector<std::string> bad_dtypes;
  for (const TensorSpec& expected : sink->ExpectedTensors()) {
    absl::StatusOr<const engine::TensorView*> view = checkpoint.Find(expected.name);
    if (!view.ok()) {
      missing.push_back(absl::StrCat("\"", expected.name, "\""));
      continue;
    }
    if ((*view)->dtype == engine::TensorDtype::kOther) {
      // Name the file's dtype string: the spec's enum only knows "other".
      bad_dtypes.push_back(
          absl::StrCat("\"", expected.name, "\": dtype \"", (*view)->dtype_name, "\""));
      continue;
    }
    TensorSpec s;
    s.name = expected.name;
    s.dtype = (*view)->dtype;
    s.shape = (*view)->shape;
    specs.push_back(std::move(s));
    views.push_back(*view);
  }
  if (!missing.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the checkpoint lacks ", missing.size(),
        " tensor(s) of the model: ", absl::StrJoin(missing, ", ")));
  }
  if (!bad_dtypes.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the checkpoint has ", bad_dtypes.size(), " tensor(s) of an unsupported dtype (want F32, ",
        "F16 or BF16): ", absl::StrJoin(bad_dtypes, ", ")));
  }
  absl::Status st = sink->Begin(specs);
  if (!st.ok()) return st;
  int64_t total = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    st = sink->Stage(specs[i].name, 0, views[i]->data, views[i]->bytes);
    if (!st.ok()) return st;
    total += static_cast<int64_t>(views[i]->bytes);
  }
  if (bytes != nullptr) *bytes = total;
  return sink->CheckComplete();
}

}  // namespace weight_sync
}  // namespace colo
