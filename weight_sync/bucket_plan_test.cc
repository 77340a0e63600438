#include "weight_sync/bucket_plan.h"

#include <cstdio>
#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/util/status_matchers.h"

namespace colo {
namespace weight_sync {
namespace {

TensorSpec Spec(const std::string& name, TensorDtype dtype,
                std::vector<int64_t> shape) {
  TensorSpec s;
  s.name = name;
  s.dtype = dtype;
  s.shape = std::move(shape);
  return s;
}

// Checks the plan's invariants: every byte of every tensor appears exactly
// once, pieces are aligned and disjoint, buckets respect bucket_bytes and all
// but the last are nearly full.
void CheckPlanInvariants(const BucketPlan& plan) {
  std::vector<size_t> covered(plan.specs.size(), 0);
  for (size_t b = 0; b < plan.buckets.size(); ++b) {
    const Bucket& bucket = plan.buckets[b];
    ASSERT_LE(bucket.bytes, plan.bucket_bytes);
    ASSERT_FALSE(bucket.pieces.empty());
    size_t end = 0;
    for (const BucketPiece& p : bucket.pieces) {
      const TensorSpec& s = plan.specs[p.tensor_index];
      const size_t elem = s.ElementBytes();
      EXPECT_EQ(p.bucket_offset % elem, 0u) << s.name;
      EXPECT_EQ(p.bytes % elem, 0u) << s.name;
      EXPECT_GE(p.bucket_offset, end) << "overlap in bucket " << b;
      EXPECT_GT(p.bytes, 0u);
      // Pieces of a tensor arrive in order.
      EXPECT_EQ(p.tensor_offset, covered[p.tensor_index]) << s.name;
      covered[p.tensor_index] += p.bytes;
      end = p.bucket_offset + p.bytes;
    }
    EXPECT_EQ(bucket.bytes, end);
    if (b + 1 < plan.buckets.size()) {
      // The next bucket's first element did not fit here.
      const BucketPiece& next = plan.buckets[b + 1].pieces.front();
      const size_t elem = plan.specs[next.tensor_index].ElementBytes();
      EXPECT_GT((bucket.bytes + elem - 1) / elem * elem + elem,
                plan.bucket_bytes)
          << "bucket " << b << " closed early";
    }
  }
  size_t total = 0;
  for (size_t i = 0; i < plan.specs.size(); ++i) {
    EXPECT_EQ(covered[i], plan.specs[i].Bytes()) << plan.specs[i].name;
    total += plan.specs[i].Bytes();
  }
  EXPECT_EQ(plan.tensor_bytes, total);
}

TEST(BucketPlanTest, SmallTensorsShareABucket) {
  std::vector<TensorSpec> specs = {Spec("a", TensorDtype::kF32, {4}),
                                   Spec("b", TensorDtype::kF16, {3}),
                                   Spec("c", TensorDtype::kF32, {2})};
  ASSERT_OK_AND_ASSIGN(BucketPlan plan, MakeBucketPlan(specs, 1024));
  ASSERT_EQ(plan.buckets.size(), 1u);
  const Bucket& b = plan.buckets[0];
  ASSERT_EQ(b.pieces.size(), 3u);
  EXPECT_EQ(b.pieces[0].bucket_offset, 0u);
  EXPECT_EQ(b.pieces[1].bucket_offset, 16u);
  // 16 + 6 = 22, aligned up to 24 for float32.
  EXPECT_EQ(b.pieces[2].bucket_offset, 24u);
  EXPECT_EQ(b.bytes, 32u);
  CheckPlanInvariants(plan);
}

TEST(BucketPlanTest, LargeTensorSpansBuckets) {
  std::vector<TensorSpec> specs = {Spec("small", TensorDtype::kF32, {10}),
                                   Spec("big", TensorDtype::kF32, {100})};
  ASSERT_OK_AND_ASSIGN(BucketPlan plan, MakeBucketPlan(specs, 128));
  // 440 bytes in 128-byte buckets: 4 buckets.
  ASSERT_EQ(plan.buckets.size(), 4u);
  EXPECT_EQ(plan.buckets[0].pieces.size(), 2u);
  EXPECT_EQ(plan.buckets[0].pieces[1].bytes, 88u);
  EXPECT_EQ(plan.buckets[3].bytes, 440u - 3 * 128u);
  CheckPlanInvariants(plan);
}

// Transfers cover every piece once, in plan order; whole-bucket transfers
// are the buckets, otherwise a transfer of several pieces has only pieces
// below kOwnTransferBytes.
void CheckTransfers(const BucketPlan& plan, bool whole_buckets) {
  const std::vector<Transfer> transfers = PlanTransfers(plan, whole_buckets);
  if (plan.buckets.empty()) {
    EXPECT_TRUE(transfers.empty());
    return;
  }
  size_t bucket = 0, piece = 0;
  for (const Transfer& t : transfers) {
    if (piece == plan.buckets[bucket].pieces.size()) {
      ++bucket;
      piece = 0;
    }
    ASSERT_EQ(t.bucket, bucket);
    ASSERT_EQ(t.first_piece, piece);
    ASSERT_GT(t.num_pieces, 0u);
    const std::vector<BucketPiece>& pieces = plan.buckets[bucket].pieces;
    ASSERT_LE(t.first_piece + t.num_pieces, pieces.size());
    const BucketPiece& first = pieces[t.first_piece];
    const BucketPiece& last = pieces[t.first_piece + t.num_pieces - 1];
    EXPECT_EQ(t.bucket_offset, first.bucket_offset);
    EXPECT_EQ(t.bytes, last.bucket_offset + last.bytes - first.bucket_offset);
    if (whole_buckets) {
      EXPECT_EQ(t.num_pieces, pieces.size());
      EXPECT_EQ(t.bytes, plan.buckets[bucket].bytes);
    } else if (t.num_pieces > 1) {
      for (size_t i = t.first_piece; i < t.first_piece + t.num_pieces; ++i) {
        EXPECT_LT(pieces[i].bytes, kOwnTransferBytes);
      }
    }
    piece += t.num_pieces;
  }
  EXPECT_EQ(bucket + 1, plan.buckets.size());
  EXPECT_EQ(piece, plan.buckets.back().pieces.size());
}

TEST(BucketPlanTest, TransfersSendLargePiecesAloneAndPackSmallRuns) {
  // One 4 MiB bucket: norm (small), q (1 MiB), two biases (small), big
  // (3 MiB, split across buckets).
  std::vector<TensorSpec> specs = {Spec("norm", TensorDtype::kF32, {1024}),
                                   Spec("q", TensorDtype::kF32, {512, 512}),
                                   Spec("qb", TensorDtype::kF32, {512}),
                                   Spec("kb", TensorDtype::kBF16, {256}),
                                   Spec("big", TensorDtype::kF32, {1024, 1024})};
  ASSERT_OK_AND_ASSIGN(BucketPlan plan, MakeBucketPlan(specs, 4 << 20));
  ASSERT_EQ(plan.buckets.size(), 2u);
  const std::vector<Transfer> whole = PlanTransfers(plan, /*whole_buckets=*/true);
  ASSERT_EQ(whole.size(), 2u);
  EXPECT_EQ(whole[1].bytes, plan.buckets[1].bytes);
  EXPECT_EQ(whole[0].num_pieces, 5u);
  CheckTransfers(plan, true);
  const std::vector<Transfer> host = PlanTransfers(plan, /*whole_buckets=*/false);
  // norm | q | qb+kb | big (part 1) || big (part 2)
  ASSERT_EQ(host.size(), 5u);
  EXPECT_EQ(host[0].num_pieces, 1u);
  EXPECT_EQ(host[1].num_pieces, 1u);
  EXPECT_EQ(host[1].bytes, size_t{1} << 20);
  EXPECT_EQ(host[2].num_pieces, 2u);
  EXPECT_EQ(host[3].num_pieces, 1u);
  EXPECT_EQ(host[4].bucket, 1u);
  CheckTransfers(plan, false);
}

TEST(BucketPlanTest, RejectsBadInput) {
  EXPECT_THAT(MakeBucketPlan({Spec("a", TensorDtype::kF32, {1})}, 8),
              StatusIs(absl::StatusCode::kInvalidArgument));
  absl::StatusOr<BucketPlan> dup =
      MakeBucketPlan({Spec("a", TensorDtype::kF32, {1}),
                      Spec("a", TensorDtype::kF16, {1}),
                      Spec("b", TensorDtype::kOther, {1})},
                     1024);
  EXPECT_THAT(dup, StatusIs(absl::StatusCode::kInvalidArgument,
                            ::testing::AllOf(::testing::HasSubstr("duplicate"),
                                             ::testing::HasSubstr("\"b\""))));
}

TEST(BucketPlanTest, HashDependsOnEveryInput) {
  std::vector<TensorSpec> specs = {Spec("a", TensorDtype::kF32, {2, 3})};
  const uint64_t h = PlanHash(specs, 4096);
  EXPECT_EQ(h, PlanHash(specs, 4096));
  EXPECT_NE(h, PlanHash(specs, 8192));
  specs[0].shape = {3, 2};
  EXPECT_NE(h, PlanHash(specs, 4096));
  specs[0].shape = {2, 3};
  specs[0].dtype = TensorDtype::kBF16;
  EXPECT_NE(h, PlanHash(specs, 4096));
}

TEST(BucketPlanTest, RandomizedPlansKeepInvariants) {
  const unsigned seed = 20240607;
  std::printf("BucketPlanTest seed %u\n", seed);
  std::mt19937 rng(seed);
  const TensorDtype dtypes[] = {TensorDtype::kF32, TensorDtype::kF16,
                                TensorDtype::kBF16};
  for (int iter = 0; iter < 300; ++iter) {
    std::vector<TensorSpec> specs;
    const int n = rng() % 12;
    for (int i = 0; i < n; ++i) {
      std::vector<int64_t> shape;
      const int rank = rng() % 3;
      for (int r = 0; r < rank; ++r) shape.push_back(rng() % 40);
      specs.push_back(Spec("t" + std::to_string(i), dtypes[rng() % 3], shape));
    }
    const size_t bucket_bytes = kMinBucketBytes + rng() % 600;
    ASSERT_OK_AND_ASSIGN(BucketPlan plan, MakeBucketPlan(specs, bucket_bytes));
    SCOPED_TRACE(::testing::Message() << "iter " << iter);
    CheckPlanInvariants(plan);
    // Deterministic: the same inputs give the same plan.
    ASSERT_OK_AND_ASSIGN(BucketPlan again, MakeBucketPlan(specs, bucket_bytes));
    ASSERT_EQ(again.buckets.size(), plan.buckets.size());
    for (size_t b = 0; b < plan.buckets.size(); ++b) {
      ASSERT_EQ(again.buckets[b].bytes, plan.buckets[b].bytes);
      ASSERT_EQ(again.buckets[b].pieces.size(), plan.buckets[b].pieces.size());
    }
    EXPECT_EQ(again.hash, plan.hash);
    CheckTransfers(plan, true);
    CheckTransfers(plan, false);
  }
}

}  // namespace
}  // namespace weight_sync
}  // namespace colo
