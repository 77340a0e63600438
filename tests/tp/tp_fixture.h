// Helpers of the tensor-parallel integration tests: real colo-engine
// processes with --tp_size (rank 0 launches the other ranks), their ranks'
// processes, and greedy runs to compare engines.
#ifndef COLO_TESTS_TP_TP_FIXTURE_H_
#define COLO_TESTS_TP_TP_FIXTURE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tests/engine/engine_fixture.h"

namespace colo::test_util {

// Flags of a test engine with `tp_size` ranks (1: not sharded): one compute
// thread per rank, short failure deadlines, then `more`.
std::vector<std::string> TpFlags(int tp_size, std::vector<std::string> more = {});

// Greedy outputs (with logprobs) of `prompts` submitted together, so that
// they share forward steps.
std::vector<GenerateResult> GreedyTogether(TestEngine& engine,
                                           const std::vector<std::vector<int32_t>>& prompts,
                                           int max_new_tokens);

// The pid of tensor-parallel rank `rank` (GetServerInfo).
absl::StatusOr<int64_t> RankPid(TestEngine& engine, int rank);

// Whether process `pid` is gone (or a zombie nobody reaped yet) within
// `timeout`.
bool ProcessGone(int64_t pid, absl::Duration timeout);

// Polls GetServerInfo until the state is "failed" (bounded); returns it.
absl::StatusOr<colo::v1::GetServerInfoResponse> WaitForFailed(TestEngine& engine,
                                                              absl::Duration timeout);

}  // namespace colo::test_util

#endif  // COLO_TESTS_TP_TP_FIXTURE_H_
