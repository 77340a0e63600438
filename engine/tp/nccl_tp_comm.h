// NcclTpComm: the collectives of a tensor-parallel engine on GPUs, over
// NCCL (--config=cuda only). The group forms like weight_sync's
// NcclTransport (the colo rendezvous, rank 0's unique id through the store,
// a non-blocking communicator bounded by init_timeout), named "colo-tp", one
// GPU per rank (cuda_device); the collectives run on its stream and are
// bounded by `timeout` (a dead or stalled peer: the communicator is aborted,
// ABORTED, then FAILED_PRECONDITION for every later call).
//
// AllReduceSum is ncclAllReduce(sum): NCCL picks the summation order, so
// unlike GlooTpComm the result may depend on the buffer size (results are
// equal across ranks but not batch invariant bit for bit). AllGather is
// ncclAllGather. Buffers are device memory of the rank's GPU.
//
// Status: compiled and linked in --config=cuda; the CUDA forward is not
// sharded yet (a --device=cuda engine refuses --tp_size > 1), so this is
// exercised by its GPU test (2+ GPUs) only. Thread safety: as GlooTpComm.
#ifndef COLO_ENGINE_TP_NCCL_TP_COMM_H_
#define COLO_ENGINE_TP_NCCL_TP_COMM_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/model/tp_collectives.h"
#include "engine/tp/tp_comm_options.h"
#include "weight_sync/nccl_transport.h"
#include "weight_sync/tcp_store.h"

namespace colo {
namespace engine {

class NcclTpComm : public TpCollectives {
 public:
  using Options = TpCommOptions;
  // FAILED_PRECONDITION without a usable GPU; else as GlooTpComm::Create.
  static absl::StatusOr<std::unique_ptr<NcclTpComm>> Create(
      const Options& options, std::unique_ptr<weight_sync::TcpStoreServer> server = nullptr);

  int rank() const override { return options_.rank; }
  int size() const override { return options_.size; }
  absl::Status AllReduceSum(float* data, int64_t n) override;
  absl::Status AllGather(const float* in, int64_t n, float* out) override;
  bool broken() const { return transport_->broken(); }

 private:
  NcclTpComm(const Options& options, std::unique_ptr<weight_sync::NcclTransport> transport)
      : options_(options), transport_(std::move(transport)) {}

  const Options options_;
  std::unique_ptr<weight_sync::NcclTransport> transport_;
};

}  // namespace engine
}  // namespace colo

#endif  // COLO_ENGINE_TP_NCCL_TP_COMM_H_
