#include "weight_sync/torch_receiver.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace colo {
namespace weight_sync {
namespace {

int64_t MicrosSince(absl::Time start) {
  return absl::ToInt64Microseconds(absl::Now() - start);
}

}  // namespace

absl::StatusOr<UpdateTimings> ReceiveTorchUpdate(const TorchReceiveOptions& options,
                                                 const std::vector<TensorSpec>& specs) {
  Transport* t = options.transport;
  UpdateSink* sink = options.sink;
  if (t == nullptr || (sink == nullptr && options.rejection.ok())) {
    return absl::InvalidArgumentError("ReceiveTorchUpdate needs a transport and a sink");
  }
  if (t->broken()) {
    return absl::FailedPreconditionError(
        "the weight-update group is broken by an earlier failure; destroy and re-create it");
  }
  UpdateTimings timings;
  const absl::Time t_validate = absl::Now();
  absl::Status ready = options.rejection;
  if (ready.ok() && specs.empty()) ready = absl::InvalidArgumentError("the update names no tensor");
  if (ready.ok()) ready = sink->Begin(specs);
  timings.validate_us = MicrosSince(t_validate);

  const absl::Time t_transfer = absl::Now();
  for (const TensorSpec& spec : specs) {
    const size_t bytes = spec.Bytes();
    void* dst = ready.ok() ? sink->StagingArea(spec.name, 0, bytes) : nullptr;
    std::vector<char> bounce;  // a sink without a staging area
    if (ready.ok() && dst == nullptr && bytes > 0) {
      bounce.resize(bytes);
      dst = bounce.data();
    }
    absl::Status st = t->Broadcast(dst, bytes, 0);
    if (!st.ok()) {
      if (sink != nullptr) sink->Abort();
      return absl::Status(st.code(), absl::StrCat("receiving tensor \"", spec.name, "\" (",
                                                  WireDtypeName(spec.dtype), " ",
                                                  ShapeToString(spec.shape), "): ", st.message()));
    }
    if (!ready.ok()) continue;  // draining a rejected update
    ready = bounce.empty() ? sink->MarkStaged(spec.name, 0, bytes)
                           : sink->Stage(spec.name, 0, bounce.data(), bytes);
    timings.bytes += static_cast<int64_t>(bytes);
  }
  timings.transfer_us = MicrosSince(t_transfer);
  if (ready.ok()) ready = sink->CheckComplete();
  if (!ready.ok()) {
    if (sink != nullptr) sink->Abort();
    return ready;
  }
  const absl::Time t_commit = absl::Now();
  std::function<absl::Status()> commit = [sink] { return sink->Commit(); };
  absl::Status st = options.run_commit ? options.run_commit(commit) : commit();
  if (!st.ok()) {
    sink->Abort();
    return st;
  }
  timings.commit_us = MicrosSince(t_commit);
  timings.tensors = static_cast<int64_t>(specs.size());
  return timings;
}

}  // namespace weight_sync
}  // namespace colo
