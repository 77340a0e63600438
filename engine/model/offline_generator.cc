#include "engine/model/offline_generator.h"

#include <algorithm>
#include <deque>

#include "absl/strings/str_cat.h"
#include "engine/model/simple_kv_cache.h"

namespace colo {
namespace engine {

absl::StatusOr<std::vector<Generation>> GenerateOffline(
    TransformerModel& model, const std::vector<GenerationRequest>& requests,
    const OfflineGenerateOptions& options, TaggedPool* kv_pool) {
  const int batch_size = std::max(1, options.batch_size);
  int64_t total_slots = SimpleKvCache::kReservedSlots + 1;
  for (const GenerationRequest& r : requests) {
    if (r.prompt.empty() || r.max_new_tokens < 1) {
      return absl::InvalidArgumentError("every request needs a prompt and max_new_tokens >= 1");
    }
    total_slots += static_cast<int64_t>(r.prompt.size()) + r.max_new_tokens;
  }
  absl::StatusOr<std::unique_ptr<SimpleKvCache>> kv =
      SimpleKvCache::Create(model.config(), total_slots, kv_pool);
  if (!kv.ok()) return kv.status();

  struct State {
    int index;
    std::vector<int32_t> sequence;  // prompt + generated
    std::vector<int32_t> slots;
    int64_t cached = 0;  // tokens with KV written
    bool done = false;
  };
  std::vector<Generation> out(requests.size());
  std::deque<int> waiting;
  for (int i = 0; i < static_cast<int>(requests.size()); ++i) waiting.push_back(i);
  std::vector<State> running;
  while (!waiting.empty() || !running.empty()) {
    while (static_cast<int>(running.size()) < batch_size && !waiting.empty()) {
      const int i = waiting.front();
      waiting.pop_front();
      const GenerationRequest& r = requests[i];
      absl::StatusOr<std::vector<int32_t>> slots = (*kv)->AddSequence(
          static_cast<int64_t>(r.prompt.size()) + r.max_new_tokens);
      if (!slots.ok()) return slots.status();
      running.push_back(State{i, r.prompt, std::move(*slots), 0, false});
    }
    std::vector<ForwardRequest> batch;
    std::vector<bool> emits;
    for (State& s : running) {
      const GenerationRequest& r = requests[s.index];
      ForwardRequest f;
      f.cached_len = s.cached;
      int64_t n = static_cast<int64_t>(s.sequence.size()) - s.cached;
      if (options.prefill_chunk > 0) n = std::min(n, options.prefill_chunk);
      f.new_tokens = absl::MakeConstSpan(s.sequence.data() + s.cached, n);
      f.slots = absl::MakeConstSpan(s.slots);
      f.sampling = r.sampling;
      f.sample_step = out[s.index].tokens.size();
      batch.push_back(f);
      emits.push_back(s.cached + n == static_cast<int64_t>(s.sequence.size()));
    }
    absl::StatusOr<ForwardResult> result = model.Forward(batch, (*kv)->view());
    if (!result.ok()) return result.status();
    for (size_t b = 0; b < running.size(); ++b) {
      State& s = running[b];
      s.cached += batch[b].new_tokens.size();
      if (!emits[b]) continue;
      const GenerationRequest& r = requests[s.index];
      Generation& g = out[s.index];
      const kernels::SampledToken& tok = result->tokens[b];
      g.tokens.push_back(tok.token);
      g.logprobs.push_back(tok.logprob);
      s.sequence.push_back(tok.token);
      if (static_cast<int64_t>(g.tokens.size()) >= r.max_new_tokens ||
          tok.token == r.stop_token) {
        s.done = true;
      }
    }
    running.erase(std::remove_if(running.begin(), running.end(),
                                 [](const State& s) { return s.done; }),
                  running.end());
  }
  return out;
}

}  // namespace engine
}  // namespace colo
