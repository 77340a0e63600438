#include "engine/server/weight_update_service.h"

#include <memory>

#include "absl/strings/str_cat.h"
#include "engine/memory/memory_tag.h"
#include "engine/tp/sharded_update_sink.h"
#include "engine/tp/tp_checksums.h"
#include "proto/status/status_macros.h"
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

// Tensor parallelism: the command every other rank runs too.
colo::internal::TpCommand TpCommandFor(const colo::v1::InitWeightsUpdateGroupRequest& r) {
  colo::internal::TpCommand c;
  c.mutable_init_group()->set_request(r.SerializeAsString());
  return c;
}
colo::internal::TpCommand TpCommandFor(const colo::v1::DestroyWeightsUpdateGroupRequest& r) {
  colo::internal::TpCommand c;
  c.mutable_destroy_group()->set_request(r.SerializeAsString());
  return c;
}
colo::internal::TpCommand TpCommandFor(const colo::v1::UpdateWeightsFromDistributedRequest& r) {
  colo::internal::TpCommand c;
  c.mutable_update_distributed()->set_request(r.SerializeAsString());
  return c;
}
colo::internal::TpCommand TpCommandFor(const colo::v1::UpdateWeightsFromDiskRequest& r) {
  colo::internal::TpCommand c;
  c.mutable_update_disk()->set_request(r.SerializeAsString());
  return c;
}

// GetWeightChecksums of a tensor-parallel engine: every rank's CRC pieces of
// its shard, combined into the full tensors' checksums (tp_checksums.h).
// Runs between forward steps.
absl::StatusOr<colo::v1::GetWeightChecksumsResponse> TpWeightChecksums(
    EngineRuntime& runtime, const colo::v1::GetWeightChecksumsRequest& request) {
  const std::vector<std::string> names(request.names().begin(), request.names().end());
  std::vector<colo::internal::TpChecksumsReply> ranks(1);
  ASSIGN_OR_RETURN(ranks[0], ShardChecksumPieces(*runtime.shard_plan(), runtime.weights(), names));
  colo::internal::TpCommand command;
  colo::internal::TpChecksums* checksums = command.mutable_checksums();  // empty: all
  for (const std::string& n : names) checksums->add_names(n);
  ASSIGN_OR_RETURN(std::vector<colo::internal::TpReply> replies,
                   runtime.tp()->CallAll(command, absl::Minutes(10)));
  for (const colo::internal::TpReply& r : replies) ranks.push_back(r.checksums());
  ASSIGN_OR_RETURN(std::vector<WeightChecksumEntry> entries, CombineChecksumPieces(ranks));
  colo::v1::GetWeightChecksumsResponse response;
  for (const WeightChecksumEntry& e : entries) {
    colo::v1::WeightChecksum* c = response.add_checksums();
    c->set_name(e.name);
    c->set_dtype(e.dtype);
    for (int64_t d : e.shape) c->mutable_shape()->add_dims(d);
    c->set_crc32c(e.crc32c);
  }
  return response;
}

}  // namespace

absl::StatusOr<std::unique_ptr<TpUpdate>> WeightUpdateService::StartTp(
    colo::internal::TpCommand command) {
  if (runtime_->tp() == nullptr) return std::unique_ptr<TpUpdate>();
  // A dead or hung rank is found by the heartbeat; this only bounds waits
  // on live ranks (a trainer that never sends).
  return TpUpdate::Start(runtime_->tp(), std::move(command),
                         defaults_.init_timeout + defaults_.transfer_timeout + absl::Minutes(60));
}

absl::StatusOr<colo::v1::UpdateWeightsResponse> WeightUpdateService::FinishTp(
    TpUpdate* tp, absl::StatusOr<colo::v1::UpdateWeightsResponse> local) {
  if (tp == nullptr) return local;
  const absl::Status merged = tp->Merge(local.status(), tp->Finish());
  if (!merged.ok()) return merged;
  return local;
}

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
  if (runtime_->shard_plan() != nullptr) {
    // A tensor-parallel rank 0 keeps its shard of the full tensors.
    env.make_sink = [runtime]() -> absl::StatusOr<std::unique_ptr<weight_sync::UpdateSink>> {
      absl::StatusOr<std::unique_ptr<ShardedUpdateSink>> sink = ShardedUpdateSink::Create(
          runtime->shard_plan(), &runtime->weights(), &runtime->staging_allocator());
      if (!sink.ok()) return sink.status();
      return std::unique_ptr<weight_sync::UpdateSink>(*std::move(sink));
    };
  }
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
  const int tp_size = runtime_->options().tp_size;
  if (tp_size > 1 && request.rank_offset() + tp_size > request.world_size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "world_size ", request.world_size(), " has no room for this engine's ", tp_size,
        " tensor-parallel ranks at rank_offset ", request.rank_offset(),
        " (it occupies ranks rank_offset .. rank_offset + tp_size - 1)"));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<TpUpdate> tp,
                   StartTp(TpCommandFor(request)));
  absl::StatusOr<colo::v1::InitWeightsUpdateGroupResponse> local =
      weight_sync::InitGroup(&registry_, request, defaults_);
  if (tp == nullptr) return local;
  const absl::Status merged = tp->Merge(local.status(), tp->Finish());
  if (!merged.ok()) {
    // All ranks join or none keeps the group.
    colo::v1::DestroyWeightsUpdateGroupRequest destroy;
    destroy.set_group_name(request.group_name());
    if (local.ok()) (void)weight_sync::DestroyGroup(&registry_, destroy);
    (void)runtime_->tp()->CallAll(
        TpCommandFor(destroy),
        absl::Seconds(30));
    return merged;
  }
  return local;
}

absl::Status WeightUpdateService::DestroyGroup(
    const colo::v1::DestroyWeightsUpdateGroupRequest& request) {
  absl::Status local = weight_sync::DestroyGroup(&registry_, request);
  if (runtime_->tp() == nullptr) return local;
  ASSIGN_OR_RETURN(std::unique_ptr<TpUpdate> tp,
                   StartTp(TpCommandFor(request)));
  return tp->Merge(local, tp->Finish());
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
  ASSIGN_OR_RETURN(
      std::unique_ptr<TpUpdate> tp,
      StartTp(TpCommandFor(request)));
  weight_sync::EngineUpdateEnv env = Env([version, flush] { return std::make_pair(version, flush); });
  if (tp != nullptr) env.run_commit = tp->WrapCommit(env.run_commit);
  return FinishTp(tp.get(), weight_sync::UpdateFromDistributed(registry_, request, env));
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
  colo::internal::TpCommand stream;
  stream.mutable_update_stream();
  ASSIGN_OR_RETURN(std::unique_ptr<TpUpdate> tp, StartTp(stream));
  weight_sync::EngineUpdateEnv env =
      Env([commit] { return std::make_pair(commit->weight_version(), commit->flush_cache()); });
  if (tp != nullptr) env.run_commit = tp->WrapCommit(env.run_commit);
  TpUpdate* tp_ptr = tp.get();
  return FinishTp(tp_ptr, weight_sync::UpdateFromChunks(
                              [reader, tp_ptr](colo::v1::WeightChunk* c) {
                                // Every rank gets every chunk (and keeps its shard).
                                if (!reader->Read(c)) return false;
                                if (tp_ptr != nullptr) tp_ptr->Forward(*c);
                                return true;
                              },
                              env, commit.get()));
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
  ASSIGN_OR_RETURN(std::unique_ptr<TpUpdate> tp,
                   StartTp(TpCommandFor(request)));
  weight_sync::EngineUpdateEnv env = Env([version, flush] { return std::make_pair(version, flush); });
  if (tp != nullptr) env.run_commit = tp->WrapCommit(env.run_commit);
  return FinishTp(tp.get(), weight_sync::UpdateFromDisk(request, env));
}

absl::StatusOr<colo::v1::GetWeightChecksumsResponse> WeightUpdateService::Checksums(
    const colo::v1::GetWeightChecksumsRequest& request) {
  absl::StatusOr<colo::v1::GetWeightChecksumsResponse> result =
      absl::UnknownError("checksums not computed");
  ModelRunner* runner = &runtime_->runner();
  EngineRuntime* runtime = runtime_;
  absl::Status s = runtime_->scheduler().RunBetweenSteps(
      "GetWeightChecksums", [&result, &request, runner, runtime](bool resident) {
        if (!resident) {
          return absl::FailedPreconditionError(
              "GetWeightChecksums: the weights tag is released; ResumeTags(weights) first");
        }
        if (runtime->tp() != nullptr) {
          result = TpWeightChecksums(*runtime, request);
          return absl::OkStatus();
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
