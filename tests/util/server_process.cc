#include "tests/util/server_process.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/create_channel.h"
#include "tests/util/spawn.h"

namespace colo::test_util {
namespace {

std::string TmpRoot() {
  const char* dir = std::getenv("TEST_TMPDIR");
  return dir != nullptr ? dir : "/tmp";
}

std::string Basename(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::optional<int> ReadPort(const std::string& path) {
  std::ifstream in(path);
  std::string text;
  if (!in || !std::getline(in, text)) return std::nullopt;
  int port = 0;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(text), &port) || port <= 0) return std::nullopt;
  return port;
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

absl::StatusOr<std::string> CheckHealth(const std::string& address, const std::string& service,
                                        absl::Duration timeout) {
  auto stub = grpc::health::v1::Health::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + absl::ToChronoNanoseconds(timeout));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  grpc::Status status = stub->Check(&context, request, &response);
  if (!status.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                        absl::StrCat("health check of ", address, ": ", status.error_message()));
  }
  return grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status());
}

absl::StatusOr<std::unique_ptr<ServerProcess>> ServerProcess::Start(
    const ServerProcessOptions& options) {
  const std::string name = options.name.empty() ? Basename(options.binary) : options.name;
  const std::string dir = options.work_dir.empty() ? MakeTempDir(name + "_") : options.work_dir;
  const std::string port_file = absl::StrCat(dir, "/", name, ".port");
  const std::string log_path = absl::StrCat(dir, "/", name, ".log");
  ::unlink(port_file.c_str());

  std::vector<std::string> argv = {options.binary};
  argv.insert(argv.end(), options.args.begin(), options.args.end());
  argv.push_back(absl::StrCat("--port=", options.port));
  argv.push_back(absl::StrCat("--port_file=", port_file));
  absl::StatusOr<pid_t> pid = SpawnWithLog(argv, log_path);
  if (!pid.ok()) return pid.status();
  std::unique_ptr<ServerProcess> process(new ServerProcess(*pid, name, log_path));

  const absl::Time deadline = absl::Now() + options.start_timeout;
  absl::Duration backoff = absl::Milliseconds(5);
  while (true) {
    if (process->Exited()) {
      return absl::InternalError(absl::StrCat(name, " exited during start-up (wait status ",
                                              *process->wait_status_, "): ", process->LogTail()));
    }
    if (std::optional<int> port = ReadPort(port_file); port.has_value()) {
      process->port_ = *port;
      absl::StatusOr<std::string> health = CheckHealth(process->address(), "", absl::Seconds(2));
      if (health.ok() && *health == "SERVING") return process;
    }
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          name, " did not serve within ", absl::FormatDuration(options.start_timeout), ": ",
          process->LogTail()));
    }
    // Polling a child's start-up (no event to wait on); bounded by deadline.
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, absl::Milliseconds(100));
  }
}

ServerProcess::~ServerProcess() {
  if (!wait_status_.has_value()) Kill();
}

std::string ServerProcess::address() const { return absl::StrCat("127.0.0.1:", port_); }

std::string ServerProcess::LogTail(size_t max_bytes) const {
  std::ifstream in(log_path_);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  if (text.size() > max_bytes) text = "..." + text.substr(text.size() - max_bytes);
  return text;
}

bool ServerProcess::Exited() {
  if (wait_status_.has_value()) return true;
  int status = 0;
  const pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    wait_status_ = status;
    return true;
  }
  return false;
}

std::optional<int> ServerProcess::WaitFor(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  absl::Duration backoff = absl::Milliseconds(2);
  while (!Exited()) {
    if (absl::Now() > deadline) return std::nullopt;
    absl::SleepFor(backoff);  // Reaping a child: no portable event to block on with a timeout.
    backoff = std::min(backoff * 2, absl::Milliseconds(50));
  }
  return wait_status_;
}

absl::StatusOr<int> ServerProcess::Terminate(absl::Duration timeout) {
  if (!Exited()) ::kill(pid_, SIGTERM);
  std::optional<int> status = WaitFor(timeout);
  if (!status.has_value()) {
    Kill();
    return absl::DeadlineExceededError(
        absl::StrCat(name_, " did not exit within ", absl::FormatDuration(timeout),
                     " of SIGTERM: ", LogTail()));
  }
  if (WIFEXITED(*status)) return WEXITSTATUS(*status);
  return absl::InternalError(
      absl::StrCat(name_, " died of signal ", WTERMSIG(*status), ": ", LogTail()));
}

void ServerProcess::Kill() {
  if (Exited()) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  wait_status_ = status;
}

}  // namespace colo::test_util
