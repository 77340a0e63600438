#include "engine/server/engine_runtime.h"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "engine/device/device_backend_factory.h"
#include "engine/memory/memory_tag.h"
#include "proto/base/logging.h"
#include "proto/base/status_macros.h"

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

absl::StatusOr<std::unique_ptr<EngineRuntime>> EngineRuntime::Create(const EngineOptions& options) {
  std::unique_ptr<EngineRuntime> runtime(new EngineRuntime(options));
  RETURN_IF_ERROR(runtime->Init());
  return runtime;
}

EngineRuntime::~EngineRuntime() {
  if (scheduler_ != nullptr) scheduler_->Stop();
  // Members are destroyed in reverse order: scheduler, KV, model, allocator,
  // pool, backend.
}

absl::Status EngineRuntime::Init() {
  if (options_.device == "cuda") {
    return absl::FailedPreconditionError(
        "--device=cuda: the CUDA forward pass is not built in this colo-engine yet (the CUDA "
        "memory backend and kernels exist, the model runs on the CPU); use --device=cpu");
  }
  if (options_.device == "auto") {
    absl::StatusOr<std::unique_ptr<DeviceBackend>> cuda = CreateDeviceBackend("cuda");
    if (cuda.ok()) {
      COLO_LOG(INFO) << "a GPU is present, but the forward pass runs on the CPU in this build; "
                        "using --device=cpu";
    }
  }
  ASSIGN_OR_RETURN(backend_, CreateDeviceBackend("cpu"));

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

  const int threads = options_.cpu_threads > 0
                          ? options_.cpu_threads
                          : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  threads_ = std::make_unique<kernels::ThreadPool>(threads);
  TransformerModel::Options mo;
  mo.model_dir = options_.model_dir;
  mo.weights_pool = pool_.get();
  mo.allocator = allocator_.get();
  mo.threads = threads_.get();
  absl::StatusOr<std::unique_ptr<TransformerModel>> model = TransformerModel::Load(mo);
  if (!model.ok()) {
    return absl::Status(model.status().code(),
                        absl::StrCat("--model=", options_.model_dir, ": ", model.status().message()));
  }
  model_ = *std::move(model);
  model_->set_batch_invariant(options_.batch_invariant);
  const ModelConfig& c = model_->config();
  eos_token_id_ = ReadEosTokenId(options_.model_dir);

  // KV sizing.
  int64_t kv_bytes = options_.kv_cache_bytes;
  if (kv_bytes == 0 && options_.mem_fraction > 0) {
    ASSIGN_OR_RETURN(DeviceMemoryInfo mem, backend_->MemoryInfo());
    kv_bytes = static_cast<int64_t>(options_.mem_fraction * static_cast<double>(mem.free_bytes)) -
               static_cast<int64_t>(model_->weights().allocated_bytes());
    if (kv_bytes <= 0) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "--mem_fraction=", options_.mem_fraction, " of ", mem.free_bytes,
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
  scheduler_ = std::make_unique<Scheduler>(so, model_.get(), kv_.get(), pool_.get(),
                                           allocator_.get());
  scheduler_->Start();
  COLO_LOG(INFO) << "engine ready: " << c.model_type << ", " << c.num_layers << " layers ("
                 << sliding_layers << " sliding, window " << c.sliding_window << "), "
                 << model_->weights().allocated_bytes() << " weight bytes; KV "
                 << kv_->DeviceBytes() << " bytes, " << full_tokens << " tokens (page "
                 << options_.page_size << "), context " << max_context_tokens_ << ", "
                 << threads << " threads";
  return absl::OkStatus();
}

absl::StatusOr<MemoryInfo> EngineRuntime::CollectMemory() const {
  return CollectMemoryInfo(*pool_, allocator_.get());
}

}  // namespace colo::engine
