#include "engine/scheduler/request_stream.h"

namespace colo::engine {

const char* FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kLength:
      return "length";
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kAbort:
      return "abort";
    case FinishReason::kNone:
      break;
  }
  return "";
}

void RequestStream::Append(int32_t token, float logprob) {
  absl::MutexLock lock(&mu_);
  if (finished_) return;
  tokens_.push_back(token);
  logprobs_.push_back(logprob);
}

void RequestStream::Finish(const FinishInfo& info) {
  absl::MutexLock lock(&mu_);
  if (finished_) return;
  finished_ = true;
  finish_ = info;
}

void RequestStream::Fail(absl::Status error) {
  absl::MutexLock lock(&mu_);
  if (finished_) return;
  finished_ = true;
  error_ = std::move(error);
}

bool RequestStream::finished() const {
  absl::MutexLock lock(&mu_);
  return finished_;
}

StreamChunk RequestStream::Next(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return delivered_ < tokens_.size() || finished_;
  };
  mu_.AwaitWithDeadline(absl::Condition(&ready), deadline);
  StreamChunk chunk;
  chunk.tokens.assign(tokens_.begin() + delivered_, tokens_.end());
  chunk.logprobs.assign(logprobs_.begin() + delivered_, logprobs_.end());
  delivered_ = tokens_.size();
  if (finished_) {
    chunk.finished = true;
    chunk.finish = finish_;
    chunk.error = error_;
  }
  return chunk;
}

}  // namespace colo::engine
