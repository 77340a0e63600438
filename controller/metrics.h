// Prometheus text exposition of the controller's state (served over HTTP by
// proto/server/metrics_http_server.h on --metrics_port).
#ifndef COLO_CONTROLLER_METRICS_H_
#define COLO_CONTROLLER_METRICS_H_

#include <string>

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

}  // namespace controller
}  // namespace colo

#endif  // COLO_CONTROLLER_METRICS_H_
