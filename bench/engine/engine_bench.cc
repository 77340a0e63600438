// Engine benchmark on the CPU backend (in-process EngineRuntime, no gRPC):
//   1. RL-shaped rollout throughput: P prompts x S samples (temperature 1,
//      distinct seeds), N new tokens each; with prefix sharing (the S samples
//      of a prompt share it through the radix cache) and without (P*S
//      distinct prompts).
//   2. Time to pause (each mode) while a batch is generating, and to continue.
//   3. Time to release and resume all tags (weights without / with a host
//      backup, kv_cache, cuda_graph).
// Prints figures; see bench/engine/README.md.
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "engine/model/tiny_model.h"
#include "engine/server/engine_runtime.h"

ABSL_FLAG(int, prompts, 64, "Distinct prompts.");
ABSL_FLAG(int, samples, 8, "Samples per prompt.");
ABSL_FLAG(int, prompt_len, 128, "Prompt tokens.");
ABSL_FLAG(int, new_tokens, 256, "New tokens per sample.");
ABSL_FLAG(int, layers, 4, "Model layers.");
ABSL_FLAG(int, hidden, 256, "Model hidden size.");
ABSL_FLAG(int, vocab, 4096, "Model vocabulary.");
ABSL_FLAG(int64_t, kv_cache_bytes, int64_t{512} << 20, "KV cache bytes.");
ABSL_FLAG(int, max_running, 128, "--max_running_requests of the engine.");
ABSL_FLAG(bool, batch_invariant, true, "EngineOptions::batch_invariant (false: OpenBLAS GEMMs).");
ABSL_FLAG(std::string, dir, "/tmp/colo_engine_bench_model", "Where the model is written.");

namespace colo::engine {
namespace {

struct RunResult {
  double seconds = 0;
  int64_t generated = 0;
  int64_t prompt_tokens = 0;
  int64_t cached_tokens = 0;
};

RunResult Rollout(Scheduler& scheduler, bool share_prefix) {
  const int prompts = absl::GetFlag(FLAGS_prompts), samples = absl::GetFlag(FLAGS_samples);
  std::vector<std::shared_ptr<RequestStream>> streams;
  const absl::Time start = absl::Now();
  for (int p = 0; p < prompts; ++p) {
    for (int s = 0; s < samples; ++s) {
      GenerateSpec spec;
      spec.input_ids = TinyPrompt(share_prefix ? p : p * samples + s + 100000,
                                  absl::GetFlag(FLAGS_prompt_len), absl::GetFlag(FLAGS_vocab));
      spec.max_new_tokens = absl::GetFlag(FLAGS_new_tokens);
      spec.ignore_eos = true;
      spec.sampling.temperature = 1.0f;
      spec.seed = static_cast<uint64_t>(p * 1000 + s);
      absl::StatusOr<std::shared_ptr<RequestStream>> stream = scheduler.Submit(spec);
      if (!stream.ok()) {
        std::fprintf(stderr, "submit: %s\n", stream.status().ToString().c_str());
        std::exit(1);
      }
      streams.push_back(*stream);
    }
  }
  RunResult r;
  for (auto& stream : streams) {
    while (true) {
      StreamChunk c = stream->Next(absl::InfiniteFuture());
      r.generated += static_cast<int64_t>(c.tokens.size());
      if (c.finished) {
        if (!c.error.ok()) {
          std::fprintf(stderr, "request failed: %s\n", c.error.ToString().c_str());
          std::exit(1);
        }
        r.prompt_tokens += c.finish.prompt_tokens;
        r.cached_tokens += c.finish.cached_tokens;
        break;
      }
    }
  }
  r.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  return r;
}

double Ms(absl::Duration d) { return absl::ToDoubleMilliseconds(d); }

int Main() {
  TinyModelOptions m;
  m.layers = absl::GetFlag(FLAGS_layers);
  m.hidden = absl::GetFlag(FLAGS_hidden);
  m.heads = 8;
  m.kv_heads = 4;
  m.vocab = absl::GetFlag(FLAGS_vocab);
  m.max_position = 4096;
  m.seed = 1;
  const std::string dir = absl::GetFlag(FLAGS_dir);
  if (absl::Status s = WriteTinyModel(m, dir); !s.ok()) {
    std::fprintf(stderr, "%s\n", s.ToString().c_str());
    return 1;
  }
  for (bool backup : {false, true}) {
    EngineOptions o;
    o.model_dir = dir;
    o.device = "cpu";
    o.page_size = 16;
    o.kv_cache_bytes = absl::GetFlag(FLAGS_kv_cache_bytes);
    o.max_running_requests = absl::GetFlag(FLAGS_max_running);
    o.max_kv_rows = std::max(256, absl::GetFlag(FLAGS_max_running) + 16);
    o.weights_host_backup = backup;
    o.batch_invariant = absl::GetFlag(FLAGS_batch_invariant);
    absl::StatusOr<std::unique_ptr<EngineRuntime>> rt = EngineRuntime::Create(o);
    if (!rt.ok()) {
      std::fprintf(stderr, "%s\n", rt.status().ToString().c_str());
      return 1;
    }
    Scheduler& scheduler = (*rt)->scheduler();
    if (!backup) {
      std::printf("model: %d layers, hidden %d, vocab %d (%.1f M params); %d prompts x %d samples, "
                  "%d prompt tokens, %d new tokens; %u threads; batch_invariant=%d\n",
                  m.layers, static_cast<int>(m.hidden), static_cast<int>(m.vocab),
                  (*rt)->config().NumParameters() / 1e6, absl::GetFlag(FLAGS_prompts),
                  absl::GetFlag(FLAGS_samples), absl::GetFlag(FLAGS_prompt_len),
                  absl::GetFlag(FLAGS_new_tokens), std::thread::hardware_concurrency(),
                  absl::GetFlag(FLAGS_batch_invariant) ? 1 : 0);
      for (bool share : {true, false}) {
        RunResult r = Rollout(scheduler, share);
        std::printf("rollout %-22s %8.1f s  %9.0f new tok/s  %9.0f total tok/s  cached %5.1f%% "
                    "of prompt tokens\n",
                    share ? "with prefix sharing:" : "without prefix sharing:", r.seconds,
                    r.generated / r.seconds, (r.generated + r.prompt_tokens) / r.seconds,
                    100.0 * r.cached_tokens / std::max<int64_t>(1, r.prompt_tokens));
        (void)scheduler.Flush();
      }
      // Pause / continue latency while a batch is generating.
      for (PauseMode mode : {PauseMode::kAbort, PauseMode::kRetract, PauseMode::kInPlace}) {
        double pause_ms = 0, continue_ms = 0;
        const int reps = 5;
        for (int rep = 0; rep < reps; ++rep) {
          std::vector<std::shared_ptr<RequestStream>> streams;
          for (int i = 0; i < 32; ++i) {
            GenerateSpec spec;
            spec.input_ids = TinyPrompt(i + rep * 100, 64, absl::GetFlag(FLAGS_vocab));
            spec.max_new_tokens = 64;
            spec.ignore_eos = true;
            streams.push_back(*scheduler.Submit(spec));
          }
          streams[0]->Next(absl::InfiniteFuture());  // generation is under way
          absl::Time t0 = absl::Now();
          (void)scheduler.Pause(mode);
          pause_ms += Ms(absl::Now() - t0);
          t0 = absl::Now();
          (void)scheduler.Continue(true);
          continue_ms += Ms(absl::Now() - t0);
          for (auto& s : streams) {
            while (!s->Next(absl::InfiniteFuture()).finished) {
            }
          }
        }
        std::printf("pause(%-8s) %7.2f ms   continue(torch_empty_cache) %7.2f ms  (mean of %d, "
                    "32 requests in flight)\n",
                    std::string(PauseModeName(mode)).c_str(), pause_ms / reps,
                    continue_ms / reps, reps);
      }
    }
    // Release / resume of every tag while paused.
    (void)scheduler.Pause(PauseMode::kRetract);
    const int reps = 5;
    double release_ms = 0, resume_ms = 0;
    uint64_t bytes = 0;
    for (int rep = 0; rep < reps; ++rep) {
      absl::Time t0 = absl::Now();
      absl::StatusOr<TagTransition> rel = scheduler.Release({});
      release_ms += Ms(absl::Now() - t0);
      t0 = absl::Now();
      absl::StatusOr<TagTransition> res = scheduler.Resume({});
      resume_ms += Ms(absl::Now() - t0);
      if (!rel.ok() || !res.ok()) {
        std::fprintf(stderr, "release/resume failed\n");
        return 1;
      }
      bytes = 0;
      for (const auto& t : rel->release.tags) bytes += t.bytes_freed;
    }
    std::printf("release all tags %s: %7.2f ms, resume %7.2f ms for %.1f MiB (%.2f / %.2f ms per "
                "GiB)\n",
                backup ? "(weights host backup)" : "(no backup)         ", release_ms / reps,
                resume_ms / reps, bytes / 1048576.0, release_ms / reps / (bytes / 1073741824.0),
                resume_ms / reps / (bytes / 1073741824.0));
  }
  return 0;
}

}  // namespace
}  // namespace colo::engine

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return colo::engine::Main();
}
