// CPU model throughput: decode tokens/s at several batch sizes and prefill
// tokens/s, on a model directory (e.g. a ~100M-parameter colo-tiny-model).
//   model_bench --model_dir=DIR [--batches=1,8,32] [--prompt_len=64]
//               [--decode_steps=16] [--prefill_len=256] [--linear=colo|blas]
// Prints one line per measurement: tokens/s in wall time and, since the dev
// machine is shared, also per second of this process's CPU time (with
// COLO_NUM_THREADS=1 that is the single-thread rate without the waits for
// the CPU). Compare with hf_bench.py on the same model and machine.
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "engine/device/cpu_backend.h"
#include "engine/memory/caching_allocator.h"
#include "engine/memory/tagged_pool.h"
#include "engine/model/forward.h"
#include "engine/model/simple_kv_cache.h"

ABSL_FLAG(std::string, model_dir, "", "Model directory.");
ABSL_FLAG(std::string, batches, "1,8,32", "Decode batch sizes.");
ABSL_FLAG(int, prompt_len, 64, "Prompt tokens before decoding.");
ABSL_FLAG(int, decode_steps, 16, "Timed decode steps per batch size.");
ABSL_FLAG(int, prefill_len, 256, "Prompt length for the prefill measurement.");
ABSL_FLAG(std::string, linear, "colo",
          "colo: batch-invariant kernels::Linear; blas: OpenBLAS for m > 1.");

namespace colo {
namespace engine {
namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// User + system CPU seconds of the whole process (all threads).
double CpuSeconds() {
  rusage u;
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_stime.tv_sec + 1e-6 * (u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

int Run() {
  auto backend = std::move(CpuBackend::Create({})).value();
  TaggedPool::Options po;
  po.backend = backend.get();
  auto pool = std::move(TaggedPool::Create(po)).value();
  CachingAllocator::Options ao;
  ao.backend = backend.get();
  auto allocator = std::move(CachingAllocator::Create(ao)).value();
  TransformerModel::Options mo;
  mo.model_dir = absl::GetFlag(FLAGS_model_dir);
  mo.weights_pool = pool.get();
  mo.allocator = allocator.get();
  auto model_or = TransformerModel::Load(mo);
  if (!model_or.ok()) {
    std::fprintf(stderr, "load: %s\n", model_or.status().ToString().c_str());
    return 1;
  }
  TransformerModel& model = **model_or;
  model.set_batch_invariant(absl::GetFlag(FLAGS_linear) != "blas");
  const ModelConfig& c = model.config();
  std::printf("model: %s, %lld parameters (%lld active), %d layers, hidden %lld, vocab %lld, "
              "threads %d, linear %s\n",
              c.model_type.c_str(), static_cast<long long>(c.NumParameters()),
              static_cast<long long>(c.NumActiveParameters()), c.num_layers,
              static_cast<long long>(c.hidden_size), static_cast<long long>(c.vocab_size),
              kernels::ThreadPool::Default()->num_threads(),
              absl::GetFlag(FLAGS_linear).c_str());
  auto token = [&](int i) { return static_cast<int32_t>((i * 7919 + 13) % c.vocab_size); };

  // Prefill.
  {
    const int n = absl::GetFlag(FLAGS_prefill_len);
    auto kv = std::move(SimpleKvCache::Create(c, n + 64, pool.get())).value();
    auto slots = std::move(kv->AddSequence(n)).value();
    std::vector<int32_t> tokens(n);
    for (int i = 0; i < n; ++i) tokens[i] = token(i);
    ForwardRequest r;
    r.new_tokens = tokens;
    r.slots = slots;
    std::vector<ForwardRequest> batch = {r};
    (void)model.Forward(batch, kv->view());  // warm up
    double t0 = Now(), c0 = CpuSeconds();
    auto res = model.Forward(batch, kv->view());
    double dt = Now() - t0, dc = CpuSeconds() - c0;
    if (!res.ok()) return 1;
    std::printf("prefill len %d: %.1f tokens/s (%.3f s; %.1f tokens per cpu-s)\n", n, n / dt,
                dt, n / dc);
  }
  for (absl::string_view b : absl::StrSplit(absl::GetFlag(FLAGS_batches), ',')) {
    int batch_size;
    if (!absl::SimpleAtoi(b, &batch_size)) return 1;
    const int p = absl::GetFlag(FLAGS_prompt_len), steps = absl::GetFlag(FLAGS_decode_steps);
    auto kv = std::move(SimpleKvCache::Create(c, batch_size * (p + steps + 2) + 64, pool.get())).value();
    std::vector<std::vector<int32_t>> seqs(batch_size), slots(batch_size);
    std::vector<ForwardRequest> batch(batch_size);
    for (int i = 0; i < batch_size; ++i) {
      for (int t = 0; t < p; ++t) seqs[i].push_back(token(i * 1000 + t));
      seqs[i].reserve(p + steps + 2);
      slots[i] = std::move(kv->AddSequence(p + steps + 2)).value();
      batch[i].new_tokens = seqs[i];
      batch[i].slots = slots[i];
    }
    auto res = model.Forward(batch, kv->view());  // prefill all
    if (!res.ok()) return 1;
    double t0 = 0, c0 = 0;
    for (int s = 0; s <= steps; ++s) {
      if (s == 1) {  // first decode step is warm-up
        t0 = Now();
        c0 = CpuSeconds();
      }
      for (int i = 0; i < batch_size; ++i) {
        seqs[i].push_back(res->tokens[i].token);
        batch[i].cached_len = seqs[i].size() - 1;
        batch[i].new_tokens = absl::MakeConstSpan(&seqs[i].back(), 1);
      }
      res = model.Forward(batch, kv->view());
      if (!res.ok()) return 1;
    }
    double dt = Now() - t0, dc = CpuSeconds() - c0;
    std::printf("decode batch %d: %.1f tokens/s (%.1f ms/step; %.1f tokens per cpu-s)\n",
                batch_size, batch_size * steps / dt, 1000 * dt / steps, batch_size * steps / dc);
  }
  return 0;
}

}  // namespace
}  // namespace engine
}  // namespace colo

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return colo::engine::Run();
}
