// Prefix-cache figures on an RL-shaped trace, through KvCacheManager:
//   - 64 prompts of 1-2k tokens, 16 samples each (GRPO-style group): sample 0
//     prefills and shares its prompt (InsertPrefix), the other 15 hit it; all
//     decode 100-400 tokens and finish (inserting their outputs);
//   - 32 multi-turn sessions x 6 turns (100-300 new tokens + 100-300 output).
// Reports bookkeeping throughput in tokens/s (match + allocate + commit +
// insert + release over prompt and output tokens), token hit rate, and memory
// overhead per cached token (host bookkeeping and kv_cache tables).
#include <chrono>
#include <cstdio>
#include <random>
#include <vector>

#include "kvcache/kv_cache_manager.h"
#include "kvcache/testing/test_pool.h"

namespace colo::kvcache {
namespace {

using Clock = std::chrono::steady_clock;

struct Result {
  double seconds = 0;
  int64_t tokens = 0, prompt = 0, hit = 0;
};

void Check(const absl::Status& s) {
  if (!s.ok()) {
    std::printf("FAILED: %s\n", s.ToString().c_str());
    std::exit(1);
  }
}

Result RlTrace(KvCacheManager& m, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Result res;
  const auto t0 = Clock::now();
  for (int g = 0; g < 64; ++g) {
    std::vector<int32_t> prompt(1024 + rng() % 1024);
    for (auto& t : prompt) t = static_cast<int32_t>(rng() % 32000);
    std::vector<RequestId> ids;
    std::vector<int32_t> lens, targets;
    for (int s = 0; s < 16; ++s) {
      auto r = m.BeginRequest(prompt, {});
      Check(r.status());
      res.prompt += prompt.size();
      res.hit += r->cached_len;
      Check(m.Allocate(r->id, absl::MakeConstSpan(prompt).subspan(r->cached_len)));
      Check(m.Commit(r->id, static_cast<int32_t>(prompt.size())));
      if (s == 0) Check(m.InsertPrefix(r->id));
      ids.push_back(r->id);
      lens.push_back(static_cast<int32_t>(prompt.size()));
      targets.push_back(static_cast<int32_t>(prompt.size() + 100 + rng() % 300));
      res.tokens += prompt.size();
    }
    for (bool active = true; active;) {
      active = false;
      for (size_t i = 0; i < ids.size(); ++i) {
        if (lens[i] >= targets[i]) continue;
        active = true;
        const int32_t tok[1] = {static_cast<int32_t>(rng() % 32000)};
        Check(m.Allocate(ids[i], tok));
        Check(m.Commit(ids[i], ++lens[i]));
        ++res.tokens;
      }
    }
    for (RequestId id : ids) Check(m.ReleaseRequest(id, {.cache = true}));
  }
  // Multi-turn sessions.
  for (int s = 0; s < 32; ++s) Check(m.OpenSession(s));
  std::vector<std::vector<int32_t>> history(32);
  for (int turn = 0; turn < 6; ++turn) {
    for (int s = 0; s < 32; ++s) {
      std::vector<int32_t> prompt = history[s];
      const int add = 100 + rng() % 200;
      for (int i = 0; i < add; ++i) prompt.push_back(static_cast<int32_t>(rng() % 32000));
      auto r = m.BeginRequest(prompt, {.session_id = SessionId{s}});
      Check(r.status());
      res.prompt += prompt.size();
      res.hit += r->cached_len;
      Check(m.Allocate(r->id, absl::MakeConstSpan(prompt).subspan(r->cached_len)));
      int32_t len = static_cast<int32_t>(prompt.size());
      Check(m.Commit(r->id, len));
      res.tokens += len - r->cached_len;
      const int out = 100 + rng() % 200;
      for (int i = 0; i < out; ++i) {
        const int32_t tok[1] = {static_cast<int32_t>(rng() % 32000)};
        prompt.push_back(tok[0]);
        Check(m.Allocate(r->id, tok));
        Check(m.Commit(r->id, ++len));
        ++res.tokens;
      }
      Check(m.ReleaseRequest(r->id, {.cache = true}));
      history[s] = std::move(prompt);
    }
  }
  res.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return res;
}

void Run(int32_t p, int32_t window) {
  auto pool = test_support::TestPool::Create();
  KvCacheManager::Options o;
  o.page_size = p;
  o.num_layers = 2;
  if (window > 0) o.layer_is_sliding = {true, false};
  o.sliding_window = window;
  o.kv_heads = 8;
  o.head_dim = 128;
  o.full_capacity_tokens = 160 * 1024;
  o.swa_capacity_tokens = 96 * 1024;
  o.max_requests = 64;
  o.max_context_tokens = 4096;
  auto m = KvCacheManager::Create(o, (*pool)->pool());
  Check(m.status());
  const Result r = RlTrace(**m, 7);
  const KvUsage u = (*m)->Usage();
  const int64_t cached_tokens = (u.full.evictable + u.full.protected_pages + u.full.session_held) * p;
  std::printf(
      "page=%-3d window=%-4d %9.2f Mtok/s  hit %5.1f%% (%lld/%lld)  host %6.1f B/cached token  "
      "tree nodes %lld\n",
      p, window, r.tokens / r.seconds / 1e6, 100.0 * r.hit / r.prompt,
      static_cast<long long>(r.hit), static_cast<long long>(r.prompt),
      static_cast<double>((*m)->HostBookkeepingBytes()) / std::max<int64_t>(1, cached_tokens),
      static_cast<long long>((*m)->tree().num_nodes()));
  const double slots = static_cast<double>((u.full.capacity + 1) * p);
  std::printf("           device tables: req_to_token %.2f B/slot, full_to_swa %s; K+V %lld B/token/layer\n",
              65.0 * 4096 * 4 / slots, window > 0 ? "4 B/full slot" : "none",
              static_cast<long long>(2LL * 8 * 128 * 4));
  Check((*m)->Audit());
}

}  // namespace
}  // namespace colo::kvcache

int main() {
  std::printf("radix prefix cache on an RL trace (64 prompts x 16 samples + 32 sessions x 6 turns)\n");
  for (int32_t p : {1, 16, 64}) colo::kvcache::Run(p, 0);
  for (int32_t p : {1, 16, 64}) colo::kvcache::Run(p, 512);
  return 0;
}
