#include "engine/server/engine_main.h"

#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "engine/server/engine_metrics.h"
#include "engine/server/engine_options.h"
#include "engine/server/engine_runtime.h"
#include "engine/server/engine_service.h"
#include "engine/tp/tp_channel.h"
#include "engine/tp/tp_follower.h"
#include "proto/server/auth.h"
#include "proto/server/grpc_server.h"
#include "proto/server/tls.h"
#include "proto/logging/logging.h"
#include "proto/server/metrics_http_server.h"

ABSL_FLAG(std::string, host, "127.0.0.1", "Address to listen on.");
ABSL_FLAG(int, port, 0, "Port to listen on; 0 picks a free port.");
ABSL_FLAG(std::string, port_file, "", "Write the bound port to this file once serving.");
ABSL_FLAG(std::string, model, "", "Hugging Face layout model dir (config.json + *.safetensors).");
ABSL_FLAG(std::string, device, "auto", "cpu, cuda, or auto (cuda if a GPU is usable).");
ABSL_FLAG(int, device_ordinal, 0,
          "CUDA device ordinal among the visible ones (CUDA_VISIBLE_DEVICES applies first).");
ABSL_FLAG(std::string, dtype, "auto",
          "auto|bfloat16|float16|float32: weights and activations (auto: the checkpoint's "
          "dtype on CUDA; the CPU computes in float32 only for now).");
ABSL_FLAG(std::string, kv_cache_dtype, "auto",
          "auto|bfloat16|float16|fp8_e4m3: the KV cache (auto: the compute dtype; CUDA only).");
ABSL_FLAG(bool, disable_cuda_graph, false, "CUDA: run decode steps without CUDA graphs.");
ABSL_FLAG(int, page_size, 16, "Tokens per KV cache page.");
ABSL_FLAG(int64_t, kv_cache_bytes, 0, "KV cache bytes; 0 derives it from --mem_fraction.");
ABSL_FLAG(double, mem_fraction, 0.0,
          "Fraction of device memory for weights + KV cache (0: a 256 MiB KV default).");
ABSL_FLAG(bool, enable_memory_saver, true,
          "Allocate from the tagged pool so memory can be released and resumed.");
ABSL_FLAG(bool, weights_host_backup, false, "Keep a host copy of the weights while released.");
ABSL_FLAG(int, metrics_port, 0, "Serve Prometheus metrics over HTTP on this port; 0 = off.");
ABSL_FLAG(std::string, metrics_host, "127.0.0.1", "Address of the metrics endpoint.");
ABSL_FLAG(std::string, metrics_port_file, "", "Write the bound metrics port to this file.");
ABSL_FLAG(std::string, auth_token_file, "",
          "File with the token mutating RPCs must carry (required off loopback).");
ABSL_FLAG(std::string, tls_cert, "", "PEM certificate for TLS on the gRPC port.");
ABSL_FLAG(std::string, tls_key, "", "PEM private key for TLS on the gRPC port.");
ABSL_FLAG(int, max_running_requests, 64, "Requests in the running batch at most.");
ABSL_FLAG(int64_t, chunked_prefill_size, 512, "Prompt tokens one request prefills per step.");
ABSL_FLAG(int64_t, max_batch_tokens, 2048, "Tokens (decode + prefill) per forward step.");
ABSL_FLAG(int, max_kv_rows, 256, "KV request rows (running requests + open sessions).");
ABSL_FLAG(int64_t, context_length, 0,
          "Longest prompt + output; 0 = the model's max_position_embeddings.");
ABSL_FLAG(int64_t, session_idle_timeout_s, 1800, "Close sessions idle this many seconds.");
ABSL_FLAG(double, swa_full_tokens_ratio, 0.8,
          "SWA pool tokens relative to the full pool (models with sliding layers).");
ABSL_FLAG(int, cpu_threads, 0, "Compute threads of the CPU backend; 0 = all cores.");
ABSL_FLAG(bool, batch_invariant, true,
          "Bit-identical results in any batch; false uses OpenBLAS for multi-row GEMMs (faster).");
ABSL_FLAG(std::string, weight_version, "0", "Weight version reported until the first update.");
ABSL_FLAG(int64_t, weight_sync_init_timeout_ms, 60000, "Default rendezvous deadline.");
ABSL_FLAG(int64_t, weight_sync_transfer_timeout_ms, 120000, "Default per-transfer deadline.");
ABSL_FLAG(int64_t, weight_sync_bucket_bytes, 64 << 20, "Default weight-update bucket size.");
ABSL_FLAG(bool, weight_update_check_finite, true,
          "Reject weight updates holding NaN or infinite values (every update path).");
ABSL_FLAG(int64_t, max_receive_message_bytes, 64 << 20,
          "Largest gRPC message accepted (clients chunk UpdateWeightsFromTensor to fit).");
ABSL_FLAG(std::string, ipc_shm_dirs, "/dev/shm",
          "Comma-separated directories UpdateWeightsFromIpc may open shared-memory files in.");
ABSL_FLAG(std::string, debug_skip_release_tag, "",
          "TEST ONLY: releasing this tag keeps its memory (a lying engine).");
ABSL_FLAG(int, tp_size, 1,
          "Tensor-parallel ranks of this engine (one process each; rank 0 serves gRPC). Alone, "
          "rank 0 starts ranks 1..N-1 as child processes.");
ABSL_FLAG(int, tp_rank, 0,
          "This process's tensor-parallel rank; >= 1 follows rank 0 at --tp_master.");
ABSL_FLAG(std::string, tp_master, "",
          "HOST:PORT of rank 0's tensor-parallel listener (rank 0: where to listen; empty: "
          "launch the other ranks as children).");
ABSL_FLAG(int64_t, tp_timeout_ms, 60000, "Bound on each tensor-parallel collective.");
ABSL_FLAG(int64_t, tp_init_timeout_ms, 120000,
          "Bound on tensor-parallel start-up (ranks connecting, loading shards).");
ABSL_FLAG(int64_t, tp_heartbeat_timeout_ms, 10000,
          "A rank missing rank 0's heartbeat this long is lost (the engine turns FAILED).");

namespace colo::engine {
namespace {

absl::Status WritePortFile(const std::string& path, int port) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    out << port << "\n";
    if (!out) return absl::InternalError(absl::StrCat("cannot write ", tmp));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("cannot rename ", tmp, " to ", path));
  }
  return absl::OkStatus();
}

EngineOptions OptionsFromFlags() {
  EngineOptions o;
  o.host = absl::GetFlag(FLAGS_host);
  o.port = absl::GetFlag(FLAGS_port);
  o.port_file = absl::GetFlag(FLAGS_port_file);
  o.model_dir = absl::GetFlag(FLAGS_model);
  o.device = absl::GetFlag(FLAGS_device);
  o.device_ordinal = absl::GetFlag(FLAGS_device_ordinal);
  o.dtype = absl::GetFlag(FLAGS_dtype);
  o.kv_cache_dtype = absl::GetFlag(FLAGS_kv_cache_dtype);
  o.disable_cuda_graph = absl::GetFlag(FLAGS_disable_cuda_graph);
  o.page_size = absl::GetFlag(FLAGS_page_size);
  o.kv_cache_bytes = absl::GetFlag(FLAGS_kv_cache_bytes);
  o.mem_fraction = absl::GetFlag(FLAGS_mem_fraction);
  o.enable_memory_saver = absl::GetFlag(FLAGS_enable_memory_saver);
  o.weights_host_backup = absl::GetFlag(FLAGS_weights_host_backup);
  o.metrics_port = absl::GetFlag(FLAGS_metrics_port);
  o.auth_token_file = absl::GetFlag(FLAGS_auth_token_file);
  o.tls_cert = absl::GetFlag(FLAGS_tls_cert);
  o.tls_key = absl::GetFlag(FLAGS_tls_key);
  o.max_running_requests = absl::GetFlag(FLAGS_max_running_requests);
  o.chunked_prefill_size = absl::GetFlag(FLAGS_chunked_prefill_size);
  o.max_batch_tokens = absl::GetFlag(FLAGS_max_batch_tokens);
  o.max_kv_rows = absl::GetFlag(FLAGS_max_kv_rows);
  o.context_length = absl::GetFlag(FLAGS_context_length);
  o.session_idle_timeout_s = absl::GetFlag(FLAGS_session_idle_timeout_s);
  o.swa_full_tokens_ratio = absl::GetFlag(FLAGS_swa_full_tokens_ratio);
  o.cpu_threads = absl::GetFlag(FLAGS_cpu_threads);
  o.batch_invariant = absl::GetFlag(FLAGS_batch_invariant);
  o.weight_version = absl::GetFlag(FLAGS_weight_version);
  o.weight_sync_init_timeout_ms = absl::GetFlag(FLAGS_weight_sync_init_timeout_ms);
  o.weight_sync_transfer_timeout_ms = absl::GetFlag(FLAGS_weight_sync_transfer_timeout_ms);
  o.weight_sync_bucket_bytes = absl::GetFlag(FLAGS_weight_sync_bucket_bytes);
  o.weight_update_check_finite = absl::GetFlag(FLAGS_weight_update_check_finite);
  o.max_receive_message_bytes = absl::GetFlag(FLAGS_max_receive_message_bytes);
  o.ipc_shm_dirs = absl::GetFlag(FLAGS_ipc_shm_dirs);
  o.debug_skip_release_tag = absl::GetFlag(FLAGS_debug_skip_release_tag);
  o.tp_size = absl::GetFlag(FLAGS_tp_size);
  o.tp_rank = absl::GetFlag(FLAGS_tp_rank);
  o.tp_master = absl::GetFlag(FLAGS_tp_master);
  o.tp_timeout_ms = absl::GetFlag(FLAGS_tp_timeout_ms);
  o.tp_init_timeout_ms = absl::GetFlag(FLAGS_tp_init_timeout_ms);
  o.tp_heartbeat_timeout_ms = absl::GetFlag(FLAGS_tp_heartbeat_timeout_ms);
  return o;
}

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "colo-engine: %s\n", std::string(s.message()).c_str());
  return 1;
}

// A tensor-parallel rank >= 1: follows rank 0 until it says shut down (exit
// 0) or is lost (exit 1). Threads blocked on a dead group are not joined:
// the process ends here.
int RunFollowerRank(const EngineOptions& options) {
  // No gRPC server here: SIGTERM / SIGINT take their default action (exit);
  // rank 0 then reports the rank lost.
  sigset_t termination;
  sigemptyset(&termination);
  sigaddset(&termination, SIGTERM);
  sigaddset(&termination, SIGINT);
  pthread_sigmask(SIG_UNBLOCK, &termination, nullptr);
  TpFollowerOptions fo;
  fo.rank = options.tp_rank;
  fo.tp_size = options.tp_size;
  if (absl::Status s = ParseHostPort(options.tp_master, "--tp_master", &fo.master_host,
                                     &fo.master_port);
      !s.ok()) {
    return Fail(s);
  }
  fo.model_dir = options.model_dir;
  fo.cpu_threads = options.cpu_threads;
  fo.connect_timeout = absl::Milliseconds(options.tp_init_timeout_ms);
  // Rank 0 pings every second; silence this long means it is gone.
  fo.master_timeout = 3 * absl::Milliseconds(options.tp_heartbeat_timeout_ms);
  const absl::Status s = RunTpFollower(fo);
  if (!s.ok()) {
    std::fprintf(stderr, "colo-engine (tensor-parallel rank %d): %s\n", options.tp_rank,
                 std::string(s.message()).c_str());
  }
  std::fflush(stderr);
  std::fflush(stdout);
  std::_Exit(s.ok() ? 0 : 1);
}

}  // namespace

int EngineMain(int argc, char** argv) {
  colo::BlockTerminationSignals();
  absl::SetProgramUsageMessage("colo-engine --model=DIR [--port=N --port_file=PATH ...]");
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (rest.size() > 1) {
    std::fprintf(stderr, "colo-engine: unexpected argument '%s' (flags are --name=value)\n",
                 rest[1]);
    return 2;
  }
  const EngineOptions options = OptionsFromFlags();
  if (absl::Status s = ValidateEngineOptions(options); !s.ok()) return Fail(s);
  if (options.tp_rank > 0) return RunFollowerRank(options);

  std::string token;
  if (!options.auth_token_file.empty()) {
    absl::StatusOr<std::string> t = ReadTokenFile(options.auth_token_file);
    if (!t.ok()) return Fail(absl::InvalidArgumentError(
        absl::StrCat("--auth_token_file: ", t.status().message())));
    token = *t;
  }
  if (absl::Status s = CheckBindSecurity(options.host, !token.empty()); !s.ok()) return Fail(s);
  GrpcServerOptions server;
  if (!options.tls_cert.empty()) {
    auto credentials = ServerTlsCredentials(options.tls_cert, options.tls_key);
    if (!credentials.ok()) return Fail(credentials.status());
    server.credentials = *credentials;
  }

  absl::StatusOr<std::unique_ptr<EngineRuntime>> runtime = EngineRuntime::Create(options);
  if (!runtime.ok()) return Fail(runtime.status());
  TokenChecker auth(token);
  EngineService service(runtime->get(), &auth);

  std::unique_ptr<colo::MetricsHttpServer> metrics;
  if (options.metrics_port > 0 || !absl::GetFlag(FLAGS_metrics_port_file).empty()) {
    EngineRuntime* rt = runtime->get();
    absl::StatusOr<std::unique_ptr<colo::MetricsHttpServer>> started =
        colo::MetricsHttpServer::Start(
            {.host = absl::GetFlag(FLAGS_metrics_host), .port = options.metrics_port}, [rt] {
              absl::StatusOr<MemoryInfo> memory = rt->CollectMemory();
              return RenderEngineMetrics(rt->scheduler().Snapshot(),
                                         memory.ok() ? *memory : MemoryInfo());
            });
    if (!started.ok()) return Fail(started.status());
    metrics = *std::move(started);
    if (!absl::GetFlag(FLAGS_metrics_port_file).empty()) {
      if (absl::Status s = WritePortFile(absl::GetFlag(FLAGS_metrics_port_file), metrics->port());
          !s.ok()) {
        return Fail(s);
      }
    }
    COLO_LOG(INFO) << "metrics on http://" << absl::GetFlag(FLAGS_metrics_host) << ":"
                   << metrics->port() << "/metrics";
  }

  server.name = "colo-engine";
  server.host = options.host;
  server.port = options.port;
  server.port_file = options.port_file;
  server.max_receive_message_bytes = static_cast<int>(options.max_receive_message_bytes);
  server.services = {&service};
  server.on_started = [&service](grpc::Server* s, int) {
    service.SetHealthService(s->GetHealthCheckService());
  };
  EngineRuntime* rt = runtime->get();
  server.on_shutdown = [&service, rt] {
    service.MarkShuttingDown();
    // Finishes streaming Generate calls (finish_reason abort) so the drain ends.
    rt->scheduler().Stop();
  };
  absl::Status run = RunGrpcServer(server);
  if (metrics) metrics->Stop();
  runtime->reset();
  if (!run.ok()) return Fail(run);
  return 0;
}

}  // namespace colo::engine
