#include "controller/metrics.h"


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

}  // namespace controller
}  // namespace colo
