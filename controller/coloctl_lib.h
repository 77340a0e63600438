// coloctl: the operator CLI of the controller and engines (usage in
// coloctl_args.cc). Every RPC carries a deadline (--timeout).
#ifndef COLO_CONTROLLER_COLOCTL_LIB_H_
#define COLO_CONTROLLER_COLOCTL_LIB_H_

#include <ostream>
#include <string>
#include <vector>

#include "controller/coloctl_args.h"

namespace colo {
namespace controller {

// Runs one parsed command, writing results to `out` and errors to `err`.
// Returns 0 ok, 1 RPC error (one line "error: CODE: message" on `err`; for a
// fan-out, any engine failing), 2 usage error (e.g. unreadable token file).
int RunColoctl(const ColoctlArgs& args, std::ostream& out, std::ostream& err);

// Parses `argv` (without the program name) and runs it; usage errors print
// one line plus a hint to --help and return 2.
int ColoctlMain(const std::vector<std::string>& argv, std::ostream& out, std::ostream& err);

}  // namespace controller
}  // namespace colo

#endif  // COLO_CONTROLLER_COLOCTL_LIB_H_
