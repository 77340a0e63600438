// colo-demo-trainer: runs `--cycles` colocated cycles against a controller
// and prints a per-phase timeline (see demo_trainer.h).
#ifndef COLO_CONTROLLER_DEMO_DEMO_TRAINER_MAIN_LIB_H_
#define COLO_CONTROLLER_DEMO_DEMO_TRAINER_MAIN_LIB_H_

namespace colo {
namespace controller {
namespace demo {

// main() of colo-demo-trainer: 0 on success, 1 when a cycle fails, 2 for bad
// flags (one line on stderr each time).
int DemoTrainerMain(int argc, char** argv);

}  // namespace demo
}  // namespace controller
}  // namespace colo

#endif  // COLO_CONTROLLER_DEMO_DEMO_TRAINER_MAIN_LIB_H_
