#include "controller/metrics.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "controller/phase.h"

namespace colo {
namespace controller {
namespace {

void Metric(std::string* out, const std::string& name, const std::string& labels, double value) {
  absl::StrAppend(out, "colo_controller_", name, labels.empty() ? "" : "{", labels,
                  labels.empty() ? "" : "}", " ", value, "\n");
}

void Header(std::string* out, const std::string& name, const std::string& type,
            const std::string& help) {
  absl::StrAppend(out, "# HELP colo_controller_", name, " ", help, "\n", "# TYPE colo_controller_",
                  name, " ", type, "\n");
}

}  // namespace

std::string RenderMetrics(const ::colo::v1::NodeState& state, int64_t verification_failures) {
  std::string out;
  Header(&out, "phase", "gauge", "1 for the node's current phase");
  for (int p = ::colo::v1::ROLLOUT; p <= ::colo::v1::FAILED; ++p) {
    Metric(&out, "phase", absl::StrCat("phase=\"", PhaseName(static_cast<Phase>(p)), "\""),
           state.phase() == p ? 1 : 0);
  }
  Header(&out, "step", "gauge", "RL step of the cycle in progress");
  Metric(&out, "step", "", static_cast<double>(state.step()));
  Header(&out, "phase_duration_seconds", "gauge", "duration of the most recent phases");
  for (const auto& d : state.recent_phases()) {
    Metric(&out, "phase_duration_seconds",
           absl::StrCat("phase=\"", PhaseName(d.phase()), "\",step=\"", d.step(), "\""),
           static_cast<double>(d.duration_us()) / 1e6);
  }
  Header(&out, "engine_healthy", "gauge", "1 while the engine answers health probes");
  for (const auto& e : state.engines()) {
    Metric(&out, "engine_healthy", absl::StrCat("engine=\"", e.address(), "\""),
           e.healthy() ? 1 : 0);
  }
  Header(&out, "engine_tag_resident_bytes", "gauge", "physical bytes of a memory tag");
  for (const auto& e : state.engines()) {
    for (const auto& t : e.memory().tags()) {
      Metric(&out, "engine_tag_resident_bytes",
             absl::StrCat("engine=\"", e.address(), "\",tag=\"", t.tag(), "\""),
             static_cast<double>(t.resident_bytes()));
    }
  }
  Header(&out, "engine_tag_reserved_bytes", "gauge", "virtual bytes reserved by a memory tag");
  for (const auto& e : state.engines()) {
    for (const auto& t : e.memory().tags()) {
      Metric(&out, "engine_tag_reserved_bytes",
             absl::StrCat("engine=\"", e.address(), "\",tag=\"", t.tag(), "\""),
             static_cast<double>(t.reserved_bytes()));
    }
  }
  Header(&out, "engine_device_free_bytes", "gauge", "device free bytes (cpu: MemAvailable)");
  Header(&out, "engine_caching_reserved_bytes", "gauge", "caching allocator reserved bytes");
  for (const auto& e : state.engines()) {
    if (!e.has_memory()) continue;
    const std::string label = absl::StrCat("engine=\"", e.address(), "\"");
    Metric(&out, "engine_device_free_bytes", label,
           static_cast<double>(e.memory().device().free_bytes()));
    Metric(&out, "engine_caching_reserved_bytes", label,
           static_cast<double>(e.memory().caching_allocator().reserved_bytes()));
  }
  Header(&out, "verification_failures_total", "counter", "releases that did not verify");
  Metric(&out, "verification_failures_total", "", static_cast<double>(verification_failures));
  return out;
}

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const Options& options, std::function<std::string()> render) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(options.port));
  if (::inet_pton(AF_INET, options.host.c_str(), &addr.sin_addr) != 1) {
    ::close(fd);
    return absl::InvalidArgumentError(
        absl::StrCat("metrics host '", options.host, "' is not an IPv4 address"));
  }
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || ::listen(fd, 16) != 0) {
    const std::string error = std::strerror(errno);
    ::close(fd);
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options.host, ":", options.port, ": ", error));
  }
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  std::unique_ptr<MetricsHttpServer> server(
      new MetricsHttpServer(fd, ntohs(addr.sin_port), std::move(render)));
  server->thread_ = std::thread([s = server.get()] { s->Loop(); });
  return server;
}

MetricsHttpServer::~MetricsHttpServer() {
  Stop();
  ::close(fd_);
}

void MetricsHttpServer::Stop() {
  stopping_ = true;
  if (thread_.joinable()) thread_.join();
}

void MetricsHttpServer::Loop() {
  while (!stopping_) {
    // Poll with a timeout so Stop() is noticed without closing fds under
    // the thread.
    pollfd p{fd_, POLLIN, 0};
    const int ready = ::poll(&p, 1, 100);
    if (ready <= 0) continue;
    int client = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) continue;
    timeval timeout{2, 0};
    ::setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    ::setsockopt(client, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
    // Read the request head (its content is not needed beyond the blank line).
    std::string request;
    char buf[1024];
    while (request.find("\r\n\r\n") == std::string::npos && request.size() < 16384) {
      ssize_t n = ::recv(client, buf, sizeof(buf), 0);
      if (n <= 0) break;
      request.append(buf, static_cast<size_t>(n));
    }
    const std::string body = render_();
    const std::string response =
        absl::StrCat("HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n",
                     "Content-Length: ", body.size(), "\r\nConnection: close\r\n\r\n", body);
    size_t sent = 0;
    while (sent < response.size()) {
      ssize_t n = ::send(client, response.data() + sent, response.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) break;
      sent += static_cast<size_t>(n);
    }
    ::close(client);
  }
}

}  // namespace controller
}  // namespace colo
