#include "tests/util/child_process.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "tests/util/spawn.h"

namespace colo::test_util {
namespace {

std::string TmpRoot() {
  const char* dir = std::getenv("TEST_TMPDIR");
  return dir != nullptr ? dir : "/tmp";
}

}  // namespace

std::string RunfilePath(const std::string& workspace_relative) {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* workspace = std::getenv("TEST_WORKSPACE");
  if (srcdir != nullptr && workspace != nullptr) {
    return absl::StrCat(srcdir, "/", workspace, "/", workspace_relative);
  }
  return workspace_relative;
}

std::string MakeTempDir(const std::string& prefix) {
  std::string templ = absl::StrCat(TmpRoot(), "/", prefix, "XXXXXX");
  if (::mkdtemp(templ.data()) == nullptr) return TmpRoot();
  return templ;
}

absl::StatusOr<std::unique_ptr<ChildProcess>> ChildProcess::SpawnWithLogPath(
    const std::string& binary, const std::vector<std::string>& args, const std::string& log_path) {
  std::vector<std::string> argv = {binary};
  argv.insert(argv.end(), args.begin(), args.end());
  absl::StatusOr<pid_t> pid = SpawnWithLog(argv, log_path);
  if (!pid.ok()) return pid.status();
  return std::unique_ptr<ChildProcess>(new ChildProcess(*pid, log_path));
}

absl::StatusOr<std::unique_ptr<ChildProcess>> ChildProcess::Spawn(
    const std::string& binary, const std::vector<std::string>& args, const std::string& name) {
  return SpawnWithLogPath(binary, args,
                          absl::StrCat(MakeTempDir(name + "_"), "/", name, ".log"));
}

ChildProcess::~ChildProcess() { Kill(); }

bool ChildProcess::Exited() {
  if (wait_status_.has_value()) return true;
  int status = 0;
  if (::waitpid(pid_, &status, WNOHANG) == pid_) {
    wait_status_ = status;
    exit_time_ = absl::Now();
    return true;
  }
  return false;
}

void ChildProcess::Kill() {
  if (Exited()) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  wait_status_ = status;
  exit_time_ = absl::Now();
}

absl::StatusOr<int> ChildProcess::Wait(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  absl::Duration backoff = absl::Milliseconds(1);
  while (!Exited()) {
    if (absl::Now() > deadline) {
      Kill();
      return absl::DeadlineExceededError(absl::StrCat(
          "child ", pid_, " still running after ", absl::FormatDuration(timeout),
          " (killed): ", LogTail()));
    }
    // Reaping a child: no portable event to block on with a timeout.
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, absl::Milliseconds(20));
  }
  return *wait_status_;
}

std::string ChildProcess::LogTail(size_t max_bytes) const {
  std::ifstream in(log_path_);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  if (text.size() > max_bytes) text = "..." + text.substr(text.size() - max_bytes);
  return text;
}

std::optional<int> ReadPortFile(const std::string& path) {
  std::ifstream in(path);
  std::string text;
  int port = 0;
  if (in && std::getline(in, text) && absl::SimpleAtoi(absl::StripAsciiWhitespace(text), &port) &&
      port > 0) {
    return port;
  }
  return std::nullopt;
}

absl::StatusOr<int> WaitForPortFile(const std::string& path, ChildProcess& child,
                                    absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  absl::Duration backoff = absl::Milliseconds(1);
  while (true) {
    if (std::optional<int> port = ReadPortFile(path); port.has_value()) return *port;
    if (child.Exited()) {
      return absl::InternalError(
          absl::StrCat("child exited before writing ", path, ": ", child.LogTail()));
    }
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("no port in ", path, " after ", absl::FormatDuration(timeout)));
    }
    // Polling a file a child writes once (bounded by the deadline).
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, absl::Milliseconds(20));
  }
}

}  // namespace colo::test_util
