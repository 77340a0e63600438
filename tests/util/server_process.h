// ServerProcess: starts a colo server binary (colo-engine, colo-controller)
// as a child process on an ephemeral port for integration tests.
//
// Start() appends --port=0 --port_file=<tmp> to the arguments, waits until the
// port file appears and grpc.health.v1.Health reports SERVING (bounded by
// start_timeout), and fails with the child's stderr tail if it exits first.
// Terminate() sends SIGTERM and returns the exit code; the destructor kills
// a child that is still running. Not thread-safe.
#ifndef COLO_TESTS_UTIL_SERVER_PROCESS_H_
#define COLO_TESTS_UTIL_SERVER_PROCESS_H_

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace colo::test_util {

struct ServerProcessOptions {
  // Path of the binary (runfiles-relative paths work from a test's cwd).
  std::string binary;
  std::vector<std::string> args;
  absl::Duration start_timeout = absl::Seconds(120);
  // Directory for the port file and the stderr log; default TEST_TMPDIR.
  std::string work_dir;
  // Name used for the files and in messages; default the binary's basename.
  std::string name;
  // Port to bind (--port); 0 picks a free one. A fixed port lets a test
  // restart a server where its clients expect it.
  int port = 0;
};

class ServerProcess {
 public:
  static absl::StatusOr<std::unique_ptr<ServerProcess>> Start(const ServerProcessOptions& options);
  ~ServerProcess();
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  int port() const { return port_; }
  std::string address() const;  // "127.0.0.1:port"
  pid_t pid() const { return pid_; }
  const std::string& log_path() const { return log_path_; }
  // The last `max_bytes` of the child's stderr.
  std::string LogTail(size_t max_bytes = 4000) const;

  // SIGTERM, then waits up to `timeout`; returns the exit code (or
  // DEADLINE_EXCEEDED after which the child is killed; INTERNAL when it died
  // of a signal).
  absl::StatusOr<int> Terminate(absl::Duration timeout = absl::Seconds(30));
  // SIGKILL and reap.
  void Kill();
  // Whether the child has exited (reaps it if so).
  bool Exited();

 private:
  ServerProcess(pid_t pid, std::string name, std::string log_path)
      : pid_(pid), name_(std::move(name)), log_path_(std::move(log_path)) {}
  // Waits for exit up to `timeout`; the wait status, or nullopt on timeout.
  std::optional<int> WaitFor(absl::Duration timeout);

  pid_t pid_;
  std::string name_;
  std::string log_path_;
  int port_ = 0;
  std::optional<int> wait_status_;
};

// Calls grpc.health.v1.Health/Check for `service` ("" = the server) and
// returns the status name ("SERVING", "NOT_SERVING", ...).
absl::StatusOr<std::string> CheckHealth(const std::string& address, const std::string& service,
                                        absl::Duration timeout = absl::Seconds(5));

// Runfiles-resolved path of a workspace file (e.g. "engine/server/colo-engine").
std::string RunfilePath(const std::string& workspace_relative);

// A fresh directory under TEST_TMPDIR.
std::string MakeTempDir(const std::string& prefix);

}  // namespace colo::test_util

#endif  // COLO_TESTS_UTIL_SERVER_PROCESS_H_
