#include "engine/tp/gloo_tp_comm.h"

#include <algorithm>
#include <chrono>
#include <exception>
#include <utility>

#include "absl/strings/str_cat.h"
#include "gloo/allgather.h"
#include "gloo/context.h"

namespace colo {
namespace engine {

absl::StatusOr<std::unique_ptr<GlooTpComm>> GlooTpComm::Create(
    const Options& options, std::unique_ptr<weight_sync::TcpStoreServer> server) {
  absl::StatusOr<std::unique_ptr<weight_sync::GlooTransport>> transport =
      weight_sync::GlooTransport::Create(TpTransportOptions(options, "gloo"), std::move(server));
  if (!transport.ok()) return TpFormationError(transport.status(), options);
  return std::unique_ptr<GlooTpComm>(new GlooTpComm(options, *std::move(transport)));
}

GlooTpComm::~GlooTpComm() {
  if (transport_ != nullptr) transport_->Close();
}

TpCommStats GlooTpComm::stats() const {
  TpCommStats s;
  s.calls = calls_.load();
  s.bytes = bytes_.load();
  s.micros = micros_.load();
  return s;
}

absl::Status GlooTpComm::Run(const char* op, int64_t bytes, const std::function<void()>& fn) {
  if (broken_.load()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the tensor-parallel group is broken by an earlier failed collective (rank ",
        options_.rank, "/", options_.size, "); the engine must be restarted"));
  }
  const absl::Time start = absl::Now();
  try {
    fn();
  } catch (const std::exception& e) {
    broken_.store(true);
    return absl::AbortedError(absl::StrCat("tensor-parallel ", op, " (rank ", options_.rank,
                                           "/", options_.size, ", timeout ",
                                           absl::FormatDuration(options_.timeout),
                                           ") failed: ", e.what()));
  }
  calls_.fetch_add(1);
  bytes_.fetch_add(bytes);
  micros_.fetch_add(absl::ToInt64Microseconds(absl::Now() - start));
  return absl::OkStatus();
}

absl::Status GlooTpComm::AllGather(const float* in, int64_t n, float* out) {
  if (n <= 0) return absl::OkStatus();
  if (options_.size == 1) {
    std::copy(in, in + n, out);
    return absl::OkStatus();
  }
  return Run("all-gather", n * static_cast<int64_t>(sizeof(float)), [&] {
    gloo::AllgatherOptions opts(transport_->gloo_context());
    opts.setInput(const_cast<float*>(in), static_cast<size_t>(n));
    opts.setOutput(out, static_cast<size_t>(n) * options_.size);
    opts.setTag(next_tag_++);
    opts.setTimeout(std::chrono::milliseconds(absl::ToInt64Milliseconds(options_.timeout)));
    gloo::allgather(opts);
  });
}

absl::Status GlooTpComm::AllReduceSum(float* data, int64_t n) {
  if (n <= 0 || options_.size == 1) return absl::OkStatus();
  const size_t total = static_cast<size_t>(n) * options_.size;
  if (gathered_.size() < total) gathered_.resize(total);
  absl::Status s = AllGather(data, n, gathered_.data());
  if (!s.ok()) return s;
  // Rank order, element by element: the same bits on every rank.
  std::copy(gathered_.begin(), gathered_.begin() + n, data);
  for (int r = 1; r < options_.size; ++r) {
    const float* part = gathered_.data() + static_cast<size_t>(r) * n;
    for (int64_t i = 0; i < n; ++i) data[i] += part[i];
  }
  return absl::OkStatus();
}

}  // namespace engine
}  // namespace colo
