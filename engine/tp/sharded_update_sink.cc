#include "engine/tp/sharded_update_sink.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "proto/status/status_macros.h"

namespace colo {
namespace engine {
namespace {

std::string ShapeString(const std::vector<int64_t>& s) {
  return absl::StrCat("[", absl::StrJoin(s, ", "), "]");
}

}  // namespace

absl::StatusOr<std::unique_ptr<ShardedUpdateSink>> ShardedUpdateSink::Create(
    const ShardPlan* plan, ModelWeights* weights, CachingAllocator* allocator) {
  if (plan == nullptr) return absl::InvalidArgumentError("ShardedUpdateSink needs a ShardPlan");
  ASSIGN_OR_RETURN(std::unique_ptr<ModelWeightUpdateSink> local,
                   ModelWeightUpdateSink::Create({weights, allocator}));
  return std::unique_ptr<ShardedUpdateSink>(new ShardedUpdateSink(plan, std::move(local)));
}

std::vector<weight_sync::TensorSpec> ShardedUpdateSink::ExpectedTensors() const {
  std::vector<weight_sync::TensorSpec> specs = local_->ExpectedTensors();
  for (weight_sync::TensorSpec& s : specs) {
    absl::StatusOr<TensorShard> shard = plan_->Shard(s.name);
    if (shard.ok()) s.shape = shard->full_shape;
  }
  return specs;
}

absl::StatusOr<std::vector<weight_sync::TensorSpec>> ShardedUpdateSink::ToLocal(
    const std::vector<weight_sync::TensorSpec>& specs) const {
  std::vector<std::string> offenders;
  std::vector<weight_sync::TensorSpec> local;
  for (const weight_sync::TensorSpec& s : specs) {
    absl::StatusOr<TensorShard> shard = plan_->Shard(s.name);
    if (!shard.ok()) {
      offenders.push_back(absl::StrCat("unknown tensor \"", s.name, "\""));
      continue;
    }
    if (s.shape != shard->full_shape) {
      offenders.push_back(absl::StrCat("tensor \"", s.name, "\" has shape ",
                                       ShapeString(shard->full_shape), ", update has shape ",
                                       ShapeString(s.shape)));
      continue;
    }
    weight_sync::TensorSpec l = s;
    l.shape = shard->local_shape;
    local.push_back(std::move(l));
  }
  absl::Status more = local_->Validate(local);
  if (!more.ok()) offenders.push_back(std::string(more.message()));
  if (!offenders.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("weight update rejected: ", absl::StrJoin(offenders, "; ")));
  }
  return local;
}

absl::Status ShardedUpdateSink::Validate(const std::vector<weight_sync::TensorSpec>& specs) const {
  return ToLocal(specs).status();
}

absl::Status ShardedUpdateSink::Begin(const std::vector<weight_sync::TensorSpec>& specs) {
  ASSIGN_OR_RETURN(std::vector<weight_sync::TensorSpec> local, ToLocal(specs));
  RETURN_IF_ERROR(local_->Begin(local));
  for (size_t i = 0; i < specs.size(); ++i) {
    Begun b;
    b.shard = *plan_->Shard(specs[i].name);
    b.element_bytes = specs[i].ElementBytes();
    // The padding rows of the last vocab shard: zeros, staged now.
    const int64_t held = b.shard.dim == ShardDim::kRows
                             ? b.shard.count * (b.shard.LocalElements() / b.shard.local_shape[0])
                             : b.shard.LocalElements();
    const int64_t pad = (b.shard.LocalElements() - held) * static_cast<int64_t>(b.element_bytes);
    if (pad > 0) {
      const std::string zeros(static_cast<size_t>(pad), '\0');
      RETURN_IF_ERROR(local_->Stage(specs[i].name, held * b.element_bytes, zeros.data(),
                                    zeros.size()));
    }
    begun_[specs[i].name] = std::move(b);
  }
  return absl::OkStatus();
}

absl::Status ShardedUpdateSink::Stage(const std::string& name, size_t offset, const void* data,
                                      size_t bytes) {
  auto it = begun_.find(name);
  if (it == begun_.end()) {
    return absl::InvalidArgumentError(absl::StrCat("tensor \"", name, "\" was not begun"));
  }
  const Begun& b = it->second;
  const int64_t full_bytes = b.shard.FullElements() * static_cast<int64_t>(b.element_bytes);
  if (static_cast<int64_t>(offset + bytes) > full_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("tensor \"", name, "\": bytes [", offset, ", ",
                                                   offset + bytes, ") outside its ", full_bytes,
                                                   " bytes"));
  }
  absl::Status status;
  ShardPlan::ForEachLocalRange(
      b.shard, static_cast<int64_t>(b.element_bytes), static_cast<int64_t>(offset),
      static_cast<int64_t>(bytes), [&](int64_t local_offset, int64_t range_offset, int64_t n) {
        if (!status.ok()) return;
        status = local_->Stage(name, static_cast<size_t>(local_offset),
                               static_cast<const char*>(data) + range_offset,
                               static_cast<size_t>(n));
      });
  return status;
}

void* ShardedUpdateSink::StagingArea(const std::string& name, size_t offset, size_t bytes) {
  auto it = begun_.find(name);
  if (it == begun_.end() || it->second.shard.dim != ShardDim::kReplicated) return nullptr;
  return local_->StagingArea(name, offset, bytes);
}

absl::Status ShardedUpdateSink::MarkStaged(const std::string& name, size_t offset, size_t bytes) {
  auto it = begun_.find(name);
  if (it == begun_.end() || it->second.shard.dim != ShardDim::kReplicated) {
    return absl::FailedPreconditionError(
        absl::StrCat("tensor \"", name, "\" has no staging area on this tensor-parallel rank"));
  }
  return local_->MarkStaged(name, offset, bytes);
}

}  // namespace engine
}  // namespace colo
