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

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/create_channel.h"

namespace colo::test_util {
namespace {

std::string Basename(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

}  // namespace

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

  std::vector<std::string> args = options.args;
  args.push_back(absl::StrCat("--port=", options.port));
  args.push_back(absl::StrCat("--port_file=", port_file));
  absl::StatusOr<std::unique_ptr<ChildProcess>> child =
      ChildProcess::SpawnWithLogPath(options.binary, args, log_path);
  if (!child.ok()) return child.status();
  std::unique_ptr<ServerProcess> process(new ServerProcess(*std::move(child), name));

  const absl::Time deadline = absl::Now() + options.start_timeout;
  absl::Duration backoff = absl::Milliseconds(5);
  while (true) {
    if (process->Exited()) {
      return absl::InternalError(absl::StrCat(name, " exited during start-up (wait status ",
                                              *process->child_->wait_status(), "): ",
                                              process->LogTail()));
    }
    if (std::optional<int> port = ReadPortFile(port_file); port.has_value()) {
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

ServerProcess::~ServerProcess() = default;

std::string ServerProcess::address() const { return absl::StrCat("127.0.0.1:", port_); }

absl::StatusOr<int> ServerProcess::Terminate(absl::Duration timeout) {
  if (!Exited()) ::kill(pid(), SIGTERM);
  absl::StatusOr<int> status = child_->Wait(timeout);
  if (!status.ok()) {
    return absl::DeadlineExceededError(
        absl::StrCat(name_, " did not exit within ", absl::FormatDuration(timeout),
                     " of SIGTERM: ", status.status().message()));
  }
  if (WIFEXITED(*status)) return WEXITSTATUS(*status);
  return absl::InternalError(
      absl::StrCat(name_, " died of signal ", WTERMSIG(*status), ": ", LogTail()));
}

}  // namespace colo::test_util
