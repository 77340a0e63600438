#include "engine/server/weight_update_service.h"

#include "absl/strings/str_cat.h"

namespace colo::engine {
namespace {

absl::Status NotBuilt(absl::string_view rpc) {
  return absl::UnimplementedError(
      absl::StrCat(rpc, ": the weight update path is not built in this colo-engine yet"));
}

}  // namespace

absl::StatusOr<colo::v1::InitWeightsUpdateGroupResponse> WeightUpdateService::InitGroup(
    const colo::v1::InitWeightsUpdateGroupRequest& request) {
  if (request.backend() != "nccl" && request.backend() != "gloo") {
    return absl::InvalidArgumentError(
        absl::StrCat("backend must be nccl or gloo, got '", request.backend(), "'"));
  }
  return NotBuilt("InitWeightsUpdateGroup");
}

absl::Status WeightUpdateService::DestroyGroup(const colo::v1::DestroyWeightsUpdateGroupRequest&) {
  return NotBuilt("DestroyWeightsUpdateGroup");
}

absl::StatusOr<colo::v1::UpdateWeightsResponse> WeightUpdateService::UpdateFromDistributed(
    const colo::v1::UpdateWeightsFromDistributedRequest&) {
  return NotBuilt("UpdateWeightsFromDistributed");
}

absl::StatusOr<colo::v1::UpdateWeightsResponse> WeightUpdateService::UpdateFromTensor(
    grpc::ServerReader<colo::v1::WeightChunk>*) {
  return NotBuilt("UpdateWeightsFromTensor");
}

absl::StatusOr<colo::v1::UpdateWeightsResponse> WeightUpdateService::UpdateFromDisk(
    const colo::v1::UpdateWeightsFromDiskRequest&) {
  return NotBuilt("UpdateWeightsFromDisk");
}

absl::StatusOr<colo::v1::GetWeightChecksumsResponse> WeightUpdateService::Checksums(
    const colo::v1::GetWeightChecksumsRequest&) {
  return NotBuilt("GetWeightChecksums");
}

}  // namespace colo::engine
