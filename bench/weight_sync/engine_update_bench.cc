// Engine-level weight-update throughput: colo-weight-sender's library
// (WeightSender, rank 0 in this process) updates a real colo-engine process
// (Gloo over 127.0.0.1) with a >= 1 GiB model, versus a raw Gloo broadcast
// of the same bytes in the same bucket sizes between two ranks of this
// process, alternating in the same run. Prints the engine's
// validate / transfer / apply / commit split. Asserts nothing.
//
//   bazel run //bench/weight_sync:engine_update_bench --
//       [--layers=3] [--bucket_mb=64] [--repeat=3] [--model_dir=DIR]
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "engine/model/safetensors.h"
#include "engine/model/tiny_model.h"
#include "tests/util/server_process.h"
#include "weight_sync/bucket_plan.h"
#include "weight_sync/sender.h"
#include "weight_sync/tcp_store.h"
#include "weight_sync/transport.h"

ABSL_FLAG(int, layers, 3, "Layers of the 2048-hidden model (3 = 1.06 GiB f32).");
ABSL_FLAG(int, bucket_mb, 64, "Bucket size in MiB.");
ABSL_FLAG(int, repeat, 3, "Rounds of (raw broadcast, engine update).");
ABSL_FLAG(std::string, model_dir, "/tmp/colo_engine_update_bench_model",
          "Where the model is written (reused when present).");
ABSL_FLAG(std::string, engine_binary, "engine/server/colo-engine",
          "colo-engine (runfiles-relative under bazel run).");

namespace colo {
namespace weight_sync {
namespace {

double Secs(absl::Duration d) { return absl::ToDoubleSeconds(d); }
double Ms(int64_t us) { return us / 1000.0; }

// Raw Gloo broadcast of `src` into `dst` in buckets of the plan's sizes,
// rank 0 on this thread and rank 1 on another; returns the wall time.
absl::StatusOr<absl::Duration> RawBroadcast(const std::vector<Bucket>& buckets, char* src,
                                            char* dst) {
  TcpStoreServer::Options so;
  so.group_name = "raw";
  so.world_size = 2;
  absl::StatusOr<std::unique_ptr<TcpStoreServer>> server = TcpStoreServer::Start(so);
  if (!server.ok()) return server.status();
  TransportOptions o;
  o.group_name = "raw";
  o.world_size = 2;
  o.master_port = (*server)->port();
  absl::StatusOr<std::unique_ptr<Transport>> peer;
  std::thread join([&] {
    TransportOptions p = o;
    p.rank = 1;
    peer = CreateTransport(p);
  });
  absl::StatusOr<std::unique_ptr<Transport>> root = CreateTransport(o, std::move(server).value());
  join.join();
  if (!root.ok()) return root.status();
  if (!peer.ok()) return peer.status();
  absl::Status peer_status;
  const absl::Time start = absl::Now();
  std::thread recv([&] {
    size_t off = 0;
    for (const Bucket& b : buckets) {
      peer_status = (*peer)->Broadcast(dst + off, b.bytes, 0);
      if (!peer_status.ok()) return;
      off += b.bytes;
    }
  });
  size_t off = 0;
  absl::Status st;
  for (const Bucket& b : buckets) {
    st = (*root)->Broadcast(src + off, b.bytes, 0);
    if (!st.ok()) break;
    off += b.bytes;
  }
  recv.join();
  const absl::Duration took = absl::Now() - start;
  if (!st.ok()) return st;
  if (!peer_status.ok()) return peer_status;
  return took;
}

int Main() {
  const size_t bucket = static_cast<size_t>(absl::GetFlag(FLAGS_bucket_mb)) << 20;
  engine::TinyModelOptions mo;
  mo.layers = absl::GetFlag(FLAGS_layers);
  mo.hidden = 2048;
  mo.intermediate = 5632;
  mo.heads = 16;
  mo.kv_heads = 16;
  mo.vocab = 32000;
  mo.seed = 5;
  const std::string dir = absl::GetFlag(FLAGS_model_dir);
  if (!std::ifstream(dir + "/config.json").good()) {
    const absl::Time t = absl::Now();
    absl::Status st = engine::WriteTinyModel(mo, dir);
    if (!st.ok()) {
      std::fprintf(stderr, "WriteTinyModel: %s\n", st.ToString().c_str());
      return 1;
    }
    std::printf("wrote %s in %.1f s\n", dir.c_str(), Secs(absl::Now() - t));
  }
  auto ckpt = engine::SafetensorsCheckpoint::Open(dir);
  if (!ckpt.ok()) {
    std::fprintf(stderr, "%s\n", ckpt.status().ToString().c_str());
    return 1;
  }
  auto tensors = TensorsFromCheckpoint(**ckpt);
  if (!tensors.ok()) return 1;
  std::vector<TensorSpec> specs;
  for (const SendTensor& t : *tensors) specs.push_back(t.spec);
  auto plan = MakeBucketPlan(specs, bucket);
  if (!plan.ok()) return 1;
  const size_t total = plan->tensor_bytes;
  std::printf("model: %zu tensors, %.3f GiB, %zu buckets of %zu MiB\n", specs.size(),
              total / double(1 << 30), plan->buckets.size(), bucket >> 20);

  // The raw broadcast moves the same bucket byte counts from/to distinct
  // 1 GiB host buffers (what the update touches on both sides).
  size_t padded = 0;
  for (const Bucket& b : plan->buckets) padded += b.bytes;
  std::vector<char> src(padded), dst(padded);
  {
    size_t off = 0;
    for (const SendTensor& t : *tensors) {
      std::memcpy(src.data() + off, t.data, std::min(t.spec.Bytes(), padded - off));
      off += t.spec.Bytes();
      if (off >= padded) break;
    }
    std::memset(dst.data(), 0, dst.size());
  }

  test_util::ServerProcessOptions po;
  po.binary = absl::GetFlag(FLAGS_engine_binary);
  po.args = {absl::StrCat("--model=", dir), "--device=cpu", "--kv_cache_bytes=67108864",
             "--cpu_threads=1", "--weight_version=initial"};
  po.work_dir = "/tmp";
  po.name = "engine_update_bench_engine";
  po.start_timeout = absl::Minutes(5);
  const absl::Time ts = absl::Now();
  auto engine = test_util::ServerProcess::Start(po);
  if (!engine.ok()) {
    std::fprintf(stderr, "engine: %s\n", engine.status().ToString().c_str());
    return 1;
  }
  std::printf("engine %s serving after %.1f s\n", (*engine)->address().c_str(),
              Secs(absl::Now() - ts));

  WeightSenderOptions wo;
  wo.engines = {(*engine)->address()};
  wo.bucket_bytes = bucket;
  auto sender = WeightSender::Connect(wo);
  if (!sender.ok()) {
    std::fprintf(stderr, "connect: %s\n", sender.status().ToString().c_str());
    return 1;
  }

  std::printf("\n| round | raw GiB/s | update GiB/s | ratio | engine validate | transfer | "
              "apply (overlapped) | commit | sender ready / transfer / commit |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|\n");
  for (int round = 0; round < absl::GetFlag(FLAGS_repeat); ++round) {
    auto raw = RawBroadcast(plan->buckets, src.data(), dst.data());
    if (!raw.ok()) {
      std::fprintf(stderr, "raw: %s\n", raw.status().ToString().c_str());
      return 1;
    }
    std::vector<EngineUpdateResult> results;
    const absl::Time t0 = absl::Now();
    auto report = (*sender)->Update(*tensors, absl::StrCat("round-", round), true, &results);
    const absl::Duration update = absl::Now() - t0;
    if (!report.ok() || results.size() != 1) {
      std::fprintf(stderr, "update: %s\n", report.status().ToString().c_str());
      return 1;
    }
    const v1::UpdateWeightsResponse& r = results[0].response;
    const double gib = total / double(1 << 30);
    std::printf("| %d | %.2f | %.2f | %.2f | %.1f ms | %.1f ms | %.1f ms | %.1f ms | "
                "%.1f / %.1f / %.1f ms |\n",
                round, gib / Secs(*raw), gib / Secs(update), Secs(*raw) / Secs(update),
                Ms(r.validate_us()), Ms(r.transfer_us()), Ms(r.apply_us()), Ms(r.commit_us()),
                Ms(report->ready_us), Ms(report->transfer_us), Ms(report->commit_us));
    std::fflush(stdout);
  }
  (*sender)->DestroyGroup().IgnoreError();
  (*engine)->Terminate().IgnoreError();
  return 0;
}

}  // namespace
}  // namespace weight_sync
}  // namespace colo

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return colo::weight_sync::Main();
}
