// colo-controller: the per-node memory controller (see controller_main_lib.h).
#include "controller/controller_main_lib.h"
#include "proto/server/grpc_server.h"

int main(int argc, char** argv) {
  colo::BlockTerminationSignals();
  return colo::controller::RunControllerMain(argc, argv);
}
