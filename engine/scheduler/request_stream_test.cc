#include "engine/scheduler/request_stream.h"

#include <thread>

#include "gtest/gtest.h"

namespace colo::engine {
namespace {

TEST(RequestStreamTest, DeliversTokensOnceThenRepeatsTheFinish) {
  RequestStream s("r1");
  s.Append(5, -0.5f);
  s.Append(6, -0.25f);
  StreamChunk c = s.Next(absl::InfiniteFuture());
  EXPECT_EQ(c.tokens, (std::vector<int32_t>{5, 6}));
  EXPECT_EQ(c.logprobs, (std::vector<float>{-0.5f, -0.25f}));
  EXPECT_FALSE(c.finished);
  FinishInfo info;
  info.reason = FinishReason::kLength;
  info.completion_tokens = 3;
  s.Append(7, -1.0f);
  s.Finish(info);
  c = s.Next(absl::InfiniteFuture());
  EXPECT_EQ(c.tokens, (std::vector<int32_t>{7}));
  EXPECT_TRUE(c.finished);
  EXPECT_EQ(c.finish.reason, FinishReason::kLength);
  s.Append(8, 0.0f);  // after finish: ignored
  // The end repeats without tokens: a consumer that asks again never waits.
  for (int i = 0; i < 2; ++i) {
    c = s.Next(absl::InfiniteFuture());
    EXPECT_TRUE(c.tokens.empty());
    EXPECT_TRUE(c.finished);
    EXPECT_EQ(c.finish.reason, FinishReason::kLength);
  }
}

TEST(RequestStreamTest, NextTimesOutEmpty) {
  RequestStream s("r");
  StreamChunk c = s.Next(absl::Now() + absl::Milliseconds(5));
  EXPECT_TRUE(c.empty());
}

TEST(RequestStreamTest, ConsumerWakesForProducerOnAnotherThread) {
  RequestStream s("r");
  std::thread producer([&] {
    for (int i = 0; i < 100; ++i) s.Append(i, 0.0f);
    s.Fail(absl::InternalError("boom"));
  });
  std::vector<int32_t> got;
  bool finished = false;
  while (!finished) {
    StreamChunk c = s.Next(absl::Now() + absl::Seconds(30));
    got.insert(got.end(), c.tokens.begin(), c.tokens.end());
    finished = c.finished;
    if (finished) {
      EXPECT_EQ(c.error.code(), absl::StatusCode::kInternal);
    }
  }
  producer.join();
  ASSERT_EQ(got.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(got[i], i);
}

}  // namespace
}  // namespace colo::engine
