#include "engine/model/cuda_model_runner.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/cuda_status.h"
#include "proto/logging/logging.h"

namespace colo {
namespace engine {
namespace kc = ::colo::kernels::cuda;

absl::StatusOr<std::unique_ptr<CudaModelRunner>> CudaModelRunner::Create(
    const Options& options) {
  if (options.host_weights == nullptr || options.device_pool == nullptr) {
    return absl::InvalidArgumentError("CudaModelRunner needs host_weights and a device_pool");
  }
  std::unique_ptr<CudaModelRunner> runner(new CudaModelRunner(options));
  absl::StatusOr<kc::CudaStream> stream = kc::CudaStream::Create();
  if (!stream.ok()) return stream.status();
  runner->stream_ = std::move(*stream);
  if (absl::Status s = kc::CudaStatus(
          cudaEventCreateWithFlags(&runner->legacy_done_, cudaEventDisableTiming),
          "CudaModelRunner: cudaEventCreateWithFlags");
      !s.ok()) {
    runner->legacy_done_ = nullptr;
    return s;
  }
  CudaTransformerModel::Options mo;
  mo.device_pool = options.device_pool;
  mo.max_tokens = options.max_tokens;
  mo.max_requests = options.max_requests;
  mo.max_context = options.max_context;
  absl::StatusOr<std::unique_ptr<CudaTransformerModel>> model =
      CudaTransformerModel::Create(*options.host_weights, mo);
  if (!model.ok()) return model.status();
  runner->model_ = *std::move(model);
  return runner;
}

CudaModelRunner::~CudaModelRunner() {
  model_.reset();  // frees its pool memory before the stream goes
  if (legacy_done_ != nullptr) {
    const absl::Status s =
        kc::CudaStatus(cudaEventDestroy(legacy_done_), "CudaModelRunner: cudaEventDestroy");
    if (!s.ok()) COLO_LOG(ERROR) << s;
  }
}

absl::StatusOr<ForwardResult> CudaModelRunner::Forward(absl::Span<const ForwardRequest> batch,
                                                       const KvCacheView& kv,
                                                       const ForwardOptions& options) {
  // Table writes of the KV cache went through the legacy default stream.
  if (absl::Status s = kc::CudaStatus(cudaEventRecord(legacy_done_, cudaStreamLegacy),
                                      "CudaModelRunner: cudaEventRecord(legacy stream)");
      !s.ok()) {
    return s;
  }
  if (absl::Status s = kc::CudaStatus(cudaStreamWaitEvent(stream_.get(), legacy_done_, 0),
                                      "CudaModelRunner: cudaStreamWaitEvent");
      !s.ok()) {
    return s;
  }
  return model_->Forward(batch, kv, options, stream_.get());
}

absl::Status CudaModelRunner::WeightsCommitted() {
  return model_->UploadWeights(*options_.host_weights, stream_.get());
}

}  // namespace engine
}  // namespace colo
