#include "engine/server/weight_update_service.h"

#include <algorithm>
#include <memory>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "engine/memory/memory_tag.h"
#include "engine/tp/sharded_update_sink.h"
#include "engine/tp/tp_checksums.h"
#include "proto/logging/logging.h"
#include "proto/status/status_macros.h"
#include "weight_sync/ipc_update.h"

namespace colo::engine {
namespace {

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

std::vector<std::string> SplitDirs(const std::string& dirs) {
  std::vector<std::string> out;
  for (absl::string_view d : absl::StrSplit(dirs, ',', absl::SkipWhitespace())) {
    out.emplace_back(d);
  }
  return out;
}

}  // namespace

// One update's hold on the engine: the service's single update slot and
// the scheduler's update-in-flight state; on exit it returns the update's
// transient memory.
class WeightUpdateService::InFlight {
 public:
  InFlight(WeightUpdateService* service, const char* rpc) : service_(service) {
    status_ = service_->Claim(rpc);
    if (!status_.ok()) return;
    claimed_ = true;
    status_ = service_->runtime_->scheduler().BeginWeightUpdate(rpc);
    began_ = status_.ok();
  }
  ~InFlight() {
    if (began_) {
      EngineRuntime* runtime = service_->runtime_;
      // In the colocated cycle (kv_cache released while the trainer sends
      // weights) the shadow and staging buffers' segments go back now, so
      // resuming kv_cache next does not stack KV on top of them (two-stage
      // resume). With kv_cache resident (in-place update) they stay cached
      // until ContinueGeneration{torch_empty_cache}. With --device=cuda the
      // shadows are host memory and NCCL's bucket slots device memory: both
      // allocators are emptied.
      if (runtime->pool().IsReleased(MemoryTag::kKvCache)) {
        uint64_t returned = runtime->staging_allocator().EmptyCache();
        if (&runtime->allocator() != &runtime->staging_allocator()) {
          returned += runtime->allocator().EmptyCache();
        }
        COLO_LOG(INFO) << "weight update done: returned " << returned
                       << " bytes of staging before kv_cache resumes";
      }
      runtime->scheduler().EndWeightUpdate();
    }
    if (claimed_) service_->Unclaim();
  }
  InFlight(const InFlight&) = delete;
  InFlight& operator=(const InFlight&) = delete;

  const absl::Status& status() const { return status_; }
  // False when another update holds the slot.
  bool claimed() const { return claimed_; }

 private:
  WeightUpdateService* const service_;
  absl::Status status_;
  bool claimed_ = false;
  bool began_ = false;
};

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

WeightUpdateService::WeightUpdateService(EngineRuntime* runtime)
    : runtime_(runtime),
      shm_dirs_(SplitDirs(runtime->options().ipc_shm_dirs)),
      ipc_domain_(weight_sync::LocalIpcDomain()) {
  defaults_.init_timeout = absl::Milliseconds(runtime->options().weight_sync_init_timeout_ms);
  // NCCL groups use the engine's device (--device_ordinal).
  defaults_.cuda_device = runtime->backend().device();
  defaults_.transfer_timeout =
      absl::Milliseconds(runtime->options().weight_sync_transfer_timeout_ms);
}

absl::Status WeightUpdateService::Claim(const char* rpc) {
  absl::MutexLock lock(&mu_);
  if (!in_flight_.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        rpc, ": another weight update (", in_flight_, ", running for ",
        absl::FormatDuration(absl::Trunc(absl::Now() - in_flight_since_, absl::Milliseconds(1))),
        ") is in flight; one update at a time"));
  }
  in_flight_ = rpc;
  in_flight_since_ = absl::Now();
  return absl::OkStatus();
}

void WeightUpdateService::Unclaim() {
  absl::MutexLock lock(&mu_);
  in_flight_.clear();
}

absl::StatusOr<weight_sync::CudaIpcReader*> WeightUpdateService::CudaReader() {
  absl::MutexLock lock(&mu_);
  if (cuda_reader_ == nullptr && cuda_reader_error_.ok()) {
    const int device = runtime_->backend().kind() == "cuda" ? runtime_->backend().device() : 0;
    absl::StatusOr<std::unique_ptr<weight_sync::CudaIpcReader>> r =
        weight_sync::CudaIpcReader::Create(device);
    if (r.ok()) {
      cuda_reader_ = std::move(r).value();
    } else {
      cuda_reader_error_ = r.status();
    }
  }
  if (cuda_reader_ == nullptr) return cuda_reader_error_;
  return cuda_reader_.get();
}

weight_sync::EngineUpdateEnv WeightUpdateService::Env(
    std::function<std::pair<std::string, bool>()> version_and_flush) {
  weight_sync::EngineUpdateEnv env;
  env.weights = &runtime_->weights();
  // Shadows and staging must be host memory (the host master weights are
  // written from them): on CUDA this is not the device allocator.
  env.allocator = &runtime_->staging_allocator();
  env.check_finite = runtime_->options().weight_update_check_finite;
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
  const absl::Time start = absl::Now();
  ASSIGN_OR_RETURN(std::unique_ptr<TpUpdate> tp, StartTp(TpCommandFor(request)));
  absl::StatusOr<colo::v1::InitWeightsUpdateGroupResponse> local =
      weight_sync::InitGroup(&registry_, request, defaults_);
  if (tp != nullptr) {
    const absl::Status merged = tp->Merge(local.status(), tp->Finish());
    if (!merged.ok()) {
      // All ranks join or none keeps the group.
      colo::v1::DestroyWeightsUpdateGroupRequest destroy;
      destroy.set_group_name(request.group_name());
      if (local.ok()) (void)weight_sync::DestroyGroup(&registry_, destroy);
      (void)runtime_->tp()->CallAll(TpCommandFor(destroy), absl::Seconds(30));
      return merged;
    }
  }
  if (local.ok()) {
    COLO_LOG(INFO) << "weight-update group \"" << request.group_name() << "\" formed in "
                   << absl::FormatDuration(absl::Trunc(absl::Now() - start, absl::Milliseconds(1)))
                   << ": rank " << local->rank() << "/" << request.world_size() << ", rendezvous "
                   << (request.rendezvous().empty() ? "colo" : request.rendezvous()) << " "
                   << local->detail();
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

colo::v1::ListWeightsUpdateGroupsResponse WeightUpdateService::ListGroups() const {
  return weight_sync::ListGroups(registry_);
}

absl::StatusOr<colo::v1::UpdateWeightsResponse> WeightUpdateService::UpdateFromDistributed(
    const colo::v1::UpdateWeightsFromDistributedRequest& request) {
  InFlight in_flight(this, "UpdateWeightsFromDistributed");
  // Another update in flight may be about to use this very group: refuse at
  // once, without touching the group.
  if (!in_flight.claimed()) return in_flight.status();
  const std::string version = request.weight_version();
  const bool flush = request.flush_cache();
  // The other ranks of a tensor-parallel engine receive too (each keeps its
  // shard); a refusal here fails their vote.
  ASSIGN_OR_RETURN(std::unique_ptr<TpUpdate> tp, StartTp(TpCommandFor(request)));
  weight_sync::EngineUpdateEnv env =
      Env([version, flush] { return std::make_pair(version, flush); });
  if (tp != nullptr) env.run_commit = tp->WrapCommit(env.run_commit);
  // An update the engine refuses for its state still drains a torch
  // group's broadcasts (see the class comment); a colo group's sender sees
  // the refusal in its vote.
  return FinishTp(tp.get(), weight_sync::UpdateFromDistributed(&registry_, request, env,
                                                               in_flight.status()));
}

absl::StatusOr<colo::v1::UpdateWeightsResponse> WeightUpdateService::UpdateFromTensor(
    grpc::ServerReader<colo::v1::WeightChunk>* reader) {
  InFlight in_flight(this, "UpdateWeightsFromTensor");
  if (!in_flight.status().ok()) return in_flight.status();
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
  InFlight in_flight(this, "UpdateWeightsFromDisk");
  if (!in_flight.status().ok()) return in_flight.status();
  const std::string version = request.weight_version();
  const bool flush = request.flush_cache();
  ASSIGN_OR_RETURN(std::unique_ptr<TpUpdate> tp, StartTp(TpCommandFor(request)));
  weight_sync::EngineUpdateEnv env =
      Env([version, flush] { return std::make_pair(version, flush); });
  if (tp != nullptr) env.run_commit = tp->WrapCommit(env.run_commit);
  return FinishTp(tp.get(), weight_sync::UpdateFromDisk(request, env));
}

absl::StatusOr<colo::v1::UpdateWeightsResponse> WeightUpdateService::UpdateFromIpc(
    grpc::ServerReaderWriter<colo::v1::IpcUpdateReply, colo::v1::IpcUpdateRequest>* stream) {
  if (runtime_->tp() != nullptr) {
    return absl::FailedPreconditionError(
        "UpdateWeightsFromIpc: not supported on a tensor-parallel engine yet (--tp_size > 1); "
        "update it over a broadcast group (InitWeightsUpdateGroup with tp_size ranks) or from "
        "disk");
  }
  InFlight in_flight(this, "UpdateWeightsFromIpc");
  if (!in_flight.status().ok()) return in_flight.status();
  auto commit = std::make_shared<colo::v1::WeightCommit>();
  weight_sync::IpcUpdateOptions ipc;
  ipc.shm_dirs = shm_dirs_;
  ipc.cuda = [this] { return CudaReader(); };
  // As many copy threads as the CPU backend computes with (0 = all cores).
  ipc.copy_threads = runtime_->options().cpu_threads > 0
                         ? runtime_->options().cpu_threads
                         : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return weight_sync::UpdateFromIpc(
      [stream](colo::v1::IpcUpdateRequest* m) { return stream->Read(m); },
      [stream](const colo::v1::IpcBucketAck& ack) {
        colo::v1::IpcUpdateReply reply;
        *reply.mutable_ack() = ack;
        return stream->Write(reply);
      },
      Env([commit] { return std::make_pair(commit->weight_version(), commit->flush_cache()); }),
      ipc, commit.get());
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

void WeightUpdateService::FillServerInfo(colo::v1::GetServerInfoResponse* response) const {
  response->set_max_receive_message_bytes(runtime_->options().max_receive_message_bytes);
  response->set_ipc_domain(ipc_domain_);
}

}  // namespace colo::engine
