// Conversions between one rank's memory figures (engine::MemoryInfo, tag
// release/resume reports) and their control-protocol messages, so rank 0
// reports every rank with the same code (engine/server fills the public
// protos from engine::MemoryInfo).
#ifndef COLO_ENGINE_TP_TP_MEMORY_H_
#define COLO_ENGINE_TP_TP_MEMORY_H_

#include "colo/internal/tp_control.pb.h"
#include "engine/memory/memory_info.h"
#include "engine/model/rank_peers.h"

namespace colo {
namespace engine {

colo::internal::TpMemoryInfo MemoryToProto(const MemoryInfo& memory);
MemoryInfo MemoryFromProto(const colo::internal::TpMemoryInfo& proto);

colo::internal::TpTransition TransitionToProto(const RankTransition& t);
// `release`: the proto's tags are a release (else a resume).
RankTransition TransitionFromProto(int rank, const colo::internal::TpTransition& proto,
                                   bool release);

}  // namespace engine
}  // namespace colo

#endif  // COLO_ENGINE_TP_TP_MEMORY_H_
