#include "engine/scheduler/scheduler.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/notification.h"
#include "engine/model/cpu_model_runner.h"
#include "proto/logging/logging.h"
#include "proto/status/status_macros.h"

namespace colo::engine {

struct Scheduler::Request {
  std::string rid;
  GenerateSpec spec;
  // Prompt (a session turn: the session's history + input_ids) followed by
  // the tokens generated so far.
  std::vector<int32_t> tokens;
  int32_t prompt_len = 0;
  // Cap on tokens.size(): prompt + max_new_tokens, within the context.
  int32_t max_total = 0;
  std::shared_ptr<RequestStream> stream;
  SessionState* session = nullptr;
  kvcache::RequestId kv_id = 0;  // 0: holds no KV (waiting)
  int32_t row = 0;
  int32_t committed = 0;       // tokens whose KV is written
  int32_t cached_tokens = -1;  // prompt tokens found in the cache (first admission)
  uint64_t admitted_order = 0;
  bool done = false;  // finished, aborted or failed; the stream has the outcome
  bool prefix_shared = false;  // the prompt was inserted into the radix cache

  int32_t outputs() const { return static_cast<int32_t>(tokens.size()) - prompt_len; }
};

struct Scheduler::SessionState {
  std::string name;
  kvcache::SessionId id = 0;
  int32_t capacity_tokens = 0;
  std::vector<int32_t> history;  // every token of the completed turns
  Request* turn = nullptr;       // the running or waiting turn
  absl::Time last_used;
};

namespace {

// Admission's estimate of how much of its remaining budget a running request
// will still decode: starts optimistic-but-safe, decays every step, and goes
// up whenever a retraction shows it was too low.
constexpr double kMinNewTokenRatio = 0.1;
constexpr double kMaxNewTokenRatio = 1.0;
constexpr double kNewTokenRatioDecay = 0.002;
constexpr double kRetractRatioStep = 0.3;

template <typename T>
struct Box {
  absl::Notification done;
  absl::StatusOr<T> result = absl::UnknownError("not run");
};

std::string TagList(const std::vector<MemoryTag>& tags) {
  std::vector<std::string> names;
  for (MemoryTag t : tags) names.emplace_back(MemoryTagName(t));
  return absl::StrJoin(names, ", ");
}

}  // namespace

ServingStatus ServingOf(const SchedulerSnapshot& snapshot) {
  std::vector<std::string> released;
  for (MemoryTag t : snapshot.released_tags) released.emplace_back(MemoryTagName(t));
  return DescribeServing(snapshot.state, released);
}

Scheduler::Scheduler(const SchedulerOptions& options, ModelRunner* model,
                     kvcache::KvCacheManager* kv, TaggedPool* pool, CachingAllocator* allocator)
    : Scheduler(options, nullptr, model, kv, pool, allocator) {}

Scheduler::Scheduler(const SchedulerOptions& options, TransformerModel* model,
                     kvcache::KvCacheManager* kv, TaggedPool* pool, CachingAllocator* allocator)
    : Scheduler(options, std::make_unique<CpuModelRunner>(model), nullptr, kv, pool, allocator) {}

Scheduler::Scheduler(const SchedulerOptions& options, std::unique_ptr<ModelRunner> owned,
                     ModelRunner* model, kvcache::KvCacheManager* kv, TaggedPool* pool,
                     CachingAllocator* allocator)
    : options_(options),
      owned_model_(std::move(owned)),
      model_(model != nullptr ? model : owned_model_.get()),
      kv_(kv),
      pool_(pool),
      allocator_(allocator),
      host_tables_(model_->device_kind() == "cpu"),
      weight_version_(options.initial_weight_version) {
  seed_state_ = static_cast<uint64_t>(absl::ToUnixNanos(absl::Now()));
  for (int32_t l = 0; l < model_->config().num_layers; ++l) view_.layers.push_back(kv_->GetLayerKv(l));
  view_.full_to_swa = kv_->full_to_swa();
  if (kv_->swa_enabled()) {
    // The map has one entry per full slot, padding page included.
    const kvcache::KvUsage u = kv_->Usage();
    view_.full_to_swa_size = (u.full.capacity + 1) * u.page_size;
  }
  rate_window_start_ = absl::Now();
  Publish();
}

Scheduler::~Scheduler() { Stop(); }

void Scheduler::Start() {
  if (started_) return;
  started_ = true;
  thread_ = std::thread([this] { Loop(); });
}

void Scheduler::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stop_) return;
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
  // The loop finished every request on exit; fail commands that never ran.
  std::deque<Command> left;
  {
    absl::MutexLock lock(&mu_);
    left.swap(commands_);
  }
  for (Command& c : left) c(/*cancelled=*/true);
}

template <typename T>
absl::StatusOr<T> Scheduler::Call(const char* what, std::function<absl::StatusOr<T>()> fn) {
  auto box = std::make_shared<Box<T>>();
  {
    absl::MutexLock lock(&mu_);
    if (stop_) return absl::UnavailableError(absl::StrCat(what, ": the engine is shutting down"));
    commands_.push_back([this, box, fn = std::move(fn), what](bool cancelled) {
      if (cancelled) {
        box->result = absl::UnavailableError(absl::StrCat(what, ": the engine is shutting down"));
      } else {
        box->result = fn();
        // Callers read the snapshot right after a command (GetServerInfo
        // after PauseGeneration): publish before answering.
        Publish();
      }
      box->done.Notify();
    });
  }
  if (!box->done.WaitForNotificationWithTimeout(options_.command_timeout)) {
    return absl::DeadlineExceededError(
        absl::StrCat(what, ": the scheduler did not run the command within ",
                     absl::FormatDuration(options_.command_timeout)));
  }
  return box->result;
}

// ---------------------------------------------------------------------------
// The loop.

bool Scheduler::TagResident(MemoryTag tag) const { return !pool_->IsReleased(tag); }

bool Scheduler::CanStep() const {
  return state_.run == RunState::kServing && !state_.needs_weights && updates_in_flight_ == 0 &&
         TagResident(MemoryTag::kWeights) && TagResident(MemoryTag::kKvCache) &&
         (!running_.empty() || !waiting_.empty());
}

void Scheduler::Loop() {
  while (true) {
    std::deque<Command> commands;
    {
      absl::MutexLock lock(&mu_);
      auto has_work = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stop_ || runnable_ || !commands_.empty();
      };
      // Wakes for work, or every second for idle-session expiry and the
      // tokens/s window.
      mu_.AwaitWithTimeout(absl::Condition(&has_work), absl::Seconds(1));
      if (stop_) break;
      commands.swap(commands_);
    }
    for (Command& c : commands) c(/*cancelled=*/false);
    const bool can_step = CanStep();
    if (can_step) Step();
    MaybeAuditOnIdle();
    CloseIdleSessions();
    Publish();
    {
      absl::MutexLock lock(&mu_);
      runnable_ = CanStep();
    }
  }
  int aborted = 0;
  AbortAll(&aborted);
  Publish();
}

int64_t Scheduler::ExpectedGrowth(const Request& r) const {
  const int64_t remaining = std::max<int64_t>(0, r.max_total - static_cast<int64_t>(r.tokens.size()));
  return static_cast<int64_t>(std::ceil(new_token_ratio_ * static_cast<double>(remaining)));
}

int64_t Scheduler::ReservedGrowth() const {
  int64_t reserved = 0;
  for (const auto& p : running_) reserved += ExpectedGrowth(*p);
  return reserved;
}

bool Scheduler::SharesPrefixWithPrefill(const Request& r) const {
  const int32_t p = kv_->options().page_size;
  if (r.session != nullptr || r.prompt_len <= p) return false;
  for (const auto& other : running_) {
    if (other->session != nullptr || other->committed >= other->prompt_len ||
        other->prompt_len <= p) {
      continue;
    }
    if (std::equal(r.tokens.begin(), r.tokens.begin() + p, other->tokens.begin())) return true;
  }
  return false;
}

void Scheduler::Admit() {
  size_t i = 0;
  while (i < waiting_.size() && static_cast<int>(running_.size()) < options_.max_running_requests) {
    Request* r = waiting_[i].get();
    // In-batch prefix sharing: a request whose first page equals that of a
    // request still prefilling waits for that prefill to enter the radix
    // cache (the GRPO case: N samples of one prompt arrive together).
    if (SharesPrefixWithPrefill(*r)) {
      ++i;
      continue;
    }
    kvcache::KvCacheManager::BeginOptions begin;
    if (r->session != nullptr) begin.session_id = r->session->id;
    absl::StatusOr<kvcache::KvCacheManager::BeginResult> b =
        kv_->BeginRequest(absl::MakeConstSpan(r->tokens), begin);
    if (!b.ok()) {
      // Rows busy: wait for a running request to finish.
      if (absl::IsResourceExhausted(b.status()) && !running_.empty()) return;
      FailRequest(r, b.status());
      by_rid_.erase(r->rid);
      waiting_.erase(waiting_.begin() + static_cast<std::ptrdiff_t>(i));
      continue;
    }
    // Room for this request's prompt and the expected growth of every
    // running request and this one (new_token_ratio_ of their remaining
    // tokens, as SGLang estimates it); otherwise wait for pages. Retraction
    // handles underestimates and raises the ratio.
    const int64_t need = static_cast<int64_t>(r->tokens.size()) - b->cached_len +
                         ExpectedGrowth(*r) + ReservedGrowth();
    if (!running_.empty() && kv_->AvailableTokens() < need) {
      absl::Status s = kv_->ReleaseRequest(b->id, {.cache = false});
      COLO_CHECK(s.ok()) << s;
      return;
    }
    r->kv_id = b->id;
    r->row = b->row;
    r->committed = b->cached_len;
    if (r->cached_tokens < 0) {
      r->cached_tokens = std::min(b->cached_len, r->prompt_len);
      cached_total_ += r->cached_tokens;
      prompt_total_ += r->prompt_len;
    }
    r->admitted_order = ++admission_counter_;
    running_.push_back(std::move(waiting_[i]));
    waiting_.erase(waiting_.begin() + static_cast<std::ptrdiff_t>(i));
  }
}

void Scheduler::RetractRequest(Request* r) {
  absl::Status s = kv_->ReleaseRequest(r->kv_id, {.cache = false});
  COLO_CHECK(s.ok()) << "retract " << r->rid << ": " << s;
  r->kv_id = 0;
  r->committed = 0;
  r->prefix_shared = false;
  ++retractions_total_;
  auto it = std::find_if(running_.begin(), running_.end(),
                         [r](const std::unique_ptr<Request>& p) { return p.get() == r; });
  COLO_CHECK(it != running_.end());
  waiting_.push_front(std::move(*it));
  running_.erase(it);
}

std::vector<Scheduler::Request*> Scheduler::PlanBatch(std::vector<int32_t>* new_counts) {
  std::vector<Request*> batch;
  new_counts->clear();
  int64_t budget = options_.max_batch_tokens;
  // Decode requests first (one token each), then prefill chunks.
  std::vector<Request*> order;
  for (auto& p : running_) {
    if (static_cast<int64_t>(p->tokens.size()) - p->committed == 1) order.push_back(p.get());
  }
  for (auto& p : running_) {
    if (static_cast<int64_t>(p->tokens.size()) - p->committed > 1) order.push_back(p.get());
  }
  for (size_t i = 0; i < order.size(); ++i) {
    Request* r = order[i];
    if (r->done || r->kv_id == 0) continue;  // retracted while planning
    const int64_t pending = static_cast<int64_t>(r->tokens.size()) - r->committed;
    int64_t n = std::min(pending, options_.chunked_prefill_tokens);
    if (pending > 1) n = std::min(n, budget);
    if (n <= 0) continue;
    while (true) {
      absl::Status s = kv_->Allocate(
          r->kv_id, absl::MakeConstSpan(r->tokens.data() + r->committed, static_cast<size_t>(n)));
      if (s.ok()) break;
      if (!absl::IsResourceExhausted(s)) {
        FailRequest(r, s);
        break;
      }
      // Out of pages: retract the newest running request that is not
      // already in this batch (it recomputes later).
      Request* victim = nullptr;
      for (auto& p : running_) {
        if (p.get() == r || p->done || p->kv_id == 0) continue;
        if (std::find(batch.begin(), batch.end(), p.get()) != batch.end()) continue;
        if (victim == nullptr || p->admitted_order > victim->admitted_order) victim = p.get();
      }
      if (victim == nullptr) {
        if (!batch.empty()) {
          RetractRequest(r);  // let the batch finish first
        } else if (n > 1) {
          n = std::max<int64_t>(1, n / 2);  // a smaller chunk may fit
          continue;
        } else {
          FailRequest(r, absl::ResourceExhaustedError(absl::StrCat(
                             "request ", r->rid, " cannot get a KV page even alone: ", s.message())));
        }
        break;
      }
      COLO_LOG(INFO) << "out of KV pages: retracting request " << victim->rid << " ("
                     << victim->tokens.size() << " tokens) to make room";
      RetractRequest(victim);
      // Admission underestimated decode growth: be more conservative.
      new_token_ratio_ = std::min(kMaxNewTokenRatio, new_token_ratio_ + kRetractRatioStep);
    }
    if (r->done || r->kv_id == 0) continue;
    // Allocation may have been skipped by the failure path above.
    const kvcache::KvSeq* seq = kv_->FindRequest(r->kv_id);
    if (seq == nullptr || seq->allocated_len < r->committed + n) continue;
    batch.push_back(r);
    new_counts->push_back(static_cast<int32_t>(n));
    budget -= n;
  }
  return batch;
}

void Scheduler::Step() {
  Admit();
  if (running_.empty()) return;
  std::vector<int32_t> counts;
  std::vector<Request*> batch = PlanBatch(&counts);
  RemoveFinished();
  if (batch.empty()) return;
  busy_since_audit_ = true;
  std::vector<ForwardRequest> forward(batch.size());
  std::vector<std::vector<int32_t>> slot_copies(host_tables_ ? 0 : batch.size());
  for (size_t i = 0; i < batch.size(); ++i) {
    Request* r = batch[i];
    ForwardRequest& f = forward[i];
    f.cached_len = r->committed;
    f.new_tokens = absl::MakeConstSpan(r->tokens.data() + r->committed, counts[i]);
    f.slots = SlotsOf(*r, r->committed + counts[i], host_tables_ ? nullptr : &slot_copies[i]);
    f.sampling = r->spec.sampling;
    f.sample_step = static_cast<uint64_t>(std::max(0, r->outputs()));
  }
  absl::StatusOr<ForwardResult> result = model_->Forward(forward, view_, ForwardOptions());
  ++steps_total_;
  new_token_ratio_ = std::max(kMinNewTokenRatio, new_token_ratio_ - kNewTokenRatioDecay);
  if (!result.ok()) {
    COLO_LOG(ERROR) << "forward step of " << batch.size() << " requests failed: " << result.status();
    for (Request* r : batch) FailRequest(r, result.status());
    RemoveFinished();
    return;
  }
  for (size_t i = 0; i < batch.size(); ++i) {
    Request* r = batch[i];
    const int32_t end = r->committed + counts[i];
    absl::Status s = kv_->Commit(r->kv_id, end);
    if (!s.ok()) {
      FailRequest(r, s);
      continue;
    }
    r->committed = end;
    if (r->session == nullptr && !r->prefix_shared && end >= r->prompt_len) {
      // The prompt's KV is complete: share it with the radix cache now, so
      // requests with the same prefix reuse it while this one decodes.
      r->prefix_shared = true;
      if (absl::Status shared = kv_->InsertPrefix(r->kv_id); !shared.ok()) {
        COLO_LOG(WARNING) << "sharing the prefix of " << r->rid << ": " << shared;
      }
    }
    if (end != static_cast<int32_t>(r->tokens.size())) continue;  // more prompt to prefill
    const kernels::SampledToken& tok = result->tokens[i];
    r->tokens.push_back(tok.token);
    r->stream->Append(tok.token, tok.logprob);
    ++generated_total_;
    ++rate_window_tokens_;
    const bool stop_token =
        std::find(r->spec.stop_token_ids.begin(), r->spec.stop_token_ids.end(), tok.token) !=
            r->spec.stop_token_ids.end() ||
        (!r->spec.ignore_eos && options_.eos_token_id >= 0 && tok.token == options_.eos_token_id);
    if (stop_token) {
      FinishRequest(r, FinishReason::kStop);
    } else if (static_cast<int32_t>(r->tokens.size()) >= r->max_total) {
      FinishRequest(r, FinishReason::kLength);
    }
  }
  RemoveFinished();
}

absl::Span<const int32_t> Scheduler::SlotsOf(const Request& r, int32_t n,
                                             std::vector<int32_t>* storage) {
  if (host_tables_) {
    return absl::MakeConstSpan(
        kv_->req_to_token() + static_cast<int64_t>(r.row) * RowCapacity(), static_cast<size_t>(n));
  }
  // Device tables: the same entries, from the sequence's pages (what
  // KvCacheManager writes into the table: page * P + offset).
  const kvcache::KvSeq* seq = kv_->FindRequest(r.kv_id);
  COLO_CHECK(seq != nullptr && seq->allocated_len >= n)
      << "PlanBatch only batches requests whose KV is allocated";
  const int32_t p = kv_->options().page_size;
  storage->resize(static_cast<size_t>(n));
  for (int32_t i = 0; i < n; ++i) (*storage)[i] = seq->full_pages[i / p] * p + i % p;
  return absl::MakeConstSpan(*storage);
}

void Scheduler::FinishRequest(Request* r, FinishReason reason) {
  if (r->done) return;
  if (r->kv_id != 0) {
    // Completed requests share their prefix; aborted turns roll back.
    absl::Status s = kv_->ReleaseRequest(r->kv_id, {.cache = reason != FinishReason::kAbort});
    COLO_CHECK(s.ok()) << "release " << r->rid << ": " << s;
    r->kv_id = 0;
  }
  if (r->session != nullptr) {
    if (reason != FinishReason::kAbort) r->session->history = r->tokens;
    r->session->turn = nullptr;
    r->session->last_used = absl::Now();
  }
  r->done = true;
  FinishInfo info;
  info.reason = reason;
  info.prompt_tokens = r->prompt_len;
  info.cached_tokens = std::max(0, r->cached_tokens);
  info.completion_tokens = std::max(0, r->outputs());
  info.weight_version = weight_version_;
  r->stream->Finish(info);
}

void Scheduler::FailRequest(Request* r, const absl::Status& error) {
  if (r->done) return;
  if (r->kv_id != 0) {
    absl::Status s = kv_->ReleaseRequest(r->kv_id, {.cache = false});
    if (!s.ok()) COLO_LOG(ERROR) << "release of failed request " << r->rid << ": " << s;
    r->kv_id = 0;
  }
  if (r->session != nullptr) {
    r->session->turn = nullptr;
    r->session->last_used = absl::Now();
  }
  r->done = true;
  r->stream->Fail(error);
}

void Scheduler::RemoveFinished() {
  auto gone = [this](const std::unique_ptr<Request>& r) {
    if (!r->done) return false;
    by_rid_.erase(r->rid);
    return true;
  };
  running_.erase(std::remove_if(running_.begin(), running_.end(), gone), running_.end());
  waiting_.erase(std::remove_if(waiting_.begin(), waiting_.end(), gone), waiting_.end());
}

void Scheduler::AbortAll(int* count) {
  *count = 0;
  // Newest first so that session rollbacks unwind in order.
  for (auto it = running_.rbegin(); it != running_.rend(); ++it) {
    if (!(*it)->done) ++*count;
    FinishRequest(it->get(), FinishReason::kAbort);
  }
  for (auto& r : waiting_) {
    if (!r->done) ++*count;
    FinishRequest(r.get(), FinishReason::kAbort);
  }
  RemoveFinished();
}

int Scheduler::RetractAllRunning() {
  std::vector<Request*> order;
  for (auto& r : running_) order.push_back(r.get());
  std::sort(order.begin(), order.end(),
            [](Request* a, Request* b) { return a->admitted_order > b->admitted_order; });
  for (Request* r : order) RetractRequest(r);  // newest first -> oldest ends in front
  return static_cast<int>(order.size());
}

void Scheduler::MaybeAuditOnIdle() {
  if (!options_.audit_on_idle || !busy_since_audit_ || !running_.empty() || !waiting_.empty()) {
    return;
  }
  if (!TagResident(MemoryTag::kKvCache)) return;
  busy_since_audit_ = false;
  ++audits_total_;
  absl::Status s = kv_->Audit();
  if (!s.ok()) {
    ++audit_violations_total_;
    last_audit_error_ = std::string(s.message());
    const kvcache::KvUsage u = kv_->Usage();
    COLO_LOG(ERROR) << "KV accounting violation on idle: " << s << " (full: free " << u.full.free
                    << " evictable " << u.full.evictable << " protected "
                    << u.full.protected_pages << " session " << u.full.session_held
                    << " in_flight " << u.full.in_flight << " capacity " << u.full.capacity
                    << ")";
  }
}

void Scheduler::CloseIdleSessions() {
  const absl::Time now = absl::Now();
  std::vector<std::string> expired;
  for (const auto& [name, s] : sessions_) {
    if (s->turn == nullptr && now - s->last_used > options_.session_idle_timeout) {
      expired.push_back(name);
    }
  }
  for (const std::string& name : expired) {
    absl::Status s = kv_->CloseSession(sessions_[name]->id);
    if (!s.ok()) COLO_LOG(ERROR) << "closing idle session " << name << ": " << s;
    COLO_LOG(INFO) << "session " << name << " closed after "
                   << absl::FormatDuration(options_.session_idle_timeout) << " idle";
    sessions_.erase(name);
  }
}

int32_t Scheduler::RowCapacity() const { return kv_->max_context_tokens(); }

int32_t Scheduler::ContextLimit() const {
  return options_.max_context_tokens > 0 ? std::min(options_.max_context_tokens, RowCapacity())
                                         : RowCapacity();
}

std::string Scheduler::UnavailableReason() const {
  std::vector<MemoryTag> released;
  for (MemoryTag t : {MemoryTag::kWeights, MemoryTag::kKvCache}) {
    if (!TagResident(t)) released.push_back(t);
  }
  if (!released.empty()) return absl::StrCat("memory tags released: ", TagList(released));
  if (state_.needs_weights) {
    const int64_t stale = model_->NumStaleWeights();
    return stale > 0 ? absl::StrCat("the engine needs new weights (", stale,
                                    " tensor(s) not written since the weights tag was resumed "
                                    "without a backup)")
                     : "the engine needs new weights";
  }
  if (state_.run == RunState::kPaused) {
    return absl::StrCat("generation is paused (", PauseModeName(*state_.paused_mode), ")");
  }
  return "";
}

void Scheduler::Publish() {
  SchedulerSnapshot s;
  s.state = state_;
  for (MemoryTag t : AllMemoryTags()) {
    if (!TagResident(t)) s.released_tags.push_back(t);
  }
  s.num_running = static_cast<int>(running_.size());
  s.num_waiting = static_cast<int>(waiting_.size());
  s.num_sessions = static_cast<int>(sessions_.size());
  const kvcache::KvUsage u = kv_->Usage();
  s.page_size = u.page_size;
  s.kv_capacity_tokens = u.full.capacity * u.page_size;
  s.kv_pools.push_back({"full", u.full, kv_->storage().full_pool_bytes()});
  if (kv_->swa_enabled()) s.kv_pools.push_back({"swa", u.swa, kv_->storage().swa_pool_bytes()});
  kvcache::PoolUsage rows;
  rows.capacity = u.rows.capacity;
  rows.free = u.rows.free;
  rows.session_held = u.rows.sessions;
  rows.in_flight = u.rows.in_flight;
  s.kv_pools.push_back({"req_to_token", rows, kv_->storage().table_bytes()});
  const absl::Time now = absl::Now();
  if (now - rate_window_start_ >= absl::Seconds(1)) {
    tokens_per_second_ =
        static_cast<double>(rate_window_tokens_) / absl::ToDoubleSeconds(now - rate_window_start_);
    rate_window_start_ = now;
    rate_window_tokens_ = 0;
  }
  s.generated_tokens_total = generated_total_;
  s.prompt_tokens_total = prompt_total_;
  s.cached_tokens_total = cached_total_;
  s.steps_total = steps_total_;
  s.retractions_total = retractions_total_;
  s.tokens_per_second = tokens_per_second_;
  s.kv_audits_total = audits_total_;
  s.kv_audit_violations_total = audit_violations_total_;
  s.last_kv_audit_error = last_audit_error_;
  s.weight_version = weight_version_;
  absl::MutexLock lock(&snapshot_mu_);
  snapshot_ = std::move(s);
}

SchedulerSnapshot Scheduler::Snapshot() const {
  absl::MutexLock lock(&snapshot_mu_);
  return snapshot_;
}

// ---------------------------------------------------------------------------
// Commands.

absl::StatusOr<std::shared_ptr<RequestStream>> Scheduler::Submit(GenerateSpec spec) {
  return Call<std::shared_ptr<RequestStream>>(
      "Generate", [this, spec = std::move(spec)]() mutable { return DoSubmit(std::move(spec)); });
}

absl::StatusOr<std::shared_ptr<RequestStream>> Scheduler::DoSubmit(GenerateSpec spec) {
  if (spec.rid.empty()) {
    do {
      spec.rid = absl::StrCat("r", next_rid_++);
    } while (by_rid_.contains(spec.rid));
  } else if (by_rid_.contains(spec.rid)) {
    return absl::FailedPreconditionError(
        absl::StrCat("rid '", spec.rid, "' is already used by a live request"));
  }
  auto r = std::make_unique<Request>();
  SessionState* session = nullptr;
  int32_t limit = ContextLimit();
  if (!spec.session_id.empty()) {
    auto it = sessions_.find(spec.session_id);
    if (it == sessions_.end()) {
      return absl::NotFoundError(absl::StrCat("unknown session '", spec.session_id,
                                              "' (closed, expired, or never opened)"));
    }
    session = it->second.get();
    if (session->turn != nullptr) {
      return absl::FailedPreconditionError(absl::StrCat(
          "session '", spec.session_id, "' already has a turn running (rid ",
          session->turn->rid, "); send turns one at a time"));
    }
    limit = std::min(limit, session->capacity_tokens);
    r->tokens = session->history;
  }
  r->tokens.insert(r->tokens.end(), spec.input_ids.begin(), spec.input_ids.end());
  r->prompt_len = static_cast<int32_t>(r->tokens.size());
  const int64_t total = static_cast<int64_t>(r->prompt_len) + spec.max_new_tokens;
  if (total > limit) {
    return absl::InvalidArgumentError(absl::StrCat(
        session != nullptr ? absl::StrCat("session '", spec.session_id, "': ") : std::string(),
        r->prompt_len, " prompt tokens", session != nullptr ? " (history + input)" : "",
        " + max_new_tokens ", spec.max_new_tokens, " = ", total, " exceeds the ",
        session != nullptr ? "session capacity / context" : "context", " of ", limit,
        " tokens"));
  }
  const kvcache::KvUsage usage = kv_->Usage();
  const int64_t capacity = usage.full.capacity * usage.page_size;
  if (total > capacity) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "request needs ", total, " tokens of KV but the cache holds ", capacity,
        " tokens; raise --kv_cache_bytes or shorten the request"));
  }
  if (spec.fail_if_unavailable) {
    const std::string why = UnavailableReason();
    if (!why.empty()) {
      return absl::UnavailableError(
          absl::StrCat("the engine cannot generate now: ", why,
                       " (fail_if_unavailable is set; unset it to wait)"));
    }
  }
  r->max_total = static_cast<int32_t>(total);
  if (spec.seed.has_value()) {
    spec.sampling.seed = *spec.seed;
  } else {
    // SplitMix64 over a per-engine random start: distinct, well-mixed seeds.
    uint64_t z = (seed_state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    spec.sampling.seed = z ^ (z >> 31);
  }
  r->rid = spec.rid;
  r->spec = std::move(spec);
  r->stream = std::make_shared<RequestStream>(r->rid);
  r->session = session;
  if (session != nullptr) {
    session->turn = r.get();
    session->last_used = absl::Now();
  }
  by_rid_[r->rid] = r.get();
  std::shared_ptr<RequestStream> stream = r->stream;
  waiting_.push_back(std::move(r));
  return stream;
}

absl::StatusOr<bool> Scheduler::Abort(const std::string& rid) {
  return Call<bool>("Abort", [this, rid]() -> absl::StatusOr<bool> {
    auto it = by_rid_.find(rid);
    if (it == by_rid_.end()) return false;
    FinishRequest(it->second, FinishReason::kAbort);
    RemoveFinished();
    return true;
  });
}

absl::StatusOr<PauseResult> Scheduler::Pause(PauseMode mode) {
  return Call<PauseResult>("PauseGeneration", [this, mode]() -> absl::StatusOr<PauseResult> {
    PauseResult result;
    result.mode = mode;
    RETURN_IF_ERROR(state_.Pause(mode));
    switch (mode) {
      case PauseMode::kAbort:
        AbortAll(&result.num_aborted);
        break;
      case PauseMode::kRetract:
        result.num_retracted = RetractAllRunning();
        break;
      case PauseMode::kInPlace:
        result.num_kept = static_cast<int>(running_.size());
        break;
    }
    if (mode != PauseMode::kInPlace && TagResident(MemoryTag::kKvCache)) {
      absl::Status s = kv_->Flush();
      if (!s.ok()) COLO_LOG(ERROR) << "flush after pause(" << PauseModeName(mode) << "): " << s;
    }
    COLO_LOG(INFO) << "paused (" << PauseModeName(mode) << "): aborted " << result.num_aborted
                   << ", retracted " << result.num_retracted << ", kept " << result.num_kept
                   << ", waiting " << waiting_.size();
    return result;
  });
}

absl::StatusOr<ContinueResult> Scheduler::Continue(bool empty_cache) {
  return Call<ContinueResult>(
      "ContinueGeneration", [this, empty_cache]() -> absl::StatusOr<ContinueResult> {
        std::vector<MemoryTag> missing;
        for (MemoryTag t : {MemoryTag::kWeights, MemoryTag::kKvCache}) {
          if (!TagResident(t)) missing.push_back(t);
        }
        if (!TagResident(MemoryTag::kCudaGraph)) {
          for (const TagInfo& info : pool_->Info().tags) {
            if (info.tag == MemoryTag::kCudaGraph && info.allocation_count > 0) {
              missing.push_back(MemoryTag::kCudaGraph);
            }
          }
        }
        if (!missing.empty()) {
          return absl::FailedPreconditionError(absl::StrCat(
              "cannot continue generation while ", TagList(missing),
              missing.size() == 1 ? " is" : " are", " released; ResumeTags first"));
        }
        ContinueResult result;
        result.reserved_bytes_before = allocator_->Stats().reserved_bytes;
        if (empty_cache) allocator_->EmptyCache();
        result.reserved_bytes_after = allocator_->Stats().reserved_bytes;
        RETURN_IF_ERROR(state_.Continue());
        COLO_LOG(INFO) << "continue generation (torch_empty_cache=" << (empty_cache ? "true" : "false")
                       << "): caching allocator reserved " << result.reserved_bytes_before
                       << " -> " << result.reserved_bytes_after << " bytes";
        return result;
      });
}

absl::StatusOr<TagTransition> Scheduler::Release(const std::vector<MemoryTag>& tags) {
  return Call<TagTransition>("ReleaseTags", [this, tags] { return DoRelease(tags); });
}

absl::StatusOr<TagTransition> Scheduler::DoRelease(const std::vector<MemoryTag>& requested) {
  const std::vector<MemoryTag> tags = requested.empty() ? AllMemoryTags() : requested;
  if (state_.run != RunState::kPaused && !running_.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot release ", TagList(tags), " while ", running_.size(),
        " request(s) are running; PauseGeneration first (or wait until idle)"));
  }
  TagTransition t;
  const bool kv = std::find(tags.begin(), tags.end(), MemoryTag::kKvCache) != tags.end();
  if (kv && TagResident(MemoryTag::kKvCache)) {
    // Requests paused in place hold KV: they recompute after resume.
    t.num_retracted = RetractAllRunning();
    RETURN_IF_ERROR(kv_->ResetForRelease());
  }
  ASSIGN_OR_RETURN(t.before, pool_->backend()->MemoryInfo());
  absl::StatusOr<ReleaseReport> report = pool_->Release(tags);
  if (!report.ok()) return report.status();
  t.release = *std::move(report);
  if (kv) {
    // No request holds activations now (paused or idle): the cached
    // transient segments go back with the KV cache, not at Continue.
    t.allocator_reserved_before = allocator_->Stats().reserved_bytes;
    allocator_->EmptyCache();
    t.allocator_reserved_after = allocator_->Stats().reserved_bytes;
    COLO_LOG(INFO) << "release of kv_cache: caching allocator reserved "
                   << t.allocator_reserved_before << " -> " << t.allocator_reserved_after
                   << " bytes";
  }
  ASSIGN_OR_RETURN(t.after, pool_->backend()->MemoryInfo());
  uint64_t freed = 0;
  for (const TagReleaseReport& r : t.release.tags) freed += r.bytes_freed;
  COLO_LOG(INFO) << "released " << TagList(tags) << ": " << freed << " bytes in "
                 << absl::FormatDuration(t.release.duration) << "; device free "
                 << t.before.free_bytes << " -> " << t.after.free_bytes;
  return t;
}

absl::StatusOr<TagTransition> Scheduler::Resume(const std::vector<MemoryTag>& tags) {
  return Call<TagTransition>("ResumeTags", [this, tags] { return DoResume(tags); });
}

absl::StatusOr<TagTransition> Scheduler::DoResume(const std::vector<MemoryTag>& requested) {
  const std::vector<MemoryTag> tags = requested.empty() ? AllMemoryTags() : requested;
  TagTransition t;
  ASSIGN_OR_RETURN(t.before, pool_->backend()->MemoryInfo());
  absl::StatusOr<ResumeReport> report = pool_->Resume(tags);
  if (!report.ok()) return report.status();
  t.resume = *std::move(report);
  for (const TagResumeReport& r : t.resume.tags) {
    if (r.no_op) continue;
    if (r.tag == MemoryTag::kKvCache) RETURN_IF_ERROR(kv_->OnResumed());
    if (r.tag == MemoryTag::kWeights) {
      for (const TagInfo& info : pool_->Info().tags) {
        if (info.tag == MemoryTag::kWeights && info.backup == BackupPolicy::kDiscard) {
          model_->WeightsDiscarded();
          state_.needs_weights = true;
          COLO_LOG(INFO) << "weights resumed without a host backup: generation waits for a "
                            "weight update";
        }
      }
    }
  }
  ASSIGN_OR_RETURN(t.after, pool_->backend()->MemoryInfo());
  COLO_LOG(INFO) << "resumed " << TagList(tags) << " in "
                 << absl::FormatDuration(t.resume.duration) << "; device free "
                 << t.before.free_bytes << " -> " << t.after.free_bytes;
  return t;
}

absl::StatusOr<int64_t> Scheduler::Flush() {
  return Call<int64_t>("FlushCache", [this]() -> absl::StatusOr<int64_t> {
    if (!running_.empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "cannot flush the cache while ", running_.size(),
          " request(s) are running; pause with abort or retract, or wait until idle"));
    }
    const kvcache::KvUsage before = kv_->Usage();
    RETURN_IF_ERROR(kv_->Flush());
    const kvcache::KvUsage after = kv_->Usage();
    return (after.full.free - before.full.free) + (after.swa.free - before.swa.free);
  });
}

absl::StatusOr<std::string> Scheduler::OpenSession(const std::string& id, int32_t capacity_tokens) {
  return Call<std::string>("OpenSession", [this, id, capacity_tokens]() -> absl::StatusOr<std::string> {
    std::string name = id;
    if (name.empty()) {
      do {
        name = absl::StrCat("s", next_session_number_);
      } while (sessions_.contains(name) && ++next_session_number_);
    }
    if (sessions_.contains(name)) {
      return absl::FailedPreconditionError(absl::StrCat("session '", name, "' is already open"));
    }
    const int32_t limit = ContextLimit();
    if (capacity_tokens > limit) {
      return absl::InvalidArgumentError(absl::StrCat("capacity_tokens ", capacity_tokens,
                                                     " exceeds the context of ", limit, " tokens"));
    }
    auto s = std::make_unique<SessionState>();
    s->name = name;
    s->id = next_session_number_++;
    s->capacity_tokens = capacity_tokens > 0 ? capacity_tokens : limit;
    s->last_used = absl::Now();
    RETURN_IF_ERROR(kv_->OpenSession(s->id));
    sessions_[name] = std::move(s);
    return name;
  });
}

absl::StatusOr<int64_t> Scheduler::CloseSession(const std::string& id) {
  return Call<int64_t>("CloseSession", [this, id]() -> absl::StatusOr<int64_t> {
    auto it = sessions_.find(id);
    if (it == sessions_.end()) {
      return absl::NotFoundError(absl::StrCat("unknown session '", id, "'"));
    }
    if (it->second->turn != nullptr) {
      return absl::FailedPreconditionError(absl::StrCat(
          "session '", id, "' has a turn running (rid ", it->second->turn->rid,
          "); abort it or wait for it to finish"));
    }
    const kvcache::KvSeq* seq = kv_->FindSession(it->second->id);
    const int64_t held = seq != nullptr ? seq->committed_len : 0;
    RETURN_IF_ERROR(kv_->CloseSession(it->second->id));
    sessions_.erase(it);
    return held;
  });
}

absl::Status Scheduler::CommitWeights(const std::function<absl::Status()>& apply,
                                      const std::string& weight_version, bool flush_cache) {
  return Call<bool>("CommitWeights",
                    [this, apply, weight_version, flush_cache]() -> absl::StatusOr<bool> {
                      if (!TagResident(MemoryTag::kWeights)) {
                        return absl::FailedPreconditionError(
                            "cannot update weights while the weights tag is released; "
                            "ResumeTags(weights) first");
                      }
                      RETURN_IF_ERROR(apply());
                      if (absl::Status s = model_->WeightsCommitted(); !s.ok()) {
                        // The device copy may be partly written: no step
                        // runs until an update succeeds.
                        state_.needs_weights = true;
                        return absl::Status(
                            s.code(), absl::StrCat("weights committed on the host but not on the ",
                                                   model_->device_kind(), " (the engine needs a "
                                                   "new weight update): ", s.message()));
                      }
                      weight_version_ = weight_version;
                      if (const int64_t stale = model_->NumStaleWeights(); stale > 0) {
                        // A partial update after the weights were resumed
                        // without a backup: the rest are still empty.
                        state_.needs_weights = true;
                        COLO_LOG(INFO) << "weights committed (version " << weight_version
                                       << "); " << stale << " tensor(s) still hold no weights "
                                       << "since the weights tag was resumed without a backup: "
                                       << "generation waits for an update that writes them";
                      } else {
                        state_.needs_weights = false;
                      }
                      if (flush_cache && TagResident(MemoryTag::kKvCache)) {
                        if (running_.empty()) {
                          RETURN_IF_ERROR(kv_->Flush());
                        } else {
                          kv_->EvictFull(static_cast<int32_t>(kv_->Usage().full.capacity));
                        }
                      }
                      COLO_LOG(INFO) << "weights committed: version " << weight_version;
                      return true;
                    })
      .status();
}

absl::Status Scheduler::RunBetweenSteps(
    const char* what, const std::function<absl::Status(bool weights_resident)>& fn) {
  return Call<bool>(what,
                    [this, fn]() -> absl::StatusOr<bool> {
                      RETURN_IF_ERROR(fn(TagResident(MemoryTag::kWeights)));
                      return true;
                    })
      .status();
}

absl::Status Scheduler::BeginWeightUpdate(const char* rpc) {
  return Call<bool>(rpc,
                    [this, rpc]() -> absl::StatusOr<bool> {
                      if (!TagResident(MemoryTag::kWeights)) {
                        return absl::FailedPreconditionError(absl::StrCat(
                            rpc, ": the weights tag is released; ResumeTags(weights) first"));
                      }
                      const int active = static_cast<int>(running_.size() + waiting_.size());
                      if (state_.run == RunState::kServing && !state_.needs_weights && active > 0) {
                        return absl::FailedPreconditionError(absl::StrCat(
                            rpc, ": ", active,
                            " request(s) are running or queued; PauseGeneration first (or wait "
                            "until idle)"));
                      }
                      ++updates_in_flight_;
                      return true;
                    })
      .status();
}

void Scheduler::EndWeightUpdate() {
  absl::Status s = Call<bool>("EndWeightUpdate", [this]() -> absl::StatusOr<bool> {
                     updates_in_flight_ = std::max(0, updates_in_flight_ - 1);
                     return true;
                   }).status();
  if (!s.ok()) COLO_LOG(WARNING) << "ending a weight update: " << s;
}

}  // namespace colo::engine
