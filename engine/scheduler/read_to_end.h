// Test helper: everything a RequestStream delivers, read until the request
// is over or a deadline passes.
#ifndef COLO_ENGINE_SCHEDULER_READ_TO_END_H_
#define COLO_ENGINE_SCHEDULER_READ_TO_END_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "engine/scheduler/request_stream.h"

namespace colo::engine {

struct StreamOutput {
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  FinishInfo finish;
  // The request's error, or DEADLINE_EXCEEDED when it did not finish in time.
  absl::Status error;
};

inline StreamOutput ReadToEnd(RequestStream& stream, absl::Time deadline) {
  StreamOutput out;
  while (true) {
    StreamChunk c = stream.Next(deadline);
    out.tokens.insert(out.tokens.end(), c.tokens.begin(), c.tokens.end());
    out.logprobs.insert(out.logprobs.end(), c.logprobs.begin(), c.logprobs.end());
    if (c.finished) {
      out.finish = c.finish;
      out.error = c.error;
      return out;
    }
    if (absl::Now() >= deadline) {
      out.error = absl::DeadlineExceededError(
          absl::StrCat("request ", stream.rid(), " did not finish by the deadline"));
      return out;
    }
  }
}

}  // namespace colo::engine

#endif  // COLO_ENGINE_SCHEDULER_READ_TO_END_H_
