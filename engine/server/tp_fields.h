// The tensor-parallel parts of colo-engine's gRPC replies: per-rank entries
// (the `ranks` fields) and totals over the ranks, added to what the
// single-rank code filled from rank 0. No-ops for an engine with one rank.
#ifndef COLO_ENGINE_SERVER_TP_FIELDS_H_
#define COLO_ENGINE_SERVER_TP_FIELDS_H_

#include "absl/status/status.h"
#include "colo/v1/engine.pb.h"
#include "engine/scheduler/scheduler.h"
#include "engine/server/engine_runtime.h"

namespace colo::engine {

// ReleaseTags / ResumeTags: `response` holds rank 0's figures; adds every
// rank (rank 0 first) and makes tags / process RSS the sums over ranks.
void AddRankTransitions(const TagTransition& t, colo::v1::ReleaseTagsResponse* response);
void AddRankTransitions(const TagTransition& t, colo::v1::ResumeTagsResponse* response);

// ContinueGeneration: sums the reserved bytes and lists every rank.
void AddRankCaches(EngineRuntime& runtime, const ContinueResult& result,
                   colo::v1::ContinueGenerationResponse* response);
// PauseGeneration: lists every rank's allocator and RSS.
void AddRankCaches(EngineRuntime& runtime, const PauseResult& result,
                   colo::v1::PauseGenerationResponse* response);

// GetMemoryInfo: `memory` holds rank 0's picture; adds every rank's (the
// other ranks answer over the control channel) and makes the tags,
// allocator and RSS the totals. Errors name the rank.
absl::Status AddRankMemory(EngineRuntime& runtime, colo::v1::MemoryInfo* memory);

// GetServerInfo: tp_size, ranks, step statistics, and state "failed" with
// the reason once a rank died or hung.
void FillTpServerInfo(EngineRuntime& runtime, colo::v1::GetServerInfoResponse* response);

}  // namespace colo::engine

#endif  // COLO_ENGINE_SERVER_TP_FIELDS_H_
