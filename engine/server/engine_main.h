// The body of colo-engine's main(): flags (API.md), validation, server run.
// Returns the process exit code: 0 after a SIGTERM drain, 1 on a start-up
// error (one line on stderr naming the problem).
#ifndef COLO_ENGINE_SERVER_ENGINE_MAIN_H_
#define COLO_ENGINE_SERVER_ENGINE_MAIN_H_

namespace colo::engine {

int EngineMain(int argc, char** argv);

}  // namespace colo::engine

#endif  // COLO_ENGINE_SERVER_ENGINE_MAIN_H_
