// TpChannel: the TCP connection between rank 0 and one other rank of a
// tensor-parallel engine, carrying length-prefixed protobuf frames
// (proto/colo/internal/tp_control.proto) with deadlines.
//
// TpListener (rank 0) binds HOST:PORT (port 0: ephemeral) and accepts;
// TpConnection::Connect (other ranks) retries a refused connection until its
// deadline (the leader may not listen yet). Send and Receive are bounded by
// their deadline: DEADLINE_EXCEEDED when it passes, UNAVAILABLE when the
// peer closed the connection or the socket failed (a dead process is seen
// at once), INVALID_ARGUMENT for a frame that does not parse.
//
// Thread safety: Send is thread-safe (frames never interleave); one thread
// at a time may Receive. Shutdown() may be called from any thread and makes
// a blocked Receive return UNAVAILABLE.
#ifndef COLO_ENGINE_TP_TP_CHANNEL_H_
#define COLO_ENGINE_TP_TP_CHANNEL_H_

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "google/protobuf/message.h"

namespace colo {
namespace engine {

class TpConnection {
 public:
  // Connects to host:port, retrying until `deadline` (DEADLINE_EXCEEDED
  // naming the address and the last error).
  static absl::StatusOr<std::unique_ptr<TpConnection>> Connect(const std::string& host, int port,
                                                               absl::Time deadline);
  // Takes ownership of a connected socket.
  TpConnection(int fd, std::string peer);
  ~TpConnection();
  TpConnection(const TpConnection&) = delete;
  TpConnection& operator=(const TpConnection&) = delete;

  absl::Status Send(const google::protobuf::Message& message, absl::Time deadline)
      ABSL_LOCKS_EXCLUDED(send_mu_);
  absl::Status Receive(google::protobuf::Message* message, absl::Time deadline);
  // Unblocks Receive and fails later calls (idempotent).
  void Shutdown();

  const std::string& peer() const { return peer_; }
  // The IP address of this end of the connection.
  std::string local_address() const;

 private:
  const int fd_;
  const std::string peer_;
  absl::Mutex send_mu_;
};

class TpListener {
 public:
  // UNAVAILABLE when host:port cannot be resolved or bound.
  static absl::StatusOr<std::unique_ptr<TpListener>> Create(const std::string& host, int port);
  ~TpListener();
  TpListener(const TpListener&) = delete;
  TpListener& operator=(const TpListener&) = delete;

  int port() const { return port_; }
  // DEADLINE_EXCEEDED when no rank connects in time.
  absl::StatusOr<std::unique_ptr<TpConnection>> Accept(absl::Time deadline);

 private:
  TpListener(int fd, int port) : fd_(fd), port_(port) {}
  const int fd_;
  const int port_;
};

// Splits "HOST:PORT" (INVALID_ARGUMENT naming `flag` otherwise).
absl::Status ParseHostPort(const std::string& value, const char* flag, std::string* host,
                           int* port);

}  // namespace engine
}  // namespace colo

#endif  // COLO_ENGINE_TP_TP_CHANNEL_H_
