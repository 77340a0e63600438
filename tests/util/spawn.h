// Starts a child process for tests: argv[0] is the binary, stdout and stderr
// go to `log_path`, and the child starts with no signals blocked (test
// runners and servers block SIGTERM in their threads).
#ifndef COLO_TESTS_UTIL_SPAWN_H_
#define COLO_TESTS_UTIL_SPAWN_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace colo::test_util {

// INTERNAL when the log cannot be created or fork fails; a failed exec makes
// the child exit 127 with the reason in its log.
absl::StatusOr<pid_t> SpawnWithLog(const std::vector<std::string>& argv,
                                   const std::string& log_path);

}  // namespace colo::test_util

#endif  // COLO_TESTS_UTIL_SPAWN_H_
