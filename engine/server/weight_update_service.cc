#include "engine/server/weight_update_service.h"

#include <memory>

#include "absl/strings/str_cat.h"
#include "engine/memory/memory_tag.h"
#include "proto/logging/logging.h"

namespace colo::engine {
namespace {

// Ends the scheduler's update-in-flight state however the update ends, and
// returns the update's transient memory.
class UpdateInFlight {
 public:
  explicit UpdateInFlight(EngineRuntime* runtime) : runtime_(runtime) {}
  ~UpdateInFlight() {
    // In the colocated cycle (kv_cache released while the trainer sends
    // weights) the shadow and staging buffers' segments go back now, so
    // resuming kv_cache next does not stack KV on top of them (two-stage
    // resume). With kv_cache resident (in-place update) they stay cached
    // until ContinueGeneration{torch_empty_cache}. With --device=cuda the
    // shadows are host memory and NCCL's bucket slots device memory: both
    // allocators are emptied.
    if (runtime_->pool().IsReleased(MemoryTag::kKvCache)) {
      uint64_t returned = runtime_->staging_allocator().EmptyCache();
      if (&runtime_->allocator() != &runtime_->staging_allocator()) {
        returned += runtime_->allocator().EmptyCache();
      }
      COLO_LOG(INFO) << "weight update done: returned " << returned
                     << " bytes of staging before kv_cache resumes";
    }
    runtime_->scheduler().EndWeightUpdate();
  }
  UpdateInFlight(const UpdateInFlight&) = delete;
  UpdateInFlight& operator=(const UpdateInFlight&) = delete;

 private:
  EngineRuntime* const runtime_;
};

bool OnDevice(EngineRuntime& runtime) { return runtime.runner().device_kind() != "cpu"; }

}  // namespace

WeightUpdateService::WeightUpdateService(EngineRuntime* runtime) : runtime_(runtime) {
  defaults_.init_timeout = absl::Milliseconds(runtime->options().weight_sync_init_timeout_ms);
  // NCCL groups use the engine's device (--device_ordinal).
  defaults_.cuda_device = runtime->backend().device();
  defaults_.transfer_timeout =
      absl::Milliseconds(runtime->options().weight_sync_transfer_timeout_ms);
}

weight_sync::EngineUpdateEnv WeightUpdateService::Env(
    std::function<std::pair<std::string, bool>()> version_and_flush) {
  weight_sync::EngineUpdateEnv env;
  env.weights = &runtime_->weights();
  // Shadows and staging must be host memory (the host master weights are
  // written from them): on CUDA this is not the device allocator.
  env.allocator = &runtime_->staging_allocator();
  if (OnDevice(*runtime_)) {
    // NCCL groups receive buckets into device memory, then copy to the
    // host shadows.
    env.device_backend = &runtime_->backend();
    env.device_staging = &runtime_->allocator();
  }
  EngineRuntime* runtime = runtime_;
  env.run_commit = [runtime, version_and_flush](const std::function<absl::Status()>& commit) {
    const auto [version, flush] = version_and_flush();
    return runtime->scheduler().CommitWeights(commit, version, flush);
  };
  return env;
}

absl::StatusOr<colo::v1::InitWeightsUpdateGroupResponse> WeightUpdateService::InitGroup(
    const colo::v1::InitWeightsUpdateGroupRequest& request) {
  if (request.backend() != "nccl" && request.backend() != "gloo") {
    return absl::InvalidArgumentError(
        absl::StrCat("backend must be nccl or gloo, got '", request.backend(), "'"));
  }
  if (request.backend() == "nccl" && !OnDevice(*runtime_)) {
    return absl::FailedPreconditionError(
        "backend nccl needs an engine on a GPU (--device=cuda); this engine runs on the CPU: "
        "use backend gloo");
  }
  return weight_sync::InitGroup(&registry_, request, defaults_);
}

absl::Status WeightUpdateService::DestroyGroup(
    const colo::v1::DestroyWeightsUpdateGroupRequest& request) {
  return weight_sync::DestroyGroup(&registry_, request);
}

absl::StatusOr<colo::v1::UpdateWeightsResponse> WeightUpdateService::UpdateFromDistributed(
    const colo::v1::UpdateWeightsFromDistributedRequest& request) {
  if (absl::Status s = runtime_->scheduler().BeginWeightUpdate("UpdateWeightsFromDistributed");
      !s.ok()) {
    return s;
  }
  UpdateInFlight in_flight(runtime_);
  const std::string version = request.weight_version();
  const bool flush = request.flush_cache();
  return weight_sync::UpdateFromDistributed(registry_, request,
                                            Env([version, flush] { return std::make_pair(version, flush); }));
}

absl::StatusOr<colo::v1::UpdateWeightsResponse> WeightUpdateService::UpdateFromTensor(
    grpc::ServerReader<colo::v1::WeightChunk>* reader) {
  if (absl::Status s = runtime_->scheduler().BeginWeightUpdate("UpdateWeightsFromTensor");
      !s.ok()) {
    return s;
  }
  UpdateInFlight in_flight(runtime_);
  // The version and flush flag arrive with the commit message, after the
  // data: the commit runner reads them from this slot.
  auto commit = std::make_shared<colo::v1::WeightCommit>();
  return weight_sync::UpdateFromChunks(
      [reader](colo::v1::WeightChunk* c) { return reader->Read(c); },
      Env([commit] { return std::make_pair(commit->weight_version(), commit->flush_cache()); }),
      commit.get());
}

absl::StatusOr<colo::v1::UpdateWeightsResponse> WeightUpdateService::UpdateFromDisk(
    const colo::v1::UpdateWeightsFromDiskRequest& request) {
  if (absl::Status s = runtime_->scheduler().BeginWeightUpdate("UpdateWeightsFromDisk");
      !s.ok()) {
    return s;
  }
  UpdateInFlight in_flight(runtime_);
  const std::string version = request.weight_version();
  const bool flush = request.flush_cache();
  return weight_sync::UpdateFromDisk(request,
                                     Env([version, flush] { return std::make_pair(version, flush); }));
}

absl::StatusOr<colo::v1::GetWeightChecksumsResponse> WeightUpdateService::Checksums(
    const colo::v1::GetWeightChecksumsRequest& request) {
  absl::StatusOr<colo::v1::GetWeightChecksumsResponse> result =
      absl::UnknownError("checksums not computed");
  ModelRunner* runner = &runtime_->runner();
  absl::Status s = runtime_->scheduler().RunBetweenSteps(
      "GetWeightChecksums", [&result, &request, runner](bool resident) {
        if (!resident) {
          return absl::FailedPreconditionError(
              "GetWeightChecksums: the weights tag is released; ResumeTags(weights) first");
        }
        // Over the weights the forward reads (a GPU runner without a host
        // master copies them back for this).
        return runner->WithHostWeights([&](const ModelWeights& weights) {
          result = weight_sync::WeightChecksums(request, weights);
          return absl::OkStatus();
        });
      });
  if (!s.ok()) return s;
  if (result.ok()) result->set_weight_version(runtime_->scheduler().Snapshot().weight_version);
  return result;
}

}  // namespace colo::engine
