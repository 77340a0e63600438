#include "engine/tp/tp_follower.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "colo/internal/tp_control.pb.h"
#include "colo/v1/engine.pb.h"
#include "engine/device/device_backend_factory.h"
#include "engine/memory/caching_allocator.h"
#include "engine/memory/memory_info.h"
#include "engine/memory/memory_tag.h"
#include "engine/memory/tagged_pool.h"
#include "engine/tp/gloo_tp_comm.h"
#include "engine/tp/shard_loader.h"
#include "engine/tp/sharded_update_sink.h"
#include "engine/tp/tp_channel.h"
#include "engine/tp/tp_checksums.h"
#include "engine/tp/tp_memory.h"
#include "engine/tp/tp_peer.h"
#include "engine/tp/tp_step.h"
#include "kernels/cpu/thread_pool.h"
#include "kvcache/kv_storage.h"
#include "proto/logging/logging.h"
#include "proto/status/status_macros.h"
#include "weight_sync/engine_update.h"
#include "weight_sync/group_registry.h"

namespace colo {
namespace engine {
namespace {

using colo::internal::TpCommand;
using colo::internal::TpReply;

// Commands run in order by one thread.
class WorkQueue {
 public:
  explicit WorkQueue(std::function<void(const TpCommand&)> run) : run_(std::move(run)) {}
  ~WorkQueue() { Stop(); }
  void Start() {
    thread_ = std::thread([this] { Loop(); });
  }
  void Push(TpCommand command) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    queue_.push_back(std::move(command));
  }
  // Stops after the running command; the caller may detach instead of
  // joining when that command blocks on a dead peer.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_) {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
    }
    if (thread_.joinable()) thread_.join();
  }
  void Detach() {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
    }
    if (thread_.joinable()) thread_.detach();
  }

 private:
  void Loop() {
    while (true) {
      TpCommand command;
      {
        absl::MutexLock lock(&mu_);
        auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return stop_ || !queue_.empty();
        };
        mu_.Await(absl::Condition(&ready));
        if (stop_) return;
        command = std::move(queue_.front());
        queue_.pop_front();
      }
      run_(command);
    }
  }
  const std::function<void(const TpCommand&)> run_;
  absl::Mutex mu_;
  std::deque<TpCommand> queue_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

template <typename Message>
absl::StatusOr<Message> Parse(const std::string& bytes, const char* what) {
  Message m;
  if (!m.ParseFromString(bytes)) {
    return absl::InvalidArgumentError(absl::StrCat("a ", what, " from rank 0 does not parse"));
  }
  return m;
}

std::vector<MemoryTag> ParseTagsOrAll(const google::protobuf::RepeatedPtrField<std::string>& names,
                                      absl::Status* error) {
  absl::StatusOr<std::vector<MemoryTag>> tags = ParseMemoryTags({names.begin(), names.end()});
  if (!tags.ok()) {
    *error = tags.status();
    return {};
  }
  return tags->empty() ? AllMemoryTags() : *tags;
}

class Follower {
 public:
  Follower(const TpFollowerOptions& options, std::unique_ptr<TpConnection> connection)
      : options_(options),
        connection_(std::move(connection)),
        executor_([this](const TpCommand& c) { Execute(c); }),
        updater_([this](const TpCommand& c) { RunUpdate(c); }) {}

  absl::Status Run() {
    TpReply hello;
    hello.set_final(true);
    hello.mutable_hello()->set_rank(options_.rank);
    hello.mutable_hello()->set_tp_size(options_.tp_size);
    hello.mutable_hello()->set_pid(getpid());
    char host[256] = {0};
    gethostname(host, sizeof(host) - 1);
    hello.mutable_hello()->set_host(host);
    hello.mutable_hello()->set_protocol(kTpProtocol);
    RETURN_IF_ERROR(connection_->Send(hello, absl::Now() + options_.connect_timeout));
    executor_.Start();
    updater_.Start();
    absl::Status result = ReadLoop();
    executor_.Detach();
    updater_.Detach();
    return result;
  }

 private:
  absl::Status ReadLoop() {
    while (true) {
      TpCommand command;
      absl::Status s = connection_->Receive(&command, absl::Now() + options_.master_timeout);
      if (absl::IsDeadlineExceeded(s)) {
        return absl::UnavailableError(absl::StrCat(
            "rank 0 sent nothing (not even a heartbeat) for ",
            absl::FormatDuration(options_.master_timeout), "; it is hung or gone"));
      }
      if (!s.ok()) {
        return absl::UnavailableError(
            absl::StrCat("lost the connection to rank 0: ", s.message()));
      }
      switch (command.body_case()) {
        case TpCommand::kPing: {
          TpReply r = StatusReply(command.id(), absl::OkStatus());
          r.mutable_pong();
          Send(r);
          break;
        }
        case TpCommand::kMemory:
          Send(MemoryReply(command.id()));
          break;
        case TpCommand::kCommitDecision:
          Decide(command.commit_decision());
          Send(StatusReply(command.id(), absl::OkStatus()));
          break;
        case TpCommand::kStreamChunk:
          AddChunk(command.id(), command.stream_chunk());
          break;
        case TpCommand::kShutdown:
          COLO_LOG(INFO) << "tensor-parallel rank " << options_.rank
                         << ": rank 0 says shut down";
          Send(StatusReply(command.id(), absl::OkStatus()));
          return absl::OkStatus();
        case TpCommand::kInitGroup:
        case TpCommand::kDestroyGroup:
        case TpCommand::kUpdateDistributed:
        case TpCommand::kUpdateDisk:
        case TpCommand::kUpdateStream:
          updater_.Push(std::move(command));
          break;
        default:
          executor_.Push(std::move(command));
          break;
      }
    }
  }

  void Send(const TpReply& reply) {
    absl::Status s = connection_->Send(reply, absl::Now() + options_.master_timeout);
    if (!s.ok()) COLO_LOG(ERROR) << "tensor-parallel rank " << options_.rank << ": " << s;
  }

  // --- executor -------------------------------------------------------------

  void Execute(const TpCommand& c) {
    absl::MutexLock lock(&state_mu_);
    TpReply reply = StatusReply(c.id(), absl::OkStatus());
    absl::Status s;
    switch (c.body_case()) {
      case TpCommand::kSetup:
        s = Setup(c.setup(), &reply);
        break;
      case TpCommand::kKvSetup:
        s = KvSetup(c.kv_setup(), &reply);
        break;
      case TpCommand::kStep:
        s = Step(c.step());
        break;
      case TpCommand::kRelease:
      case TpCommand::kResume:
        s = Transition(c, &reply);
        break;
      case TpCommand::kEmptyCache:
        s = EmptyCache(c.empty_cache(), &reply);
        break;
      case TpCommand::kChecksums:
        s = Checksums(c.checksums(), &reply);
        break;
      default:
        s = absl::InvalidArgumentError(absl::StrCat("unexpected tensor-parallel command ",
                                                    static_cast<int>(c.body_case())));
    }
    if (!s.ok()) {
      COLO_LOG(ERROR) << "tensor-parallel rank " << options_.rank << ": " << s;
      reply = StatusReply(c.id(), s);
    }
    Send(reply);
  }

  absl::Status RequireSetup() const {
    if (!setup_done_.load(std::memory_order_acquire)) {
      return absl::FailedPreconditionError("this tensor-parallel rank is not set up yet");
    }
    return absl::OkStatus();
  }

  absl::Status Setup(const colo::internal::TpSetup& setup, TpReply* reply)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(state_mu_) {
    if (setup_done_.load()) return absl::FailedPreconditionError("already set up");
    setup_ = setup;
    if (setup.device() != "cpu") {
      return absl::FailedPreconditionError(absl::StrCat(
          "tensor parallelism runs on the CPU in this build; --device=", setup.device(),
          " is not supported with --tp_size > 1"));
    }
    ASSIGN_OR_RETURN(backend_, CreateDeviceBackend("cpu"));
    TaggedPool::Options po;
    po.backend = backend_.get();
    if (setup.weights_host_backup()) {
      po.backup[static_cast<int>(MemoryTag::kWeights)] = BackupPolicy::kHostCopy;
    }
    if (!setup.debug_skip_release_tag().empty()) {
      ASSIGN_OR_RETURN(po.debug_skip_release_tag, ParseMemoryTag(setup.debug_skip_release_tag()));
    }
    ASSIGN_OR_RETURN(pool_, TaggedPool::Create(po));
    CachingAllocator::Options ao;
    ao.backend = backend_.get();
    ASSIGN_OR_RETURN(allocator_, CachingAllocator::Create(ao));
    const int threads =
        options_.cpu_threads > 0
            ? options_.cpu_threads
            : std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / options_.tp_size);
    threads_ = std::make_unique<kernels::ThreadPool>(threads);

    GlooTpComm::Options co;
    co.master_address = options_.master_host;
    co.master_port = setup.store_port();
    co.rank = options_.rank;
    co.size = options_.tp_size;
    co.init_timeout = absl::Milliseconds(setup.init_timeout_ms());
    co.timeout = absl::Milliseconds(setup.collective_timeout_ms());
    ASSIGN_OR_RETURN(comm_, GlooTpComm::Create(co));

    ShardedModelOptions mo;
    mo.model_dir = options_.model_dir.empty() ? setup.model_dir() : options_.model_dir;
    mo.rank = options_.rank;
    mo.size = options_.tp_size;
    mo.weights_pool = pool_.get();
    mo.allocator = allocator_.get();
    mo.threads = threads_.get();
    mo.collectives = comm_.get();
    ASSIGN_OR_RETURN(ShardedModel sharded, LoadShardedModel(mo));
    model_ = std::move(sharded.model);
    model_->set_batch_invariant(setup.batch_invariant());
    ASSIGN_OR_RETURN(ShardPlan plan,
                     ShardPlan::Create(sharded.full_config, options_.rank, options_.tp_size));
    plan_ = std::make_unique<ShardPlan>(std::move(plan));
    defaults_.local_rank = options_.rank;
    defaults_.init_timeout = absl::Milliseconds(setup.weight_sync_init_timeout_ms());
    defaults_.transfer_timeout = absl::Milliseconds(setup.weight_sync_transfer_timeout_ms());
    reply->mutable_setup_done()->set_weight_bytes(
        static_cast<int64_t>(model_->weights().allocated_bytes()));
    setup_done_.store(true, std::memory_order_release);
    COLO_LOG(INFO) << "tensor-parallel rank " << options_.rank << "/" << options_.tp_size
                   << ": shard loaded (" << model_->weights().allocated_bytes() << " weight bytes, "
                   << threads << " CPU threads)";
    return absl::OkStatus();
  }

  absl::Status KvSetup(const colo::internal::TpKvSetup& kv, TpReply* reply)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(state_mu_) {
    RETURN_IF_ERROR(RequireSetup());
    if (storage_ != nullptr) return absl::FailedPreconditionError("KV storage already set up");
    kvcache::KvStorage::Options so;
    so.page_size = kv.page_size();
    so.layer_is_sliding.assign(kv.layer_is_sliding().begin(), kv.layer_is_sliding().end());
    so.kv_heads = kv.kv_heads();
    so.head_dim = kv.head_dim();
    so.num_full_slots = kv.num_full_slots();
    so.num_swa_slots = kv.num_swa_slots();
    // The request table is rank 0's; this rank only needs the pools.
    so.max_requests = 1;
    so.max_context_tokens = kv.page_size();
    if (so.kv_heads != model_->config().num_kv_heads ||
        static_cast<int>(so.layer_is_sliding.size()) != model_->config().num_layers) {
      return absl::InvalidArgumentError(absl::StrCat(
          "rank 0's KV layout (", so.kv_heads, " KV heads, ", so.layer_is_sliding.size(),
          " layers) does not match this rank's shard (", model_->config().num_kv_heads, ", ",
          model_->config().num_layers, ")"));
    }
    ASSIGN_OR_RETURN(storage_, kvcache::KvStorage::Create(so, pool_.get()));
    page_size_ = kv.page_size();
    view_.layers.clear();
    for (int l = 0; l < model_->config().num_layers; ++l) {
      view_.layers.push_back(storage_->GetLayerKv(l));
    }
    view_.full_to_swa = storage_->full_to_swa();
    view_.full_to_swa_size = storage_->full_to_swa() != nullptr ? so.num_full_slots : 0;
    reply->mutable_kv_setup_done()->set_kv_bytes(storage_->bytes());
    return absl::OkStatus();
  }

  absl::Status Step(const colo::internal::TpStep& step) ABSL_EXCLUSIVE_LOCKS_REQUIRED(state_mu_) {
    RETURN_IF_ERROR(RequireSetup());
    if (storage_ == nullptr) return absl::FailedPreconditionError("no KV storage yet");
    ASSIGN_OR_RETURN(DecodedStep d, DecodeStep(step, page_size_, storage_->full_to_swa(),
                                               view_.full_to_swa_size));
    ForwardOptions fo;
    fo.sample = false;
    return model_->Forward(d.requests, view_, fo).status();
  }

  absl::Status Transition(const TpCommand& c, TpReply* reply)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(state_mu_) {
    RETURN_IF_ERROR(RequireSetup());
    const bool release = c.has_release();
    absl::Status bad;
    const std::vector<MemoryTag> tags =
        ParseTagsOrAll(release ? c.release().tags() : c.resume().tags(), &bad);
    RETURN_IF_ERROR(bad);
    RankTransition t;
    t.rank = options_.rank;
    ASSIGN_OR_RETURN(t.before, backend_->MemoryInfo());
    if (release) {
      ASSIGN_OR_RETURN(ReleaseReport r, pool_->Release(tags));
      t.released = r.tags;
    } else {
      ASSIGN_OR_RETURN(ResumeReport r, pool_->Resume(tags));
      t.resumed = r.tags;
      for (const TagResumeReport& tr : r.tags) {
        if (tr.tag == MemoryTag::kWeights && !tr.no_op && !setup_.weights_host_backup()) {
          model_->weights().MarkAllStale();
        }
      }
    }
    ASSIGN_OR_RETURN(t.after, backend_->MemoryInfo());
    *reply->mutable_transition() = TransitionToProto(t);
    return absl::OkStatus();
  }

  absl::Status EmptyCache(const colo::internal::TpEmptyCache& c, TpReply* reply)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(state_mu_) {
    RETURN_IF_ERROR(RequireSetup());
    colo::internal::TpCacheReport* r = reply->mutable_cache();
    r->set_reserved_bytes_before(static_cast<int64_t>(allocator_->Stats().reserved_bytes));
    if (c.empty()) allocator_->EmptyCache();
    r->set_reserved_bytes_after(static_cast<int64_t>(allocator_->Stats().reserved_bytes));
    ASSIGN_OR_RETURN(DeviceMemoryInfo mem, backend_->MemoryInfo());
    r->set_process_resident_bytes(static_cast<int64_t>(mem.process_resident_bytes));
    return absl::OkStatus();
  }

  absl::Status Checksums(const colo::internal::TpChecksums& c, TpReply* reply)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(state_mu_) {
    RETURN_IF_ERROR(RequireSetup());
    if (pool_->IsReleased(MemoryTag::kWeights)) {
      return absl::FailedPreconditionError("the weights tag is released on this rank");
    }
    ASSIGN_OR_RETURN(*reply->mutable_checksums(),
                     ShardChecksumPieces(*plan_, model_->weights(),
                                         {c.names().begin(), c.names().end()}));
    return absl::OkStatus();
  }

  // --- reader-thread requests -------------------------------------------------

  TpReply MemoryReply(uint64_t id) {
    if (absl::Status s = RequireSetup(); !s.ok()) return StatusReply(id, s);
    absl::StatusOr<MemoryInfo> memory = CollectMemoryInfo(*pool_, allocator_.get());
    if (!memory.ok()) return StatusReply(id, memory.status());
    TpReply r = StatusReply(id, absl::OkStatus());
    *r.mutable_memory() = MemoryToProto(*memory);
    return r;
  }

  // --- weight updates (update worker) ----------------------------------------

  void RunUpdate(const TpCommand& c) {
    TpReply reply = StatusReply(c.id(), absl::OkStatus());
    absl::Status s = RequireSetup();
    if (s.ok()) s = RunUpdateBody(c, &reply);
    if (!s.ok()) {
      COLO_LOG(ERROR) << "tensor-parallel rank " << options_.rank << ": " << s;
      reply = StatusReply(c.id(), s);
    }
    if (c.has_update_stream()) EndStream(c.id());
    // As on rank 0 (UpdateInFlight): with kv_cache released, staging goes
    // back before the KV cache resumes.
    if (pool_ != nullptr && pool_->IsReleased(MemoryTag::kKvCache)) allocator_->EmptyCache();
    Send(reply);
  }

  absl::Status RunUpdateBody(const TpCommand& c, TpReply* reply) {
    switch (c.body_case()) {
      case TpCommand::kInitGroup: {
        ASSIGN_OR_RETURN(auto request, Parse<v1::InitWeightsUpdateGroupRequest>(
                                           c.init_group().request(), "group request"));
        ASSIGN_OR_RETURN(v1::InitWeightsUpdateGroupResponse r,
                         weight_sync::InitGroup(&registry_, request, defaults_));
        reply->set_init_group(r.SerializeAsString());
        return absl::OkStatus();
      }
      case TpCommand::kDestroyGroup: {
        ASSIGN_OR_RETURN(auto request, Parse<v1::DestroyWeightsUpdateGroupRequest>(
                                           c.destroy_group().request(), "group request"));
        return weight_sync::DestroyGroup(&registry_, request);
      }
      case TpCommand::kUpdateDistributed: {
        ASSIGN_OR_RETURN(auto request, Parse<v1::UpdateWeightsFromDistributedRequest>(
                                           c.update_distributed().request(), "update request"));
        ASSIGN_OR_RETURN(v1::UpdateWeightsResponse r,
                         weight_sync::UpdateFromDistributed(&registry_, request, Env(c.id())));
        reply->set_update(r.SerializeAsString());
        return absl::OkStatus();
      }
      case TpCommand::kUpdateDisk: {
        ASSIGN_OR_RETURN(auto request, Parse<v1::UpdateWeightsFromDiskRequest>(
                                           c.update_disk().request(), "update request"));
        ASSIGN_OR_RETURN(v1::UpdateWeightsResponse r,
                         weight_sync::UpdateFromDisk(request, Env(c.id())));
        reply->set_update(r.SerializeAsString());
        return absl::OkStatus();
      }
      case TpCommand::kUpdateStream: {
        const uint64_t id = c.id();
        v1::WeightCommit commit;
        ASSIGN_OR_RETURN(
            v1::UpdateWeightsResponse r,
            weight_sync::UpdateFromChunks([this, id](v1::WeightChunk* ch) { return NextChunk(id, ch); },
                                          Env(id), &commit));
        reply->set_update(r.SerializeAsString());
        return absl::OkStatus();
      }
      default:
        return absl::InvalidArgumentError("not an update command");
    }
  }

  absl::Duration UpdateTimeout() const {
    return defaults_.transfer_timeout + absl::Seconds(30);
  }

  weight_sync::EngineUpdateEnv Env(uint64_t update_id) {
    weight_sync::EngineUpdateEnv env;
    env.weights = &model_->weights();
    env.allocator = allocator_.get();
    env.make_sink = [this]() -> absl::StatusOr<std::unique_ptr<weight_sync::UpdateSink>> {
      ASSIGN_OR_RETURN(std::unique_ptr<ShardedUpdateSink> sink,
                       ShardedUpdateSink::Create(plan_.get(), &model_->weights(), allocator_.get()));
      return std::unique_ptr<weight_sync::UpdateSink>(std::move(sink));
    };
    env.run_commit = [this, update_id](const std::function<absl::Status()>& commit) {
      {
        absl::MutexLock lock(&decision_mu_);
        decisions_[update_id];  // waiting
      }
      TpReply ready = StatusReply(update_id, absl::OkStatus());
      ready.set_final(false);
      ready.mutable_ready();
      Send(ready);
      std::optional<bool> decision;
      {
        absl::MutexLock lock(&decision_mu_);
        auto decided = [this, update_id]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(decision_mu_) {
          return decisions_[update_id].has_value();
        };
        decision_mu_.AwaitWithTimeout(absl::Condition(&decided), UpdateTimeout());
        decision = decisions_[update_id];
        decisions_.erase(update_id);
      }
      if (!decision.has_value()) {
        return absl::AbortedError(absl::StrCat("tensor-parallel rank ", options_.rank,
                                               ": rank 0 decided nothing within ",
                                               absl::FormatDuration(UpdateTimeout()),
                                               "; the update is dropped"));
      }
      if (!*decision) {
        return absl::AbortedError(absl::StrCat(
            "rank 0 aborted the update on every tensor-parallel rank (another rank failed)"));
      }
      absl::MutexLock lock(&state_mu_);  // no step runs meanwhile
      return commit();
    };
    return env;
  }

  void Decide(const colo::internal::TpCommitDecision& d) {
    absl::MutexLock lock(&decision_mu_);
    auto it = decisions_.find(d.update_id());
    if (it != decisions_.end()) it->second = d.commit();
  }

  // --- weight streams ---------------------------------------------------------

  struct Stream {
    std::deque<std::pair<uint64_t, std::string>> chunks;  // (command id, bytes)
    bool ended = false;     // rank 0 sent every chunk
    bool finished = false;  // this rank's update is over (chunks are refused)
  };

  void AddChunk(uint64_t command_id, const colo::internal::TpStreamChunk& c) {
    absl::MutexLock lock(&stream_mu_);
    Stream& s = streams_[c.update_id()];
    if (s.finished) {
      Send(StatusReply(command_id, absl::AbortedError(absl::StrCat(
                                       "tensor-parallel rank ", options_.rank,
                                       ": this rank's update already ended"))));
      return;
    }
    if (c.end()) {
      s.ended = true;
      Send(StatusReply(command_id, absl::OkStatus()));
    } else {
      s.chunks.emplace_back(command_id, c.chunk());
    }
  }

  // The update worker's `next`: false at the end of the stream (or when
  // none comes in time: the update then fails without a commit).
  bool NextChunk(uint64_t update_id, v1::WeightChunk* chunk) {
    absl::MutexLock lock(&stream_mu_);
    auto ready = [this, update_id]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(stream_mu_) {
      const Stream& s = streams_[update_id];
      return s.ended || !s.chunks.empty();
    };
    if (!stream_mu_.AwaitWithTimeout(absl::Condition(&ready), UpdateTimeout())) return false;
    Stream& s = streams_[update_id];
    if (s.chunks.empty()) return false;
    auto [command_id, bytes] = std::move(s.chunks.front());
    s.chunks.pop_front();
    // Acknowledge the chunk once taken: rank 0 keeps a bounded window of
    // chunks in flight.
    Send(StatusReply(command_id, absl::OkStatus()));
    return chunk->ParseFromString(bytes);
  }

  void EndStream(uint64_t update_id) {
    absl::MutexLock lock(&stream_mu_);
    Stream& s = streams_[update_id];
    s.finished = true;
    for (const auto& [command_id, bytes] : s.chunks) {
      Send(StatusReply(command_id, absl::AbortedError("this rank's update already ended")));
    }
    s.chunks.clear();
  }

  const TpFollowerOptions options_;
  const std::unique_ptr<TpConnection> connection_;

  // Set up by the executor (Setup, KvSetup) and then constant; readers on
  // other threads check setup_done_ first.
  std::atomic<bool> setup_done_{false};
  colo::internal::TpSetup setup_;
  std::unique_ptr<DeviceBackend> backend_;
  std::unique_ptr<TaggedPool> pool_;
  std::unique_ptr<CachingAllocator> allocator_;
  std::unique_ptr<kernels::ThreadPool> threads_;
  std::unique_ptr<GlooTpComm> comm_;
  std::unique_ptr<TransformerModel> model_;
  std::unique_ptr<ShardPlan> plan_;
  weight_sync::GroupDefaults defaults_;
  weight_sync::GroupRegistry registry_;  // thread-safe

  // Held by the executor while it runs a command, and by an update's commit:
  // a commit never overlaps a step.
  absl::Mutex state_mu_;
  std::unique_ptr<kvcache::KvStorage> storage_ ABSL_GUARDED_BY(state_mu_);
  KvCacheView view_ ABSL_GUARDED_BY(state_mu_);
  int32_t page_size_ ABSL_GUARDED_BY(state_mu_) = 0;

  absl::Mutex decision_mu_;
  std::map<uint64_t, std::optional<bool>> decisions_ ABSL_GUARDED_BY(decision_mu_);
  absl::Mutex stream_mu_;
  std::map<uint64_t, Stream> streams_ ABSL_GUARDED_BY(stream_mu_);

  WorkQueue executor_;
  WorkQueue updater_;
};

}  // namespace

absl::Status RunTpFollower(const TpFollowerOptions& options) {
  if (options.rank < 1 || options.rank >= options.tp_size) {
    return absl::InvalidArgumentError(absl::StrCat("--tp_rank must be in [1, --tp_size=",
                                                   options.tp_size, "), got ", options.rank));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<TpConnection> connection,
                   TpConnection::Connect(options.master_host, options.master_port,
                                         absl::Now() + options.connect_timeout));
  COLO_LOG(INFO) << "tensor-parallel rank " << options.rank << "/" << options.tp_size
                 << ": connected to rank 0 at " << connection->peer();
  // Threads of a follower blocked on a dead group are not joined: the
  // caller exits the process.
  auto* follower = new Follower(options, std::move(connection));
  return follower->Run();
}

}  // namespace engine
}  // namespace colo
