// NcclTransport: Transport over NCCL (GPU memory). Built only under
// --config=cuda (target :nccl_transport is CUDA_ONLY); CreateTransport
// picks it for backend "nccl" in such builds.
//
// Forming the group (bounded by the init timeout):
//   1. the colo rendezvous (rendezvous.h): rank 0 hosts the TCP store, every
//      other rank joins it (world size / rank / group checked there);
//   2. rank 0 draws an ncclUniqueId and Sets it in the store under
//      "nccl/unique_id"; the others Get it (waiting until the init deadline);
//   3. every rank calls ncclCommInitRankConfig in non-blocking mode on its
//      CUDA device (options.cuda_device) and polls ncclCommGetAsyncError
//      until the communicator is ready; past the deadline the communicator
//      is aborted (ncclCommAbort) and Create returns DEADLINE_EXCEEDED.
// With rendezvous "torch" (a stock torch trainer's ProcessGroupNCCL, see
// torch_transport.h) steps 1-2 are torch's instead: the engine joins the
// trainer's c10d TCPStore (TorchStoreClient, "init/" and the store-based
// barrier keys as for gloo) and reads the unique id rank 0's
// ProcessGroupNCCL::broadcastUniqueNCCLID sets for the group's first
// communicator: key "0" of the group's "cuda/" backend store, i.e.
// "<pg prefix>/cuda//0" on torch 2.x and "<pg prefix>0" on torch 1.x
// (TorchNcclUniqueIdKey). Broadcasts are then one ncclBroadcast per tensor
// as bytes (NCCL moves non-reducing collectives as int8 whatever the
// datatype). NOT verified against a real torch trainer: this build machine
// has no GPU (see weight_sync/README.md); eager init (init_process_group
// with device_id) and communicators split from the default group
// (new_group after an eager init) use no unique-id key and are unsupported.
// Errors: FAILED_PRECONDITION when no CUDA device is usable (the message
// carries the CUDA error), DEADLINE_EXCEEDED / INVALID_ARGUMENT from the
// rendezvous (see CreateTransport), UNAVAILABLE for NCCL init failures.
//
// Collectives run on the transport's own non-blocking CUDA stream; each call
// enqueues its NCCL operation and then polls the stream (cudaStreamQuery) and
// ncclCommGetAsyncError until it completed, an asynchronous NCCL error shows
// up, or the transfer timeout passed. On error or timeout the communicator is
// aborted (ncclCommAbort, which also unblocks the stream), the transport is
// broken (transport.h) and the call returns ABORTED naming the operation.
// Who calls what: every rank calls the same collectives in the same order
// (transport.h); Broadcast/AllReduceMin buffers are device memory of
// options.cuda_device.
//
// Thread safety: collective calls must not overlap; rank()/world_size()/
// broken() are thread-safe; Close() after the last collective returned.
#ifndef COLO_WEIGHT_SYNC_NCCL_TRANSPORT_H_
#define COLO_WEIGHT_SYNC_NCCL_TRANSPORT_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "weight_sync/rendezvous.h"
#include "weight_sync/torch_store.h"
#include "weight_sync/transport.h"

// Opaque NCCL / CUDA handles (nccl.h and cuda_runtime.h stay in the .cc).
struct ncclComm;
struct CUstream_st;

namespace colo {
namespace weight_sync {

class NcclTransport : public Transport {
 public:
  // See the file comment and CreateTransport in transport.h.
  static absl::StatusOr<std::unique_ptr<NcclTransport>> Create(
      const TransportOptions& options,
      std::unique_ptr<TcpStoreServer> server = nullptr);
  ~NcclTransport() override;
  NcclTransport(const NcclTransport&) = delete;
  NcclTransport& operator=(const NcclTransport&) = delete;

  int rank() const override { return options_.rank; }
  int world_size() const override { return options_.world_size; }
  const std::string& backend() const override { return backend_; }
  MemorySpace memory_space() const override { return MemorySpace::kDevice; }
  int master_port() const override { return master_port_; }
  int cuda_device() const { return options_.cuda_device; }
  std::string rendezvous() const override { return options_.rendezvous; }

  absl::Status Broadcast(void* data, size_t bytes, int root) override;
  absl::StatusOr<int32_t> AllReduceMin(int32_t value) override;
  absl::Status Barrier() override;
  // Runs a collective this interface does not offer (the tensor-parallel
  // all-reduce / all-gather of engine/tp): `enqueue(comm, stream)` enqueues
  // it and returns its ncclResult_t (as int); the call then waits for it
  // like the collectives above (timeout -> abort, broken, ABORTED). Buffers
  // are device memory of options.cuda_device.
  absl::Status RunCollective(const char* op,
                             const std::function<int(ncclComm*, CUstream_st*)>& enqueue);
  // Aborts the communicator (ncclCommAbort: releases it without waiting for
  // peers), frees the stream and scratch memory, closes the rendezvous.
  void Close() override;
  // Also true once the master's rendezvous connection closed.
  bool broken() const override;

 private:
  NcclTransport(const TransportOptions& options, std::unique_ptr<Rendezvous> rendezvous,
                ncclComm* comm, CUstream_st* stream, int32_t* scratch);
  // Fails fast when closed or broken; selects the device.
  absl::Status CheckUsable(const char* op);
  // Polls the stream and the communicator until the enqueued work of `op`
  // finished, failed or timed out (then aborts and marks broken).
  absl::Status WaitForCompletion(const char* op);
  // Marks broken, aborts the communicator, returns ABORTED.
  absl::Status Fail(const char* op, const std::string& why);

  // Constant after construction.
  const TransportOptions options_;
  const std::string backend_ = "nccl";
  const int master_port_;
  // Owned by the single collective caller (see class comment).
  std::unique_ptr<Rendezvous> rendezvous_;          // rendezvous "colo"
  std::unique_ptr<TorchStoreClient> torch_store_;  // rendezvous "torch"
  ncclComm* comm_;          // null once closed or aborted
  CUstream_st* stream_;     // null once closed
  int32_t* scratch_;        // one int32 of device memory (AllReduceMin)
  std::atomic<bool> broken_{false};
};

}  // namespace weight_sync
}  // namespace colo

#endif  // COLO_WEIGHT_SYNC_NCCL_TRANSPORT_H_
