// The colo-controller program: flag parsing and validation, wiring of the
// engine clients, journal, ControllerImpl, gRPC service and metrics server.
// main.cc calls BlockTerminationSignals() and then RunControllerMain().
//
// Flags (see --help): --port, --host, --port_file, --engines, --journal, --node_id,
// --verify_fraction, --weight_sync_backend, --weight_sync_master_address,
// --weight_sync_master_port, --weight_sync_group_name, --engine_timeout,
// --health_interval, --health_timeout, --health_failures, --auth_token_file,
// --tls_cert, --tls_key, --engine_auth_token_file, --engine_tls_ca,
// --metrics_port, --metrics_host.
#ifndef COLO_CONTROLLER_CONTROLLER_MAIN_LIB_H_
#define COLO_CONTROLLER_CONTROLLER_MAIN_LIB_H_

namespace colo {
namespace controller {

// Exit status: 0 after a SIGTERM drain, 2 for a bad flag (one line on
// stderr), 1 when the server cannot start.
int RunControllerMain(int argc, char** argv);

}  // namespace controller
}  // namespace colo

#endif  // COLO_CONTROLLER_CONTROLLER_MAIN_LIB_H_
