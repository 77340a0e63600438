#include "engine/device/device_backend_factory.h"

#include "gtest/gtest.h"
#include "tests/util/status_matchers.h"

namespace colo {
namespace engine {
namespace {

TEST(DeviceBackendFactoryTest, CpuAlwaysWorks) {
  ASSERT_OK_AND_ASSIGN(auto backend, CreateDeviceBackend("cpu"));
  EXPECT_EQ(backend->kind(), "cpu");
}

TEST(DeviceBackendFactoryTest, AutoPicksSomething) {
  ASSERT_OK_AND_ASSIGN(auto backend, CreateDeviceBackend("auto"));
  EXPECT_TRUE(backend->kind() == "cpu" || backend->kind() == "cuda");
}

TEST(DeviceBackendFactoryTest, CudaIsOkOrUnavailable) {
  absl::StatusOr<std::unique_ptr<DeviceBackend>> b = CreateDeviceBackend("cuda");
  if (b.ok()) {
    EXPECT_EQ((*b)->kind(), "cuda");
  } else {
    EXPECT_THAT(b.status(), StatusIs(absl::StatusCode::kUnavailable));
  }
}

TEST(DeviceBackendFactoryTest, UnknownKindNamesValidKinds) {
  EXPECT_THAT(CreateDeviceBackend("tpu"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       testing::HasSubstr("cpu, cuda, auto")));
}

}  // namespace
}  // namespace engine
}  // namespace colo
