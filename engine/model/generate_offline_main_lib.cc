#include "engine/model/generate_offline_main_lib.h"

#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "engine/device/cpu_backend.h"
#include "engine/memory/caching_allocator.h"
#include "engine/memory/tagged_pool.h"
#include "engine/model/forward.h"
#include "engine/model/offline_generator.h"

ABSL_FLAG(std::string, model_dir, "", "Directory with config.json + safetensors.");
ABSL_FLAG(std::string, prompts, "", "Prompts as token ids: \"1,2,3;4,5\".");
ABSL_FLAG(int64_t, max_new_tokens, 16, "Tokens to generate per prompt.");
ABSL_FLAG(int, batch_size, 1, "Requests per forward call.");
ABSL_FLAG(int64_t, prefill_chunk, 0, "Prompt tokens per prefill call (0 = all).");
ABSL_FLAG(double, temperature, 0.0, "0 = greedy.");
ABSL_FLAG(int, top_k, 0, "Top-k (0 = off).");
ABSL_FLAG(double, top_p, 1.0, "Top-p (1 = off).");
ABSL_FLAG(uint64_t, seed, 0, "Sampling seed (request i uses seed + i).");
ABSL_FLAG(int, threads, 0, "Worker threads (0 = default).");

namespace colo {
namespace engine {
namespace {

absl::Status Run() {
  const std::string dir = absl::GetFlag(FLAGS_model_dir);
  if (dir.empty()) return absl::InvalidArgumentError("--model_dir is required");
  std::vector<GenerationRequest> requests;
  int i = 0;
  for (absl::string_view p : absl::StrSplit(absl::GetFlag(FLAGS_prompts), ';', absl::SkipEmpty())) {
    GenerationRequest r;
    for (absl::string_view t : absl::StrSplit(p, ',', absl::SkipWhitespace())) {
      int32_t id;
      if (!absl::SimpleAtoi(t, &id)) {
        return absl::InvalidArgumentError(absl::StrCat("bad token id \"", t, "\" in --prompts"));
      }
      r.prompt.push_back(id);
    }
    r.max_new_tokens = absl::GetFlag(FLAGS_max_new_tokens);
    r.sampling.temperature = static_cast<float>(absl::GetFlag(FLAGS_temperature));
    r.sampling.top_k = absl::GetFlag(FLAGS_top_k);
    r.sampling.top_p = static_cast<float>(absl::GetFlag(FLAGS_top_p));
    r.sampling.seed = absl::GetFlag(FLAGS_seed) + i++;
    requests.push_back(std::move(r));
  }
  if (requests.empty()) return absl::InvalidArgumentError("--prompts is empty");

  absl::StatusOr<std::unique_ptr<CpuBackend>> backend = CpuBackend::Create({});
  if (!backend.ok()) return backend.status();
  TaggedPool::Options pool_options;
  pool_options.backend = backend->get();
  absl::StatusOr<std::unique_ptr<TaggedPool>> pool = TaggedPool::Create(pool_options);
  if (!pool.ok()) return pool.status();
  CachingAllocator::Options alloc_options;
  alloc_options.backend = backend->get();
  absl::StatusOr<std::unique_ptr<CachingAllocator>> allocator =
      CachingAllocator::Create(alloc_options);
  if (!allocator.ok()) return allocator.status();
  std::unique_ptr<kernels::ThreadPool> threads;
  if (absl::GetFlag(FLAGS_threads) > 0) {
    threads = std::make_unique<kernels::ThreadPool>(absl::GetFlag(FLAGS_threads));
  }
  TransformerModel::Options model_options;
  model_options.model_dir = dir;
  model_options.weights_pool = pool->get();
  model_options.allocator = allocator->get();
  model_options.threads = threads.get();
  absl::StatusOr<std::unique_ptr<TransformerModel>> model =
      TransformerModel::Load(model_options);
  if (!model.ok()) return model.status();
  OfflineGenerateOptions gen;
  gen.batch_size = absl::GetFlag(FLAGS_batch_size);
  gen.prefill_chunk = absl::GetFlag(FLAGS_prefill_chunk);
  absl::StatusOr<std::vector<Generation>> out =
      GenerateOffline(**model, requests, gen, pool->get());
  if (!out.ok()) return out.status();
  std::string json = "{\"results\": [";
  for (size_t r = 0; r < out->size(); ++r) {
    const Generation& g = (*out)[r];
    std::vector<std::string> lps;
    for (float lp : g.logprobs) {
      char buf[32];
      std::snprintf(buf, sizeof(buf), "%.9g", lp);
      lps.push_back(buf);
    }
    absl::StrAppend(&json, r ? ", " : "", "{\"tokens\": [", absl::StrJoin(g.tokens, ", "),
                    "], \"logprobs\": [", absl::StrJoin(lps, ", "), "]}");
  }
  absl::StrAppend(&json, "]}\n");
  std::fputs(json.c_str(), stdout);
  return absl::OkStatus();
}

}  // namespace

int GenerateOfflineMain(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  absl::Status s = Run();
  if (!s.ok()) {
    std::cerr << "colo-generate-offline: " << s << "\n";
    return 1;
  }
  return 0;
}

}  // namespace engine
}  // namespace colo
