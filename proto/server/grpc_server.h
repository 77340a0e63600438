// Runs a gRPC server the way every colo process does:
//  - binds --host:--port (port 0 picks a free port) and writes the bound port
//    to --port_file (atomically: write + rename) for scripts and tests;
//  - serves grpc.health.v1.Health (SERVING once started) and reflection;
//  - on SIGTERM or SIGINT stops accepting calls, drains in-flight calls for
//    up to `drain_timeout`, and returns OK so main can exit 0.
//
// Call BlockTerminationSignals() first thing in main, before any thread is
// created, so the signals are delivered only to the waiting thread.
#ifndef COLO_PROTO_SERVER_GRPC_SERVER_H_
#define COLO_PROTO_SERVER_GRPC_SERVER_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"

namespace colo {

struct GrpcServerOptions {
  // Program name for log lines, e.g. "colo-engine".
  std::string name;
  std::string host = "127.0.0.1";
  // 0 picks a free port.
  int port = 0;
  // When set, the bound port is written here once the server is serving.
  std::string port_file;
  // Services registered on the server; not owned, must outlive the run.
  std::vector<grpc::Service*> services;
  // Credentials for the listening port; insecure when null.
  std::shared_ptr<grpc::ServerCredentials> credentials;
  // The largest message the server accepts; 0 keeps gRPC's default (4 MiB).
  int max_receive_message_bytes = 0;
  // How long in-flight calls may run after a termination signal.
  absl::Duration drain_timeout = absl::Seconds(10);
  // Called once the server is serving, with the bound port.
  std::function<void(grpc::Server*, int port)> on_started;
  // Called after a termination signal, before the server shuts down (e.g. to
  // mark health NOT_SERVING and wake streaming calls).
  std::function<void()> on_shutdown;
};

// Blocks SIGTERM and SIGINT in the calling thread and every thread it later
// creates. RunGrpcServer waits for them with sigwait.
void BlockTerminationSignals();

// Runs the server until SIGTERM/SIGINT. Errors: INVALID_ARGUMENT for a bad
// port, UNAVAILABLE when the address cannot be bound, INTERNAL when the port
// file cannot be written.
absl::Status RunGrpcServer(const GrpcServerOptions& options);

}  // namespace colo

#endif  // COLO_PROTO_SERVER_GRPC_SERVER_H_
