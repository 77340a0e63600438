#include "engine/server/engine_options.h"

#include <cerrno>
#include <cstring>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "engine/server/dtype_options.h"

namespace colo::engine {

absl::Status ValidateEngineOptions(const EngineOptions& options) {
  if (options.port < 0 || options.port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("--port must be in [0, 65535], got ", options.port));
  }
  if (options.device != "cpu" && options.device != "cuda" && options.device != "auto") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--device must be cpu, cuda or auto, got '", options.device, "'"));
  }
  if (options.device_ordinal < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--device_ordinal must be >= 0, got ", options.device_ordinal));
  }
  if (absl::Status s = ValidateDTypeFlags(options.dtype, options.kv_cache_dtype); !s.ok()) {
    return s;
  }
  if (options.page_size < 1 || options.page_size > 4096) {
    return absl::InvalidArgumentError(
        absl::StrCat("--page_size must be in [1, 4096], got ", options.page_size));
  }
  if (options.kv_cache_bytes < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--kv_cache_bytes must be >= 0, got ", options.kv_cache_bytes));
  }
  if (options.mem_fraction < 0.0 || options.mem_fraction > 0.98) {
    return absl::InvalidArgumentError(
        absl::StrCat("--mem_fraction must be in [0, 0.98], got ", options.mem_fraction));
  }
  if (options.metrics_port < 0 || options.metrics_port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("--metrics_port must be in [0, 65535], got ", options.metrics_port));
  }
  if (options.max_running_requests < 1 || options.max_running_requests > 4096) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--max_running_requests must be in [1, 4096], got ", options.max_running_requests));
  }
  if (options.chunked_prefill_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--chunked_prefill_size must be >= 1, got ", options.chunked_prefill_size));
  }
  if (options.max_batch_tokens < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max_batch_tokens must be >= 1, got ", options.max_batch_tokens));
  }
  if (options.max_kv_rows < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max_kv_rows must be >= 1, got ", options.max_kv_rows));
  }
  if (options.context_length < 0 || options.session_idle_timeout_s < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--context_length must be >= 0 and --session_idle_timeout_s >= 1, got ",
        options.context_length, " and ", options.session_idle_timeout_s));
  }
  if (options.swa_full_tokens_ratio <= 0.0 || options.swa_full_tokens_ratio > 1.0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--swa_full_tokens_ratio must be in (0, 1], got ", options.swa_full_tokens_ratio));
  }
  if (options.tls_cert.empty() != options.tls_key.empty()) {
    return absl::InvalidArgumentError("--tls_cert and --tls_key must be given together");
  }
  if (!options.debug_skip_release_tag.empty() && options.debug_skip_release_tag != "weights" &&
      options.debug_skip_release_tag != "kv_cache" &&
      options.debug_skip_release_tag != "cuda_graph") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--debug_skip_release_tag must be weights, kv_cache or cuda_graph, got '",
        options.debug_skip_release_tag, "'"));
  }
  if (options.max_receive_message_bytes < (1 << 20) ||
      options.max_receive_message_bytes > (int64_t{1} << 31) - 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--max_receive_message_bytes must be in [1 MiB, 2 GiB), got ",
        options.max_receive_message_bytes));
  }
  if (options.tp_size < 1 || options.tp_size > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("--tp_size must be in [1, 64], got ", options.tp_size));
  }
  if (options.tp_rank < 0 || options.tp_rank >= options.tp_size) {
    return absl::InvalidArgumentError(absl::StrCat("--tp_rank must be in [0, --tp_size=",
                                                   options.tp_size, "), got ", options.tp_rank));
  }
  if (options.tp_rank > 0 && options.tp_master.empty()) {
    return absl::InvalidArgumentError(
        "--tp_rank >= 1 needs --tp_master=HOST:PORT (where rank 0 listens)");
  }
  if (options.tp_size > 1 && options.device == "cuda") {
    return absl::InvalidArgumentError(
        "--tp_size > 1 runs on the CPU in this build (the CUDA forward is not sharded yet); "
        "use --device=cpu");
  }
  if (options.tp_timeout_ms < 1 || options.tp_init_timeout_ms < 1 ||
      options.tp_heartbeat_timeout_ms < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--tp_timeout_ms, --tp_init_timeout_ms and --tp_heartbeat_timeout_ms must be >= 1, got ",
        options.tp_timeout_ms, ", ", options.tp_init_timeout_ms, ", ",
        options.tp_heartbeat_timeout_ms));
  }
  // A follower rank gets the model path from rank 0 (or its own --model).
  if (options.tp_rank > 0) return absl::OkStatus();
  if (options.model_dir.empty()) {
    return absl::InvalidArgumentError(
        "--model is required: a directory with config.json and *.safetensors "
        "(make one with colo-tiny-model --out=DIR)");
  }
  const std::string config = absl::StrCat(options.model_dir, "/config.json");
  std::ifstream in(config);
  if (!in) {
    const int err = errno;
    const std::string why = absl::StrCat("--model=", options.model_dir, ": cannot read ",
                                         config, ": ", std::strerror(err));
    if (err == EACCES) return absl::PermissionDeniedError(why);
    return absl::NotFoundError(why);
  }
  return absl::OkStatus();
}

}  // namespace colo::engine
