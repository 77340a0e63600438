// TpFollower: a rank >= 1 of a tensor-parallel colo-engine (colo-engine
// --tp_rank=R --tp_master=HOST:PORT, or started by rank 0 with --tp_size).
// It connects to rank 0, says hello, and then executes rank 0's commands
// (proto/colo/internal/tp_control.proto) until rank 0 says shutdown:
//
//   setup       load this rank's shard (ShardPlan) into its own tagged pool
//               and join the collectives' group (Gloo)
//   kv_setup    allocate its KV heads with rank 0's page layout (KvStorage)
//   step        run a forward step (the same batch as rank 0; its
//               collectives pair with rank 0's)
//   release / resume / empty_cache / memory   its own pool and allocator
//   init_group / destroy_group / update_*     weight updates: the rank joins
//               the update group itself (rank = rank_offset + R), receives
//               full tensors and keeps its shard (ShardedUpdateSink); before
//               committing it reports ready and commits only when rank 0
//               decides so (all-or-nothing across the ranks)
//   checksums   CRC pieces of its shard (tp_checksums.h)
//
// Threads: the calling thread reads commands and answers ping / memory at
// once, so rank 0's heartbeat is answered during a long step; an executor
// runs setup, steps and memory transitions in order; an update worker runs
// group formation and updates (which block on the trainer) so that steps
// go on meanwhile (rank 0 sends no step while an update is committing).
//
// Exit: RunTpFollower returns OK after a shutdown command, UNAVAILABLE when
// rank 0 closed the connection or sent nothing (not even a heartbeat) for
// master_timeout, or the error that made setup fail. The caller exits the
// process (threads blocked on a dead group are not joined).
#ifndef COLO_ENGINE_TP_TP_FOLLOWER_H_
#define COLO_ENGINE_TP_TP_FOLLOWER_H_

#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace colo {
namespace engine {

struct TpFollowerOptions {
  int rank = 1;
  int tp_size = 2;
  std::string master_host;
  int master_port = 0;
  // Overrides rank 0's --model (empty: rank 0's path).
  std::string model_dir;
  // Compute threads; 0 = all cores / tp_size.
  int cpu_threads = 0;
  // Reaching rank 0.
  absl::Duration connect_timeout = absl::Seconds(120);
  // Rank 0 is gone when it sent no frame (it pings every second) this long.
  absl::Duration master_timeout = absl::Seconds(30);
};

absl::Status RunTpFollower(const TpFollowerOptions& options);

// The protocol string both ends must share (TpHello.protocol).
inline constexpr char kTpProtocol[] = "colo-tp/1";

}  // namespace engine
}  // namespace colo

#endif  // COLO_ENGINE_TP_TP_FOLLOWER_H_
