// Transport: a collective group for weight updates (rank 0 = the trainer,
// ranks 1..world_size-1 = engine ranks). Implementations wrap existing
// collective libraries: GlooTransport (CPU, TCP) and NcclTransport (GPU).
//
// Collective contract: every rank of the group must call the same sequence
// of collectives (Broadcast / AllReduceMin / Barrier) with the same sizes
// and roots. Each call is bounded by the transfer timeout: when a peer dies
// or stalls, the call fails (ABORTED, naming the operation and the cause)
// within that timeout and the transport is *broken*: every later call
// returns FAILED_PRECONDITION, and the group must be destroyed and
// re-created. Calls on one transport must not overlap (one caller at a
// time); Close() may be called from any thread after the last call returned.
#ifndef COLO_WEIGHT_SYNC_TRANSPORT_H_
#define COLO_WEIGHT_SYNC_TRANSPORT_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace colo {
namespace weight_sync {

class TcpStoreServer;

// Where Broadcast buffers must live.
enum class MemorySpace { kHost, kDevice };

struct TransportOptions {
  std::string backend = "gloo";  // "gloo" or "nccl"
  std::string group_name = "weight_update_group";
  // Rank 0 listens here (port 0 = ephemeral, see Transport::master_port());
  // other ranks connect here.
  std::string master_address = "127.0.0.1";
  int master_port = 0;
  int rank = 0;
  int world_size = 0;
  // Bounds the whole rendezvous (connect, join, full-mesh setup).
  absl::Duration init_timeout = absl::Seconds(60);
  // Bounds each collective call.
  absl::Duration transfer_timeout = absl::Seconds(120);
  // NCCL only: CUDA device ordinal of this rank.
  int cuda_device = 0;
  // "colo": colo's rendezvous and update protocol (rank 0 runs colo's
  // sender). "torch": join a group a stock torch.distributed trainer formed
  // (torch_transport.h); rank 0 broadcasts plain tensors.
  std::string rendezvous = "colo";
  // rendezvous "torch" only: which torch process group carries the
  // broadcasts: "world" (the default group of init_process_group), "new_group"
  // (the first dist.new_group(...) after it; the engine joins both) or
  // "custom" (a group formed like SGLang's init_custom_process_group, whose
  // torch group name is group_name).
  std::string torch_group = "world";
};

// INVALID_ARGUMENT when world_size < 1, rank is outside [0, world_size),
// the group name is empty, the timeouts are not positive, the master
// address is empty on a rank other than 0, or rendezvous / torch_group is
// not one of the names above.
absl::Status ValidateTransportOptions(const TransportOptions& options);

class Transport {
 public:
  virtual ~Transport() = default;

  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  virtual const std::string& backend() const = 0;
  virtual MemorySpace memory_space() const = 0;
  // The rendezvous port (rank 0: the bound port, useful with port 0).
  virtual int master_port() const = 0;

  // Broadcasts `bytes` bytes at `data` from `root` to every rank (in place:
  // the root's buffer is the source, the others' are overwritten). `data`
  // is in memory_space(). ABORTED on failure or after the transfer timeout.
  virtual absl::Status Broadcast(void* data, size_t bytes, int root) = 0;
  // Returns the minimum of `value` over all ranks (the commit vote).
  virtual absl::StatusOr<int32_t> AllReduceMin(int32_t value) = 0;
  virtual absl::Status Barrier() = 0;
  // Releases the communicator and the rendezvous; idempotent. Peers still
  // inside a collective with this rank fail within their timeout.
  virtual void Close() = 0;
  // True once a collective failed (see the class comment), or once a peer's
  // connection is known to be closed (a trainer that died between updates):
  // the group cannot carry another update.
  virtual bool broken() const = 0;
  // "colo" or "torch" (TransportOptions::rendezvous).
  virtual std::string rendezvous() const { return "colo"; }
  // One line about the group for listings (protocol versions, peers).
  virtual std::string detail() const { return ""; }
};

// Creates the transport named by options.backend. Blocks until every rank
// joined and the group is connected, or the init timeout passed.
//   - "gloo": always available.
//   - "nccl": NcclTransport under --config=cuda (FAILED_PRECONDITION there
//     when no CUDA device is usable); FAILED_PRECONDITION in other builds.
//   - anything else: INVALID_ARGUMENT.
// Rendezvous failures: DEADLINE_EXCEEDED (master unreachable, ranks that never
// joined), INVALID_ARGUMENT (world_size / rank / group mismatch).
// `server` (rank 0 only, optional): an already started rendezvous server,
// which lets the caller learn the port before it blocks here.
absl::StatusOr<std::unique_ptr<Transport>> CreateTransport(
    const TransportOptions& options,
    std::unique_ptr<TcpStoreServer> server = nullptr);

}  // namespace weight_sync
}  // namespace colo

#endif  // COLO_WEIGHT_SYNC_TRANSPORT_H_
