// Tensor-parallel decode on the CPU: the same model and greedy decode batch
// through an in-process EngineRuntime with --tp_size=1 (1 and N compute
// threads) and with --tp_size=N (rank 0 here, ranks 1..N-1 as child
// processes of this binary, one compute thread each: N processes on N
// cores). Prints decode tokens/s, the time per forward step, and for TP the
// share of a step rank 0 spends in the all-reduce / all-gather collectives
// and waiting for the other ranks. See bench/tp/README.md.
//
// This binary is also the other ranks' process: started with --tp_rank >= 1
// it runs RunTpFollower (as colo-engine does).
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "engine/model/tiny_model.h"
#include "engine/server/engine_runtime.h"
#include "engine/tp/gloo_tp_comm.h"
#include "engine/tp/tp_channel.h"
#include "engine/tp/tp_follower.h"

ABSL_FLAG(int, layers, 8, "Model layers.");
ABSL_FLAG(int, hidden, 1024, "Model hidden size.");
ABSL_FLAG(int, heads, 16, "Attention heads.");
ABSL_FLAG(int, kv_heads, 8, "KV heads.");
ABSL_FLAG(int, intermediate, 2816, "MLP intermediate size.");
ABSL_FLAG(int, vocab, 32000, "Model vocabulary.");
ABSL_FLAG(std::string, batches, "1,8", "Decode batch sizes.");
ABSL_FLAG(int, prompt_len, 32, "Prompt tokens per request.");
ABSL_FLAG(int, new_tokens, 64, "New tokens per request.");
ABSL_FLAG(bool, allreduce_only, false, "Print the all-reduce latencies only.");
ABSL_FLAG(int, rounds, 2, "Measured rounds per configuration (the best is printed).");
ABSL_FLAG(std::string, dir, "/tmp/colo_tp_bench_model", "Where the model is written.");
// Set on the other ranks' processes (by rank 0, as for colo-engine).
ABSL_FLAG(int, tp_size, 2, "Ranks of the tensor-parallel configuration.");
ABSL_FLAG(int, tp_rank, 0, "Internal: this process is rank R >= 1 of rank 0's engine.");
ABSL_FLAG(std::string, tp_master, "", "Internal: rank 0's HOST:PORT.");
ABSL_FLAG(int, cpu_threads, 0, "Internal: compute threads of a follower rank.");
ABSL_FLAG(int64_t, tp_heartbeat_timeout_ms, 10000, "Internal: heartbeat bound.");
ABSL_FLAG(int64_t, tp_init_timeout_ms, 300000, "Internal: start-up bound.");

namespace colo::engine {
namespace {

struct Result {
  double tokens_per_second = 0;
  double step_ms = 0;
  double collective_share = 0;  // of rank 0's step time
  double wait_share = 0;
};

// Greedy decode of `batch` requests; best of `rounds`.
Result Decode(EngineRuntime& rt, int batch) {
  Result best;
  for (int round = 0; round < absl::GetFlag(FLAGS_rounds); ++round) {
    TpStepStats before;
    if (rt.tp_runner() != nullptr) before = rt.tp_runner()->stats();
    const int64_t steps_before = rt.scheduler().Snapshot().steps_total;
    std::vector<std::shared_ptr<RequestStream>> streams;
    const absl::Time start = absl::Now();
    for (int r = 0; r < batch; ++r) {
      GenerateSpec spec;
      spec.input_ids = TinyPrompt(round * 1000 + r, absl::GetFlag(FLAGS_prompt_len),
                                  absl::GetFlag(FLAGS_vocab));
      spec.max_new_tokens = absl::GetFlag(FLAGS_new_tokens);
      spec.ignore_eos = true;
      absl::StatusOr<std::shared_ptr<RequestStream>> s = rt.scheduler().Submit(spec);
      if (!s.ok()) {
        std::fprintf(stderr, "submit: %s\n", s.status().ToString().c_str());
        std::exit(1);
      }
      streams.push_back(*s);
    }
    int64_t generated = 0;
    for (auto& s : streams) {
      while (true) {
        StreamChunk c = s->Next(absl::InfiniteFuture());
        generated += static_cast<int64_t>(c.tokens.size());
        if (!c.finished) continue;
        if (!c.error.ok()) {
          std::fprintf(stderr, "request failed: %s\n", c.error.ToString().c_str());
          std::exit(1);
        }
        break;
      }
    }
    const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
    const int64_t steps = rt.scheduler().Snapshot().steps_total - steps_before;
    Result r;
    r.tokens_per_second = generated / seconds;
    r.step_ms = steps > 0 ? 1000 * seconds / steps : 0;
    if (rt.tp_runner() != nullptr) {
      const TpStepStats after = rt.tp_runner()->stats();
      const double step_us = static_cast<double>(after.step_micros - before.step_micros);
      if (step_us > 0) {
        r.collective_share = (after.collective_micros - before.collective_micros) / step_us;
        r.wait_share = (after.wait_micros - before.wait_micros) / step_us;
      }
    }
    if (r.tokens_per_second > best.tokens_per_second) best = r;
  }
  return best;
}

// Latency of one AllReduceSum of `floats` floats between `size` in-process
// ranks (threads, real Gloo over loopback): the collective's own cost,
// without a forward step's skew between the ranks. Median of `iters`.
double AllReduceMicros(int size, int64_t floats, int iters) {
  absl::StatusOr<std::unique_ptr<weight_sync::TcpStoreServer>> server =
      weight_sync::TcpStoreServer::Start(
          {.bind_address = "127.0.0.1", .port = 0, .group_name = "colo-tp", .world_size = size});
  if (!server.ok()) return -1;
  const int port = (*server)->port();
  std::vector<std::unique_ptr<weight_sync::TcpStoreServer>> servers(size);
  servers[0] = *std::move(server);
  std::vector<double> micros;
  std::vector<std::thread> threads;
  for (int rank = 0; rank < size; ++rank) {
    threads.emplace_back([&, rank, srv = std::move(servers[rank])]() mutable {
      GlooTpComm::Options o;
      o.master_port = port;
      o.rank = rank;
      o.size = size;
      absl::StatusOr<std::unique_ptr<GlooTpComm>> comm = GlooTpComm::Create(o, std::move(srv));
      if (!comm.ok()) return;
      std::vector<float> data(static_cast<size_t>(floats), 1.0f);
      for (int i = 0; i < iters; ++i) {
        const absl::Time start = absl::Now();
        if (!(*comm)->AllReduceSum(data.data(), floats).ok()) return;
        if (rank == 0) micros.push_back(absl::ToDoubleMicroseconds(absl::Now() - start));
      }
    });
  }
  for (auto& t : threads) t.join();
  if (micros.empty()) return -1;
  std::sort(micros.begin(), micros.end());
  return micros[micros.size() / 2];
}

int Main() {
  TinyModelOptions m;
  m.arch = "llama";
  m.layers = absl::GetFlag(FLAGS_layers);
  m.hidden = absl::GetFlag(FLAGS_hidden);
  m.heads = absl::GetFlag(FLAGS_heads);
  m.kv_heads = absl::GetFlag(FLAGS_kv_heads);
  m.intermediate = absl::GetFlag(FLAGS_intermediate);
  m.vocab = absl::GetFlag(FLAGS_vocab);
  m.max_position = 4096;
  m.seed = 1;
  const std::string dir = absl::GetFlag(FLAGS_dir);
  if (absl::Status s = WriteTinyModel(m, dir); !s.ok()) {
    std::fprintf(stderr, "%s\n", s.ToString().c_str());
    return 1;
  }
  const absl::StatusOr<ModelConfig> config = TinyModelConfig(m);
  const int n = absl::GetFlag(FLAGS_tp_size);
  std::printf("model: llama %d layers, hidden %d, %d/%d heads, intermediate %d, vocab %d "
              "(%.1f M params, float32); greedy decode, %d prompt + %d new tokens per request; "
              "best of %d rounds\n",
              m.layers, static_cast<int>(m.hidden), m.heads, m.kv_heads,
              static_cast<int>(m.intermediate), static_cast<int>(m.vocab),
              config.ok() ? config->NumParameters() / 1e6 : 0.0, absl::GetFlag(FLAGS_prompt_len),
              absl::GetFlag(FLAGS_new_tokens), absl::GetFlag(FLAGS_rounds));
  std::printf("%-28s %6s %10s %9s %12s %9s\n", "configuration", "batch", "tok/s", "ms/step",
              "collectives", "waiting");
  struct Config {
    std::string name;
    int tp_size;
    int threads;
  };
  const std::vector<Config> configs = {{"TP=1, 1 thread", 1, 1},
                                       {absl::StrCat("TP=1, ", n, " threads"), 1, n},
                                       {absl::StrCat("TP=", n, ", 1 thread per rank"), n, 1}};
  std::vector<int> batches;
  for (absl::string_view b : absl::StrSplit(absl::GetFlag(FLAGS_batches), ',')) {
    int v = 0;
    if (absl::SimpleAtoi(b, &v) && v > 0) batches.push_back(v);
  }
  std::printf("all-reduce alone (%d in-process ranks over Gloo loopback, median of 200):", n);
  for (int64_t tokens : {1, 8, 32}) {
    std::printf(" %lld x %d floats %.0f us;", static_cast<long long>(tokens),
                static_cast<int>(m.hidden),
                AllReduceMicros(n, tokens * m.hidden, 200));
  }
  std::printf("\n");
  std::fflush(stdout);
  if (absl::GetFlag(FLAGS_allreduce_only)) return 0;
  for (const Config& c : configs) {
    EngineOptions o;
    o.model_dir = dir;
    o.device = "cpu";
    o.kv_cache_bytes = int64_t{256} << 20;
    o.cpu_threads = c.threads;
    o.tp_size = c.tp_size;
    o.tp_init_timeout_ms = absl::GetFlag(FLAGS_tp_init_timeout_ms);
    absl::StatusOr<std::unique_ptr<EngineRuntime>> rt = EngineRuntime::Create(o);
    if (!rt.ok()) {
      std::fprintf(stderr, "%s: %s\n", c.name.c_str(), rt.status().ToString().c_str());
      return 1;
    }
    (void)Decode(**rt, 1);  // warm-up
    for (int batch : batches) {
      const Result r = Decode(**rt, batch);
      std::printf("%-28s %6d %10.1f %9.2f %11.1f%% %8.1f%%\n", c.name.c_str(), batch,
                  r.tokens_per_second, r.step_ms, 100 * r.collective_share, 100 * r.wait_share);
      std::fflush(stdout);
    }
  }
  return 0;
}

}  // namespace
}  // namespace colo::engine

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  if (absl::GetFlag(FLAGS_tp_rank) > 0) {
    colo::engine::TpFollowerOptions fo;
    fo.rank = absl::GetFlag(FLAGS_tp_rank);
    fo.tp_size = absl::GetFlag(FLAGS_tp_size);
    if (absl::Status s = colo::engine::ParseHostPort(absl::GetFlag(FLAGS_tp_master), "--tp_master",
                                                     &fo.master_host, &fo.master_port);
        !s.ok()) {
      std::fprintf(stderr, "%s\n", s.ToString().c_str());
      return 1;
    }
    fo.cpu_threads = absl::GetFlag(FLAGS_cpu_threads);
    fo.master_timeout = 3 * absl::Milliseconds(absl::GetFlag(FLAGS_tp_heartbeat_timeout_ms));
    fo.connect_timeout = absl::Milliseconds(absl::GetFlag(FLAGS_tp_init_timeout_ms));
    const absl::Status s = colo::engine::RunTpFollower(fo);
    std::fflush(stderr);
    std::_Exit(s.ok() ? 0 : 1);
  }
  return colo::engine::Main();
}
