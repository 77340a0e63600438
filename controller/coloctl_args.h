// Command-line arguments of coloctl (parsed by hand: subcommands have their
// own flags, and usage errors must exit 2 with one line).
#ifndef COLO_CONTROLLER_COLOCTL_ARGS_H_
#define COLO_CONTROLLER_COLOCTL_ARGS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace colo {
namespace controller {

struct ColoctlArgs {
  // Exactly one of the two targets.
  std::string controller;
  std::string engine;
  // "table" or "json".
  std::string output = "table";
  // Deadline of each RPC (watch: how long to watch).
  absl::Duration timeout = absl::Seconds(30);
  std::string auth_token_file;
  // PEM root certificates: use TLS to reach the target.
  std::string tls_ca;
  // status, watch, engines, memory, release, resume, pause, continue,
  // generate, cycle, recover.
  std::string command;
  // release / resume.
  std::vector<std::string> tags;
  // pause.
  std::string mode;
  // continue: false with --no-empty-cache.
  bool empty_cache = true;
  // generate.
  std::vector<int32_t> input_ids;
  int max_new_tokens = 16;
  float temperature = 0.0f;
  // cycle.
  std::string pause_mode = "retract";
  // cycle: -1 means the controller's step + 1.
  int64_t step = -1;
  // weight-groups: destroy this group (on every engine of the node with
  // --controller) before listing.
  std::string destroy_group;
  bool help = false;
};

// The usage text (coloctl --help).
std::string ColoctlUsage();

// Parses argv without the program name. Flags are --name=value or
// --name value. INVALID_ARGUMENT with a one-line message for an unknown
// flag or command, a bad value, a missing required flag, or a flag that the
// command/target combination does not allow.
absl::StatusOr<ColoctlArgs> ParseColoctlArgs(const std::vector<std::string>& argv);

}  // namespace controller
}  // namespace colo

#endif  // COLO_CONTROLLER_COLOCTL_ARGS_H_
