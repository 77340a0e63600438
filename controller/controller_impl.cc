#include "controller/controller_impl.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "controller/verify.h"
#include "proto/logging/logging.h"
#include "proto/status/status_macros.h"

namespace colo {
namespace controller {

const char* const kAllTags[3] = {"weights", "kv_cache", "cuda_graph"};

namespace {

using ::colo::v1::FAILED;
using ::colo::v1::KV_RESUMING;
using ::colo::v1::PAUSED_FOR_UPDATE;
using ::colo::v1::RELEASING;
using ::colo::v1::ROLLOUT;
using ::colo::v1::TRAINING;
using ::colo::v1::WEIGHT_SYNC;
using ::colo::v1::WEIGHTS_RESUMING;

constexpr char kPrepareTraining[] = "PrepareTraining";
constexpr char kBeginWeightSync[] = "BeginWeightSync";
constexpr char kFinishWeightSync[] = "FinishWeightSync";
constexpr char kPauseForUpdate[] = "PauseForUpdate";
constexpr char kResumeAfterUpdate[] = "ResumeAfterUpdate";
constexpr char kRecover[] = "Recover";

absl::Status ValidateMode(const std::string& mode) {
  if (mode == "abort" || mode == "retract" || mode == "in_place") return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("pause mode '", mode, "' is not one of abort, retract, in_place"));
}

}  // namespace

absl::StatusOr<std::unique_ptr<ControllerImpl>> ControllerImpl::Create(
    const Options& options, std::vector<std::unique_ptr<EngineClient>> engines,
    std::unique_ptr<Journal> journal) {
  if (engines.empty())
    return absl::InvalidArgumentError("the controller needs at least one engine");
  if (!(options.verify_fraction > 0.0 && options.verify_fraction <= 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("verify_fraction must be in (0, 1], got ", options.verify_fraction));
  }
  if (options.health_failures_to_lose < 1) {
    return absl::InvalidArgumentError("health_failures_to_lose must be >= 1");
  }
  if (options.weight_sync_backend != "gloo" && options.weight_sync_backend != "nccl") {
    return absl::InvalidArgumentError(absl::StrCat(
        "weight_sync_backend must be gloo or nccl, got '", options.weight_sync_backend, "'"));
  }
  std::unique_ptr<ControllerImpl> impl(
      new ControllerImpl(options, std::move(engines), std::move(journal)));
  impl->ReplayAndReconcile();
  impl->StartHealthWatch();
  return impl;
}

ControllerImpl::ControllerImpl(const Options& options,
                               std::vector<std::unique_ptr<EngineClient>> engines,
                               std::unique_ptr<Journal> journal)
    : options_(options), engines_(std::move(engines)) {
  absl::MutexLock lock(&mu_);
  journal_ = std::move(journal);
  views_.resize(engines_.size());
  phase_since_ = absl::Now();
}

ControllerImpl::~ControllerImpl() { Shutdown(); }

void ControllerImpl::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    if (shutdown_ && health_threads_.empty()) return;
    shutdown_ = true;
    BumpVersionLocked();
  }
  // A transition blocked on a hung engine returns now (UNAVAILABLE, the
  // phase left as journaled), not after --engine_timeout.
  for (const auto& e : engines_) e->Close();
  for (std::thread& t : health_threads_) t.join();
  health_threads_.clear();
}

// --- Journal replay and restart reconciliation ----------------------------------

void ControllerImpl::ReplayAndReconcile() {
  absl::MutexLock transition(&transition_mu_);
  Phase interrupted = ROLLOUT;
  std::string op;
  int64_t epoch = 0;
  bool replayed = false;
  Journal::Report report;
  {
    absl::MutexLock lock(&mu_);
    replayed = journal_ != nullptr && !journal_->replayed().empty();
    if (journal_ != nullptr) report = journal_->report();
  }
  // What every engine reports (in parallel: a hung engine costs one deadline).
  ForEachEngine([&](size_t i) -> absl::Status {
    RecordInfo(i, engines_[i]->GetServerInfo());
    return absl::OkStatus();
  }).IgnoreError();
  if (!replayed) {
    absl::MutexLock lock(&mu_);
    if (report.lost_history) {
      FailLocked("JournalRecovery",
                 absl::StrCat(report.message, ". The node's state is unknown; the engines report: ",
                              DescribeEnginesLocked(),
                              ". Check them, then run `coloctl recover` (it resumes released tags "
                              "and continues generation); the trainer then redoes its step"));
      return;
    }
    // No history: ROLLOUT at step 0 only if no engine says otherwise.
    std::vector<std::string> busy;
    for (size_t i = 0; i < engines_.size(); ++i) {
      const EngineView& view = views_[i];
      if (view.last_ok == absl::InfinitePast()) continue;  // the health watch's business
      if (view.info.state() != "serving" || !view.info.released_tags().empty()) {
        busy.push_back(absl::StrCat("engine ", engines_[i]->address(), " reports ",
                                    view.info.state(),
                                    view.info.paused_mode().empty()
                                        ? ""
                                        : absl::StrCat(" (", view.info.paused_mode(), ")"),
                                    view.info.released_tags().empty()
                                        ? ""
                                        : absl::StrCat(" with ",
                                                       absl::StrJoin(view.info.released_tags(), ","),
                                                       " released")));
      }
    }
    if (!busy.empty()) {
      FailLocked("RestartRecovery",
                 absl::StrCat("started without a journal history (",
                              journal_ != nullptr ? absl::StrCat("new journal '", journal_->path(), "'")
                                                  : std::string("no --journal"),
                              ") but ", absl::StrJoin(busy, "; "),
                              ": the node's state was lost and ROLLOUT would contradict the "
                              "engines; run `coloctl recover` to resume and continue them"));
    }
    return;
  }
  {
    absl::MutexLock lock(&mu_);
    const auto& records = journal_->replayed();
    const ::colo::v1::JournalRecord& last = records.back();
    phase_ = last.phase() == ::colo::v1::PHASE_UNSPECIFIED ? ROLLOUT : last.phase();
    step_ = last.step();
    reason_ = last.reason();
    pause_mode_ = last.pause_mode();
    phase_since_ = last.time_us() > 0 ? absl::FromUnixMicros(last.time_us()) : absl::Now();
    for (const auto& record : records) {
      // A Recover back to ROLLOUT ends the cycle its step had begun.
      if (record.op() == kRecover && record.phase() == ROLLOUT) completed_ops_.clear();
      if (record.step() == step_ && record.completed()) completed_ops_.insert(record.op());
    }
    interrupted = phase_;
    op = last.op();
    epoch = fail_epoch_;
    COLO_LOG(INFO) << "journal " << journal_->path() << ": replayed " << records.size()
                   << " records; node is in " << PhaseName(phase_) << " at step " << step_
                   << (reason_.empty() ? "" : absl::StrCat(" (", reason_, ")"));
    if (report.lost_history) {
      // Records may be missing: do not act on the engines, let the operator.
      const std::string reason = absl::StrCat(
          report.message, ". The last valid record puts the node in ", PhaseName(phase_),
          " at step ", step_, "; the engines report: ", DescribeEnginesLocked(),
          ". Check them, then run `coloctl recover`; the trainer then redoes its step");
      if (phase_ == FAILED) {
        reason_ = reason;
        BumpVersionLocked();
      } else {
        FailLocked("JournalRecovery", reason);
      }
      return;
    }
  }
  if (IsStablePhase(interrupted)) {
    absl::Status consistent = CheckEnginesMatchPhase(interrupted);
    if (!consistent.ok()) {
      absl::MutexLock lock(&mu_);
      FailLocked("RestartRecovery", std::string(consistent.message()));
    }
    return;
  }

  COLO_LOG(WARNING) << "controller restarted in " << PhaseName(interrupted) << " (" << op
                    << "); finishing the transition";
  absl::Status result;
  Phase next = ROLLOUT;
  switch (interrupted) {
    case RELEASING: {
      std::string mode;
      {
        absl::MutexLock lock(&mu_);
        mode = pause_mode_.empty() ? "retract" : pause_mode_;
      }
      result = PauseAndRelease(mode, epoch);
      next = TRAINING;
      break;
    }
    case WEIGHTS_RESUMING:
      result = ResumeAndVerify({"weights"}, epoch);
      next = WEIGHT_SYNC;
      break;
    case KV_RESUMING:
      result = ResumeAndVerify({"kv_cache", "cuda_graph"}, epoch);
      if (result.ok()) result = ContinueAll(epoch);
      next = ROLLOUT;
      break;
    default:
      return;
  }
  absl::MutexLock lock(&mu_);
  if (!result.ok()) {
    FailLocked("RestartRecovery",
               absl::StrCat("after a controller restart in ", PhaseName(interrupted),
                            ", finishing ", op, " failed: ", result.message()));
    return;
  }
  absl::Status moved = SetPhaseLocked(next, op, /*completed=*/true,
                                      absl::StrCat("finished ", op, " after a controller restart"));
  if (!moved.ok()) {
    FailLocked("RestartRecovery", std::string(moved.message()));
    return;
  }
  completed_ops_.insert(op);
}

absl::Status ControllerImpl::CheckEnginesMatchPhase(Phase phase) {
  int64_t step;
  {
    absl::MutexLock lock(&mu_);
    step = step_;
  }
  if (phase == ROLLOUT || phase == PAUSED_FOR_UPDATE) {
    return ForEachEngine([&](size_t i) -> absl::Status {
      absl::StatusOr<::colo::v1::GetServerInfoResponse> info = engines_[i]->GetServerInfo();
      RecordInfo(i, info);
      if (!info.ok()) return absl::OkStatus();  // the health watch's business
      const bool released = !info->released_tags().empty();
      const bool contradicts =
          phase == ROLLOUT ? (info->state() != "serving" || released)
                           : (info->state() != "paused" || released);
      if (!contradicts) return absl::OkStatus();
      return absl::FailedPreconditionError(absl::StrCat(
          "after a controller restart in ", PhaseName(phase), " at step ", step, ": engine ",
          engines_[i]->address(), " reports ", info->state(),
          info->paused_mode().empty() ? "" : absl::StrCat(" (", info->paused_mode(), ")"),
          released ? absl::StrCat(" with ", absl::StrJoin(info->released_tags(), ","), " released")
                   : "",
          " (did the engine restart, or was it paused or released by hand?); run `coloctl "
          "recover`"));
    });
  }
  // Tags that must hold no memory in `phase`, and tags that must be resident.
  std::vector<std::string> released, resident;
  if (phase == TRAINING) {
    released = {"weights", "kv_cache", "cuda_graph"};
  } else if (phase == WEIGHT_SYNC) {
    released = {"kv_cache", "cuda_graph"};
    resident = {"weights"};
  } else {
    return absl::OkStatus();
  }
  return ForEachEngine([&](size_t i) -> absl::Status {
    absl::StatusOr<::colo::v1::GetMemoryInfoResponse> memory = engines_[i]->GetMemoryInfo();
    // An unreachable engine is the health watch's business.
    if (!memory.ok()) return absl::OkStatus();
    RecordMemory(i, memory->memory());
    for (const auto& t : memory->memory().tags()) {
      if (std::find(released.begin(), released.end(), t.tag()) != released.end() &&
          t.resident_bytes() != 0) {
        return absl::FailedPreconditionError(
            absl::StrCat("after a controller restart in ", PhaseName(phase), ": engine ",
                         engines_[i]->address(), " has ", t.resident_bytes(),
                         " resident bytes of tag ", t.tag(), " (did the engine restart?)"));
      }
    }
    return VerifyResumed(engines_[i]->address(), resident, memory->memory());
  });
}

// --- Health watch -------------------------------------------------------------------

void ControllerImpl::StartHealthWatch() {
  if (options_.health_interval <= absl::ZeroDuration()) return;
  for (size_t i = 0; i < engines_.size(); ++i) {
    health_threads_.emplace_back([this, i] { HealthLoop(i); });
  }
}

void ControllerImpl::HealthLoop(size_t index) {
  EngineClient& engine = *engines_[index];
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      const absl::Time wake = absl::Now() + options_.health_interval;
      while (!shutdown_ && absl::Now() < wake) cv_.WaitWithDeadline(&mu_, wake);
      if (shutdown_) return;
    }
    absl::StatusOr<::colo::v1::GetServerInfoResponse> answer = engine.Probe();
    const absl::Status probe = answer.status();
    // Lost or restarted: the calls in flight are cancelled below.
    bool lost = false;
    {
      absl::MutexLock lock(&mu_);
      if (shutdown_) return;
      EngineView& view = views_[index];
      if (probe.ok()) {
        view.last_ok = absl::Now();
        lost = NoteInstanceLocked(index, *answer);
        view.info = *answer;
        const bool was_stale = view.failed_probes > 0;
        view.failed_probes = 0;
        if (!view.healthy) {
          COLO_LOG(INFO) << "engine " << engine.address() << " answers again";
          view.healthy = true;
          view.last_error.clear();
          BumpVersionLocked();
        } else if (was_stale) {
          BumpVersionLocked();  // watchers see "healthy" again
        }
      } else {
        // The first failure makes the engine "stale" for watchers.
        if (++view.failed_probes == 1) BumpVersionLocked();
        view.last_error = std::string(probe.message());
        if (view.healthy && view.failed_probes >= options_.health_failures_to_lose) {
          view.healthy = false;
          BumpVersionLocked();
          const std::string reason = absl::StrCat(
              "engine ", engine.address(), " lost: ", view.failed_probes,
              " consecutive health probes failed, last: ", absl::StatusCodeToString(probe.code()),
              ": ", probe.message());
          COLO_LOG(ERROR) << reason;
          if (phase_ != FAILED) FailLocked("EngineLost", reason);
          lost = true;
        }
      }
    }
    if (lost) {
      // Pending trainer calls stop waiting on engines now.
      for (const auto& e : engines_) e->CancelPending();
    }
  }
}

void ControllerImpl::BumpVersionLocked() {
  ++version_;
  cv_.SignalAll();
}

// --- State helpers -------------------------------------------------------------------

absl::StatusOr<bool> ControllerImpl::CheckStepLocked(const char* op, int64_t step, bool new_cycle,
                                                     Phase required) const {
  if (step < 0)
    return absl::InvalidArgumentError(absl::StrCat(op, ": step must be >= 0, got ", step));
  if (step == step_ && completed_ops_.contains(op)) return true;
  if (step < step_) {
    return absl::FailedPreconditionError(
        absl::StrCat(op, " step ", step, " is older than the node's step ", step_));
  }
  if (!new_cycle && step != step_ && phase_ == required) {
    // Mid-cycle; in any other phase RequirePhase names the phases instead.
    return absl::FailedPreconditionError(absl::StrCat(
        op, " step ", step, " does not match the cycle in progress (step ", step_, ")"));
  }
  return false;
}

absl::Status ControllerImpl::SetPhaseLocked(Phase to, const std::string& op, bool completed,
                                            const std::string& reason) {
  RETURN_IF_ERROR(CheckTransition(phase_, to));
  const absl::Time now = absl::Now();
  if (journal_ != nullptr) {
    ::colo::v1::JournalRecord record;
    record.set_phase(to);
    record.set_step(step_);
    record.set_reason(reason);
    record.set_op(op);
    record.set_completed(completed);
    record.set_pause_mode(pause_mode_);
    record.set_time_us(absl::ToUnixMicros(now));
    absl::Status written = journal_->Append(record);
    if (!written.ok()) {
      COLO_LOG(ERROR) << "journal append failed: " << written;
      if (to != FAILED) return written;
    }
  }
  ::colo::v1::PhaseDuration duration;
  duration.set_phase(phase_);
  duration.set_duration_us(absl::ToInt64Microseconds(now - phase_since_));
  duration.set_step(step_);
  recent_.push_back(duration);
  while (static_cast<int>(recent_.size()) > options_.max_recent_phases) recent_.pop_front();
  COLO_LOG(INFO) << "step " << step_ << ": " << PhaseName(phase_) << " -> " << PhaseName(to) << " ("
                 << op << ", " << absl::FormatDuration(now - phase_since_) << " in "
                 << PhaseName(phase_) << ")" << (reason.empty() ? "" : absl::StrCat(": ", reason));
  phase_ = to;
  phase_since_ = now;
  reason_ = reason;
  if (to == FAILED) ++fail_epoch_;
  BumpVersionLocked();
  return absl::OkStatus();
}

void ControllerImpl::FailLocked(const std::string& op, const std::string& reason) {
  if (phase_ == FAILED) return;
  absl::Status moved = SetPhaseLocked(FAILED, op, /*completed=*/false, reason);
  if (!moved.ok()) COLO_LOG(ERROR) << "cannot enter FAILED: " << moved;
}

absl::Status ControllerImpl::CheckNotLost(int64_t epoch) const {
  absl::MutexLock lock(&mu_);
  if (fail_epoch_ != epoch) {
    return absl::UnavailableError(absl::StrCat("node failed during the call: ", reason_));
  }
  return absl::OkStatus();
}

absl::StatusOr<::colo::v1::TransitionResponse> ControllerImpl::CompleteTransition(
    const char* op, absl::Status result, Phase next, int64_t epoch) {
  absl::MutexLock lock(&mu_);
  if (shutdown_ && !result.ok()) {
    // Not FAILED: the journal keeps the phase the transition was in, and a
    // restarted controller finishes it (ReplayAndReconcile).
    return absl::UnavailableError(absl::StrCat(
        op, " step ", step_, " interrupted: the controller is shutting down (", result.message(),
        "); the journal leaves the node in ", PhaseName(phase_),
        " and a restarted controller finishes the transition: retry the call then"));
  }
  if (fail_epoch_ != epoch) {
    return absl::UnavailableError(
        absl::StrCat(op, " step ", step_, " interrupted: ", reason_, "; node is FAILED"));
  }
  if (!result.ok()) {
    const std::string reason = absl::StrCat(op, " step ", step_, " failed: ", result.message());
    FailLocked(op, reason);
    return absl::Status(result.code(), absl::StrCat(reason, "; node is FAILED"));
  }
  absl::Status moved = SetPhaseLocked(next, op, /*completed=*/true, "");
  if (!moved.ok()) {
    FailLocked(op, absl::StrCat(op, ": ", moved.message()));
    return moved;
  }
  completed_ops_.insert(op);
  return ResponseLocked(false);
}

::colo::v1::NodeState ControllerImpl::StateLocked() const {
  ::colo::v1::NodeState state;
  state.set_phase(phase_);
  state.set_step(step_);
  state.set_reason(reason_);
  state.set_phase_since_us(absl::ToUnixMicros(phase_since_));
  const absl::Time now = absl::Now();
  for (size_t i = 0; i < engines_.size(); ++i) {
    const EngineView& view = views_[i];
    ::colo::v1::EngineState* e = state.add_engines();
    e->set_address(engines_[i]->address());
    e->set_healthy(view.healthy);
    e->set_health(HealthLocked(view, now));
    if (view.last_ok != absl::InfinitePast()) e->set_last_ok_us(absl::ToUnixMicros(view.last_ok));
    e->set_failed_probes(view.failed_probes);
    e->set_engine_state(view.info.state());
    e->set_weight_version(view.info.weight_version());
    *e->mutable_released_tags() = view.info.released_tags();
    *e->mutable_memory() = view.memory;
    e->set_last_error(view.last_error);
  }
  for (const auto& d : recent_) *state.add_recent_phases() = d;
  return state;
}

std::string ControllerImpl::HealthLocked(const EngineView& view, absl::Time now) const {
  if (!view.healthy) return "lost";
  if (options_.health_interval <= absl::ZeroDuration()) return "unwatched";
  if (view.failed_probes > 0 || now - view.last_ok > options_.health_stale_after) return "stale";
  return "healthy";
}

std::string ControllerImpl::DescribeEnginesLocked() const {
  std::vector<std::string> parts;
  for (size_t i = 0; i < engines_.size(); ++i) {
    const EngineView& view = views_[i];
    if (view.last_ok == absl::InfinitePast()) {
      parts.push_back(absl::StrCat(engines_[i]->address(), ": no answer (", view.last_error, ")"));
      continue;
    }
    const auto& info = view.info;
    parts.push_back(absl::StrCat(
        engines_[i]->address(), ": ", info.state(),
        info.paused_mode().empty() ? "" : absl::StrCat(" (", info.paused_mode(), ")"), ", ",
        info.released_tags().empty()
            ? std::string("nothing released")
            : absl::StrCat("released ", absl::StrJoin(info.released_tags(), ",")),
        ", weight_version ", info.weight_version().empty() ? "-" : info.weight_version()));
  }
  return absl::StrJoin(parts, "; ");
}

::colo::v1::TransitionResponse ControllerImpl::ResponseLocked(bool replayed) const {
  ::colo::v1::TransitionResponse response;
  *response.mutable_state() = StateLocked();
  response.set_replayed(replayed);
  return response;
}

void ControllerImpl::RecordMemory(size_t index, const ::colo::v1::MemoryInfo& memory) {
  absl::MutexLock lock(&mu_);
  views_[index].memory = memory;
  views_[index].last_ok = absl::Now();
}

bool ControllerImpl::NoteInstanceLocked(size_t index,
                                        const ::colo::v1::GetServerInfoResponse& info) {
  EngineView& view = views_[index];
  if (info.instance_id().empty()) return false;  // an engine that does not report one
  const std::string before = view.instance_id;
  view.instance_id = info.instance_id();
  if (before.empty() || before == info.instance_id()) return false;
  const std::string reason = absl::StrCat(
      "engine ", engines_[index]->address(), " restarted (instance ", before, " -> ",
      info.instance_id(), "): its memory and weights are back to their start-up state (",
      info.state(), ", weight_version ", info.weight_version(),
      "); run `coloctl recover`, then send it the current weights (the trainer redoes its step)");
  COLO_LOG(ERROR) << reason;
  if (phase_ != FAILED) FailLocked("EngineRestarted", reason);
  BumpVersionLocked();
  return true;
}

void ControllerImpl::RecordInfo(size_t index,
                                const absl::StatusOr<::colo::v1::GetServerInfoResponse>& info) {
  absl::MutexLock lock(&mu_);
  if (info.ok()) {
    NoteInstanceLocked(index, *info);
    views_[index].info = *info;
    views_[index].last_ok = absl::Now();
  } else {
    views_[index].last_error = std::string(info.status().message());
  }
}

// --- Engine work -----------------------------------------------------------------------

absl::Status ControllerImpl::ForEachEngine(const std::function<absl::Status(size_t)>& fn) {
  std::vector<absl::Status> results(engines_.size());
  if (engines_.size() == 1) {
    results[0] = fn(0);
  } else {
    std::vector<std::thread> threads;
    for (size_t i = 0; i < engines_.size(); ++i) {
      threads.emplace_back([&results, &fn, i] { results[i] = fn(i); });
    }
    for (std::thread& t : threads) t.join();
  }
  absl::Status first;
  std::vector<std::string> messages;
  for (const absl::Status& s : results) {
    if (s.ok()) continue;
    if (first.ok()) first = s;
    messages.emplace_back(s.message());
  }
  if (first.ok()) return first;
  return absl::Status(first.code(), absl::StrJoin(messages, "; "));
}

absl::Status ControllerImpl::PauseAndRelease(const std::string& mode, int64_t epoch) {
  const std::vector<std::string> tags(std::begin(kAllTags), std::end(kAllTags));
  return ForEachEngine([&](size_t i) -> absl::Status {
    EngineClient& engine = *engines_[i];
    ASSIGN_OR_RETURN(auto paused, engine.PauseGeneration(mode));
    RETURN_IF_ERROR(CheckNotLost(epoch));
    ReleaseEvidence evidence;
    evidence.address = engine.address();
    evidence.tags = tags;
    ASSIGN_OR_RETURN(auto before, engine.GetMemoryInfo());
    evidence.before = before.memory();
    RETURN_IF_ERROR(CheckNotLost(epoch));
    ASSIGN_OR_RETURN(evidence.release, engine.ReleaseTags(tags));
    ASSIGN_OR_RETURN(auto after, engine.GetMemoryInfo());
    evidence.after = after.memory();
    RecordMemory(i, evidence.after);
    absl::Status verified = VerifyRelease(evidence, options_.verify_fraction);
    if (!verified.ok()) {
      absl::MutexLock lock(&mu_);
      ++verification_failures_;
      return verified;
    }
    RecordInfo(i, engine.GetServerInfo());
    COLO_LOG(INFO) << "engine " << engine.address() << ": paused (" << mode << ", "
                   << paused.num_aborted() << " aborted, " << paused.num_retracted()
                   << " retracted, " << paused.num_kept() << " kept), released "
                   << ObservedFreedBytes(evidence) << " bytes (verified)";
    return absl::OkStatus();
  });
}

absl::Status ControllerImpl::ResumeAndVerify(const std::vector<std::string>& tags, int64_t epoch) {
  return ForEachEngine([&](size_t i) -> absl::Status {
    EngineClient& engine = *engines_[i];
    RETURN_IF_ERROR(CheckNotLost(epoch));
    ASSIGN_OR_RETURN(auto resumed, engine.ResumeTags(tags));
    ASSIGN_OR_RETURN(auto after, engine.GetMemoryInfo());
    RecordMemory(i, after.memory());
    RETURN_IF_ERROR(VerifyResumed(engine.address(), tags, after.memory()));
    // Released tags as NodeState reports them (ContinueAll refreshes the
    // KV stage's).
    if (std::find(tags.begin(), tags.end(), "weights") != tags.end()) {
      RecordInfo(i, engine.GetServerInfo());
    }
    COLO_LOG(INFO) << "engine " << engine.address() << ": resumed " << absl::StrJoin(tags, ",")
                   << " (device free " << resumed.device_free_bytes_before() << " -> "
                   << resumed.device_free_bytes_after() << ")";
    return absl::OkStatus();
  });
}

absl::Status ControllerImpl::ContinueAll(int64_t epoch) {
  return ForEachEngine([&](size_t i) -> absl::Status {
    EngineClient& engine = *engines_[i];
    RETURN_IF_ERROR(CheckNotLost(epoch));
    ASSIGN_OR_RETURN(auto continued, engine.ContinueGeneration(/*torch_empty_cache=*/true));
    // The engine's state and weight_version as NodeState reports them.
    RecordInfo(i, engine.GetServerInfo());
    COLO_LOG(INFO) << "engine " << engine.address() << ": continued, caching allocator reserved "
                   << continued.reserved_bytes_before() << " -> "
                   << continued.reserved_bytes_after() << " bytes";
    return absl::OkStatus();
  });
}

// --- Trainer transitions --------------------------------------------------------------

absl::StatusOr<::colo::v1::TransitionResponse> ControllerImpl::PrepareTraining(
    const ::colo::v1::PrepareTrainingRequest& request) {
  const std::string mode = request.pause_mode().empty() ? "retract" : request.pause_mode();
  RETURN_IF_ERROR(ValidateMode(mode));
  absl::MutexLock transition(&transition_mu_);
  int64_t epoch;
  {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(bool replay, CheckStepLocked(kPrepareTraining, request.step(), true, ROLLOUT));
    if (replay) return ResponseLocked(true);
    RETURN_IF_ERROR(RequirePhase(kPrepareTraining, ROLLOUT, phase_, reason_));
    if (request.step() != step_) completed_ops_.clear();
    step_ = request.step();
    pause_mode_ = mode;
    RETURN_IF_ERROR(SetPhaseLocked(RELEASING, kPrepareTraining, false, ""));
    epoch = fail_epoch_;
  }
  return CompleteTransition(kPrepareTraining, PauseAndRelease(mode, epoch), TRAINING, epoch);
}

std::vector<std::string> ControllerImpl::EngineIpcDomains(
    const std::string& trainer_ipc_domain) const {
  std::vector<std::string> domains;
  if (trainer_ipc_domain.empty()) return domains;
  for (const auto& engine : engines_) {
    absl::StatusOr<::colo::v1::GetServerInfoResponse> info = engine->GetServerInfo();
    domains.push_back(info.ok() ? info->ipc_domain() : "");
  }
  return domains;
}

::colo::v1::BeginWeightSyncResponse ControllerImpl::WeightSyncResponseLocked(
    bool replayed, const std::string& trainer_ipc_domain,
    const std::vector<std::string>& domains) const {
  ::colo::v1::BeginWeightSyncResponse response;
  *response.mutable_state() = StateLocked();
  ::colo::v1::WeightSyncGroup* group = response.mutable_group();
  group->set_group_name(options_.weight_sync_group_name);
  group->set_backend(options_.weight_sync_backend);
  group->set_master_address(options_.weight_sync_master_address);
  group->set_master_port(options_.weight_sync_master_port);
  // Engines in the trainer's IPC domain take the same-device path; the
  // others occupy ranks 1.. of the broadcast group, a tensor-parallel engine
  // tp_size consecutive ranks.
  int32_t next_rank = 1;
  for (size_t i = 0; i < engines_.size(); ++i) {
    ::colo::v1::EngineEndpoint* endpoint = response.add_engines();
    endpoint->set_address(engines_[i]->address());
    const std::string domain = i < domains.size() ? domains[i] : "";
    endpoint->set_ipc_domain(domain);
    endpoint->set_num_ranks(std::max(1, views_[i].info.tp_size()));
    if (!trainer_ipc_domain.empty() && domain == trainer_ipc_domain) {
      endpoint->set_weight_path("ipc");
      endpoint->set_rank(0);
    } else {
      endpoint->set_weight_path("broadcast");
      endpoint->set_rank(next_rank);
      next_rank += endpoint->num_ranks();
    }
  }
  group->set_world_size(next_rank);
  (void)replayed;
  return response;
}

absl::StatusOr<::colo::v1::BeginWeightSyncResponse> ControllerImpl::BeginWeightSync(
    const ::colo::v1::BeginWeightSyncRequest& request) {
  absl::MutexLock transition(&transition_mu_);
  int64_t epoch;
  // Where the engines run (only asked when the trainer says where it runs).
  const std::vector<std::string> domains = EngineIpcDomains(request.trainer_ipc_domain());
  {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(bool replay,
                     CheckStepLocked(kBeginWeightSync, request.step(), false, TRAINING));
    if (replay) return WeightSyncResponseLocked(true, request.trainer_ipc_domain(), domains);
    RETURN_IF_ERROR(RequirePhase(kBeginWeightSync, TRAINING, phase_, reason_));
    RETURN_IF_ERROR(SetPhaseLocked(WEIGHTS_RESUMING, kBeginWeightSync, false, ""));
    epoch = fail_epoch_;
  }
  ASSIGN_OR_RETURN(auto done,
                   CompleteTransition(kBeginWeightSync, ResumeAndVerify({"weights"}, epoch),
                                      WEIGHT_SYNC, epoch));
  (void)done;
  absl::MutexLock lock(&mu_);
  return WeightSyncResponseLocked(false, request.trainer_ipc_domain(), domains);
}

absl::StatusOr<::colo::v1::TransitionResponse> ControllerImpl::FinishWeightSync(
    const ::colo::v1::FinishWeightSyncRequest& request) {
  absl::MutexLock transition(&transition_mu_);
  int64_t epoch;
  {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(bool replay,
                     CheckStepLocked(kFinishWeightSync, request.step(), false, WEIGHT_SYNC));
    if (replay) return ResponseLocked(true);
    RETURN_IF_ERROR(RequirePhase(kFinishWeightSync, WEIGHT_SYNC, phase_, reason_));
    if (!request.trainer_weights_freed()) {
      return absl::FailedPreconditionError(
          "FinishWeightSync needs trainer_weights_freed=true: resuming kv_cache while the "
          "trainer still holds its weights raises the peak to trainer weights + engine weights "
          "+ KV cache; free the trainer's copy first");
    }
    RETURN_IF_ERROR(SetPhaseLocked(KV_RESUMING, kFinishWeightSync, false, ""));
    epoch = fail_epoch_;
  }
  absl::Status result = ResumeAndVerify({"kv_cache", "cuda_graph"}, epoch);
  if (result.ok()) result = ContinueAll(epoch);
  return CompleteTransition(kFinishWeightSync, result, ROLLOUT, epoch);
}

absl::StatusOr<::colo::v1::TransitionResponse> ControllerImpl::PauseForUpdate(
    const ::colo::v1::PauseForUpdateRequest& request) {
  const std::string mode = request.mode().empty() ? "in_place" : request.mode();
  RETURN_IF_ERROR(ValidateMode(mode));
  absl::MutexLock transition(&transition_mu_);
  int64_t epoch;
  {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(bool replay, CheckStepLocked(kPauseForUpdate, request.step(), true, ROLLOUT));
    if (replay) return ResponseLocked(true);
    RETURN_IF_ERROR(RequirePhase(kPauseForUpdate, ROLLOUT, phase_, reason_));
    if (request.step() != step_) completed_ops_.clear();
    step_ = request.step();
    pause_mode_ = mode;
    epoch = fail_epoch_;
  }
  absl::Status result = ForEachEngine([&](size_t i) -> absl::Status {
    RETURN_IF_ERROR(CheckNotLost(epoch));
    return engines_[i]->PauseGeneration(mode).status();
  });
  return CompleteTransition(kPauseForUpdate, result, PAUSED_FOR_UPDATE, epoch);
}

absl::StatusOr<::colo::v1::TransitionResponse> ControllerImpl::ResumeAfterUpdate(
    const ::colo::v1::ResumeAfterUpdateRequest& request) {
  absl::MutexLock transition(&transition_mu_);
  int64_t epoch;
  {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(bool replay,
                     CheckStepLocked(kResumeAfterUpdate, request.step(), false, PAUSED_FOR_UPDATE));
    if (replay) return ResponseLocked(true);
    RETURN_IF_ERROR(RequirePhase(kResumeAfterUpdate, PAUSED_FOR_UPDATE, phase_, reason_));
    epoch = fail_epoch_;
  }
  return CompleteTransition(kResumeAfterUpdate, ContinueAll(epoch), ROLLOUT, epoch);
}

absl::StatusOr<::colo::v1::TransitionResponse> ControllerImpl::Recover() {
  absl::MutexLock transition(&transition_mu_);
  {
    absl::MutexLock lock(&mu_);
    if (phase_ == ROLLOUT) return ResponseLocked(true);
    if (phase_ != FAILED && IsStablePhase(phase_)) {
      // A cycle the trainer abandoned: fail it first (the only legal way out).
      FailLocked(kRecover,
                 absl::StrCat("Recover requested in ", PhaseName(phase_), " at step ", step_));
    }
    RETURN_IF_ERROR(RequirePhase(kRecover, FAILED, phase_));
  }
  absl::Status result = ForEachEngine([&](size_t i) -> absl::Status {
    EngineClient& engine = *engines_[i];
    absl::StatusOr<::colo::v1::GetServerInfoResponse> info = engine.GetServerInfo();
    RecordInfo(i, info);
    RETURN_IF_ERROR(info.status());
    std::vector<std::string> released(info->released_tags().begin(), info->released_tags().end());
    if (!released.empty()) {
      // Weights first, then the rest, as in the cycle.
      std::stable_sort(released.begin(), released.end(),
                       [](const std::string& a, const std::string& b) {
                         return a == "weights" && b != "weights";
                       });
      RETURN_IF_ERROR(engine.ResumeTags(released).status());
      ASSIGN_OR_RETURN(auto after, engine.GetMemoryInfo());
      RecordMemory(i, after.memory());
      RETURN_IF_ERROR(VerifyResumed(engine.address(), released, after.memory()));
    }
    if (!released.empty() || info->state() != "serving") {
      RETURN_IF_ERROR(engine.ContinueGeneration(/*torch_empty_cache=*/true).status());
    }
    absl::StatusOr<::colo::v1::GetServerInfoResponse> now = engine.GetServerInfo();
    RecordInfo(i, now);
    RETURN_IF_ERROR(now.status());
    if (now->state() == "needs_weights") {
      // Weights released without a host backup come back undefined; the
      // node must not claim ROLLOUT while an engine cannot generate.
      return absl::FailedPreconditionError(absl::StrCat(
          "engine ", engine.address(), " needs weights",
          now->reason().empty() ? "" : absl::StrCat(" (", now->reason(), ")"),
          ": send it a weight update (UpdateWeightsFromDisk, or the trainer's "
          "UpdateWeightsFromDistributed), then Recover again"));
    }
    return absl::OkStatus();
  });
  absl::MutexLock lock(&mu_);
  if (!result.ok() && shutdown_) {
    return absl::UnavailableError(absl::StrCat(
        "Recover interrupted: the controller is shutting down (", result.message(), ")"));
  }
  if (!result.ok()) {
    reason_ = absl::StrCat("Recover failed: ", result.message());
    BumpVersionLocked();
    return absl::Status(result.code(), absl::StrCat(reason_, "; node stays FAILED"));
  }
  for (EngineView& view : views_) {
    view.healthy = true;
    view.failed_probes = 0;
    view.last_error.clear();
  }
  RETURN_IF_ERROR(SetPhaseLocked(ROLLOUT, kRecover, /*completed=*/false, ""));
  // The abandoned cycle is over: the trainer may run its step again (a
  // retried PrepareTraining must release, not replay).
  completed_ops_.clear();
  return ResponseLocked(false);
}

// --- Reads ------------------------------------------------------------------------------

::colo::v1::NodeState ControllerImpl::GetState(bool include_memory) {
  if (include_memory) {
    ForEachEngine([&](size_t i) -> absl::Status {
      absl::StatusOr<::colo::v1::GetMemoryInfoResponse> memory = engines_[i]->GetMemoryInfo();
      if (memory.ok()) {
        RecordMemory(i, memory->memory());
      } else {
        absl::MutexLock lock(&mu_);
        views_[i].last_error = std::string(memory.status().message());
      }
      RecordInfo(i, engines_[i]->GetServerInfo());
      return absl::OkStatus();
    }).IgnoreError();
  }
  absl::MutexLock lock(&mu_);
  return StateLocked();
}

::colo::v1::NodeState ControllerImpl::Snapshot(uint64_t* version) const {
  absl::MutexLock lock(&mu_);
  if (version != nullptr) *version = version_;
  return StateLocked();
}

bool ControllerImpl::WaitForChange(uint64_t seen, absl::Time deadline) const {
  absl::MutexLock lock(&mu_);
  // A CondVar rather than Mutex::Await: the predicate is then evaluated only
  // by this thread (ThreadSanitizer cannot see into an uninstrumented Abseil).
  while (!shutdown_ && version_ == seen) {
    if (cv_.WaitWithDeadline(&mu_, deadline)) break;
  }
  return !shutdown_;
}

::colo::v1::ListEnginesResponse ControllerImpl::ListEngines() {
  ForEachEngine([&](size_t i) -> absl::Status {
    RecordInfo(i, engines_[i]->GetServerInfo());
    return absl::OkStatus();
  }).IgnoreError();
  absl::MutexLock lock(&mu_);
  ::colo::v1::ListEnginesResponse response;
  *response.mutable_engines() = StateLocked().engines();
  return response;
}

int64_t ControllerImpl::verification_failures() const {
  absl::MutexLock lock(&mu_);
  return verification_failures_;
}

// --- Operator fan-outs -------------------------------------------------------------------

::colo::v1::FanOutResponse ControllerImpl::FanOut(
    const std::function<absl::Status(size_t, ::colo::v1::EngineResult*)>& fn) {
  absl::MutexLock transition(&transition_mu_);
  ::colo::v1::FanOutResponse response;
  for (const auto& engine : engines_) response.add_results()->set_address(engine->address());
  ForEachEngine([&](size_t i) -> absl::Status {
    ::colo::v1::EngineResult* result = response.mutable_results(static_cast<int>(i));
    absl::Status status = fn(i, result);
    result->set_code(static_cast<int32_t>(status.code()));
    result->set_message(std::string(status.message()));
    return absl::OkStatus();
  }).IgnoreError();
  return response;
}

::colo::v1::FanOutResponse ControllerImpl::ReleaseTags(const std::vector<std::string>& tags) {
  return FanOut([&](size_t i, ::colo::v1::EngineResult* result) -> absl::Status {
    ASSIGN_OR_RETURN(*result->mutable_release(), engines_[i]->ReleaseTags(tags));
    return absl::OkStatus();
  });
}

::colo::v1::FanOutResponse ControllerImpl::ResumeTags(const std::vector<std::string>& tags) {
  return FanOut([&](size_t i, ::colo::v1::EngineResult* result) -> absl::Status {
    ASSIGN_OR_RETURN(*result->mutable_resume(), engines_[i]->ResumeTags(tags));
    return absl::OkStatus();
  });
}

::colo::v1::FanOutResponse ControllerImpl::PauseGeneration(const std::string& mode) {
  return FanOut([&](size_t i, ::colo::v1::EngineResult* result) -> absl::Status {
    ASSIGN_OR_RETURN(*result->mutable_pause(), engines_[i]->PauseGeneration(mode));
    return absl::OkStatus();
  });
}

::colo::v1::FanOutResponse ControllerImpl::ContinueGeneration(bool torch_empty_cache) {
  return FanOut([&](size_t i, ::colo::v1::EngineResult* result) -> absl::Status {
    ASSIGN_OR_RETURN(*result->mutable_continue_generation(),
                     engines_[i]->ContinueGeneration(torch_empty_cache));
    return absl::OkStatus();
  });
}

}  // namespace controller
}  // namespace colo
