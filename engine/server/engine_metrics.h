// Prometheus text exposition of the engine (served on --metrics_port).
//
// Metrics (all prefixed colo_engine_):
//   generated_tokens_total, prompt_tokens_total, cached_tokens_total   counters
//   tokens_per_second                     generated tokens/s, last window
//   steps_total, retractions_total        counters
//   running_requests, waiting_requests, sessions
//   kv_pool_pages{pool,kind}              capacity/free/evictable/protected/session_held/in_flight
//   kv_pool_bytes{pool}
//   tag_resident_bytes{tag}, tag_reserved_bytes{tag}, tag_released{tag}
//   caching_allocator_reserved_bytes, caching_allocator_allocated_bytes
//   paused{mode}                          1 while paused in that mode
//   needs_weights                         1 while new weights are required
//   kv_audits_total, kv_audit_violations_total
#ifndef COLO_ENGINE_SERVER_ENGINE_METRICS_H_
#define COLO_ENGINE_SERVER_ENGINE_METRICS_H_

#include <string>

#include "engine/memory/memory_info.h"
#include "engine/scheduler/scheduler.h"

namespace colo::engine {

std::string RenderEngineMetrics(const SchedulerSnapshot& snapshot, const MemoryInfo& memory);

}  // namespace colo::engine

#endif  // COLO_ENGINE_SERVER_ENGINE_METRICS_H_
