// The dtype a checkpoint stores its weights in (what --dtype=auto means):
// the dtype of its floating-point tensors (the most common one; quantized
// blocks and integer tensors are not counted), or, when it has none,
// config.json's "torch_dtype" (or "dtype", transformers 5). The tensors come
// first because they are what is actually stored (colo-tiny-model, for one,
// writes torch_dtype float32 whatever it stores). INVALID_ARGUMENT when
// neither says; the reader's errors for a missing or unreadable checkpoint.
#ifndef COLO_ENGINE_MODEL_CHECKPOINT_DTYPE_H_
#define COLO_ENGINE_MODEL_CHECKPOINT_DTYPE_H_

#include <string>

#include "absl/status/statusor.h"
#include "kernels/cuda/dtype.h"

namespace colo::engine {

absl::StatusOr<kernels::cuda::DType> CheckpointDType(const std::string& model_dir);

}  // namespace colo::engine

#endif  // COLO_ENGINE_MODEL_CHECKPOINT_DTYPE_H_
