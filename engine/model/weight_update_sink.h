// ModelWeightUpdateSink: the UpdateSink (weight_sync/update_sink.h) over an
// engine's ModelWeights.
//
// Validation: a tensor must exist in the model (names as in the HF
// checkpoint), have the model's shape, and come as float32, float16 or
// bfloat16 (the model stores float32; f16/bf16 are converted at commit).
// Staging: each begun tensor gets a shadow buffer from the CachingAllocator
// holding its wire bytes; the live weights are not touched before Commit.
// Commit converts every shadow into the live tensor in place, then frees
// the shadows. Partial updates (a subset of the model's tensors) are
// allowed. With Options::check_finite (the default), CheckComplete also
// rejects NaN/infinite values (weight_sync/finite_check.h), so every update
// path refuses them before commit; each shadow is scanned once, when its
// last byte is staged (so receivers that stage on a pipeline thread hide the
// scan behind the next transfer).
//
// Zero-copy commit: when the allocator's backend can exchange pages
// (DeviceBackend::ExchangePages; the CPU backend can), a float32 shadow of
// at least kMinExchangeBytes is placed at the same offset within a page as
// its live tensor, and Commit exchanges the whole pages inside the tensor
// between shadow and live weights instead of copying them (the live
// addresses never change; only the partial first and last pages are
// copied). The shadow then holds the old weights and goes back to the
// allocator's cache, so the next update's shadows are resident already. An
// exchange that fails leaves both sides as they were and that tensor is
// copied instead, so Commit itself cannot fail once CheckComplete passed.
//
// The allocator must hand out host-addressable memory (the CPU backend), as
// ModelWeights itself does. Not thread-safe (see UpdateSink). The weights
// and allocator must outlive the sink.
#ifndef COLO_ENGINE_MODEL_WEIGHT_UPDATE_SINK_H_
#define COLO_ENGINE_MODEL_WEIGHT_UPDATE_SINK_H_

#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/memory/caching_allocator.h"
#include "engine/model/model_weights.h"
#include "weight_sync/update_sink.h"

namespace colo {
namespace engine {

class ModelWeightUpdateSink : public weight_sync::UpdateSink {
 public:
  struct Options {
    ModelWeights* weights = nullptr;      // required, not owned
    CachingAllocator* allocator = nullptr;  // required, not owned
    // Reject NaN / infinite values in CheckComplete.
    bool check_finite = true;
  };
  // INVALID_ARGUMENT when a pointer is missing.
  static absl::StatusOr<std::unique_ptr<ModelWeightUpdateSink>> Create(
      const Options& options);
  ~ModelWeightUpdateSink() override;

  std::vector<weight_sync::TensorSpec> ExpectedTensors() const override;
  absl::Status Validate(
      const std::vector<weight_sync::TensorSpec>& specs) const override;
  // Also INVALID_ARGUMENT for a tensor already begun; RESOURCE_EXHAUSTED from
  // the allocator (then nothing of this call stays begun).
  absl::Status Begin(const std::vector<weight_sync::TensorSpec>& specs) override;
  absl::Status Stage(const std::string& name, size_t offset, const void* data,
                     size_t bytes) override;
  // The shadow buffer itself (zero-copy receive).
  void* StagingArea(const std::string& name, size_t offset, size_t bytes) override;
  absl::Status MarkStaged(const std::string& name, size_t offset,
                          size_t bytes) override;
  absl::Status MarkStagedChecked(const std::string& name, size_t offset,
                                 size_t bytes) override;
  absl::Status CheckComplete() const override;
  absl::Status Commit() override;
  void Abort() override;

  // Tensors begun and bytes staged so far (for reports).
  size_t num_tensors() const { return shadows_.size(); }
  size_t staged_bytes() const { return staged_bytes_; }

  // How the last successful Commit moved its bytes.
  struct CommitStats {
    size_t exchanged_bytes = 0;  // whole pages exchanged (no copy)
    size_t copied_bytes = 0;     // copied or converted
    int exchange_failures = 0;   // exchanges that failed (copied instead)
  };
  const CommitStats& last_commit_stats() const { return last_commit_; }

  // Smallest float32 tensor whose pages Commit tries to exchange.
  static constexpr size_t kMinExchangeBytes = size_t{256} << 10;
  // Float32 shadows of at least kHugeAlignMinBytes sit at the live tensor's
  // offset within 2 MiB (not just within a page), so the kernel moves whole
  // page-table pages and transparent huge pages of the live weights survive
  // the exchange; costs at most 2 MiB of extra staging per such tensor.
  static constexpr size_t kHugeAlignMinBytes = size_t{32} << 20;
  static constexpr size_t kHugeAlignBytes = size_t{2} << 20;

 private:
  struct Shadow {
    weight_sync::TensorSpec spec;
    void* data = nullptr;  // spec.Bytes() bytes (or null for 0)
    void* block = nullptr;  // the allocator block holding data (freed later)
    std::map<size_t, size_t> covered;  // disjoint [begin, end) byte ranges
    size_t covered_bytes = 0;
    // The finite check of the complete shadow, run as soon as its last byte
    // is staged (on the staging thread, overlapping the next transfer) and
    // cleared when bytes are staged again.
    mutable bool checked_finite = false;
    mutable absl::Status finite;
    // Bytes staged with MarkStagedChecked since the last unchecked staging.
    size_t prechecked_bytes = 0;
  };
  explicit ModelWeightUpdateSink(const Options& options) : options_(options) {}
  static void AddRange(Shadow* shadow, size_t begin, size_t end);
  // After bytes of `shadow` were staged: scan it once complete.
  void CheckIfComplete(Shadow* shadow) const;
  // The begun shadow covering [offset, offset + bytes), or an error.
  absl::StatusOr<Shadow*> RangeOf(const std::string& name, size_t offset,
                                  size_t bytes);
  void FreeShadows();
  // Copies/converts or exchanges one complete shadow into the live tensor.
  void CommitOne(const Shadow& shadow, float* live);

  const Options options_;
  std::vector<std::string> order_;  // begun tensors in order
  absl::flat_hash_map<std::string, Shadow> shadows_;
  size_t staged_bytes_ = 0;
  CommitStats last_commit_;
};

}  // namespace engine
}  // namespace colo

#endif  // COLO_ENGINE_MODEL_WEIGHT_UPDATE_SINK_H_
