// A TCP key/value store for the rendezvous of a weight-update group.
//
// Rank 0 (the trainer) runs a TcpStoreServer at master_address:master_port;
// every other rank connects a TcpStoreClient, which first JOINs with its
// (group_name, rank, world_size): the server rejects a join whose group name
// or world size differs from its own, whose rank is outside [1, world_size),
// or whose rank already joined (INVALID_ARGUMENT on the client, and recorded
// for WaitForJoins on the server). After the join the store is a plain
// key/value map used by the Gloo full-mesh connect and the NCCL unique-id
// exchange. It is not a collective: it moves a few hundred bytes per rank.
//
// Deadlines: Connect retries a refused or unreachable connection until the
// init deadline, then fails with DEADLINE_EXCEEDED naming the address and
// the last error. Get waits for a key until its deadline (DEADLINE_EXCEEDED
// naming the key). No call blocks past its deadline.
//
// Thread safety: both classes are thread-safe. The server serves each client
// connection on its own thread; destroying the server closes every
// connection and joins its threads.
#ifndef COLO_WEIGHT_SYNC_TCP_STORE_H_
#define COLO_WEIGHT_SYNC_TCP_STORE_H_

#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace colo {
namespace weight_sync {

// The key/value interface the transports use.
class RendezvousStore {
 public:
  virtual ~RendezvousStore() = default;
  virtual absl::Status Set(const std::string& key, const std::string& value) = 0;
  // Waits until `key` is set or `deadline` passes (DEADLINE_EXCEEDED).
  virtual absl::StatusOr<std::string> Get(const std::string& key,
                                          absl::Time deadline) = 0;
};

class TcpStoreServer : public RendezvousStore {
 public:
  struct Options {
    // Address to listen on ("" or "0.0.0.0": all interfaces).
    std::string bind_address = "127.0.0.1";
    int port = 0;  // 0 = an ephemeral port (see port())
    std::string group_name;
    int world_size = 0;  // >= 1
  };

  // INVALID_ARGUMENT for world_size < 1; UNAVAILABLE when the address cannot
  // be resolved or bound (message names address:port and errno).
  static absl::StatusOr<std::unique_ptr<TcpStoreServer>> Start(
      const Options& options);
  ~TcpStoreServer() override;

  int port() const { return port_; }
  const std::string& bind_address() const { return options_.bind_address; }

  // Blocks until ranks 1..world_size-1 all joined. DEADLINE_EXCEEDED listing
  // the ranks that never joined and any rejected joins (e.g. a world-size
  // mismatch) when `deadline` passes first.
  absl::Status WaitForJoins(absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_);

  absl::Status Set(const std::string& key, const std::string& value) override
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<std::string> Get(const std::string& key,
                                  absl::Time deadline) override
      ABSL_LOCKS_EXCLUDED(mu_);

 private:
  TcpStoreServer(const Options& options, int listen_fd, int port, int wake_fd);
  void AcceptLoop() ABSL_LOCKS_EXCLUDED(mu_);
  void Serve(int fd) ABSL_LOCKS_EXCLUDED(mu_);
  // Returns an error message, or "" when the join is accepted.
  std::string Join(const std::string& group, int rank, int world_size)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Constant after construction.
  const Options options_;
  const int listen_fd_;
  const int port_;
  const int wake_read_fd_;  // closes the accept loop
  int wake_write_fd_;
  std::thread accept_thread_;

  absl::Mutex mu_;
  absl::CondVar cv_;  // signalled on every Set, join and stop
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::string, std::string> kv_ ABSL_GUARDED_BY(mu_);
  std::set<int> joined_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> rejected_ ABSL_GUARDED_BY(mu_);
  std::vector<int> conn_fds_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> conn_threads_ ABSL_GUARDED_BY(mu_);
};

class TcpStoreClient : public RendezvousStore {
 public:
  struct Options {
    std::string master_address;
    int master_port = 0;
    std::string group_name;
    int rank = 0;        // in [1, world_size)
    int world_size = 0;
    absl::Time deadline = absl::InfiniteFuture();  // for connect + join
  };

  // Connects (retrying until the deadline) and joins. DEADLINE_EXCEEDED when
  // the master cannot be reached in time; INVALID_ARGUMENT when the server
  // rejects the join (the message says why); UNAVAILABLE when the address
  // does not resolve.
  static absl::StatusOr<std::unique_ptr<TcpStoreClient>> Connect(
      const Options& options);
  ~TcpStoreClient() override;

  // The IP address of this end of the connection (the local interface that
  // reaches the master): ranks bind their data transport to it.
  const std::string& local_address() const { return local_address_; }

  absl::Status Set(const std::string& key, const std::string& value) override
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<std::string> Get(const std::string& key,
                                  absl::Time deadline) override
      ABSL_LOCKS_EXCLUDED(mu_);
  // True when the master closed the connection (e.g. the trainer process
  // exited): a non-blocking check, never consumes data.
  bool PeerClosed() const;

 private:
  TcpStoreClient(int fd, std::string local_address, std::string peer)
      : fd_(fd), local_address_(std::move(local_address)), peer_(std::move(peer)) {}

  const int fd_;
  const std::string local_address_;
  const std::string peer_;  // "host:port" for messages
  absl::Mutex mu_;  // one request at a time on the connection
};

}  // namespace weight_sync
}  // namespace colo

#endif  // COLO_WEIGHT_SYNC_TCP_STORE_H_
