// Comparing the greedy outputs of two engines that compute in a different
// order (CPU vs GPU: cuBLAS sums differently), where bit-equality cannot
// hold: tokens must agree with close logprobs up to the first difference,
// which must be a near-tie (both chosen tokens nearly as likely); later
// tokens continue from different contexts and are not compared.
#ifndef COLO_TESTS_UTIL_GREEDY_AGREEMENT_H_
#define COLO_TESTS_UTIL_GREEDY_AGREEMENT_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace colo::test_util {

// Relative logprob tolerance for positions with equal tokens (fp32, a
// different summation order), and the largest logprob gap of a near-tie.
inline constexpr float kAgreementLogprobTolerance = 2e-3f;
inline constexpr float kNearTieTolerance = 1e-2f;

// The tolerances of a comparison: equal tokens' logprobs within
// logprob * (1 + |logprob|), and a first difference whose logprobs are
// within near_tie. The defaults are for two float32 engines; a bf16/fp16
// engine against a float32 one needs wider ones (its activations round at
// every layer).
struct AgreementTolerance {
  float logprob = kAgreementLogprobTolerance;
  float near_tie = kNearTieTolerance;
};

// Expects one request's outputs to agree as described above; returns the
// number of positions that matched. `what` names the request in failures.
inline int ExpectAgreeUpToNearTie(const std::vector<int32_t>& want_tokens,
                                  const std::vector<float>& want_logprobs,
                                  const std::vector<int32_t>& got_tokens,
                                  const std::vector<float>& got_logprobs,
                                  const std::string& what,
                                  const AgreementTolerance& tol = AgreementTolerance()) {
  EXPECT_EQ(want_tokens.size(), got_tokens.size()) << what;
  const size_t n = std::min({want_tokens.size(), got_tokens.size(), want_logprobs.size(),
                             got_logprobs.size()});
  int matched = 0;
  for (size_t i = 0; i < n; ++i) {
    if (want_tokens[i] != got_tokens[i]) {
      EXPECT_NEAR(want_logprobs[i], got_logprobs[i], tol.near_tie)
          << what << " position " << i << ": tokens " << want_tokens[i] << " vs "
          << got_tokens[i] << " are not a near-tie";
      break;
    }
    EXPECT_NEAR(want_logprobs[i], got_logprobs[i],
                tol.logprob * (1 + std::fabs(want_logprobs[i])))
        << what << " position " << i;
    ++matched;
  }
  return matched;
}

}  // namespace colo::test_util

#endif  // COLO_TESTS_UTIL_GREEDY_AGREEMENT_H_
