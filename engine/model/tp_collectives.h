// TpCollectives: the collectives a tensor-parallel forward pass needs
// (engine/tp implements them over Gloo on the CPU and NCCL on GPUs).
//
// Who calls: every rank of the group calls the same sequence of collectives
// with the same sizes (one forward step at a time); calls on one object must
// not overlap. Each call is bounded by the implementation's timeout: when a
// peer dies or stalls it fails with ABORTED (naming the operation) and every
// later call fails FAILED_PRECONDITION (the group is broken; the engine must
// be restarted). Buffers are in the memory the implementation documents
// (host memory for the CPU forward).
#ifndef COLO_ENGINE_MODEL_TP_COLLECTIVES_H_
#define COLO_ENGINE_MODEL_TP_COLLECTIVES_H_

#include <cstdint>

#include "absl/status/status.h"

namespace colo {
namespace engine {

class TpCollectives {
 public:
  virtual ~TpCollectives() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;

  // Sums `n` floats over the ranks, in place. Implementations for the CPU
  // add element by element in rank order ((rank 0 + rank 1) + rank 2 ...),
  // so every rank gets bit-identical sums that do not depend on `n` (a
  // request's result does not depend on its batch).
  virtual absl::Status AllReduceSum(float* data, int64_t n) = 0;
  // out[r * n + i] = rank r's in[i]; `out` holds size() * n floats.
  virtual absl::Status AllGather(const float* in, int64_t n, float* out) = 0;
};

}  // namespace engine
}  // namespace colo

#endif  // COLO_ENGINE_MODEL_TP_COLLECTIVES_H_
