// Where and how a tensor-parallel collectives group forms (GlooTpComm on the
// CPU, NcclTpComm on GPUs): both are a weight_sync transport named "colo-tp"
// formed through the colo rendezvous (rank 0 hosts the store).
#ifndef COLO_ENGINE_TP_TP_COMM_OPTIONS_H_
#define COLO_ENGINE_TP_TP_COMM_OPTIONS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "weight_sync/transport.h"

namespace colo {
namespace engine {

struct TpCommOptions {
  // Where rank 0's rendezvous store listens (an address every rank can
  // reach) and its port; rank 0 passes its started store to Create.
  std::string master_address = "127.0.0.1";
  int master_port = 0;
  int rank = 0;
  int size = 1;
  int cuda_device = 0;  // NCCL only: this rank's GPU
  absl::Duration init_timeout = absl::Seconds(60);
  // Bounds each collective.
  absl::Duration timeout = absl::Seconds(60);
};

inline weight_sync::TransportOptions TpTransportOptions(const TpCommOptions& o,
                                                        const std::string& backend) {
  weight_sync::TransportOptions to;
  to.backend = backend;
  to.group_name = "colo-tp";
  to.master_address = o.master_address;
  to.master_port = o.master_port;
  to.rank = o.rank;
  to.world_size = o.size;
  to.init_timeout = o.init_timeout;
  to.transfer_timeout = o.timeout;
  to.cuda_device = o.cuda_device;
  return to;
}

// `s` (a failed group formation) with the rank named.
inline absl::Status TpFormationError(const absl::Status& s, const TpCommOptions& o) {
  return absl::Status(s.code(), absl::StrCat("forming the tensor-parallel group (rank ", o.rank,
                                             "/", o.size, "): ", s.message()));
}

}  // namespace engine
}  // namespace colo

#endif  // COLO_ENGINE_TP_TP_COMM_OPTIONS_H_
