// TpLeader: rank 0 of a tensor-parallel colo-engine. It owns the other
// ranks: their control connections (TpPeer), the collectives' group, the
// heartbeat, and, when it launched them, their processes.
//
// Start-up (TpLeader::Start, bounded by init_timeout):
//   1. listen on --tp_master (launch mode, no --tp_master: 127.0.0.1 on an
//      ephemeral port) and, in launch mode, start ranks 1..N-1 as child
//      processes of this binary (--tp_rank=R --tp_master=127.0.0.1:PORT;
//      they die with rank 0: PR_SET_PDEATHSIG);
//   2. accept every rank's hello (rank in range, not twice, same tp_size and
//      protocol: else INVALID_ARGUMENT naming the rank);
//   3. send each rank its setup and form the collectives' group (Gloo),
//      while the ranks load their shards.
// The caller then loads rank 0's own shard (collectives()), calls
// AwaitSetup(), allocates its KV cache, SetupKv() with the same page layout,
// and StartHeartbeat().
//
// Failure: a rank whose connection closes (its process died), that misses
// the heartbeat (heartbeat_timeout: hung, SIGSTOPped), or that does not
// answer a command by its deadline is lost, and the engine is FAILED for
// good: failure() names the rank and the cause (with the exit status of a
// launched child), the listeners run (the gRPC edge turns "colo.generate"
// NOT_SERVING), every waiting call fails UNAVAILABLE at once, and the forward
// pass refuses to run. Nothing is retried: the operator (or Kubernetes, or
// the controller) restarts the engine.
//
// Shutdown (destructor): tells every rank to shut down, closes the
// connections and reaps launched children (SIGKILL after a bound).
//
// Thread-safe.
#ifndef COLO_ENGINE_TP_TP_LEADER_H_
#define COLO_ENGINE_TP_TP_LEADER_H_

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "colo/internal/tp_control.pb.h"
#include "engine/tp/gloo_tp_comm.h"
#include "engine/tp/tp_channel.h"
#include "engine/tp/tp_peer.h"

namespace colo {
namespace engine {

struct TpLeaderOptions {
  int tp_size = 2;
  // --tp_master as rank 0 sees it: where to listen (HOST:PORT). Empty:
  // launch ranks 1..N-1 as children, on 127.0.0.1 and an ephemeral port.
  std::string master;
  // Launch mode: the colo-engine binary to start, and flags every child
  // gets besides --tp_rank / --tp_size / --tp_master.
  std::string binary;
  std::vector<std::string> child_flags;
  // What every rank loads (store_port is filled in by Start).
  colo::internal::TpSetup setup;
  absl::Duration init_timeout = absl::Seconds(120);
  absl::Duration collective_timeout = absl::Seconds(60);
  absl::Duration heartbeat_interval = absl::Seconds(1);
  absl::Duration heartbeat_timeout = absl::Seconds(10);
  // Bound on memory commands (release / resume / continue / memory info).
  absl::Duration command_timeout = absl::Seconds(600);
};

// What GetServerInfo reports per rank.
struct TpRankInfo {
  int rank = 0;
  int64_t pid = 0;
  std::string address;  // the rank's end of its control connection
  std::string host;
  int64_t weight_bytes = 0;
  std::string error;  // empty while the rank is fine
};

class TpLeader {
 public:
  static absl::StatusOr<std::unique_ptr<TpLeader>> Start(const TpLeaderOptions& options);
  ~TpLeader();
  TpLeader(const TpLeader&) = delete;
  TpLeader& operator=(const TpLeader&) = delete;

  int tp_size() const { return options_.tp_size; }
  const TpLeaderOptions& options() const { return options_; }
  GlooTpComm* comm() { return comm_.get(); }

  // Waits until every other rank loaded its shard.
  absl::Status AwaitSetup();
  // Every other rank allocates its KV storage with this layout.
  absl::Status SetupKv(const colo::internal::TpKvSetup& kv);
  void StartHeartbeat();

  // The other ranks (ranks 1..N-1, in order).
  const std::vector<std::unique_ptr<TpPeer>>& peers() const { return peers_; }
  std::vector<TpRankInfo> Ranks(int64_t rank0_weight_bytes) const;

  // Sends `command` to every other rank and waits for every final reply
  // (the rank's error, named, if one fails; a rank that misses the deadline
  // is lost).
  absl::StatusOr<std::vector<colo::internal::TpReply>> CallAll(
      const colo::internal::TpCommand& command, absl::Duration timeout);

  // Empty while every rank is fine; else why the engine failed.
  std::string failure() const ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status FailureStatus() const;
  // Runs `listener` (once) when the engine fails.
  void AddFailureListener(std::function<void()> listener) ABSL_LOCKS_EXCLUDED(mu_);
  // Marks the engine failed (the first reason wins). rank < 0: no rank
  // could be named.
  void Fail(int rank, const absl::Status& reason) ABSL_LOCKS_EXCLUDED(mu_);
  // After a collective failed on rank 0: pings every rank (short deadline)
  // so that a dead or hung one is named, then fails the engine with `error`
  // if no rank was. Returns the failure as UNAVAILABLE.
  absl::Status Diagnose(const absl::Status& error);

 private:
  explicit TpLeader(const TpLeaderOptions& options) : options_(options) {}
  absl::Status Launch(int port);
  absl::Status AcceptAll(TpListener* listener, absl::Time deadline);
  void HeartbeatLoop();
  // " (exited with code N)" for a launched child that is gone, else "".
  std::string ChildExit(int rank) ABSL_LOCKS_EXCLUDED(children_mu_);
  void Shutdown();

  const TpLeaderOptions options_;
  absl::Mutex children_mu_;
  // Launch mode, index rank-1; -pid once reaped.
  std::vector<pid_t> children_ ABSL_GUARDED_BY(children_mu_);
  std::vector<std::unique_ptr<TpPeer>> peers_;
  std::vector<std::string> hosts_;
  std::vector<uint64_t> setup_ids_;
  std::vector<int64_t> weight_bytes_;
  std::unique_ptr<GlooTpComm> comm_;
  std::thread heartbeat_;

  mutable absl::Mutex mu_;
  absl::CondVar stop_cv_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int failing_ ABSL_GUARDED_BY(mu_) = 0;  // Fail calls in progress
  std::string failure_ ABSL_GUARDED_BY(mu_);
  std::vector<std::function<void()>> listeners_ ABSL_GUARDED_BY(mu_);
};

}  // namespace engine
}  // namespace colo

#endif  // COLO_ENGINE_TP_TP_LEADER_H_
