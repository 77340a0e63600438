// EngineRuntime's --device choice in this build: --device=cpu runs the CPU
// model runner; --device=cuda is refused with an actionable message when the
// build has no CUDA (FAILED_PRECONDITION) or, in a CUDA build, when no GPU is
// usable (UNAVAILABLE); --device=auto falls back to the CPU without a GPU.
// The CPU refuses 16-bit dtypes for now. The GPU path itself is tested by
// engine_runtime_cuda_test (--config=cuda).
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

EngineOptions Options(const std::string& device, int device_ordinal = 0) {
  EngineOptions o;
  o.model_dir = TinyModelDir();
  o.device = device;
  o.device_ordinal = device_ordinal;
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
#ifdef COLO_WITH_CUDA_FORWARD
  // With a GPU, an ordinal past the last device is as unusable as no GPU
  // (engine_runtime_cuda_test covers --device=cuda working).
  const int ordinal = GpuUsable() ? 4096 : 0;
  absl::StatusOr<std::unique_ptr<EngineRuntime>> rt =
      EngineRuntime::Create(Options("cuda", ordinal));
  EXPECT_THAT(rt.status(), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(std::string(rt.status().message()), HasSubstr("no usable GPU"));
  if (ordinal != 0) {
    EXPECT_THAT(std::string(rt.status().message()), HasSubstr("4096"));
  }
#else
  absl::StatusOr<std::unique_ptr<EngineRuntime>> rt = EngineRuntime::Create(Options("cuda"));
  EXPECT_THAT(rt.status(), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(std::string(rt.status().message()), HasSubstr("built without CUDA"));
  EXPECT_THAT(std::string(rt.status().message()), HasSubstr("--config=cuda"));
#endif
}

// No usable GPU (or, on a GPU machine, an ordinal past the last device):
// auto runs on the CPU.
TEST(EngineRuntimeTest, AutoFallsBackToCpu) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<EngineRuntime> rt,
                       EngineRuntime::Create(Options("auto", 4096)));
  EXPECT_EQ(rt->backend().kind(), "cpu");
  ExpectGenerates(*rt);
}

// The CPU computes in float32 only for now: an explicit 16-bit --dtype or a
// --kv_cache_dtype other than auto is refused, naming the flag; auto works
// (a bf16 checkpoint is converted on load, as before).
TEST(EngineRuntimeTest, CpuRefusesSixteenBitDtypesClearly) {
  EngineOptions o = Options("cpu");
  o.dtype = "bfloat16";
  EXPECT_THAT(EngineRuntime::Create(o).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("--dtype=bfloat16")));
  o.dtype = "auto";
  o.kv_cache_dtype = "fp8_e4m3";
  EXPECT_THAT(EngineRuntime::Create(o).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("--kv_cache_dtype")));
  o.kv_cache_dtype = "auto";
  o.dtype = "float32";
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<EngineRuntime> rt, EngineRuntime::Create(o));
  EXPECT_EQ(rt->dtypes().compute, kernels::cuda::DType::kFloat32);
  ExpectGenerates(*rt);
}

}  // namespace
}  // namespace colo::engine
