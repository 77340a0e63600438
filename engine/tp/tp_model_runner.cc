#include "engine/tp/tp_model_runner.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/tp/tp_memory.h"
#include "engine/tp/tp_step.h"
#include "proto/status/status_macros.h"

namespace colo {
namespace engine {

using colo::internal::TpCommand;
using colo::internal::TpReply;

absl::StatusOr<ForwardResult> TpModelRunner::Forward(absl::Span<const ForwardRequest> batch,
                                                     const KvCacheView& kv,
                                                     const ForwardOptions& options) {
  RETURN_IF_ERROR(leader_->FailureStatus());
  const absl::Time start = absl::Now();
  TpCommand command;
  *command.mutable_step() = EncodeStep(batch, kv, page_size_, model_->config().sliding_window);
  // The other ranks run the step as soon as it arrives; their collectives
  // pair with rank 0's.
  const absl::Time deadline =
      absl::Now() + leader_->options().collective_timeout + absl::Seconds(10);
  std::vector<std::pair<TpPeer*, uint64_t>> sent;
  for (const auto& peer : leader_->peers()) {
    absl::StatusOr<uint64_t> id = peer->Send(command, deadline);
    if (!id.ok()) return leader_->Diagnose(id.status());
    sent.emplace_back(peer.get(), *id);
  }
  absl::StatusOr<ForwardResult> result = model_->Forward(batch, kv, options);
  const absl::Time waited = absl::Now();
  absl::Status others;
  for (auto [peer, id] : sent) {
    absl::StatusOr<TpReply> r = peer->Final(id, deadline);
    if (absl::IsDeadlineExceeded(r.status())) {
      peer->Forget(id);
      peer->MarkLost(absl::UnavailableError(absl::StrCat(
          "tensor-parallel rank ", peer->rank(), " did not finish a forward step in time")));
    }
    if (!r.ok() && others.ok()) {
      others = absl::Status(r.status().code(), absl::StrCat("tensor-parallel rank ",
                                                            peer->rank(), ": ",
                                                            r.status().message()));
    }
  }
  wait_micros_.fetch_add(absl::ToInt64Microseconds(absl::Now() - waited));
  if (!result.ok()) {
    // A collective failure breaks the group: name the rank and fail.
    if (absl::IsAborted(result.status()) || absl::IsFailedPrecondition(result.status())) {
      return leader_->Diagnose(result.status());
    }
    return result.status();
  }
  if (!others.ok()) {
    // Rank 0 finished but another rank did not: the ranks are out of step.
    leader_->Fail(-1, others);
    return leader_->FailureStatus();
  }
  steps_.fetch_add(1);
  step_micros_.fetch_add(absl::ToInt64Microseconds(absl::Now() - start));
  return result;
}

TpStepStats TpModelRunner::stats() const {
  TpStepStats s;
  s.steps = steps_.load();
  s.step_micros = step_micros_.load();
  s.wait_micros = wait_micros_.load();
  if (leader_->comm() != nullptr) {
    const TpCommStats c = leader_->comm()->stats();
    s.collective_micros = c.micros;
    s.collective_bytes = c.bytes;
  }
  return s;
}

absl::StatusOr<std::vector<RankTransition>> TpModelRunner::Transition(
    const std::vector<MemoryTag>& tags, bool release) {
  TpCommand command;
  colo::internal::TpTags* t = release ? command.mutable_release() : command.mutable_resume();
  for (MemoryTag tag : tags) t->add_tags(std::string(MemoryTagName(tag)));
  ASSIGN_OR_RETURN(std::vector<TpReply> replies,
                   leader_->CallAll(command, leader_->options().command_timeout));
  std::vector<RankTransition> out;
  for (size_t i = 0; i < replies.size(); ++i) {
    out.push_back(TransitionFromProto(static_cast<int>(i) + 1, replies[i].transition(), release));
  }
  return out;
}

absl::StatusOr<std::vector<RankTransition>> TpModelRunner::Release(
    const std::vector<MemoryTag>& tags) {
  return Transition(tags, true);
}

absl::StatusOr<std::vector<RankTransition>> TpModelRunner::Resume(
    const std::vector<MemoryTag>& tags) {
  return Transition(tags, false);
}

absl::StatusOr<std::vector<RankCacheReport>> TpModelRunner::CacheReports(bool empty_cache) {
  TpCommand command;
  command.mutable_empty_cache()->set_empty(empty_cache);
  ASSIGN_OR_RETURN(std::vector<TpReply> replies,
                   leader_->CallAll(command, leader_->options().command_timeout));
  std::vector<RankCacheReport> out;
  for (size_t i = 0; i < replies.size(); ++i) {
    RankCacheReport r;
    r.rank = static_cast<int>(i) + 1;
    r.reserved_bytes_before = static_cast<uint64_t>(replies[i].cache().reserved_bytes_before());
    r.reserved_bytes_after = static_cast<uint64_t>(replies[i].cache().reserved_bytes_after());
    r.process_resident_bytes = static_cast<uint64_t>(replies[i].cache().process_resident_bytes());
    out.push_back(r);
  }
  return out;
}

absl::StatusOr<std::vector<RankCacheReport>> TpModelRunner::Continue(bool empty_cache) {
  return CacheReports(empty_cache);
}

absl::StatusOr<std::vector<RankCacheReport>> TpModelRunner::Pause() {
  return CacheReports(false);
}

}  // namespace engine
}  // namespace colo
