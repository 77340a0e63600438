// Prometheus text exposition of the controller's state, and a tiny blocking
// HTTP responder that serves it (--metrics_port).
#ifndef COLO_CONTROLLER_METRICS_H_
#define COLO_CONTROLLER_METRICS_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "colo/v1/controller.pb.h"

namespace colo {
namespace controller {

// Metrics (all prefixed colo_controller_):
//   phase{phase="..."}                  1 for the current phase, 0 otherwise
//   step                                the RL step of the node
//   phase_duration_seconds{phase,step}  durations of the recent phases
//   engine_healthy{engine}              1 / 0
//   engine_tag_resident_bytes{engine,tag}, engine_tag_reserved_bytes{engine,tag}
//   engine_device_free_bytes{engine}, engine_caching_reserved_bytes{engine}
//   verification_failures_total         releases that did not verify
std::string RenderMetrics(const ::colo::v1::NodeState& state, int64_t verification_failures);

// Serves GET /metrics (any path) on 127.0.0.1 or 0.0.0.0:port with the text
// `render()` returns, one connection at a time, on its own thread.
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

}  // namespace controller
}  // namespace colo

#endif  // COLO_CONTROLLER_METRICS_H_
