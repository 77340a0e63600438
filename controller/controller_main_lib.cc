#include "controller/controller_main_lib.h"

#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "controller/controller_impl.h"
#include "controller/controller_service.h"
#include "controller/grpc_engine_client.h"
#include "controller/journal.h"
#include "controller/metrics.h"
#include "proto/server/metrics_http_server.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"
#include "proto/server/auth.h"
#include "proto/server/grpc_server.h"
#include "proto/server/tls.h"
#include "proto/logging/logging.h"

ABSL_FLAG(int, port, 0, "Port to serve on (0 picks a free port).");
ABSL_FLAG(std::string, host, "127.0.0.1",
          "Address to bind; a non-loopback address requires --auth_token_file.");
ABSL_FLAG(std::string, port_file, "", "Write the bound port to this file once serving.");
ABSL_FLAG(std::string, engines, "", "Engines of this node: host:port,host:port,... (rank order).");
ABSL_FLAG(std::string, journal, "",
          "Append-only journal of transitions (fsynced); replayed on start. Empty: none.");
ABSL_FLAG(std::string, node_id, "",
          "Identity of this node, written into the journal's header with --engines; a journal "
          "written under another node_id or engine list is refused at start (e.g. the "
          "Kubernetes node name). Empty: --engines alone identifies the node.");
ABSL_FLAG(double, verify_fraction, 0.95,
          "A release must free at least this fraction of the bytes the engine reported.");
ABSL_FLAG(std::string, weight_sync_backend, "gloo", "Weight-sync group backend: gloo or nccl.");
ABSL_FLAG(std::string, weight_sync_master_address, "127.0.0.1",
          "Rendezvous address of the weight-sync group (the trainer's rank 0).");
ABSL_FLAG(int, weight_sync_master_port, 29500,
          "Rendezvous port of the weight-sync group, returned by BeginWeightSync; 0 lets the "
          "trainer (rank 0, which hosts the rendezvous) pick a free port.");
ABSL_FLAG(std::string, weight_sync_group_name, "colo_weight_sync", "Weight-sync group name.");
ABSL_FLAG(absl::Duration, engine_timeout, absl::Seconds(60), "Deadline of each engine call.");
ABSL_FLAG(absl::Duration, health_interval, absl::Seconds(1),
          "Period of engine health probes (0 disables the watch).");
ABSL_FLAG(absl::Duration, health_timeout, absl::Seconds(2), "Deadline of one health probe.");
ABSL_FLAG(int, health_failures, 2, "Consecutive failed probes after which an engine is lost.");
ABSL_FLAG(std::string, auth_token_file, "",
          "File holding the bearer token mutating RPCs must present.");
ABSL_FLAG(std::string, tls_cert, "", "PEM certificate chain for TLS (with --tls_key).");
ABSL_FLAG(std::string, tls_key, "", "PEM private key for TLS (with --tls_cert).");
ABSL_FLAG(std::string, engine_auth_token_file, "",
          "Bearer token file sent to the engines (when they require one).");
ABSL_FLAG(std::string, engine_tls_ca, "", "PEM root certificates to reach engines over TLS.");
ABSL_FLAG(int, metrics_port, -1, "Serve Prometheus metrics over HTTP on this port (-1: off).");
ABSL_FLAG(std::string, metrics_host, "127.0.0.1", "Address of the metrics HTTP server (IPv4).");

namespace colo {
namespace controller {
namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path, const char* what) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", what, " '", path, "'"));
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

struct Config {
  GrpcServerOptions server;
  std::vector<std::string> engines;
  std::string journal;
  std::string node_id;
  ControllerImpl::Options impl;
  GrpcEngineClient::Options client;
  std::string auth_token;
  int metrics_port = -1;
  std::string metrics_host;
};

absl::StatusOr<Config> ConfigFromFlags() {
  Config config;
  config.server.name = "colo-controller";
  config.server.host = absl::GetFlag(FLAGS_host);
  config.server.port = absl::GetFlag(FLAGS_port);
  config.server.port_file = absl::GetFlag(FLAGS_port_file);
  if (config.server.port < 0 || config.server.port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("--port must be in [0, 65535], got ", config.server.port));
  }
  auto engines = ParseEngineList(absl::GetFlag(FLAGS_engines));
  if (!engines.ok())
    return absl::InvalidArgumentError(absl::StrCat("--engines: ", engines.status().message()));
  config.engines = *engines;
  config.journal = absl::GetFlag(FLAGS_journal);
  config.node_id = absl::GetFlag(FLAGS_node_id);

  config.impl.verify_fraction = absl::GetFlag(FLAGS_verify_fraction);
  if (!(config.impl.verify_fraction > 0 && config.impl.verify_fraction <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--verify_fraction must be in (0, 1], got ", config.impl.verify_fraction));
  }
  config.impl.weight_sync_backend = absl::GetFlag(FLAGS_weight_sync_backend);
  if (config.impl.weight_sync_backend != "gloo" && config.impl.weight_sync_backend != "nccl") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--weight_sync_backend must be gloo or nccl, got '", config.impl.weight_sync_backend, "'"));
  }
  config.impl.weight_sync_master_address = absl::GetFlag(FLAGS_weight_sync_master_address);
  config.impl.weight_sync_master_port = absl::GetFlag(FLAGS_weight_sync_master_port);
  if (config.impl.weight_sync_master_port < 0 || config.impl.weight_sync_master_port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("--weight_sync_master_port must be in [0, 65535], got ",
                     config.impl.weight_sync_master_port));
  }
  config.impl.weight_sync_group_name = absl::GetFlag(FLAGS_weight_sync_group_name);
  if (config.impl.weight_sync_group_name.empty()) {
    return absl::InvalidArgumentError("--weight_sync_group_name must not be empty");
  }
  config.impl.health_interval = absl::GetFlag(FLAGS_health_interval);
  config.impl.health_failures_to_lose = absl::GetFlag(FLAGS_health_failures);
  if (config.impl.health_interval < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--health_interval must be >= 0");
  }
  if (config.impl.health_failures_to_lose < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--health_failures must be >= 1, got ", config.impl.health_failures_to_lose));
  }
  config.client.call_timeout = absl::GetFlag(FLAGS_engine_timeout);
  config.client.probe_timeout = absl::GetFlag(FLAGS_health_timeout);
  if (config.client.call_timeout <= absl::ZeroDuration() ||
      config.client.probe_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--engine_timeout and --health_timeout must be > 0");
  }
  // A healthy engine answers a probe every health_interval (+ the probe's
  // own time, at most health_timeout): older than this is "stale".
  config.impl.health_stale_after = 2 * config.impl.health_interval + config.client.probe_timeout;

  const std::string token_file = absl::GetFlag(FLAGS_auth_token_file);
  if (!token_file.empty()) {
    auto token = ReadTokenFile(token_file);
    if (!token.ok())
      return absl::InvalidArgumentError(
          absl::StrCat("--auth_token_file: ", token.status().message()));
    config.auth_token = *token;
  }
  absl::Status bind = CheckBindSecurity(config.server.host, !config.auth_token.empty());
  if (!bind.ok()) return absl::InvalidArgumentError(bind.message());

  const std::string cert = absl::GetFlag(FLAGS_tls_cert), key = absl::GetFlag(FLAGS_tls_key);
  if (cert.empty() != key.empty()) {
    return absl::InvalidArgumentError("--tls_cert and --tls_key must be given together");
  }
  if (!cert.empty()) {
    auto credentials = ServerTlsCredentials(cert, key);
    if (!credentials.ok()) return absl::InvalidArgumentError(credentials.status().message());
    config.server.credentials = *credentials;
  }
  const std::string engine_token_file = absl::GetFlag(FLAGS_engine_auth_token_file);
  if (!engine_token_file.empty()) {
    auto token = ReadTokenFile(engine_token_file);
    if (!token.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--engine_auth_token_file: ", token.status().message()));
    }
    config.client.auth_token = *token;
  }
  const std::string ca = absl::GetFlag(FLAGS_engine_tls_ca);
  if (!ca.empty()) {
    auto ca_pem = ReadFile(ca, "--engine_tls_ca");
    if (!ca_pem.ok()) return absl::InvalidArgumentError(ca_pem.status().message());
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = *ca_pem;
    config.client.credentials = grpc::SslCredentials(ssl);
  }
  config.metrics_port = absl::GetFlag(FLAGS_metrics_port);
  config.metrics_host = absl::GetFlag(FLAGS_metrics_host);
  if (config.metrics_port < -1 || config.metrics_port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--metrics_port must be -1 (off) or in [0, 65535], got ", config.metrics_port));
  }
  return config;
}

}  // namespace

int RunControllerMain(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "colo-controller --engines=host:port,... [--journal=PATH] [--port=N] [--host=ADDR]\n"
      "Per-node memory controller of the colocated RL cycle.");
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (rest.size() > 1) {
    std::cerr << "colo-controller: unexpected argument '" << rest[1]
              << "' (flags are --name=value)\n";
    return 2;
  }
  absl::StatusOr<Config> config = ConfigFromFlags();
  if (!config.ok()) {
    std::cerr << "colo-controller: " << config.status().message() << "\n";
    return 2;
  }

  std::vector<std::unique_ptr<EngineClient>> clients;
  for (const std::string& address : config->engines) {
    GrpcEngineClient::Options options = config->client;
    options.address = address;
    auto client = GrpcEngineClient::Create(options);
    if (!client.ok()) {
      std::cerr << "colo-controller: " << client.status().message() << "\n";
      return 2;
    }
    clients.push_back(std::move(*client));
  }
  std::unique_ptr<Journal> journal;
  if (config->journal.empty()) {
    COLO_LOG(WARNING) << "no --journal: transitions are not persisted across restarts";
  } else {
    auto opened = Journal::Open(
        {.path = config->journal, .node_id = config->node_id, .engines = config->engines});
    if (!opened.ok()) {
      std::cerr << "colo-controller: --journal: " << opened.status().message() << "\n";
      return 1;
    }
    journal = std::move(*opened);
    if (journal->report().recovery != Journal::Recovery::kClean &&
        journal->report().recovery != Journal::Recovery::kCreated) {
      COLO_LOG(WARNING) << "journal " << config->journal << ": "
                        << RecoveryName(journal->report().recovery) << ": "
                        << journal->report().message;
    }
  }
  auto impl = ControllerImpl::Create(config->impl, std::move(clients), std::move(journal));
  if (!impl.ok()) {
    std::cerr << "colo-controller: " << impl.status().message() << "\n";
    return 2;
  }
  TokenChecker auth(config->auth_token);
  ControllerService service(impl->get(), &auth);

  std::unique_ptr<colo::MetricsHttpServer> metrics;
  if (config->metrics_port >= 0) {
    ControllerImpl* controller = impl->get();
    auto started = colo::MetricsHttpServer::Start(
        {.host = config->metrics_host, .port = config->metrics_port}, [controller] {
          return RenderMetrics(controller->GetState(/*include_memory=*/false),
                               controller->verification_failures());
        });
    if (!started.ok()) {
      std::cerr << "colo-controller: --metrics_port: " << started.status().message() << "\n";
      return 1;
    }
    metrics = std::move(*started);
    COLO_LOG(INFO) << "metrics on http://" << config->metrics_host << ":" << metrics->port()
                   << "/metrics";
  }

  GrpcServerOptions server = config->server;
  server.services = {&service};
  ControllerImpl* controller = impl->get();
  server.on_shutdown = [controller] { controller->Shutdown(); };
  absl::Status run = RunGrpcServer(server);
  if (metrics) metrics->Stop();
  (*impl)->Shutdown();
  if (!run.ok()) {
    std::cerr << "colo-controller: " << run.message() << "\n";
    return 1;
  }
  return 0;
}

}  // namespace controller
}  // namespace colo
