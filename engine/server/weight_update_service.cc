#include "engine/server/weight_update_service.h"

#include <algorithm>
#include <memory>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "engine/memory/memory_tag.h"
#include "proto/logging/logging.h"
#include "weight_sync/ipc_update.h"

namespace colo::engine {
namespace {

bool OnDevice(EngineRuntime& runtime) { return runtime.runner().device_kind() != "cpu"; }

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

WeightUpdateService::WeightUpdateService(EngineRuntime* runtime)
    : runtime_(runtime),
      shm_dirs_(SplitDirs(runtime->options().ipc_shm_dirs)),
      ipc_domain_(weight_sync::LocalIpcDomain()) {
  defaults_.init_timeout = absl::Milliseconds(runtime->options().weight_sync_init_timeout_ms);
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
  const absl::Time start = absl::Now();
  absl::StatusOr<colo::v1::InitWeightsUpdateGroupResponse> r =
      weight_sync::InitGroup(&registry_, request, defaults_);
  if (r.ok()) {
    COLO_LOG(INFO) << "weight-update group \"" << request.group_name() << "\" formed in "
                   << absl::FormatDuration(absl::Trunc(absl::Now() - start, absl::Milliseconds(1)))
                   << ": rank " << r->rank() << "/" << request.world_size() << ", rendezvous "
                   << (request.rendezvous().empty() ? "colo" : request.rendezvous()) << " "
                   << r->detail();
  }
  return r;
}

absl::Status WeightUpdateService::DestroyGroup(
    const colo::v1::DestroyWeightsUpdateGroupRequest& request) {
  return weight_sync::DestroyGroup(&registry_, request);
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
  // An update the engine refuses for its state still drains a torch
  // group's broadcasts (see the class comment); a colo group's sender sees
  // the refusal in its vote.
  return weight_sync::UpdateFromDistributed(
      &registry_, request, Env([version, flush] { return std::make_pair(version, flush); }),
      in_flight.status());
}

absl::StatusOr<colo::v1::UpdateWeightsResponse> WeightUpdateService::UpdateFromTensor(
    grpc::ServerReader<colo::v1::WeightChunk>* reader) {
  InFlight in_flight(this, "UpdateWeightsFromTensor");
  if (!in_flight.status().ok()) return in_flight.status();
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
  InFlight in_flight(this, "UpdateWeightsFromDisk");
  if (!in_flight.status().ok()) return in_flight.status();
  const std::string version = request.weight_version();
  const bool flush = request.flush_cache();
  return weight_sync::UpdateFromDisk(request,
                                     Env([version, flush] { return std::make_pair(version, flush); }));
}

absl::StatusOr<colo::v1::UpdateWeightsResponse> WeightUpdateService::UpdateFromIpc(
    grpc::ServerReaderWriter<colo::v1::IpcUpdateReply, colo::v1::IpcUpdateRequest>* stream) {
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
  ModelWeights* weights = &runtime_->weights();
  absl::Status s = runtime_->scheduler().RunBetweenSteps(
      "GetWeightChecksums", [&result, &request, weights](bool resident) {
        if (!resident) {
          return absl::FailedPreconditionError(
              "GetWeightChecksums: the weights tag is released; ResumeTags(weights) first");
        }
        result = weight_sync::WeightChecksums(request, *weights);
        return absl::OkStatus();
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
