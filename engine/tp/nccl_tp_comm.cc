#include "engine/tp/nccl_tp_comm.h"

#include <nccl.h>

#include <utility>

#include "absl/strings/str_cat.h"

namespace colo {
namespace engine {

absl::StatusOr<std::unique_ptr<NcclTpComm>> NcclTpComm::Create(
    const Options& options, std::unique_ptr<weight_sync::TcpStoreServer> server) {
  absl::StatusOr<std::unique_ptr<weight_sync::NcclTransport>> transport =
      weight_sync::NcclTransport::Create(TpTransportOptions(options, "nccl"), std::move(server));
  if (!transport.ok()) return TpFormationError(transport.status(), options);
  return std::unique_ptr<NcclTpComm>(new NcclTpComm(options, *std::move(transport)));
}

absl::Status NcclTpComm::AllReduceSum(float* data, int64_t n) {
  if (n <= 0 || options_.size == 1) return absl::OkStatus();
  return transport_->RunCollective("tensor-parallel all-reduce", [&](ncclComm* comm,
                                                                     CUstream_st* stream) {
    return static_cast<int>(ncclAllReduce(data, data, static_cast<size_t>(n), ncclFloat32, ncclSum,
                                          comm, stream));
  });
}

absl::Status NcclTpComm::AllGather(const float* in, int64_t n, float* out) {
  if (n <= 0) return absl::OkStatus();
  return transport_->RunCollective("tensor-parallel all-gather", [&](ncclComm* comm,
                                                                     CUstream_st* stream) {
    return static_cast<int>(
        ncclAllGather(in, out, static_cast<size_t>(n), ncclFloat32, comm, stream));
  });
}

}  // namespace engine
}  // namespace colo
