// RequestStream: the channel from the scheduler thread (producer) to the gRPC
// handler streaming one Generate call (consumer).
//
// The scheduler appends sampled tokens (and logprobs) and finally a finish
// record (reason, counts, weight version) or an error. The consumer calls
// Next(), which blocks until something new arrived or the deadline passed,
// and returns everything accumulated since its previous call, so a slow
// client receives several tokens per message instead of stalling the
// scheduler. Thread-safe.
#ifndef COLO_ENGINE_SCHEDULER_REQUEST_STREAM_H_
#define COLO_ENGINE_SCHEDULER_REQUEST_STREAM_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace colo::engine {

enum class FinishReason { kNone, kLength, kStop, kAbort };

// "length", "stop", "abort"; "" for kNone.
const char* FinishReasonName(FinishReason reason);

struct FinishInfo {
  FinishReason reason = FinishReason::kNone;
  int32_t prompt_tokens = 0;
  int32_t cached_tokens = 0;
  int32_t completion_tokens = 0;
  std::string weight_version;
};

// What Next() returns: new tokens since the previous call, and when the
// request is over, `finished` with `finish` filled (or a non-OK `error`).
struct StreamChunk {
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  bool finished = false;
  FinishInfo finish;
  absl::Status error;
  bool empty() const { return tokens.empty() && !finished; }
};

class RequestStream {
 public:
  explicit RequestStream(std::string rid) : rid_(std::move(rid)) {}
  RequestStream(const RequestStream&) = delete;
  RequestStream& operator=(const RequestStream&) = delete;

  const std::string& rid() const { return rid_; }

  // Producer side (scheduler thread).
  void Append(int32_t token, float logprob) ABSL_LOCKS_EXCLUDED(mu_);
  void Finish(const FinishInfo& info) ABSL_LOCKS_EXCLUDED(mu_);
  void Fail(absl::Status error) ABSL_LOCKS_EXCLUDED(mu_);

  // Consumer side. Blocks until new tokens or the end arrive, or `deadline`;
  // returns an empty chunk on timeout. Once the request is over, every call
  // returns at once with `finished` set (the tokens only the first time), so
  // a consumer loop that missed the end can never spin or block.
  StreamChunk Next(absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_);
  bool finished() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  const std::string rid_;
  mutable absl::Mutex mu_;
  std::vector<int32_t> tokens_ ABSL_GUARDED_BY(mu_);
  std::vector<float> logprobs_ ABSL_GUARDED_BY(mu_);
  size_t delivered_ ABSL_GUARDED_BY(mu_) = 0;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  FinishInfo finish_ ABSL_GUARDED_BY(mu_);
  absl::Status error_ ABSL_GUARDED_BY(mu_);
};

}  // namespace colo::engine

#endif  // COLO_ENGINE_SCHEDULER_REQUEST_STREAM_H_
