#include "engine/tp/tp_update.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "proto/logging/logging.h"
#include "proto/status/status_macros.h"

namespace colo {
namespace engine {

using colo::internal::TpCommand;
using colo::internal::TpReply;

absl::StatusOr<std::unique_ptr<TpUpdate>> TpUpdate::Start(TpLeader* leader, TpCommand command,
                                                          absl::Duration timeout) {
  RETURN_IF_ERROR(leader->FailureStatus());
  std::unique_ptr<TpUpdate> u(new TpUpdate(leader, timeout));
  u->stream_ended_ = !command.has_update_stream();
  const absl::Time deadline = absl::Now() + timeout;
  for (const auto& peer : leader->peers()) {
    Rank r;
    r.peer = peer.get();
    absl::StatusOr<uint64_t> id = peer->Send(command, deadline);
    if (!id.ok()) {
      r.final_status = id.status();
    } else {
      r.id = *id;
    }
    u->ranks_.push_back(std::move(r));
  }
  return u;
}

absl::Status TpUpdate::Named(const Rank& r, const absl::Status& s) const {
  if (s.ok()) return s;
  return absl::Status(s.code(),
                      absl::StrCat("tensor-parallel rank ", r.peer->rank(), ": ", s.message()));
}

void TpUpdate::Forward(const colo::v1::WeightChunk& chunk) {
  const absl::Time deadline = absl::Now() + timeout_;
  TpCommand c;
  c.mutable_stream_chunk()->set_chunk(chunk.SerializeAsString());
  for (Rank& r : ranks_) {
    if (r.final_status.has_value()) continue;
    // Keep at most kWindow chunks unacknowledged (the rank's memory).
    while (static_cast<int>(r.chunks.size()) >= kWindow) {
      absl::StatusOr<TpReply> ack = r.peer->Final(r.chunks.front(), deadline);
      r.chunks.pop_front();
      if (!ack.ok()) {
        // The rank's update ended (failed): its final reply says why.
        for (uint64_t id : r.chunks) r.peer->Forget(id);
        r.chunks.clear();
        break;
      }
    }
    c.mutable_stream_chunk()->set_update_id(r.id);
    absl::StatusOr<uint64_t> id = r.peer->Send(c, deadline);
    if (id.ok()) r.chunks.push_back(*id);
  }
}

void TpUpdate::EndStream() {
  if (stream_ended_) return;
  stream_ended_ = true;
  const absl::Time deadline = absl::Now() + timeout_;
  for (Rank& r : ranks_) {
    for (uint64_t id : r.chunks) r.peer->Forget(id);
    r.chunks.clear();
    if (r.final_status.has_value()) continue;
    TpCommand c;
    c.mutable_stream_chunk()->set_update_id(r.id);
    c.mutable_stream_chunk()->set_end(true);
    absl::StatusOr<uint64_t> id = r.peer->Send(c, deadline);
    if (id.ok()) r.peer->Forget(*id);
  }
}

void TpUpdate::AwaitReadyOrDone(Rank& r, absl::Time deadline) {
  while (!r.ready && !r.final_status.has_value()) {
    absl::StatusOr<TpReply> m = r.peer->Next(r.id, deadline);
    if (!m.ok()) {
      if (absl::IsDeadlineExceeded(m.status())) {
        r.peer->Forget(r.id);
        r.peer->MarkLost(absl::UnavailableError(absl::StrCat(
            "tensor-parallel rank ", r.peer->rank(), " did not finish its part of a weight "
            "update within ", absl::FormatDuration(timeout_))));
      }
      r.final_status = m.status();
      return;
    }
    if (m->final()) {
      r.final_status = ReplyStatus(*m);
      finals_.push_back(*std::move(m));
    } else if (m->has_ready()) {
      r.ready = true;
    }
  }
}

void TpUpdate::Decide(Rank& r, bool commit) {
  if (!r.ready || r.decided) return;
  r.decided = true;
  TpCommand c;
  c.mutable_commit_decision()->set_update_id(r.id);
  c.mutable_commit_decision()->set_commit(commit);
  absl::StatusOr<uint64_t> id = r.peer->Send(c, absl::Now() + timeout_);
  if (id.ok()) r.peer->Forget(*id);
}

weight_sync::CommitRunner TpUpdate::WrapCommit(weight_sync::CommitRunner inner) {
  return [this, inner](const std::function<absl::Status()>& commit) -> absl::Status {
    EndStream();  // a chunk stream's commit comes after its last chunk
    const absl::Time deadline = absl::Now() + timeout_;
    absl::Status not_ready;
    for (Rank& r : ranks_) {
      AwaitReadyOrDone(r, deadline);
      if (!r.ready && not_ready.ok()) {
        not_ready = Named(r, r.final_status.value_or(absl::UnknownError("no answer")));
        if (not_ready.ok()) {
          not_ready = Named(r, absl::InternalError("ended its update without staging it"));
        }
      }
    }
    if (!not_ready.ok()) {
      for (Rank& r : ranks_) Decide(r, false);
      return absl::AbortedError(absl::StrCat(
          "the weight update was aborted on every tensor-parallel rank (the old weights keep "
          "serving): ", not_ready.message()));
    }
    std::function<absl::Status()> all = [this, &commit]() -> absl::Status {
      absl::Status s = commit();  // rank 0's shard
      if (!s.ok()) {
        for (Rank& r : ranks_) Decide(r, false);
        return s;
      }
      for (Rank& r : ranks_) Decide(r, true);
      // Every rank commits before the scheduler runs another step.
      const absl::Time until = absl::Now() + timeout_;
      for (Rank& r : ranks_) {
        r.ready = false;
        AwaitReadyOrDone(r, until);
        const absl::Status rs = r.final_status.value_or(absl::OkStatus());
        if (!rs.ok()) {
          // Rank 0 committed, this rank did not: the shards disagree now.
          leader_->Fail(r.peer->rank(),
                        absl::DataLossError(absl::StrCat(
                            "it did not commit a weight update that rank 0 committed: ",
                            rs.message())));
          return leader_->FailureStatus();
        }
      }
      return absl::OkStatus();
    };
    return inner(all);
  };
}

absl::Status TpUpdate::Finish() {
  if (finished_) return absl::OkStatus();
  finished_ = true;
  EndStream();
  const absl::Time deadline = absl::Now() + timeout_;
  absl::Status first;
  for (Rank& r : ranks_) {
    while (!r.final_status.has_value()) {
      r.ready = false;
      AwaitReadyOrDone(r, deadline);
      // Ready but rank 0 never reached its commit: abort this rank.
      if (r.ready) Decide(r, false);
    }
    if (!r.final_status->ok() && first.ok()) first = Named(r, *r.final_status);
  }
  return first;
}

absl::Status TpUpdate::Merge(const absl::Status& local, const absl::Status& others) const {
  if (local.ok()) return others;
  if (absl::IsAborted(local) && !others.ok() && !absl::IsAborted(others)) {
    return absl::Status(others.code(), absl::StrCat(others.message(), " (rank 0: ",
                                                    local.message(), ")"));
  }
  return local;
}

}  // namespace engine
}  // namespace colo
