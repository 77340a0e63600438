// EngineRuntime's --device choice in this build: --device=cpu runs the CPU
// model runner; --device=cuda is refused with an actionable message when the
// build has no CUDA (FAILED_PRECONDITION) or, in a CUDA build, when no GPU is
// usable (UNAVAILABLE); --device=auto falls back to the CPU without a GPU.
// The GPU path itself is tested by engine_runtime_cuda_test (--config=cuda).
#include "engine/server/engine_runtime.h"

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "engine/device/device_backend_factory.h"
#include "engine/model/tiny_model.h"
#include "engine/scheduler/read_to_end.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/util/status_matchers.h"

namespace colo::engine {
namespace {

using ::testing::HasSubstr;

std::string TinyModelDir() {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string dir = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/runtime_model");
  TinyModelOptions o;
  o.hidden = 32;
  o.vocab = 64;
  o.max_position = 256;
  o.seed = 5;
  EXPECT_OK(WriteTinyModel(o, dir));
  return dir;
}

EngineOptions Options(const std::string& device) {
  EngineOptions o;
  o.model_dir = TinyModelDir();
  o.device = device;
  o.page_size = 4;
  o.kv_cache_bytes = int64_t{1} << 20;
  o.max_kv_rows = 8;
  o.cpu_threads = 1;
  return o;
}

#ifdef COLO_WITH_CUDA_FORWARD
bool GpuUsable() { return CreateDeviceBackend("cuda").ok(); }
#endif

// Greedy generation of a few tokens through the scheduler.
void ExpectGenerates(EngineRuntime& rt) {
  GenerateSpec spec;
  spec.input_ids = {1, 2, 3, 4, 5};
  spec.max_new_tokens = 6;
  spec.ignore_eos = true;
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<RequestStream> stream, rt.scheduler().Submit(spec));
  StreamOutput out = ReadToEnd(*stream, absl::Now() + absl::Seconds(60));
  EXPECT_OK(out.error);
  EXPECT_EQ(out.tokens.size(), 6u);
}

TEST(EngineRuntimeTest, CpuRunsTheCpuRunner) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<EngineRuntime> rt, EngineRuntime::Create(Options("cpu")));
  EXPECT_EQ(rt->backend().kind(), "cpu");
  EXPECT_EQ(rt->runner().device_kind(), "cpu");
  // On the CPU the weight-update staging is the engine's own allocator.
  EXPECT_EQ(&rt->staging_allocator(), &rt->allocator());
  ExpectGenerates(*rt);
}

TEST(EngineRuntimeTest, CudaIsRefusedClearlyWhenUnavailable) {
  absl::StatusOr<std::unique_ptr<EngineRuntime>> rt = EngineRuntime::Create(Options("cuda"));
#ifdef COLO_WITH_CUDA_FORWARD
  if (GpuUsable()) GTEST_SKIP() << "a GPU is usable: engine_runtime_cuda_test covers --device=cuda";
  EXPECT_THAT(rt.status(), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(std::string(rt.status().message()), HasSubstr("no usable GPU"));
#else
  EXPECT_THAT(rt.status(), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(std::string(rt.status().message()), HasSubstr("built without CUDA"));
  EXPECT_THAT(std::string(rt.status().message()), HasSubstr("--config=cuda"));
#endif
}

TEST(EngineRuntimeTest, AutoFallsBackToCpu) {
#ifdef COLO_WITH_CUDA_FORWARD
  if (GpuUsable()) GTEST_SKIP() << "a GPU is usable: auto picks it (engine_runtime_cuda_test)";
#endif
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<EngineRuntime> rt, EngineRuntime::Create(Options("auto")));
  EXPECT_EQ(rt->backend().kind(), "cpu");
  ExpectGenerates(*rt);
}

}  // namespace
}  // namespace colo::engine
