// A tiny blocking HTTP responder for Prometheus text metrics: every GET (any
// path) on host:port answers 200 with the text `render()` returns. Used by
// colo-engine and colo-controller for --metrics_port.
#ifndef COLO_PROTO_BASE_METRICS_HTTP_SERVER_H_
#define COLO_PROTO_BASE_METRICS_HTTP_SERVER_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

namespace colo {

// Serves one connection at a time, on its own thread.
// Thread-safe; Stop() (or the destructor) joins the thread.
class MetricsHttpServer {
 public:
  struct Options {
    std::string host = "127.0.0.1";
    // 0 picks a free port.
    int port = 0;
  };

  // UNAVAILABLE when the port cannot be bound.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(
      const Options& options, std::function<std::string()> render);
  ~MetricsHttpServer();
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  int port() const { return port_; }
  void Stop();

 private:
  MetricsHttpServer(int fd, int port, std::function<std::string()> render)
      : fd_(fd), port_(port), render_(std::move(render)) {}
  void Loop();

  const int fd_;
  const int port_;
  const std::function<std::string()> render_;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace colo

#endif  // COLO_PROTO_BASE_METRICS_HTTP_SERVER_H_
