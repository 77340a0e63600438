// KvCacheManager over a TaggedPool on a real GPU: the request table and the
// full->SWA map live in device memory and are written/read through the
// backend; releasing kv_cache returns every pool (full and SWA) to the driver.
// Skips (with the reason) where no CUDA device is present.
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "engine/device/cuda_backend.h"
#include "engine/memory/tagged_pool.h"
#include "gtest/gtest.h"
#include "kvcache/kv_cache_manager.h"
#include "tests/util/gpu_required.h"
#include "tests/util/status_matchers.h"

namespace colo::kvcache {
namespace {

TEST(KvCacheCudaTest, TablesLiveOnDeviceAndReleaseFreesBothPools) {
  auto cuda = engine::CudaBackend::Create(engine::CudaBackend::Options());
  COLO_SKIP_OR_FAIL_WITHOUT_GPU(cuda.status());
  engine::TaggedPool::Options po;
  po.backend = cuda->get();
  ASSERT_OK_AND_ASSIGN(auto pool, engine::TaggedPool::Create(po));
  KvCacheManager::Options o;
  o.page_size = 16;
  o.num_layers = 4;
  o.layer_is_sliding = {true, false, true, false};
  o.sliding_window = 64;
  o.kv_heads = 8;
  o.head_dim = 128;
  o.full_capacity_tokens = 64 * 1024;  // 4 KiB/token/layer -> 512 MiB full
  o.swa_capacity_tokens = 32 * 1024;   // 256 MiB SWA
  o.max_requests = 16;
  o.max_context_tokens = 4096;
  o.audit_every_op = true;  // Audit reads the device tables back.
  ASSERT_OK_AND_ASSIGN(auto m, KvCacheManager::Create(o, pool.get()));
  std::vector<int32_t> prompt(300);
  std::iota(prompt.begin(), prompt.end(), 1);
  for (int i = 0; i < 3; ++i) {
    ASSERT_OK_AND_ASSIGN(auto r, m->BeginRequest(prompt, {}));
    ASSERT_OK(m->Allocate(r.id, absl::MakeConstSpan(prompt).subspan(r.cached_len)));
    ASSERT_OK(m->Commit(r.id, 300));
    ASSERT_OK(m->ReleaseRequest(r.id, {.cache = true}));
  }
  ASSERT_OK_AND_ASSIGN(engine::DeviceMemoryInfo before, (*cuda)->MemoryInfo());
  ASSERT_OK(m->ResetForRelease());
  ASSERT_OK(pool->Release({engine::MemoryTag::kKvCache}).status());
  ASSERT_OK_AND_ASSIGN(engine::DeviceMemoryInfo released, (*cuda)->MemoryInfo());
  const uint64_t pools = m->storage().full_pool_bytes() + m->storage().swa_pool_bytes();
  EXPECT_GE(released.free_bytes, before.free_bytes + pools * 99 / 100)
      << "the SWA pool (" << m->storage().swa_pool_bytes() << " B) must be released too";
  ASSERT_OK(pool->Resume({engine::MemoryTag::kKvCache}).status());
  ASSERT_OK(m->OnResumed());
  ASSERT_OK_AND_ASSIGN(auto r, m->BeginRequest(prompt, {}));
  EXPECT_EQ(r.cached_len, 0);
  ASSERT_OK(m->ReleaseRequest(r.id, {.cache = false}));
  EXPECT_OK(m->Audit());
}

}  // namespace
}  // namespace colo::kvcache
