// Test fixture helpers: a CPU DeviceBackend with a TaggedPool and a
// CachingAllocator, plus a scratch directory. Test-only.
#ifndef COLO_ENGINE_MODEL_TEST_ENV_H_
#define COLO_ENGINE_MODEL_TEST_ENV_H_

#include <cstdlib>
#include <memory>
#include <string>

#include "engine/device/cpu_backend.h"
#include "engine/memory/caching_allocator.h"
#include "engine/memory/tagged_pool.h"
#include "gtest/gtest.h"

namespace colo {
namespace engine {

struct ModelTestEnv {
  std::unique_ptr<CpuBackend> backend;
  std::unique_ptr<TaggedPool> pool;
  std::unique_ptr<CachingAllocator> allocator;

  ModelTestEnv() {
    backend = std::move(CpuBackend::Create({})).value();
    TaggedPool::Options po;
    po.backend = backend.get();
    pool = std::move(TaggedPool::Create(po)).value();
    CachingAllocator::Options ao;
    ao.backend = backend.get();
    allocator = std::move(CachingAllocator::Create(ao)).value();
  }
};

// A fresh directory under $TEST_TMPDIR (or /tmp).
inline std::string TestDir(const std::string& name) {
  const char* base = std::getenv("TEST_TMPDIR");
  std::string dir = std::string(base ? base : "/tmp") + "/" + name;
  std::string cmd = "rm -rf '" + dir + "' && mkdir -p '" + dir + "'";
  EXPECT_EQ(std::system(cmd.c_str()), 0);
  return dir;
}

}  // namespace engine
}  // namespace colo

#endif  // COLO_ENGINE_MODEL_TEST_ENV_H_
