// ChildProcess: a child process for tests (a server, a sender, a CLI) with
// its stdout/stderr in a log file; reaped without blocking, waited on with a
// bound, killed by the destructor if still running. Not thread-safe.
#ifndef COLO_TESTS_UTIL_CHILD_PROCESS_H_
#define COLO_TESTS_UTIL_CHILD_PROCESS_H_

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace colo::test_util {

class ChildProcess {
 public:
  // Runs `binary args...` with its output in `log_path`.
  static absl::StatusOr<std::unique_ptr<ChildProcess>> SpawnWithLogPath(
      const std::string& binary, const std::vector<std::string>& args,
      const std::string& log_path);
  // Same, logging to a fresh directory under TEST_TMPDIR named after `name`.
  static absl::StatusOr<std::unique_ptr<ChildProcess>> Spawn(const std::string& binary,
                                                             const std::vector<std::string>& args,
                                                             const std::string& name);
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  const std::string& log_path() const { return log_path_; }
  // Waits up to `timeout` for the child to exit and returns its wait status
  // (see WIFEXITED etc.); DEADLINE_EXCEEDED (and the child is killed) if it
  // is still running then.
  absl::StatusOr<int> Wait(absl::Duration timeout);
  // The exit time as seen by Exited/Wait (nullopt until it was reaped).
  std::optional<absl::Time> exit_time() const { return exit_time_; }
  // The wait status once reaped.
  std::optional<int> wait_status() const { return wait_status_; }
  // Whether the child has exited (reaps it if so).
  bool Exited();
  // SIGKILL and reap (no-op once exited).
  void Kill();
  // The last `max_bytes` of the child's log.
  std::string LogTail(size_t max_bytes = 4000) const;

 private:
  ChildProcess(pid_t pid, std::string log_path) : pid_(pid), log_path_(std::move(log_path)) {}
  pid_t pid_;
  std::string log_path_;
  std::optional<int> wait_status_;
  std::optional<absl::Time> exit_time_;
};

// Waits for `path` to hold a port number written by `child` (bounded by
// `timeout`; fails early with the child's log if it exits).
absl::StatusOr<int> WaitForPortFile(const std::string& path, ChildProcess& child,
                                    absl::Duration timeout);

// The port number in `path`, if it holds one.
std::optional<int> ReadPortFile(const std::string& path);

// Runfiles-resolved path of a workspace file (e.g. "engine/server/colo-engine").
std::string RunfilePath(const std::string& workspace_relative);

// A fresh directory under TEST_TMPDIR.
std::string MakeTempDir(const std::string& prefix);

}  // namespace colo::test_util

#endif  // COLO_TESTS_UTIL_CHILD_PROCESS_H_
