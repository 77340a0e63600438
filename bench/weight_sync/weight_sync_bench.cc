// Weight-sync throughput over Gloo on loopback: a full update (validate,
// double-buffered receive into a ModelWeightUpdateSink, commit vote, commit)
// versus a raw Gloo broadcast of the same bytes in the same bucket sizes,
// between the same ranks in the same run. Prints figures; asserts nothing.
//
//   bench/weight_sync:weight_sync_bench [--engines=1] [--layers=3]
//       [--bucket_mb=64] [--repeat=3]
#include <cstdio>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/time/clock.h"
#include "engine/device/cpu_backend.h"
#include "engine/memory/caching_allocator.h"
#include "engine/memory/tagged_pool.h"
#include "engine/model/model_weights.h"
#include "engine/model/tiny_model.h"
#include "engine/model/weight_update_sink.h"
#include "weight_sync/broadcast_sender.h"
#include "weight_sync/bucket_plan.h"
#include "weight_sync/receiver.h"
#include "weight_sync/tcp_store.h"
#include "weight_sync/transport.h"

ABSL_FLAG(int, engines, 1, "Engine ranks (each with its own model copy).");
ABSL_FLAG(int, layers, 3, "Layers of the 2048-hidden model (3 = 1.06 GiB f32).");
ABSL_FLAG(int, bucket_mb, 64, "Bucket size in MiB.");
ABSL_FLAG(int, repeat, 3, "Rounds of (raw broadcast, update).");

namespace colo {
namespace weight_sync {
namespace {

struct Engine {
  std::unique_ptr<engine::CpuBackend> backend;
  std::unique_ptr<engine::TaggedPool> pool;
  std::unique_ptr<engine::CachingAllocator> allocator;
  std::unique_ptr<engine::ModelWeights> weights;
  std::unique_ptr<Transport> transport;
};

double Secs(absl::Duration d) { return absl::ToDoubleSeconds(d); }

int Main() {
  const int n = absl::GetFlag(FLAGS_engines);
  const size_t bucket = static_cast<size_t>(absl::GetFlag(FLAGS_bucket_mb)) << 20;
  engine::TinyModelOptions mo;
  mo.layers = absl::GetFlag(FLAGS_layers);
  mo.hidden = 2048;
  mo.intermediate = 5632;
  mo.heads = 16;
  mo.kv_heads = 16;
  mo.vocab = 32000;
  const engine::ModelConfig config = engine::TinyModelConfig(mo).value();

  std::vector<Engine> engines(n);
  for (Engine& e : engines) {
    e.backend = engine::CpuBackend::Create({}).value();
    engine::TaggedPool::Options po;
    po.backend = e.backend.get();
    e.pool = engine::TaggedPool::Create(po).value();
    engine::CachingAllocator::Options ao;
    ao.backend = e.backend.get();
    e.allocator = engine::CachingAllocator::Create(ao).value();
    e.weights = engine::ModelWeights::Allocate(config, e.pool.get()).value();
  }
  // The trainer's tensors: float32 with a pattern.
  std::vector<TensorSpec> specs;
  std::vector<std::vector<float>> data;
  std::vector<SendTensor> tensors;
  for (const auto& w : engines[0].weights->List()) {
    TensorSpec s;
    s.name = w.name;
    s.dtype = TensorDtype::kF32;
    s.shape = w.shape;
    specs.push_back(s);
    data.emplace_back(w.NumElements());
    for (size_t i = 0; i < data.back().size(); ++i) data.back()[i] = 1e-3f * (i % 1000);
  }
  for (size_t i = 0; i < specs.size(); ++i) tensors.push_back({specs[i], data[i].data()});
  const BucketPlan plan = MakeBucketPlan(specs, bucket).value();
  std::printf("model: %zu tensors, %.3f GiB float32, %zu buckets of %d MiB, %d engine rank(s)\n",
              specs.size(), plan.tensor_bytes / double(1 << 30), plan.buckets.size(),
              absl::GetFlag(FLAGS_bucket_mb), n);

  // Form the group: rank 0 here, engine ranks on threads.
  TcpStoreServer::Options so;
  so.group_name = "bench";
  so.world_size = 1 + n;
  auto server = TcpStoreServer::Start(so).value();
  TransportOptions to;
  to.group_name = "bench";
  to.master_port = server->port();
  to.world_size = 1 + n;
  to.init_timeout = absl::Seconds(60);
  to.transfer_timeout = absl::Seconds(300);
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i) {
    threads.emplace_back([&, i] {
      TransportOptions o = to;
      o.rank = 1 + i;
      engines[i].transport = CreateTransport(o).value();
    });
  }
  to.rank = 0;
  std::unique_ptr<Transport> sender = CreateTransport(to, std::move(server)).value();
  for (auto& t : threads) t.join();

  std::vector<char> raw_src(bucket, 1);
  std::vector<std::vector<char>> raw_dst(n, std::vector<char>(bucket));
  // The same bytes from/to distinct memory (1 GiB each side), like the update.
  std::vector<char> big_src(plan.tensor_bytes + bucket, 1);
  std::vector<std::vector<char>> big_dst(n, std::vector<char>(plan.tensor_bytes + bucket, 0));
  auto raw_run = [&](bool distinct) {
    std::vector<std::thread> ts;
    const absl::Time r0 = absl::Now();
    for (int i = 0; i < n; ++i) {
      ts.emplace_back([&, i] {
        size_t off = 0;
        for (const Bucket& b : plan.buckets) {
          char* dst = distinct ? big_dst[i].data() + off : raw_dst[i].data();
          if (!engines[i].transport->Broadcast(dst, b.bytes, 0).ok()) std::abort();
          off += b.bytes;
        }
      });
    }
    size_t off = 0;
    for (const Bucket& b : plan.buckets) {
      char* src = distinct ? big_src.data() + off : raw_src.data();
      if (!sender->Broadcast(src, b.bytes, 0).ok()) std::abort();
      off += b.bytes;
    }
    for (auto& t : ts) t.join();
    return Secs(absl::Now() - r0);
  };
  for (int round = 0; round < absl::GetFlag(FLAGS_repeat); ++round) {
    // Raw Gloo broadcast of the same byte counts: reusing one bucket-sized
    // buffer per side (cache-friendly floor), and across distinct memory.
    const double raw_s = raw_run(false);
    const double raw_big_s = raw_run(true);

    // The full update (the first and last value of every tensor differ per
    // round, so each round's check sees that round's commit).
    for (std::vector<float>& d : data) {
      d.front() = static_cast<float>(round + 1);
      d.back() = static_cast<float>(round + 2);
    }
    threads.clear();
    std::vector<absl::StatusOr<UpdateTimings>> results(n, absl::UnknownError(""));
    std::vector<std::unique_ptr<engine::ModelWeightUpdateSink>> sinks;
    for (Engine& e : engines) {
      sinks.push_back(
          engine::ModelWeightUpdateSink::Create({e.weights.get(), e.allocator.get()}).value());
    }
    const absl::Time u0 = absl::Now();
    for (int i = 0; i < n; ++i) {
      threads.emplace_back([&, i] {
        ReceiverOptions ro;
        ro.transport = engines[i].transport.get();
        ro.sink = sinks[i].get();
        ro.staging = engines[i].allocator.get();
        results[i] = ReceiveUpdate(ro, specs, bucket);
      });
    }
    SendOptions sop;
    sop.transport = sender.get();
    sop.bucket_bytes = bucket;
    absl::StatusOr<SendReport> sent = SendUpdate(sop, tensors);
    for (auto& t : threads) t.join();
    const double upd_s = Secs(absl::Now() - u0);
    if (!sent.ok() || !results[0].ok()) {
      std::fprintf(stderr, "update failed: %s %s\n", sent.status().ToString().c_str(),
                   results[0].status().ToString().c_str());
      return 1;
    }
    // Every byte landed, on every engine (outside the timed section).
    for (Engine& e : engines) {
      const std::vector<engine::WeightInfo> live = e.weights->List();
      for (size_t i = 0; i < live.size(); ++i) {
        if (std::memcmp(live[i].data, data[i].data(), data[i].size() * sizeof(data[i][0])) !=
            0) {
          std::fprintf(stderr, "update did not land: %s\n", live[i].name.c_str());
          return 1;
        }
      }
    }
    const engine::ModelWeightUpdateSink::CommitStats& cs = sinks[0]->last_commit_stats();
    const double gib = plan.tensor_bytes / double(1 << 30);
    const UpdateTimings& t = *results[0];
    std::printf(
        "round %d: raw broadcast %.3f s (%.2f GiB/s), raw distinct-memory %.3f s "
        "(%.2f GiB/s) | update %.3f s (%.2f GiB/s) ratio %.3f / %.3f, transfer-only "
        "ratio %.3f | engine 0: validate %.1f ms, transfer %.1f ms, apply %.1f ms "
        "(overlapped), commit %.1f ms (%.1f MiB pages exchanged, %.2f MiB copied)\n",
        round, raw_s, gib / raw_s, raw_big_s, gib / raw_big_s, upd_s, gib / upd_s,
        raw_s / upd_s, raw_big_s / upd_s, raw_big_s / (t.transfer_us / 1e6),
        t.validate_us / 1e3,
        t.transfer_us / 1e3, t.apply_us / 1e3, t.commit_us / 1e3,
        cs.exchanged_bytes / double(1 << 20), cs.copied_bytes / double(1 << 20));
  }
  return 0;
}

}  // namespace
}  // namespace weight_sync
}  // namespace colo

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return colo::weight_sync::Main();
}
