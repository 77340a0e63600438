// TpPeer: rank 0's end of the control connection to one other rank of a
// tensor-parallel engine. Sends commands (assigning their ids) and routes
// the rank's replies, read by its own thread, to the callers waiting for
// them: each command has a mailbox that receives its events (e.g. an
// update's TpReady) and then its final reply.
//
// When the connection fails (the rank's process died: the socket closes at
// once) or a caller reports the rank lost (MarkLost: it did not answer in
// time), the peer is lost: every waiting and later call fails UNAVAILABLE
// with the reason, and `on_lost` runs once (from the reader thread or the
// caller) with the reason.
//
// Thread-safe.
#ifndef COLO_ENGINE_TP_TP_PEER_H_
#define COLO_ENGINE_TP_TP_PEER_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "colo/internal/tp_control.pb.h"
#include "engine/tp/tp_channel.h"

namespace colo {
namespace engine {

// The status a reply carries (OK, or its code and message).
absl::Status ReplyStatus(const colo::internal::TpReply& reply);
// A reply carrying `status` (no body).
colo::internal::TpReply StatusReply(uint64_t id, const absl::Status& status);

class TpPeer {
 public:
  using LostCallback = std::function<void(int rank, const absl::Status& reason)>;

  TpPeer(int rank, int64_t pid, std::unique_ptr<TpConnection> connection, LostCallback on_lost);
  // Shuts the connection down and joins the reader.
  ~TpPeer();
  TpPeer(const TpPeer&) = delete;
  TpPeer& operator=(const TpPeer&) = delete;

  void Start();
  int rank() const { return rank_; }
  int64_t pid() const { return pid_; }
  const std::string& address() const { return connection_->peer(); }
  std::string local_address() const { return connection_->local_address(); }

  // Sends `command` with a fresh id (returned) and opens its mailbox.
  absl::StatusOr<uint64_t> Send(colo::internal::TpCommand command, absl::Time deadline)
      ABSL_LOCKS_EXCLUDED(mu_);
  // The next message for command `id` (events first, the final reply last;
  // the mailbox closes after it). DEADLINE_EXCEEDED when none arrives in
  // time (the peer is not marked lost: the caller decides); UNAVAILABLE
  // once the peer is lost.
  absl::StatusOr<colo::internal::TpReply> Next(uint64_t id, absl::Time deadline)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Waits for command `id`'s final reply (skipping events) and returns it,
  // or its error status.
  absl::StatusOr<colo::internal::TpReply> Final(uint64_t id, absl::Time deadline);
  // Send + Final; a rank that does not answer by `deadline` is marked lost.
  absl::StatusOr<colo::internal::TpReply> Call(colo::internal::TpCommand command,
                                               absl::Time deadline);
  // Drops command `id`'s mailbox (its later replies are discarded).
  void Forget(uint64_t id) ABSL_LOCKS_EXCLUDED(mu_);

  // Marks the peer lost (idempotent; the first reason wins).
  void MarkLost(const absl::Status& reason) ABSL_LOCKS_EXCLUDED(mu_);
  // OK while connected, else the reason.
  absl::Status lost() const ABSL_LOCKS_EXCLUDED(mu_);
  // Commands whose final reply has not arrived.
  int pending() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Mailbox {
    std::deque<colo::internal::TpReply> messages;
  };
  void ReadLoop();

  const int rank_;
  const int64_t pid_;
  const std::unique_ptr<TpConnection> connection_;
  const LostCallback on_lost_;
  std::thread reader_;

  mutable absl::Mutex mu_;
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<uint64_t, Mailbox> mailboxes_ ABSL_GUARDED_BY(mu_);
  absl::Status lost_ ABSL_GUARDED_BY(mu_);
};

}  // namespace engine
}  // namespace colo

#endif  // COLO_ENGINE_TP_TP_PEER_H_
