#include "engine/server/engine_runtime.h"

#include <algorithm>
#include <random>
#include <fstream>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "engine/device/device_backend_factory.h"
#include "engine/memory/memory_tag.h"
#include "engine/model/cpu_model_runner.h"
#include "proto/logging/logging.h"
#include "proto/status/status_macros.h"

#ifdef COLO_WITH_CUDA_FORWARD
#include "engine/model/cuda_model_runner.h"
#include "kernels/cuda/cuda_status.h"
#endif

namespace colo::engine {
namespace {

constexpr int64_t kDefaultKvBytes = int64_t{256} << 20;

}  // namespace

int32_t ReadEosTokenId(const std::string& model_dir) {
  std::ifstream in(model_dir + "/config.json");
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json j = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object() || !j.contains("eos_token_id")) return -1;
  const nlohmann::json& eos = j["eos_token_id"];
  if (eos.is_number_integer()) return eos.get<int32_t>();
  if (eos.is_array() && !eos.empty() && eos[0].is_number_integer()) return eos[0].get<int32_t>();
  return -1;
}

namespace {

// 16 hex digits from the system's random source and the clock.
std::string NewInstanceId() {
  std::random_device device;
  const uint64_t id = (static_cast<uint64_t>(device()) << 32) ^ device() ^
                      static_cast<uint64_t>(absl::ToUnixNanos(absl::Now()));
  return absl::StrFormat("%016x", id);
}

}  // namespace

EngineRuntime::EngineRuntime(const EngineOptions& options)
    : options_(options), instance_id_(NewInstanceId()) {}

absl::StatusOr<std::unique_ptr<EngineRuntime>> EngineRuntime::Create(const EngineOptions& options) {
  std::unique_ptr<EngineRuntime> runtime(new EngineRuntime(options));
  RETURN_IF_ERROR(runtime->Init());
  return runtime;
}

EngineRuntime::~EngineRuntime() {
  if (scheduler_ != nullptr) scheduler_->Stop();
  // Members are destroyed in reverse order: scheduler, KV, runner (device
  // weights and buffers), model (host weights), host memory, device
  // allocator, pool, backend.
}

absl::Status EngineRuntime::InitBackend() {
  if (options_.device == "cpu") {
    ASSIGN_OR_RETURN(backend_, CreateDeviceBackend("cpu"));
    return absl::OkStatus();
  }
  absl::StatusOr<std::unique_ptr<DeviceBackend>> cuda = CreateDeviceBackend("cuda");
#ifdef COLO_WITH_CUDA_FORWARD
  if (cuda.ok()) {
    if (absl::Status usable = kernels::cuda::CudaDeviceAvailable((*cuda)->device());
        !usable.ok()) {
      cuda = usable;
    }
  }
  if (options_.device == "cuda") {
    if (!cuda.ok()) {
      return absl::UnavailableError(
          absl::StrCat("--device=cuda: no usable GPU: ", cuda.status().message(),
                       " (use --device=cpu or --device=auto to run on the CPU)"));
    }
    backend_ = *std::move(cuda);
    return absl::OkStatus();
  }
  if (cuda.ok()) {
    backend_ = *std::move(cuda);
    COLO_LOG(INFO) << "--device=auto: a GPU is usable; the forward pass runs on CUDA device "
                   << backend_->device();
    return absl::OkStatus();
  }
  COLO_LOG(INFO) << "--device=auto: no usable GPU (" << cuda.status().message()
                 << "); using the CPU";
#else
  if (options_.device == "cuda") {
    return absl::FailedPreconditionError(
        "--device=cuda: this colo-engine was built without CUDA; rebuild with --config=cuda "
        "(or use --device=cpu)");
  }
  if (cuda.ok()) {
    COLO_LOG(INFO) << "--device=auto: a GPU is present, but this colo-engine was built without "
                      "CUDA (rebuild with --config=cuda to use it); using the CPU";
  }
#endif
  ASSIGN_OR_RETURN(backend_, CreateDeviceBackend("cpu"));
  return absl::OkStatus();
}

absl::Status EngineRuntime::InitModel(uint64_t* device_free) {
  const bool on_cuda = backend_->kind() == "cuda";
  const int threads = on_cuda ? 1
                      : options_.cpu_threads > 0
                          ? options_.cpu_threads
                          : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  threads_ = std::make_unique<kernels::ThreadPool>(threads);
  TransformerModel::Options mo;
  mo.model_dir = options_.model_dir;
  mo.threads = threads_.get();
  if (on_cuda) {
    // The master weights in host memory that is never released.
    ASSIGN_OR_RETURN(host_backend_, CreateDeviceBackend("cpu"));
    TaggedPool::Options hpo;
    hpo.backend = host_backend_.get();
    ASSIGN_OR_RETURN(host_pool_, TaggedPool::Create(hpo));
    CachingAllocator::Options hao;
    hao.backend = host_backend_.get();
    ASSIGN_OR_RETURN(host_allocator_, CachingAllocator::Create(hao));
    mo.weights_pool = host_pool_.get();
    mo.allocator = host_allocator_.get();
  } else {
    mo.weights_pool = pool_.get();
    mo.allocator = allocator_.get();
  }
  absl::StatusOr<std::unique_ptr<TransformerModel>> model = TransformerModel::Load(mo);
  if (!model.ok()) {
    return absl::Status(model.status().code(),
                        absl::StrCat("--model=", options_.model_dir, ": ", model.status().message()));
  }
  model_ = *std::move(model);
  model_->set_batch_invariant(options_.batch_invariant);
  if (!on_cuda) {
    runner_ = std::make_unique<CpuModelRunner>(model_.get());
    if (options_.mem_fraction > 0) {
      ASSIGN_OR_RETURN(DeviceMemoryInfo mem, backend_->MemoryInfo());
      *device_free = mem.free_bytes;
    }
    return absl::OkStatus();
  }
#ifdef COLO_WITH_CUDA_FORWARD
  ASSIGN_OR_RETURN(DeviceMemoryInfo mem, backend_->MemoryInfo());
  *device_free = mem.free_bytes;
  const ModelConfig& c = model_->config();
  const int64_t context =
      options_.context_length > 0 ? options_.context_length : c.max_position_embeddings;
  CudaModelRunner::Options ro;
  ro.host_weights = &model_->weights();
  ro.device_pool = pool_.get();
  // A step holds at most max_running_requests requests; prefill chunks stay
  // within max_batch_tokens but decode tokens (one per request) always run.
  ro.max_requests = options_.max_running_requests;
  ro.max_tokens = std::max<int64_t>(options_.max_batch_tokens, options_.max_running_requests);
  // The KV row length is at most the context rounded up to a page.
  ro.max_context = (context + options_.page_size - 1) / options_.page_size * options_.page_size;
  absl::StatusOr<std::unique_ptr<CudaModelRunner>> runner = CudaModelRunner::Create(ro);
  if (!runner.ok()) {
    return absl::Status(
        runner.status().code(),
        absl::StrCat("--device=", options_.device, " (the GPU): ", runner.status().message(),
                     options_.device == "auto" ? "; use --device=cpu to run on the CPU" : ""));
  }
  runner_ = *std::move(runner);
  return absl::OkStatus();
#else
  return absl::InternalError("a CUDA backend in a build without CUDA");
#endif
}

absl::Status EngineRuntime::Init() {
  RETURN_IF_ERROR(InitBackend());
  TaggedPool::Options po;
  po.backend = backend_.get();
  if (options_.weights_host_backup) {
    po.backup[static_cast<int>(MemoryTag::kWeights)] = BackupPolicy::kHostCopy;
  }
  if (!options_.debug_skip_release_tag.empty()) {
    ASSIGN_OR_RETURN(MemoryTag tag, ParseMemoryTag(options_.debug_skip_release_tag));
    po.debug_skip_release_tag = tag;
    COLO_LOG(WARNING) << "TEST ONLY --debug_skip_release_tag=" << options_.debug_skip_release_tag
                      << ": releases of that tag will keep its memory";
  }
  ASSIGN_OR_RETURN(pool_, TaggedPool::Create(po));
  CachingAllocator::Options ao;
  ao.backend = backend_.get();
  ASSIGN_OR_RETURN(allocator_, CachingAllocator::Create(ao));

  uint64_t device_free = 0;
  RETURN_IF_ERROR(InitModel(&device_free));
  const ModelConfig& c = model_->config();
  eos_token_id_ = ReadEosTokenId(options_.model_dir);

  // KV sizing.
  int64_t kv_bytes = options_.kv_cache_bytes;
  if (kv_bytes == 0 && options_.mem_fraction > 0) {
    kv_bytes = static_cast<int64_t>(options_.mem_fraction * static_cast<double>(device_free)) -
               static_cast<int64_t>(model_->weights().allocated_bytes());
    if (kv_bytes <= 0) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "--mem_fraction=", options_.mem_fraction, " of ", device_free,
          " free bytes leaves nothing for the KV cache after ",
          model_->weights().allocated_bytes(), " bytes of weights"));
    }
  }
  if (kv_bytes == 0) kv_bytes = kDefaultKvBytes;
  int full_layers = 0, sliding_layers = 0;
  std::vector<bool> sliding;
  for (LayerType t : c.layer_types) {
    sliding.push_back(t == LayerType::kSlidingAttention);
    (t == LayerType::kSlidingAttention ? sliding_layers : full_layers)++;
  }
  const int64_t per_token_layer = int64_t{2} * c.num_kv_heads * c.head_dim * 4;
  const double ratio = sliding_layers > 0 ? options_.swa_full_tokens_ratio : 0.0;
  const double denominator = per_token_layer * (full_layers + ratio * sliding_layers);
  int64_t full_tokens = static_cast<int64_t>(static_cast<double>(kv_bytes) / denominator);
  full_tokens = full_tokens / options_.page_size * options_.page_size;
  if (full_tokens < options_.page_size * 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "KV cache of ", kv_bytes, " bytes holds only ", full_tokens, " tokens of this model (",
        denominator, " bytes per token); raise --kv_cache_bytes"));
  }
  const int64_t context = options_.context_length > 0 ? options_.context_length
                                                      : c.max_position_embeddings;
  max_context_tokens_ = static_cast<int32_t>(std::min<int64_t>(context, full_tokens));

  kvcache::KvCacheManager::Options ko;
  ko.page_size = options_.page_size;
  ko.num_layers = c.num_layers;
  ko.layer_is_sliding = sliding;
  ko.sliding_window = static_cast<int32_t>(c.sliding_window);
  ko.kv_heads = c.num_kv_heads;
  ko.head_dim = c.head_dim;
  ko.full_capacity_tokens = full_tokens;
  ko.swa_capacity_tokens =
      sliding_layers > 0 ? std::max<int64_t>(static_cast<int64_t>(ratio * full_tokens),
                                             c.sliding_window + 4 * options_.page_size)
                         : 0;
  ko.max_requests = options_.max_kv_rows;
  ko.max_context_tokens =
      (max_context_tokens_ + options_.page_size - 1) / options_.page_size * options_.page_size;
  ASSIGN_OR_RETURN(kv_, kvcache::KvCacheManager::Create(ko, pool_.get()));

  SchedulerOptions so;
  so.max_running_requests = options_.max_running_requests;
  so.chunked_prefill_tokens = options_.chunked_prefill_size;
  so.max_batch_tokens = options_.max_batch_tokens;
  so.session_idle_timeout = absl::Seconds(options_.session_idle_timeout_s);
  so.initial_weight_version = options_.weight_version;
  so.eos_token_id = eos_token_id_;
  so.max_context_tokens = max_context_tokens_;
  scheduler_ = std::make_unique<Scheduler>(so, runner_.get(), kv_.get(), pool_.get(),
                                           allocator_.get());
  scheduler_->Start();
  COLO_LOG(INFO) << "engine ready: " << c.model_type << ", " << c.num_layers << " layers ("
                 << sliding_layers << " sliding, window " << c.sliding_window << "), "
                 << model_->weights().allocated_bytes() << " weight bytes; KV "
                 << kv_->DeviceBytes() << " bytes, " << full_tokens << " tokens (page "
                 << options_.page_size << "), context " << max_context_tokens_ << ", forward on "
                 << runner_->device_kind() << " (" << threads_->num_threads() << " CPU threads)";
  return absl::OkStatus();
}

absl::StatusOr<MemoryInfo> EngineRuntime::CollectMemory() const {
  return CollectMemoryInfo(*pool_, allocator_.get());
}

}  // namespace colo::engine
