// colo-engine: the rollout engine server. See engine_main.h for the flags.
#include "engine/server/engine_main.h"

int main(int argc, char** argv) { return colo::engine::EngineMain(argc, argv); }
