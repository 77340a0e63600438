// Control-plane overhead of the colocated cycle, with real processes: N CPU
// engines, a controller (journal on local disk) and the demo trainer.
//
// Two kinds of cycle alternate:
//   controller: the trainer's RunCycle (rollout, PrepareTraining, train,
//               BeginWeightSync, Gloo broadcast, FinishWeightSync);
//   direct:     the same engine calls the controller makes for each
//               transition, issued by this process straight to the engines
//               (one thread per engine, like the controller): pause +
//               GetMemoryInfo + release + GetMemoryInfo; resume(weights) +
//               GetMemoryInfo; resume(kv_cache, cuda_graph) + GetMemoryInfo +
//               continue — i.e. the engines' own release/resume work plus the
//               RPC round trips to them.
// Control-plane overhead of a transition = median(controller RPC as the
// trainer sees it) - median(direct equivalent): the trainer->controller RPC,
// journal fsyncs, verification and bookkeeping. Prints figures; asserts
// nothing about time.
//
//   bazel run //bench/controller:cycle_bench -- --engines=2 --cycles=7
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "controller/demo/demo_trainer.h"
#include "grpcpp/grpcpp.h"
#include "tests/e2e/e2e_fixture.h"

ABSL_FLAG(int, engines, 2, "Engines of the node.");
ABSL_FLAG(int, cycles, 7, "Measured cycles of each kind (after one warm-up).");

namespace colo::bench {
namespace {

using test_util::E2ENode;

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

absl::Status Check(const grpc::Status& s, const std::string& what) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      absl::StrCat(what, ": ", s.error_message()));
}

template <typename Fn>
absl::Status ForEach(int n, Fn fn) {
  std::vector<absl::Status> r(n);
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i) threads.emplace_back([&, i] { r[i] = fn(i); });
  for (auto& t : threads) t.join();
  for (auto& s : r) {
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

std::chrono::system_clock::time_point Deadline() {
  return std::chrono::system_clock::now() + std::chrono::seconds(60);
}

absl::Status Memory(v1::RolloutEngine::Stub& stub) {
  grpc::ClientContext c;
  c.set_deadline(Deadline());
  v1::GetMemoryInfoResponse o;
  return Check(stub.GetMemoryInfo(&c, v1::GetMemoryInfoRequest(), &o), "GetMemoryInfo");
}

absl::Status Release(v1::RolloutEngine::Stub& stub) {
  {
    grpc::ClientContext c;
    c.set_deadline(Deadline());
    v1::PauseGenerationRequest r;
    r.set_mode("retract");
    v1::PauseGenerationResponse o;
    if (auto s = Check(stub.PauseGeneration(&c, r, &o), "Pause"); !s.ok()) return s;
  }
  if (auto s = Memory(stub); !s.ok()) return s;
  {
    grpc::ClientContext c;
    c.set_deadline(Deadline());
    v1::ReleaseTagsRequest r;
    for (const char* t : {"weights", "kv_cache", "cuda_graph"}) r.add_tags(t);
    v1::ReleaseTagsResponse o;
    if (auto s = Check(stub.ReleaseTags(&c, r, &o), "Release"); !s.ok()) return s;
  }
  return Memory(stub);
}

absl::Status Resume(v1::RolloutEngine::Stub& stub, const std::vector<std::string>& tags,
                    bool and_continue) {
  {
    grpc::ClientContext c;
    c.set_deadline(Deadline());
    v1::ResumeTagsRequest r;
    for (const auto& t : tags) r.add_tags(t);
    v1::ResumeTagsResponse o;
    if (auto s = Check(stub.ResumeTags(&c, r, &o), "Resume"); !s.ok()) return s;
  }
  if (auto s = Memory(stub); !s.ok()) return s;
  if (!and_continue) return absl::OkStatus();
  grpc::ClientContext c;
  c.set_deadline(Deadline());
  v1::ContinueGenerationRequest r;
  r.set_torch_empty_cache(true);
  v1::ContinueGenerationResponse o;
  return Check(stub.ContinueGeneration(&c, r, &o), "Continue");
}

int Run() {
  const int n = absl::GetFlag(FLAGS_engines);
  const int cycles = absl::GetFlag(FLAGS_cycles);
  absl::StatusOr<std::string> model = test_util::E2EModel();
  if (!model.ok()) return std::printf("model: %s\n", model.status().ToString().c_str()), 1;
  test_util::NodeOptions node_options;
  node_options.num_engines = n;
  absl::StatusOr<std::unique_ptr<E2ENode>> node = E2ENode::Start(*model, node_options);
  if (!node.ok()) return std::printf("node: %s\n", node.status().ToString().c_str()), 1;
  auto trainer_options = (*node)->TrainerOptions();
  trainer_options.num_prompts = 4;
  trainer_options.max_new_tokens = 8;
  auto trainer = controller::demo::DemoTrainer::Create(trainer_options);
  if (!trainer.ok()) return std::printf("trainer: %s\n", trainer.status().ToString().c_str()), 1;

  std::map<std::string, std::vector<double>> phase_ms;  // controller cycles
  std::vector<double> total_ms;
  std::vector<double> direct_release, direct_weights, direct_kv, direct_bcast;
  int64_t step = 1;
  for (int c = 0; c <= cycles; ++c) {
    // Controller-driven cycle.
    absl::StatusOr<controller::demo::CycleReport> report = (*trainer)->RunCycle(step++);
    if (!report.ok()) return std::printf("cycle: %s\n", report.status().ToString().c_str()), 1;
    // Direct cycle with the same engine work, no controller.
    absl::StatusOr<v1::BeginWeightSyncResponse> group = [&]() {
      v1::BeginWeightSyncResponse g;
      *g.mutable_group() = v1::WeightSyncGroup();
      g.mutable_group()->set_backend("gloo");
      g.mutable_group()->set_master_address("127.0.0.1");
      g.mutable_group()->set_group_name("bench_direct");
      g.mutable_group()->set_world_size(n + 1);
      for (int i = 0; i < n; ++i) {
        auto* e = g.add_engines();
        e->set_address((*node)->engine_address(i));
        e->set_rank(i + 1);
      }
      return absl::StatusOr<v1::BeginWeightSyncResponse>(g);
    }();
    const int64_t direct_step = step++;
    absl::Time t = absl::Now();
    absl::Status s = ForEach(n, [&](int i) { return Release((*node)->engine_stub(i)); });
    const double release_ms = absl::ToDoubleMilliseconds(absl::Now() - t);
    if (s.ok()) s = (*trainer)->Train(direct_step).status();
    t = absl::Now();
    if (s.ok()) s = ForEach(n, [&](int i) { return Resume((*node)->engine_stub(i), {"weights"}, false); });
    const double weights_ms = absl::ToDoubleMilliseconds(absl::Now() - t);
    std::vector<weight_sync::EngineUpdateResult> updates;
    t = absl::Now();
    if (s.ok()) s = (*trainer)->Broadcast(direct_step, *group, &updates).status();
    const double bcast_ms = absl::ToDoubleMilliseconds(absl::Now() - t);
    t = absl::Now();
    if (s.ok()) {
      s = ForEach(n, [&](int i) {
        return Resume((*node)->engine_stub(i), {"kv_cache", "cuda_graph"}, true);
      });
    }
    const double kv_ms = absl::ToDoubleMilliseconds(absl::Now() - t);
    if (!s.ok()) return std::printf("direct cycle: %s\n", s.ToString().c_str()), 1;
    if (c == 0) continue;  // warm-up
    for (const auto& p : report->phases) phase_ms[p.name].push_back(p.duration_us / 1e3);
    total_ms.push_back(report->total_us / 1e3);
    direct_release.push_back(release_ms);
    direct_weights.push_back(weights_ms);
    direct_kv.push_back(kv_ms);
    direct_bcast.push_back(bcast_ms);
  }

  std::printf("colo controller cycle bench: %d CPU engines, model %s (17 MiB f32 weights, "
              "16 MiB KV), %d cycles each kind, medians\n\n", n, model->c_str(), cycles);
  std::printf("end-to-end cycle (controller-driven), ms:\n");
  for (const char* name : {"rollout", "prepare_training", "train", "begin_weight_sync",
                           "broadcast", "finish_weight_sync"}) {
    std::printf("  %-20s %9.2f\n", name, Median(phase_ms[name]));
  }
  std::printf("  %-20s %9.2f\n\n", "total", Median(total_ms));
  struct Row { const char* what; double via; double direct; };
  const Row rows[] = {
      {"PrepareTraining", Median(phase_ms["prepare_training"]), Median(direct_release)},
      {"BeginWeightSync", Median(phase_ms["begin_weight_sync"]), Median(direct_weights)},
      {"FinishWeightSync", Median(phase_ms["finish_weight_sync"]), Median(direct_kv)},
  };
  std::printf("%-18s %14s %14s %14s %16s\n", "transition", "controller ms", "direct ms",
              "overhead ms", "overhead/engine");
  double over = 0;
  for (const Row& r : rows) {
    std::printf("%-18s %14.2f %14.2f %14.2f %16.2f\n", r.what, r.via, r.direct, r.via - r.direct,
                (r.via - r.direct) / n);
    over += r.via - r.direct;
  }
  std::printf("%-18s %14s %14s %14.2f %16.2f   (goal < 10 ms per engine)\n", "cycle total", "",
              "", over, over / n);
  std::printf("\nbroadcast (trainer, incl. group formation and teardown): controller cycles "
              "%.2f ms, direct cycles %.2f ms\n",
              Median(phase_ms["broadcast"]), Median(direct_bcast));
  return 0;
}

}  // namespace
}  // namespace colo::bench

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return colo::bench::Run();
}
