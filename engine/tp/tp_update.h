// TpUpdate: rank 0's side of one weight-update command run by every rank of
// a tensor-parallel engine (group formation, an update from a group, from
// disk or from a chunk stream). Each rank runs the same update on its own
// (it joins the update group as rank rank_offset + R and keeps its shard of
// the full tensors); all-or-nothing across the ranks is a vote over the
// control channel before anything is committed:
//
//   1. every rank stages its shard and reports ready (or fails);
//   2. if all are ready, rank 0 commits inside its scheduler's commit, tells
//      the ranks to commit and waits until they did (still inside the
//      commit: no forward step runs before every rank holds the new
//      weights); if any rank failed, every ready rank is told to abort and
//      the update fails ABORTED naming that rank;
//   3. a rank lost after deciding to commit leaves the ranks with different
//      weights: the engine turns FAILED (TpLeader::Fail).
// For colo's own protocol the update group votes too (every engine rank is
// in it), so step 1 then mostly confirms; for disk and chunk-stream updates,
// and for a stock torch group, it is the only vote.
//
// Deadlines: a rank that dies or hangs is lost through the heartbeat, which
// fails every wait at once; the waits here are otherwise bounded by
// `timeout`.
//
// Thread-compatible: one update's calls come from its RPC thread (the
// commit runner from the scheduler thread, while the RPC thread waits).
#ifndef COLO_ENGINE_TP_TP_UPDATE_H_
#define COLO_ENGINE_TP_TP_UPDATE_H_

#include <deque>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "colo/internal/tp_control.pb.h"
#include "colo/v1/engine.pb.h"
#include "engine/tp/tp_leader.h"
#include "weight_sync/receiver.h"

namespace colo {
namespace engine {

class TpUpdate {
 public:
  // Sends `command` to every other rank. UNAVAILABLE when the engine failed.
  static absl::StatusOr<std::unique_ptr<TpUpdate>> Start(TpLeader* leader,
                                                         colo::internal::TpCommand command,
                                                         absl::Duration timeout);

  // Chunk streams: forwards `chunk` to every rank still in the update (at
  // most kWindow chunks unacknowledged per rank); EndStream after the last.
  void Forward(const colo::v1::WeightChunk& chunk);
  void EndStream();

  // Wraps rank 0's commit runner with steps 1 and 2 above.
  weight_sync::CommitRunner WrapCommit(weight_sync::CommitRunner inner);

  // After rank 0's own part returned: ends the stream, aborts ranks still
  // waiting for a decision, waits for every rank's final reply. Returns the
  // first rank's error (naming it), else OK. `replies` then holds each
  // rank's final reply (rank 1 first).
  absl::Status Finish();
  const std::vector<colo::internal::TpReply>& replies() const { return finals_; }

  // Rank 0's result merged with the others': rank 0's error first, except
  // that an ABORTED rank 0 (e.g. the group's vote failed) reports the rank
  // that caused it when one failed otherwise.
  absl::Status Merge(const absl::Status& local, const absl::Status& others) const;

  static constexpr int kWindow = 8;

 private:
  struct Rank {
    TpPeer* peer = nullptr;
    uint64_t id = 0;
    bool ready = false;
    bool decided = false;
    std::optional<absl::Status> final_status;
    std::deque<uint64_t> chunks;  // unacknowledged chunk commands
  };
  TpUpdate(TpLeader* leader, absl::Duration timeout) : leader_(leader), timeout_(timeout) {}
  // Reads rank `r`'s messages until it is ready or done.
  void AwaitReadyOrDone(Rank& r, absl::Time deadline);
  void Decide(Rank& r, bool commit);
  absl::Status Named(const Rank& r, const absl::Status& s) const;

  TpLeader* const leader_;
  const absl::Duration timeout_;
  std::vector<Rank> ranks_;
  std::vector<colo::internal::TpReply> finals_;
  bool stream_ended_ = true;
  bool finished_ = false;
};

}  // namespace engine
}  // namespace colo

#endif  // COLO_ENGINE_TP_TP_UPDATE_H_
