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
#include "tests/util/child_process.h"

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
  pid_t pid() const { return child_->pid(); }
  const std::string& log_path() const { return child_->log_path(); }
  // The last `max_bytes` of the child's stderr.
  std::string LogTail(size_t max_bytes = 4000) const { return child_->LogTail(max_bytes); }

  // SIGTERM, then waits up to `timeout`; returns the exit code (or
  // DEADLINE_EXCEEDED after which the child is killed; INTERNAL when it died
  // of a signal).
  absl::StatusOr<int> Terminate(absl::Duration timeout = absl::Seconds(30));
  // SIGKILL and reap.
  void Kill() { child_->Kill(); }
  // Whether the child has exited (reaps it if so).
  bool Exited() { return child_->Exited(); }

 private:
  ServerProcess(std::unique_ptr<ChildProcess> child, std::string name)
      : child_(std::move(child)), name_(std::move(name)) {}

  std::unique_ptr<ChildProcess> child_;  // killed by its destructor if running
  std::string name_;
  int port_ = 0;
};

// Calls grpc.health.v1.Health/Check for `service` ("" = the server) and
// returns the status name ("SERVING", "NOT_SERVING", ...).
absl::StatusOr<std::string> CheckHealth(const std::string& address, const std::string& service,
                                        absl::Duration timeout = absl::Seconds(5));

}  // namespace colo::test_util

#endif  // COLO_TESTS_UTIL_SERVER_PROCESS_H_
