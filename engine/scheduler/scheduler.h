// Scheduler: the engine's single scheduling thread. It owns the KV
// bookkeeping (KvCacheManager, which is not thread-safe) and runs the model's
// forward steps with continuous batching:
//
//   - admission: waiting requests enter the running batch (oldest first) while
//     a request row is free and the KV pools can hold their prompt plus the
//     expected growth of every running request (a new-token ratio of their
//     remaining budget that decays each step and rises after a retraction);
//     the radix prefix cache supplies the cached prefix (BeginRequest), and
//     samples of a prompt still being prefilled wait for it to be cached;
//   - each step runs every running request once: decode requests feed their
//     last sampled token, prefill requests a chunk of at most
//     `chunked_prefill_tokens` prompt tokens, within `max_batch_tokens`;
//   - when decode runs out of KV pages, the newest running requests are
//     retracted (KV freed, back to the front of the waiting queue with their
//     tokens so far) and recompute later; greedy outputs do not change because
//     the forward pass is batch invariant;
//   - finished requests insert their prefix into the radix cache (session
//     turns keep their KV in the session).
//
// Every other operation (pause, continue, release/resume of memory tags,
// flush, sessions, abort, weight commits) is a command executed on the same
// thread *between* steps, so "Pause returns once the step in flight has
// finished" holds by construction and no lock is held during a forward pass.
// Public methods are thread-safe; they enqueue a command and wait for it
// (bounded by Options::command_timeout: DEADLINE_EXCEEDED).
//
// When the engine goes idle (no running or waiting request) after doing work,
// the KV accounting checker (KvCacheManager::Audit) runs; a violation is
// logged with its counts and counted in the snapshot (metrics, GetServerInfo).
#ifndef COLO_ENGINE_SCHEDULER_SCHEDULER_H_
#define COLO_ENGINE_SCHEDULER_SCHEDULER_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "engine/memory/caching_allocator.h"
#include "engine/memory/memory_tag.h"
#include "engine/memory/tagged_pool.h"
#include "engine/model/forward.h"
#include "engine/model/model_runner.h"
#include "engine/scheduler/engine_state.h"
#include "engine/scheduler/pause_mode.h"
#include "engine/scheduler/request_stream.h"
#include "kernels/cpu/sampling.h"
#include "kvcache/kv_cache_manager.h"

namespace colo::engine {

struct SchedulerOptions {
  int max_running_requests = 64;
  // Prompt tokens one request may prefill per step.
  int64_t chunked_prefill_tokens = 512;
  // Tokens (decode + prefill) of one forward step.
  int64_t max_batch_tokens = 2048;
  // Sessions without a turn for this long are closed.
  absl::Duration session_idle_timeout = absl::Minutes(30);
  // Bound on how long a caller waits for a command.
  absl::Duration command_timeout = absl::Seconds(300);
  // Run the O(capacity) KV audit whenever the engine goes idle.
  bool audit_on_idle = true;
  std::string initial_weight_version = "0";
  // The model's end-of-sequence token (< 0: none).
  int32_t eos_token_id = -1;
  // Longest sequence (prompt + outputs); 0 = the KV cache's row length.
  int32_t max_context_tokens = 0;
};

// One Generate call, validated for shape by the caller (request_validation).
struct GenerateSpec {
  std::string rid;  // empty: assigned
  std::vector<int32_t> input_ids;
  // sampling.seed is used when `seed` is set; otherwise the scheduler draws a
  // distinct seed per request (samples of one prompt must differ).
  kernels::SamplingParams sampling;
  std::optional<uint64_t> seed;
  int32_t max_new_tokens = 16;
  std::vector<int32_t> stop_token_ids;
  bool ignore_eos = false;
  // A turn of this open session: input_ids extend the session's history.
  std::string session_id;
  bool fail_if_unavailable = false;
};

struct PauseResult {
  PauseMode mode = PauseMode::kInPlace;
  int num_aborted = 0;
  int num_retracted = 0;
  int num_kept = 0;
};

struct ContinueResult {
  uint64_t reserved_bytes_before = 0;
  uint64_t reserved_bytes_after = 0;
};

struct TagTransition {
  ReleaseReport release;  // filled by Release
  ResumeReport resume;    // filled by Resume
  DeviceMemoryInfo before;
  DeviceMemoryInfo after;
  int num_retracted = 0;  // requests paused in place whose KV was released
  // Release of kv_cache: the caching allocator's reserved bytes before and
  // after it was emptied (both 0 when kv_cache was not released).
  uint64_t allocator_reserved_before = 0;
  uint64_t allocator_reserved_after = 0;
};

struct PoolSnapshot {
  std::string name;  // "full", "swa", "req_to_token"
  kvcache::PoolUsage usage;
  int64_t bytes = 0;
};

// Published after every step and command; read without waiting for a step.
struct SchedulerSnapshot {
  EngineState state;
  std::vector<MemoryTag> released_tags;
  int num_running = 0;
  int num_waiting = 0;
  int num_sessions = 0;
  int32_t page_size = 1;
  int64_t kv_capacity_tokens = 0;
  std::vector<PoolSnapshot> kv_pools;
  int64_t generated_tokens_total = 0;
  int64_t prompt_tokens_total = 0;
  int64_t cached_tokens_total = 0;
  int64_t steps_total = 0;
  int64_t retractions_total = 0;
  double tokens_per_second = 0.0;  // generated tokens, over the last second or so
  int64_t kv_audits_total = 0;
  int64_t kv_audit_violations_total = 0;
  std::string last_kv_audit_error;
  std::string weight_version;
};

// GetServerInfo's state/reason and the readiness of "colo.generate" for a
// snapshot (DescribeServing with the released tags' names).
ServingStatus ServingOf(const SchedulerSnapshot& snapshot);

class Scheduler {
 public:
  // None of the pointers is owned; all must outlive the scheduler. `model`
  // runs the forward pass on the device of `pool` (the KV cache's memory,
  // released and resumed by tag); `allocator` is that device's caching
  // allocator (emptied on Continue).
  Scheduler(const SchedulerOptions& options, ModelRunner* model, kvcache::KvCacheManager* kv,
            TaggedPool* pool, CachingAllocator* allocator);
  // The CPU model, through an owned CpuModelRunner.
  Scheduler(const SchedulerOptions& options, TransformerModel* model,
            kvcache::KvCacheManager* kv, TaggedPool* pool, CachingAllocator* allocator);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  void Start();
  // Finishes every request with "abort", fails pending commands UNAVAILABLE
  // and joins the thread. Idempotent.
  void Stop();

  // Queues a request. NOT_FOUND unknown session; FAILED_PRECONDITION a turn
  // of that session is running, or a duplicate rid; UNAVAILABLE when the
  // request must not wait and generation is paused or memory released;
  // RESOURCE_EXHAUSTED when it can never fit the KV cache; INVALID_ARGUMENT
  // when it exceeds the context (or the session's capacity).
  absl::StatusOr<std::shared_ptr<RequestStream>> Submit(GenerateSpec spec);
  // Finishes a request with "abort"; false when no live request has `rid`.
  absl::StatusOr<bool> Abort(const std::string& rid);

  absl::StatusOr<PauseResult> Pause(PauseMode mode);
  absl::StatusOr<ContinueResult> Continue(bool empty_cache);
  // Only while paused or with no request running (FAILED_PRECONDITION
  // naming the running count). Releasing kv_cache flushes the prefix cache
  // and resets every pool first; requests paused in place are retracted;
  // afterwards the caching allocator is emptied (its transients would
  // otherwise stay reserved until ContinueGeneration, i.e. through training).
  absl::StatusOr<TagTransition> Release(const std::vector<MemoryTag>& tags);
  absl::StatusOr<TagTransition> Resume(const std::vector<MemoryTag>& tags);
  // Drops the prefix cache; returns the pages freed. FAILED_PRECONDITION
  // while requests run.
  absl::StatusOr<int64_t> Flush();

  // Empty id: assigned. capacity_tokens 0: the context length.
  absl::StatusOr<std::string> OpenSession(const std::string& id, int32_t capacity_tokens);
  // Returns the tokens the session held. NOT_FOUND if unknown;
  // FAILED_PRECONDITION while one of its turns runs.
  absl::StatusOr<int64_t> CloseSession(const std::string& id);

  // Runs `apply` on the scheduler thread between steps (no forward pass is
  // running), then ModelRunner::WeightsCommitted() (a device runner uploads
  // the host weights there; if that fails the engine needs weights again
  // and the error is returned). On success the weights are marked valid, `weight_version`
  // becomes current, and with `flush_cache` cached prefixes computed with
  // the old weights are dropped (all of them when idle; the unlocked ones
  // when requests are running). FAILED_PRECONDITION while `weights` is
  // released.
  absl::Status CommitWeights(const std::function<absl::Status()>& apply,
                             const std::string& weight_version, bool flush_cache);

  // Weight updates start only while paused or idle, with `weights`
  // resident: FAILED_PRECONDITION naming the running requests or the
  // released tag otherwise. (Requests queued while the engine needs weights
  // do not block the update that unblocks them.) On success an update is in
  // flight until EndWeightUpdate(): no forward step runs and no request is
  // admitted meanwhile, so a request can never straddle the commit; requests
  // that arrive wait and then run on the new weights.
  absl::Status BeginWeightUpdate(const char* rpc);
  void EndWeightUpdate();

  // Runs `fn` on the scheduler thread between steps (e.g. reading weights
  // without racing a commit). `fn` gets whether `weights` is resident.
  absl::Status RunBetweenSteps(const char* what,
                               const std::function<absl::Status(bool weights_resident)>& fn);

  SchedulerSnapshot Snapshot() const ABSL_LOCKS_EXCLUDED(snapshot_mu_);

 private:
  struct Request;
  struct SessionState;
  using Command = std::function<void(bool cancelled)>;

  // `model` if not null, else `owned`.
  Scheduler(const SchedulerOptions& options, std::unique_ptr<ModelRunner> owned,
            ModelRunner* model, kvcache::KvCacheManager* kv, TaggedPool* pool,
            CachingAllocator* allocator);

  // Enqueues `fn` and waits for its result.
  template <typename T>
  absl::StatusOr<T> Call(const char* what, std::function<absl::StatusOr<T>()> fn);

  void Loop();
  bool CanStep() const;  // reads thread-confined state: scheduler thread only
  void Step();
  void Admit();
  bool SharesPrefixWithPrefill(const Request& r) const;
  // Tokens admission expects `r` (resp. every running request) to still add.
  int64_t ExpectedGrowth(const Request& r) const;
  int64_t ReservedGrowth() const;
  // Allocates KV for every running request's next tokens, retracting the
  // newest requests when pages run out. Returns the requests of the batch.
  std::vector<Request*> PlanBatch(std::vector<int32_t>* new_counts);
  void RetractRequest(Request* r);
  void FinishRequest(Request* r, FinishReason reason);
  void FailRequest(Request* r, const absl::Status& error);
  void RemoveFinished();
  void AbortAll(int* count);
  int RetractAllRunning();
  void MaybeAuditOnIdle();
  void CloseIdleSessions();
  void Publish() ABSL_LOCKS_EXCLUDED(snapshot_mu_);
  bool TagResident(MemoryTag tag) const;
  std::string UnavailableReason() const;
  int32_t RowCapacity() const;  // req_to_token row length
  // Longest prompt + output a request may have (before a session's capacity).
  int32_t ContextLimit() const;

  absl::StatusOr<std::shared_ptr<RequestStream>> DoSubmit(GenerateSpec spec);
  absl::StatusOr<TagTransition> DoRelease(const std::vector<MemoryTag>& tags);
  absl::StatusOr<TagTransition> DoResume(const std::vector<MemoryTag>& tags);

  // Slots of `r`'s positions [0, n) for ForwardRequest::slots: the KV
  // cache's request table itself when it lives in host memory, else a host
  // copy computed from the sequence's pages (into `storage`, null for the host table).
  absl::Span<const int32_t> SlotsOf(const Request& r, int32_t n, std::vector<int32_t>* storage);

  const SchedulerOptions options_;
  std::unique_ptr<ModelRunner> owned_model_;  // the CPU constructor's adapter
  ModelRunner* const model_;
  kvcache::KvCacheManager* const kv_;
  TaggedPool* const pool_;
  CachingAllocator* const allocator_;
  KvCacheView view_;
  // The KV tables are host memory (a CPU runner's view): slots read them in
  // place; other runners get host copies (SlotsOf).
  const bool host_tables_;

  // Command queue, guarded by mu_.
  mutable absl::Mutex mu_;
  std::deque<Command> commands_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool runnable_ ABSL_GUARDED_BY(mu_) = false;  // the loop has a step to run
  std::thread thread_;
  bool started_ = false;

  // Confined to the scheduler thread (after Start).
  EngineState state_;
  std::deque<std::unique_ptr<Request>> waiting_;
  std::vector<std::unique_ptr<Request>> running_;
  absl::flat_hash_map<std::string, Request*> by_rid_;
  absl::flat_hash_map<std::string, std::unique_ptr<SessionState>> sessions_;
  kvcache::SessionId next_session_number_ = 1;
  int64_t next_rid_ = 1;
  uint64_t seed_state_ = 0;  // engine-chosen seeds (SplitMix64 stream)
  uint64_t admission_counter_ = 0;
  double new_token_ratio_ = 0.7;
  bool busy_since_audit_ = false;
  int updates_in_flight_ = 0;
  std::string weight_version_;
  int64_t generated_total_ = 0, prompt_total_ = 0, cached_total_ = 0;
  int64_t steps_total_ = 0, retractions_total_ = 0;
  int64_t audits_total_ = 0, audit_violations_total_ = 0;
  std::string last_audit_error_;
  absl::Time rate_window_start_;
  int64_t rate_window_tokens_ = 0;
  double tokens_per_second_ = 0.0;

  mutable absl::Mutex snapshot_mu_;
  SchedulerSnapshot snapshot_ ABSL_GUARDED_BY(snapshot_mu_);
};

}  // namespace colo::engine

#endif  // COLO_ENGINE_SCHEDULER_SCHEDULER_H_
