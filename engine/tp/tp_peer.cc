#include "engine/tp/tp_peer.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "proto/logging/logging.h"

namespace colo {
namespace engine {

using colo::internal::TpCommand;
using colo::internal::TpReply;

absl::Status ReplyStatus(const TpReply& reply) {
  if (reply.code() == 0) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(reply.code()), reply.message());
}

TpReply StatusReply(uint64_t id, const absl::Status& status) {
  TpReply r;
  r.set_id(id);
  r.set_final(true);
  r.set_code(static_cast<int>(status.code()));
  r.set_message(std::string(status.message()));
  return r;
}

TpPeer::TpPeer(int rank, int64_t pid, std::unique_ptr<TpConnection> connection,
               LostCallback on_lost)
    : rank_(rank), pid_(pid), connection_(std::move(connection)), on_lost_(std::move(on_lost)) {}

TpPeer::~TpPeer() {
  connection_->Shutdown();
  if (reader_.joinable()) reader_.join();
}

void TpPeer::Start() {
  reader_ = std::thread([this] { ReadLoop(); });
}

void TpPeer::ReadLoop() {
  while (true) {
    TpReply reply;
    absl::Status s = connection_->Receive(&reply, absl::InfiniteFuture());
    if (!s.ok()) {
      MarkLost(absl::UnavailableError(absl::StrCat(
          "tensor-parallel rank ", rank_, " (pid ", pid_, ", ", connection_->peer(),
          ") closed its control connection (process exited or was killed?): ", s.message())));
      return;
    }
    absl::MutexLock lock(&mu_);
    auto it = mailboxes_.find(reply.id());
    if (it == mailboxes_.end()) continue;  // forgotten
    it->second.messages.push_back(std::move(reply));
  }
}

absl::StatusOr<uint64_t> TpPeer::Send(TpCommand command, absl::Time deadline) {
  uint64_t id;
  {
    absl::MutexLock lock(&mu_);
    if (!lost_.ok()) return lost_;
    id = next_id_++;
    mailboxes_[id];
  }
  command.set_id(id);
  absl::Status s = connection_->Send(command, deadline);
  if (!s.ok()) {
    Forget(id);
    const absl::Status reason = absl::UnavailableError(absl::StrCat(
        "tensor-parallel rank ", rank_, " (pid ", pid_, "): sending a command failed: ",
        s.message()));
    MarkLost(reason);
    return reason;
  }
  return id;
}

absl::StatusOr<TpReply> TpPeer::Next(uint64_t id, absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  auto ready = [this, id]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!lost_.ok()) return true;
    auto it = mailboxes_.find(id);
    return it == mailboxes_.end() || !it->second.messages.empty();
  };
  mu_.AwaitWithDeadline(absl::Condition(&ready), deadline);
  auto it = mailboxes_.find(id);
  if (it != mailboxes_.end() && !it->second.messages.empty()) {
    TpReply reply = std::move(it->second.messages.front());
    it->second.messages.pop_front();
    if (reply.final()) mailboxes_.erase(it);
    return reply;
  }
  if (!lost_.ok()) return lost_;
  if (it == mailboxes_.end()) {
    return absl::InternalError(absl::StrCat("no command ", id, " waits for rank ", rank_));
  }
  return absl::DeadlineExceededError(
      absl::StrCat("tensor-parallel rank ", rank_, " (pid ", pid_, ") did not answer in time"));
}

absl::StatusOr<TpReply> TpPeer::Final(uint64_t id, absl::Time deadline) {
  while (true) {
    absl::StatusOr<TpReply> r = Next(id, deadline);
    if (!r.ok()) return r.status();
    if (!r->final()) continue;
    absl::Status s = ReplyStatus(*r);
    if (!s.ok()) return s;
    return r;
  }
}

absl::StatusOr<TpReply> TpPeer::Call(TpCommand command, absl::Time deadline) {
  absl::StatusOr<uint64_t> id = Send(std::move(command), deadline);
  if (!id.ok()) return id.status();
  absl::StatusOr<TpReply> r = Final(*id, deadline);
  if (absl::IsDeadlineExceeded(r.status())) {
    Forget(*id);
    MarkLost(absl::UnavailableError(r.status().message()));
  }
  return r;
}

void TpPeer::Forget(uint64_t id) {
  absl::MutexLock lock(&mu_);
  mailboxes_.erase(id);
}

void TpPeer::MarkLost(const absl::Status& reason) {
  {
    absl::MutexLock lock(&mu_);
    if (!lost_.ok()) return;
    lost_ = reason;
  }
  COLO_LOG(ERROR) << reason.message();
  if (on_lost_) on_lost_(rank_, reason);
}

absl::Status TpPeer::lost() const {
  absl::MutexLock lock(&mu_);
  return lost_;
}

int TpPeer::pending() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(mailboxes_.size());
}

}  // namespace engine
}  // namespace colo
