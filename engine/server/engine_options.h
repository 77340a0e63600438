// Start-up configuration of colo-engine (filled from flags in main.cc).
#ifndef COLO_ENGINE_SERVER_ENGINE_OPTIONS_H_
#define COLO_ENGINE_SERVER_ENGINE_OPTIONS_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace colo::engine {

struct EngineOptions {
  std::string host = "127.0.0.1";
  // 0 picks a free port.
  int port = 0;
  std::string port_file;
  // Hugging Face layout directory: config.json + *.safetensors.
  std::string model_dir;
  // "cpu", "cuda" or "auto" (cuda if a GPU is usable, else cpu).
  std::string device = "auto";
  // CUDA device ordinal among the visible devices (CUDA_VISIBLE_DEVICES
  // applies first), used by every CUDA call of the engine: the VMM backend,
  // the forward pass, NCCL weight groups.
  int device_ordinal = 0;
  // Weights/activations and KV cache dtypes (dtype_options.h).
  std::string dtype = "auto";
  std::string kv_cache_dtype = "auto";
  // CUDA: run decode steps without CUDA-graph replay.
  bool disable_cuda_graph = false;
  // Tokens per KV page.
  int page_size = 16;
  // KV cache size in bytes; 0 derives it from mem_fraction.
  int64_t kv_cache_bytes = 0;
  // Fraction of device memory (CPU: MemAvailable) for weights + KV cache.
  double mem_fraction = 0.0;
  // Allocate weights, KV cache and graph buffers from the tagged pool so they
  // can be released and resumed.
  bool enable_memory_saver = true;
  // Keep a host copy of the weights while released (else the trainer must
  // send new weights before generation resumes).
  bool weights_host_backup = false;
  // Prometheus metrics over HTTP; 0 disables.
  int metrics_port = 0;
  // Required for mutating RPCs when host is not a loopback address.
  std::string auth_token_file;
  // TLS for the gRPC port (both or neither).
  std::string tls_cert;
  std::string tls_key;

  // Scheduler.
  int max_running_requests = 64;
  int64_t chunked_prefill_size = 512;
  int64_t max_batch_tokens = 2048;
  // Request rows of the KV cache (running requests + open sessions).
  int max_kv_rows = 256;
  // Longest sequence (prompt + output); 0 = the model's
  // max_position_embeddings (capped by the KV capacity).
  int64_t context_length = 0;
  int64_t session_idle_timeout_s = 1800;
  // SWA pool tokens as a fraction of the full pool's (models with sliding
  // layers).
  double swa_full_tokens_ratio = 0.8;
  // Compute threads for the CPU kernels; 0 = all cores.
  int cpu_threads = 0;
  // Every GEMM row computed independently (bit-identical results alone or in
  // any batch, the default); false uses OpenBLAS for multi-row GEMMs: faster
  // prefill and large-batch decode, results equal within float rounding.
  bool batch_invariant = true;
  // Reported until the first weight update.
  std::string weight_version = "0";
  // Default deadlines of weight-update groups (0: built-in defaults).
  int64_t weight_sync_init_timeout_ms = 60000;
  int64_t weight_sync_transfer_timeout_ms = 120000;
  int64_t weight_sync_bucket_bytes = 64 << 20;
  // Reject NaN / infinite values in every weight update (costs one scan of
  // the new weights; see bench/weight_sync).
  bool weight_update_check_finite = true;
  // The largest gRPC message the engine accepts (advertised in
  // GetServerInfo; UpdateWeightsFromTensor clients chunk to fit).
  int64_t max_receive_message_bytes = 64 << 20;
  // Comma-separated directories UpdateWeightsFromIpc may open shared-memory
  // files in (besides /proc/<pid>/fd/<n> memfds).
  std::string ipc_shm_dirs = "/dev/shm";

  // Tensor parallelism (engine/tp): the engine's ranks, one process each
  // (1: not sharded). Rank 0 owns the gRPC edge and the scheduler.
  int tp_size = 1;
  // This process's rank; >= 1 makes it a follower of rank 0 (no gRPC edge).
  int tp_rank = 0;
  // Rank 0: HOST:PORT to listen on for the other ranks (empty: start them
  // as child processes, on 127.0.0.1). Rank >= 1: where rank 0 listens.
  std::string tp_master;
  // Bound on each collective of a forward step (a hung rank).
  int64_t tp_timeout_ms = 60000;
  // Bound on start-up: ranks connecting and loading their shard.
  int64_t tp_init_timeout_ms = 120000;
  // A rank that does not answer rank 0's heartbeat (every second) for this
  // long is lost and the engine FAILED.
  int64_t tp_heartbeat_timeout_ms = 10000;

  // TEST ONLY: release of this tag reports success but keeps the memory
  // (a lying engine, for the controller's verification tests). Empty = off.
  std::string debug_skip_release_tag;
};

// Checks values that flags cannot check by type: ranges, and that the model
// directory holds a readable config.json. Returns INVALID_ARGUMENT naming the
// flag, or NOT_FOUND / PERMISSION_DENIED for the model path.
absl::Status ValidateEngineOptions(const EngineOptions& options);

}  // namespace colo::engine

#endif  // COLO_ENGINE_SERVER_ENGINE_OPTIONS_H_
