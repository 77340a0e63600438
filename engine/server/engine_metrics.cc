#include "engine/server/engine_metrics.h"

#include "absl/strings/str_cat.h"
#include "engine/memory/memory_tag.h"

namespace colo::engine {
namespace {

void Header(std::string* out, const std::string& name, const char* type, const char* help) {
  absl::StrAppend(out, "# HELP colo_engine_", name, " ", help, "\n# TYPE colo_engine_", name, " ",
                  type, "\n");
}

void Metric(std::string* out, const std::string& name, const std::string& labels, double value) {
  absl::StrAppend(out, "colo_engine_", name, labels.empty() ? "" : "{", labels,
                  labels.empty() ? "" : "}", " ", value, "\n");
}

void Simple(std::string* out, const std::string& name, const char* type, const char* help,
            double value) {
  Header(out, name, type, help);
  Metric(out, name, "", value);
}

}  // namespace

std::string RenderEngineMetrics(const SchedulerSnapshot& s, const MemoryInfo& memory) {
  std::string out;
  Simple(&out, "generated_tokens_total", "counter", "tokens generated",
         static_cast<double>(s.generated_tokens_total));
  Simple(&out, "prompt_tokens_total", "counter", "prompt tokens of admitted requests",
         static_cast<double>(s.prompt_tokens_total));
  Simple(&out, "cached_tokens_total", "counter", "prompt tokens served from the prefix cache",
         static_cast<double>(s.cached_tokens_total));
  Simple(&out, "tokens_per_second", "gauge", "generated tokens per second (last window)",
         s.tokens_per_second);
  Simple(&out, "steps_total", "counter", "forward steps", static_cast<double>(s.steps_total));
  Simple(&out, "retractions_total", "counter", "requests retracted for lack of KV pages",
         static_cast<double>(s.retractions_total));
  Simple(&out, "running_requests", "gauge", "requests in the running batch", s.num_running);
  Simple(&out, "waiting_requests", "gauge", "requests waiting to be scheduled", s.num_waiting);
  Simple(&out, "sessions", "gauge", "open streaming sessions", s.num_sessions);
  Header(&out, "kv_pool_pages", "gauge", "KV pool pages by kind");
  for (const PoolSnapshot& p : s.kv_pools) {
    const std::pair<const char*, int64_t> kinds[] = {
        {"capacity", p.usage.capacity},       {"free", p.usage.free},
        {"evictable", p.usage.evictable},     {"protected", p.usage.protected_pages},
        {"session_held", p.usage.session_held}, {"in_flight", p.usage.in_flight}};
    for (const auto& [kind, value] : kinds) {
      Metric(&out, "kv_pool_pages", absl::StrCat("pool=\"", p.name, "\",kind=\"", kind, "\""),
             static_cast<double>(value));
    }
  }
  Header(&out, "kv_pool_bytes", "gauge", "bytes of each KV pool (kv_cache tag)");
  for (const PoolSnapshot& p : s.kv_pools) {
    Metric(&out, "kv_pool_bytes", absl::StrCat("pool=\"", p.name, "\""), static_cast<double>(p.bytes));
  }
  Header(&out, "tag_resident_bytes", "gauge", "physical bytes mapped per memory tag");
  for (const TagInfo& t : memory.pool.tags) {
    Metric(&out, "tag_resident_bytes", absl::StrCat("tag=\"", MemoryTagName(t.tag), "\""),
           static_cast<double>(t.resident_bytes));
  }
  Header(&out, "tag_reserved_bytes", "gauge", "virtual bytes reserved per memory tag");
  for (const TagInfo& t : memory.pool.tags) {
    Metric(&out, "tag_reserved_bytes", absl::StrCat("tag=\"", MemoryTagName(t.tag), "\""),
           static_cast<double>(t.reserved_bytes));
  }
  Header(&out, "tag_released", "gauge", "1 while the memory tag is released");
  for (const TagInfo& t : memory.pool.tags) {
    Metric(&out, "tag_released", absl::StrCat("tag=\"", MemoryTagName(t.tag), "\""),
           t.state == TagState::kReleased ? 1 : 0);
  }
  Simple(&out, "caching_allocator_reserved_bytes", "gauge", "caching allocator reserved bytes",
         static_cast<double>(memory.allocator.reserved_bytes));
  Simple(&out, "caching_allocator_allocated_bytes", "gauge", "caching allocator allocated bytes",
         static_cast<double>(memory.allocator.allocated_bytes));
  Simple(&out, "device_free_bytes", "gauge", "device free bytes (cpu: MemAvailable)",
         static_cast<double>(memory.device_memory.free_bytes));
  Simple(&out, "process_resident_bytes", "gauge", "process RSS (cpu backend)",
         static_cast<double>(memory.device_memory.process_resident_bytes));
  Header(&out, "paused", "gauge", "1 while generation is paused in that mode");
  for (PauseMode m : {PauseMode::kAbort, PauseMode::kRetract, PauseMode::kInPlace}) {
    Metric(&out, "paused", absl::StrCat("mode=\"", PauseModeName(m), "\""),
           s.state.paused_mode == m ? 1 : 0);
  }
  Simple(&out, "needs_weights", "gauge", "1 while the engine waits for new weights",
         s.state.needs_weights ? 1 : 0);
  Simple(&out, "kv_audits_total", "counter", "KV accounting checks run on idle",
         static_cast<double>(s.kv_audits_total));
  Simple(&out, "kv_audit_violations_total", "counter", "KV accounting violations found",
         static_cast<double>(s.kv_audit_violations_total));
  return out;
}

}  // namespace colo::engine
