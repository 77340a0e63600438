// TorchTransport: the engine as one rank of a process group that a stock
// PyTorch trainer formed, so the trainer keeps SGLang's contract unchanged:
//
//   dist.init_process_group("gloo", init_method=f"tcp://{addr}:{port}",
//                           world_size=W, rank=0)          # trainer
//   engine.InitWeightsUpdateGroup(rendezvous="torch", rank_offset=1, ...)
//   engine.UpdateWeightsFromDistributed(names, dtypes, shapes)  # async
//   for t in tensors: dist.broadcast(t, src=0)                  # in order
//
// Joining (bounded by the init timeout):
//   1. the trainer's c10d TCPStore (torch_store.h), generation detected;
//   2. the full mesh of every process group the pattern creates, in the
//      trainer's order (GlooMesh, gloo_wire.h), under these store keys:
//        torch_group   torch 2.x (wire kCurrent)     torch 1.x (kLegacy)
//        world         /default_pg/0//cpu//0/<r>     /default_pg/0/0/{rank_<r>,<r>}
//        new_group     world, then                   world, then
//                      /default_pg/0//1//cpu//0/<r>  /default_pg/1/0/...
//        custom (G)    /G/G//cpu//0/<r>              /G/G/0/...
//   3. the store-based barrier after init_process_group / new_group: torch
//      1.13 always runs it (ADD "/default_pg/store_based_barrier_key:<n>",
//      n = 1, 2 counting groups); torch 2.x only with TORCH_DIST_INIT_BARRIER=1
//      (keys "/default_pg/store_based_barrier_key:0" and
//      "/default_pg/0//store_based_barrier_key:1", the last worker SETs
//      "<key>:last_worker"). The engine always does its part (an ADD the
//      trainer does not read is harmless).
//   These layouts were read off real torch 2.15.0 and Debian 1.13.1
//   processes (see weight_sync/README.md, "Torch groups").
//
// Collectives: Broadcast(data, bytes, 0) is one torch dist.broadcast on the
// chosen group (torch numbers its collectives per group from tag 0; this
// transport counts the same way). `data` may be null to receive and discard
// (used to drain an update the engine rejected, so the trainer's broadcasts
// still complete and the group stays usable). AllReduceMin and Barrier are
// UNIMPLEMENTED: the trainer runs plain torch and takes part in nothing else.
// NCCL ("backend" nccl) is built under --config=cuda only (see
// torch_nccl_transport.h).
//
// Thread safety: as Transport.
#ifndef COLO_WEIGHT_SYNC_TORCH_TRANSPORT_H_
#define COLO_WEIGHT_SYNC_TORCH_TRANSPORT_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "weight_sync/gloo_wire.h"
#include "weight_sync/torch_store.h"
#include "weight_sync/transport.h"

namespace colo {
namespace weight_sync {

// The store keys of one torch process group (see the table above).
struct TorchGroupLayout {
  std::string mesh_prefix;   // GlooMesh::key_prefix
  std::string barrier_key;   // "" when torch runs no store-based barrier
  std::string description;   // "torch process group \"...\""
  std::string pg_prefix;     // the group's own store prefix (NCCL unique id)
};

// The groups the engine joins for `torch_group`, in the trainer's order;
// the last one carries the broadcasts.
std::vector<TorchGroupLayout> TorchGroupLayouts(TorchStoreProtocol protocol,
                                                const std::string& torch_group,
                                                const std::string& group_name);

// The store key of the NCCL unique id rank 0's ProcessGroupNCCL sets for
// the group's first communicator (see nccl_transport.h).
std::string TorchNcclUniqueIdKey(TorchStoreProtocol protocol, const TorchGroupLayout& layout);

class TorchTransport : public Transport {
 public:
  // See the file comment; errors as CreateTransport (transport.h), plus
  // FAILED_PRECONDITION when the trainer's gloo device is not IPv4.
  static absl::StatusOr<std::unique_ptr<TorchTransport>> Create(
      const TransportOptions& options);
  ~TorchTransport() override;

  int rank() const override { return options_.rank; }
  int world_size() const override { return options_.world_size; }
  const std::string& backend() const override { return options_.backend; }
  MemorySpace memory_space() const override { return MemorySpace::kHost; }
  int master_port() const override { return options_.master_port; }

  absl::Status Broadcast(void* data, size_t bytes, int root) override;
  absl::StatusOr<int32_t> AllReduceMin(int32_t value) override;
  absl::Status Barrier() override;
  void Close() override;
  bool broken() const override;
  std::string rendezvous() const override { return "torch"; }
  std::string detail() const override;

  TorchStoreProtocol store_protocol() const { return store_->protocol(); }
  // Broadcasts done on the group so far (the next one's tag).
  uint32_t broadcasts() const { return next_tag_.load(); }

 private:
  TorchTransport(const TransportOptions& options, std::unique_ptr<TorchStoreClient> store,
                 std::vector<std::unique_ptr<GlooMesh>> meshes)
      : options_(options), store_(std::move(store)), meshes_(std::move(meshes)) {}

  const TransportOptions options_;
  std::unique_ptr<TorchStoreClient> store_;
  // Every joined group in order; the last one carries the broadcasts.
  std::vector<std::unique_ptr<GlooMesh>> meshes_;
  std::atomic<uint32_t> next_tag_{0};  // advanced by the single collective caller
};

}  // namespace weight_sync
}  // namespace colo

#endif  // COLO_WEIGHT_SYNC_TORCH_TRANSPORT_H_
