#include "engine/server/engine_main.h"

#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "engine/server/engine_options.h"
#include "engine/server/engine_service.h"
#include "proto/base/grpc_server.h"

ABSL_FLAG(std::string, host, "127.0.0.1", "Address to listen on.");
ABSL_FLAG(int, port, 0, "Port to listen on; 0 picks a free port.");
ABSL_FLAG(std::string, port_file, "", "Write the bound port to this file once serving.");
ABSL_FLAG(std::string, model, "", "Hugging Face layout model dir (config.json + *.safetensors).");
ABSL_FLAG(std::string, device, "auto", "cpu, cuda, or auto (cuda if a GPU is usable).");
ABSL_FLAG(int, page_size, 16, "Tokens per KV cache page.");
ABSL_FLAG(int64_t, kv_cache_bytes, 0, "KV cache bytes; 0 derives it from --mem_fraction.");
ABSL_FLAG(double, mem_fraction, 0.0,
          "Fraction of device memory for weights + KV cache (0: a small default).");
ABSL_FLAG(bool, enable_memory_saver, true,
          "Allocate from the tagged pool so memory can be released and resumed.");
ABSL_FLAG(bool, weights_host_backup, false, "Keep a host copy of the weights while released.");
ABSL_FLAG(int, metrics_port, 0, "Serve Prometheus metrics over HTTP on this port; 0 = off.");
ABSL_FLAG(std::string, auth_token_file, "",
          "File with the token mutating RPCs must carry (required off loopback).");

namespace colo::engine {

int EngineMain(int argc, char** argv) {
  colo::BlockTerminationSignals();
  absl::SetProgramUsageMessage("colo-engine --model=DIR [--port=N --port_file=PATH ...]");
  absl::ParseCommandLine(argc, argv);

  EngineOptions options;
  options.host = absl::GetFlag(FLAGS_host);
  options.port = absl::GetFlag(FLAGS_port);
  options.port_file = absl::GetFlag(FLAGS_port_file);
  options.model_dir = absl::GetFlag(FLAGS_model);
  options.device = absl::GetFlag(FLAGS_device);
  options.page_size = absl::GetFlag(FLAGS_page_size);
  options.kv_cache_bytes = absl::GetFlag(FLAGS_kv_cache_bytes);
  options.mem_fraction = absl::GetFlag(FLAGS_mem_fraction);
  options.enable_memory_saver = absl::GetFlag(FLAGS_enable_memory_saver);
  options.weights_host_backup = absl::GetFlag(FLAGS_weights_host_backup);
  options.metrics_port = absl::GetFlag(FLAGS_metrics_port);
  options.auth_token_file = absl::GetFlag(FLAGS_auth_token_file);
  if (absl::Status s = ValidateEngineOptions(options); !s.ok()) {
    std::fprintf(stderr, "colo-engine: %s\n", std::string(s.message()).c_str());
    return 1;
  }

  EngineService service(options);
  GrpcServerOptions server;
  server.name = "colo-engine";
  server.host = options.host;
  server.port = options.port;
  server.port_file = options.port_file;
  server.services = {&service};
  if (absl::Status s = RunGrpcServer(server); !s.ok()) {
    std::fprintf(stderr, "colo-engine: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}

}  // namespace colo::engine
