// KV allocator figures: per-call latency (ops/s, p50, p99) of
//   extend  Allocate(req, 64 prompt tokens) + Commit,
//   decode  Allocate(req, 1 token) + Commit   (one decode step per request),
//   free    ReleaseRequest(req, abort)         (frees whole pages),
// for batches of 1..1024 running requests and page sizes 1..64, through the
// KvCacheManager (CPU-side metadata only; no attention kernel). Also the raw
// PageAllocator page alloc/free rate.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "kvcache/kv_cache_manager.h"
#include "kvcache/page_allocator.h"
#include "kvcache/testing/test_pool.h"

namespace colo::kvcache {
namespace {

using Clock = std::chrono::steady_clock;

struct Stat {
  std::vector<double> ns;
  void Print(const char* what, int p, int batch) {
    std::sort(ns.begin(), ns.end());
    double total = 0;
    for (double v : ns) total += v;
    const double p50 = ns[ns.size() / 2];
    const double p99 = ns[std::min(ns.size() - 1, ns.size() * 99 / 100)];
    std::printf("%-7s page=%-3d batch=%-5d ops=%-8zu %10.0f ops/s  p50=%7.0f ns  p99=%7.0f ns\n",
                what, p, batch, ns.size(), ns.size() / (total * 1e-9), p50, p99);
  }
};

template <typename F>
double Time(F&& f) {
  const auto t0 = Clock::now();
  f();
  return std::chrono::duration<double, std::nano>(Clock::now() - t0).count();
}

void RunManager(int32_t p, int32_t batch, bool swa) {
  constexpr int32_t kPrompt = 64, kDecode = 128;
  auto pool = test_support::TestPool::Create();
  KvCacheManager::Options o;
  o.page_size = p;
  o.num_layers = 2;
  if (swa) o.layer_is_sliding = {true, false};
  o.sliding_window = swa ? 32 : 0;
  o.kv_heads = 1;
  o.head_dim = 1;
  o.full_capacity_tokens = int64_t{batch} * (kPrompt + kDecode + 2 * p);
  o.swa_capacity_tokens = int64_t{batch} * (kPrompt + 4 * p + 64);
  o.max_requests = batch;
  o.max_context_tokens = kPrompt + kDecode + p;
  auto m = KvCacheManager::Create(o, (*pool)->pool());
  if (!m.ok()) {
    std::printf("create failed: %s\n", m.status().ToString().c_str());
    return;
  }
  std::vector<RequestId> ids;
  Stat extend, decode, release;
  for (int32_t b = 0; b < batch; ++b) {
    std::vector<int32_t> prompt(kPrompt);
    for (int32_t i = 0; i < kPrompt; ++i) prompt[i] = b * 1000 + i;  // no sharing
    auto r = (*m)->BeginRequest(prompt, {});
    ids.push_back(r->id);
    extend.ns.push_back(Time([&] {
      (void)(*m)->Allocate(r->id, prompt);
      (void)(*m)->Commit(r->id, kPrompt);
    }));
  }
  for (int32_t step = 0; step < kDecode; ++step) {
    for (RequestId id : ids) {
      const int32_t tok[1] = {step};
      decode.ns.push_back(Time([&] {
        (void)(*m)->Allocate(id, tok);
        (void)(*m)->Commit(id, kPrompt + step + 1);
      }));
    }
  }
  for (RequestId id : ids) {
    release.ns.push_back(Time([&] { (void)(*m)->ReleaseRequest(id, {.cache = false}); }));
  }
  if (!(*m)->Audit().ok()) std::printf("AUDIT FAILED\n");
  extend.Print(swa ? "extend*" : "extend", p, batch);
  decode.Print(swa ? "decode*" : "decode", p, batch);
  release.Print(swa ? "free*" : "free", p, batch);
}

void RunPageAllocator(int32_t batch) {
  auto a = PageAllocator::Create({.num_pages = 1 << 16});
  std::vector<int32_t> pages;
  Stat alloc, free;
  for (int it = 0; it < 2000; ++it) {
    pages.clear();
    alloc.ns.push_back(Time([&] { (void)a->Allocate(batch, &pages); }));
    free.ns.push_back(Time([&] { (void)a->Free(pages); }));
  }
  std::printf("raw page allocator, %d pages per call:\n", batch);
  alloc.Print("palloc", 0, batch);
  free.Print("pfree", 0, batch);
}

}  // namespace
}  // namespace colo::kvcache

int main() {
  std::printf("KV allocator benchmark (per call; * = hybrid SWA model, window 32)\n");
  for (int32_t p : {1, 4, 16, 64}) {
    for (int32_t batch : {1, 16, 128, 1024}) colo::kvcache::RunManager(p, batch, false);
  }
  for (int32_t p : {1, 16, 64}) colo::kvcache::RunManager(p, 256, true);
  for (int32_t batch : {1, 64, 1024}) colo::kvcache::RunPageAllocator(batch);
  return 0;
}
