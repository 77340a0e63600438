#include "engine/model/cuda_model_runner.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/attention_plan.h"
#include "kernels/cuda/cuda_status.h"
#include "proto/logging/logging.h"
#include "proto/status/status_macros.h"

namespace colo {
namespace engine {
namespace kc = ::colo::kernels::cuda;

absl::StatusOr<std::unique_ptr<CudaModelRunner>> CudaModelRunner::Create(
    const Options& options) {
  if (options.host_weights == nullptr || options.device_pool == nullptr ||
      (!options.keep_host_weights && options.host_pool == nullptr)) {
    return absl::InvalidArgumentError(
        "CudaModelRunner needs host_weights, a device_pool and (without a host master) the "
        "host_pool");
  }
  std::unique_ptr<CudaModelRunner> runner(new CudaModelRunner(options));
  runner->device_ = options.device_pool->backend()->device();
  RETURN_IF_ERROR(kc::CudaDeviceAvailable(runner->device_));
  RETURN_IF_ERROR(runner->SetDevice());
  ASSIGN_OR_RETURN(runner->stream_, kc::CudaStream::Create());
  if (absl::Status s = kc::CudaStatus(
          cudaEventCreateWithFlags(&runner->legacy_done_, cudaEventDisableTiming),
          "CudaModelRunner: cudaEventCreateWithFlags");
      !s.ok()) {
    runner->legacy_done_ = nullptr;
    return s;
  }
  CudaTransformerModel::Options mo;
  mo.device_pool = options.device_pool;
  mo.dtype = options.dtype;
  mo.kv_dtype = options.kv_dtype;
  mo.max_tokens = options.max_tokens;
  mo.max_requests = options.max_requests;
  mo.max_context = options.max_context;
  mo.page_size = options.page_size;
  ASSIGN_OR_RETURN(runner->model_, CudaTransformerModel::Create(*options.host_weights, mo,
                                                                runner->stream_.get()));
  if (options.use_graphs) {
    runner->buckets_ = kc::DecodeGraphBuckets(static_cast<int32_t>(options.max_requests));
  }
  if (!options.keep_host_weights) RETURN_IF_ERROR(runner->ReleaseHostWeights());
  return runner;
}

CudaModelRunner::~CudaModelRunner() {
  if (SetDevice().ok() && stream_.get() != nullptr) {
    const absl::Status s = stream_.Synchronize();
    if (!s.ok()) COLO_LOG(ERROR) << "CudaModelRunner: " << s;
  }
  graphs_.clear();
  model_.reset();  // frees its pool memory before the stream goes
  if (legacy_done_ != nullptr) {
    const absl::Status s =
        kc::CudaStatus(cudaEventDestroy(legacy_done_), "CudaModelRunner: cudaEventDestroy");
    if (!s.ok()) COLO_LOG(ERROR) << s;
  }
}

absl::Status CudaModelRunner::SetDevice() const {
  int current = -1;
  if (cudaGetDevice(&current) == cudaSuccess && current == device_) return absl::OkStatus();
  return kc::CudaStatus(cudaSetDevice(device_), absl::StrCat("cudaSetDevice(", device_, ")"));
}

absl::Status CudaModelRunner::ReleaseHostWeights() {
  if (!host_resident_) return absl::OkStatus();
  RETURN_IF_ERROR(options_.host_pool->Release({MemoryTag::kWeights}).status());
  host_resident_ = false;
  return absl::OkStatus();
}

std::vector<const void*> CudaModelRunner::KvPointers(const KvCacheView& kv) {
  std::vector<const void*> p;
  for (const kvcache::LayerKv& l : kv.layers) {
    p.push_back(l.k);
    p.push_back(l.v);
  }
  p.push_back(kv.full_to_swa);
  return p;
}

int CudaModelRunner::num_graphs() const {
  int n = 0;
  for (const auto& [bucket, g] : graphs_) n += g.graph.valid() ? 1 : 0;
  return n;
}

absl::StatusOr<ForwardResult> CudaModelRunner::Forward(absl::Span<const ForwardRequest> batch,
                                                       const KvCacheView& kv,
                                                       const ForwardOptions& options) {
  RETURN_IF_ERROR(SetDevice());
  // Table writes of the KV cache went through the legacy default stream.
  RETURN_IF_ERROR(kc::CudaStatus(cudaEventRecord(legacy_done_, cudaStreamLegacy),
                                 "CudaModelRunner: cudaEventRecord(legacy stream)"));
  RETURN_IF_ERROR(kc::CudaStatus(cudaStreamWaitEvent(stream_.get(), legacy_done_, 0),
                                 "CudaModelRunner: cudaStreamWaitEvent"));
  bool all_decode = !batch.empty();
  for (const ForwardRequest& r : batch) all_decode &= r.new_tokens.size() == 1;
  const int32_t bucket =
      (all_decode && options.sample && !options.return_logits && !buckets_.empty())
          ? kc::BucketFor(static_cast<int32_t>(batch.size()), buckets_)
          : -1;
  if (bucket <= 0 || graphs_[bucket].disabled) {
    ++eager_steps_;
    return model_->Forward(batch, kv, options, stream_.get());
  }
  cudaStream_t stream = stream_.get();
  ASSIGN_OR_RETURN(StepPlan plan, model_->PrepareInputs(batch, kv, bucket, stream));
  Graph& g = graphs_[bucket];
  const std::vector<const void*> pointers = KvPointers(kv);
  if (g.graph.valid() && g.kv_pointers == pointers) {
    RETURN_IF_ERROR(g.graph.Replay(stream));
    ++graph_steps_;
  } else {
    // This step runs eagerly (it also warms up cuBLASLt's plans and the
    // kernels' attributes); the graph serves the next steps of the bucket.
    RETURN_IF_ERROR(model_->EnqueueStep(plan, kv, stream));
    ++eager_steps_;
    absl::StatusOr<kc::CudaGraph> captured = kc::CudaGraph::Capture(
        stream, [&] { return model_->EnqueueStep(plan, kv, stream); });
    if (captured.ok()) {
      g.graph = *std::move(captured);
      g.kv_pointers = pointers;
      COLO_LOG(INFO) << "captured the decode graph for batches of up to " << bucket
                     << " requests (" << plan.decode_splits << " attention splits)";
    } else {
      g.disabled = true;
      COLO_LOG(WARNING) << "capturing the decode graph for " << bucket
                        << " requests failed; that bucket runs eagerly: " << captured.status();
    }
  }
  ForwardResult result;
  ASSIGN_OR_RETURN(result.tokens, model_->ReadResults(plan, batch, stream));
  return result;
}

absl::Status CudaModelRunner::PrepareWeightsCommit() {
  if (options_.keep_host_weights || host_resident_) return absl::OkStatus();
  // Fresh (zero) host pages for the update to write into; the tensors it
  // writes are marked fresh (ModelWeights::MarkFresh), the rest stay stale.
  RETURN_IF_ERROR(options_.host_pool->Resume({MemoryTag::kWeights}).status());
  host_resident_ = true;
  options_.host_weights->MarkAllStale();
  return absl::OkStatus();
}

void CudaModelRunner::AbortWeightsCommit() {
  if (options_.keep_host_weights) return;
  options_.host_weights->MarkAllStale();
  if (absl::Status s = ReleaseHostWeights(); !s.ok()) {
    COLO_LOG(ERROR) << "CudaModelRunner: releasing the host staging of an aborted update: " << s;
  }
}

absl::Status CudaModelRunner::WeightsCommitted() {
  RETURN_IF_ERROR(SetDevice());
  if (options_.keep_host_weights) {
    RETURN_IF_ERROR(model_->UploadWeights(*options_.host_weights, stream_.get()));
    stale_.clear();
    return absl::OkStatus();
  }
  if (!host_resident_) return absl::OkStatus();  // nothing was staged
  // Upload what this update wrote: the host copy's fresh tensors (every
  // tensor was marked stale when the commit began).
  ModelWeights& host = *options_.host_weights;
  std::vector<std::string> written;
  for (const WeightInfo& w : host.List()) {
    if (!host.is_stale(w.name)) written.push_back(w.name);
  }
  absl::Status status = model_->UploadTensors(host, written, stream_.get());
  if (status.ok()) {
    for (const std::string& name : written) stale_.erase(name);
  }
  host.MarkAllStale();
  if (absl::Status s = ReleaseHostWeights(); !s.ok() && status.ok()) status = s;
  return status;
}

void CudaModelRunner::WeightsDiscarded() {
  for (const WeightInfo& w : options_.host_weights->List()) stale_.insert(w.name);
}

absl::Status CudaModelRunner::WithHostWeights(
    const std::function<absl::Status(const ModelWeights&)>& fn) {
  if (options_.keep_host_weights || host_resident_) return fn(*options_.host_weights);
  RETURN_IF_ERROR(SetDevice());
  RETURN_IF_ERROR(options_.host_pool->Resume({MemoryTag::kWeights}).status());
  host_resident_ = true;
  absl::Status status = model_->DownloadWeights(options_.host_weights, stream_.get());
  if (status.ok()) status = fn(*options_.host_weights);
  if (absl::Status s = ReleaseHostWeights(); !s.ok() && status.ok()) status = s;
  return status;
}

}  // namespace engine
}  // namespace colo
