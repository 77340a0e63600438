// The one mapping between absl::Status and grpc::Status used by every colo
// server and client. Codes map one to one (they share numeric values).
#ifndef COLO_PROTO_STATUS_GRPC_STATUS_H_
#define COLO_PROTO_STATUS_GRPC_STATUS_H_

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace colo {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace colo

#endif  // COLO_PROTO_STATUS_GRPC_STATUS_H_
