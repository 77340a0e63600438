#include "weight_sync/bucket_plan.h"

#include <algorithm>
#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace colo {
namespace weight_sync {
namespace {

constexpr uint64_t kFnvOffset = 1469598103934665603ull;
constexpr uint64_t kFnvPrime = 1099511628211ull;

void HashBytes(uint64_t* h, const void* data, size_t n) {
  const unsigned char* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) {
    *h ^= p[i];
    *h *= kFnvPrime;
  }
}

void HashU64(uint64_t* h, uint64_t v) { HashBytes(h, &v, sizeof(v)); }

absl::Status CheckSpecs(const std::vector<TensorSpec>& specs) {
  std::vector<std::string> errors;
  absl::flat_hash_set<std::string> seen;
  for (const TensorSpec& s : specs) {
    if (!seen.insert(s.name).second) {
      errors.push_back(absl::StrCat("\"", s.name, "\": duplicate name"));
    }
    if (s.ElementBytes() == 0) {
      errors.push_back(absl::StrCat("\"", s.name, "\": unsupported dtype"));
    }
    if (std::any_of(s.shape.begin(), s.shape.end(),
                    [](int64_t d) { return d < 0; })) {
      errors.push_back(absl::StrCat("\"", s.name, "\": negative dimension in ",
                                    ShapeToString(s.shape)));
    }
  }
  if (errors.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("bad tensor specs: ", absl::StrJoin(errors, "; ")));
}

}  // namespace

uint64_t PlanHash(const std::vector<TensorSpec>& specs, size_t bucket_bytes) {
  uint64_t h = kFnvOffset;
  HashU64(&h, bucket_bytes);
  HashU64(&h, specs.size());
  for (const TensorSpec& s : specs) {
    HashU64(&h, s.name.size());
    HashBytes(&h, s.name.data(), s.name.size());
    HashU64(&h, static_cast<uint64_t>(s.dtype));
    HashU64(&h, s.shape.size());
    for (int64_t d : s.shape) HashU64(&h, static_cast<uint64_t>(d));
  }
  return h;
}

absl::StatusOr<BucketPlan> MakeBucketPlan(const std::vector<TensorSpec>& specs,
                                          size_t bucket_bytes) {
  if (bucket_bytes < kMinBucketBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "bucket_bytes ", bucket_bytes, " is below the minimum ", kMinBucketBytes));
  }
  absl::Status st = CheckSpecs(specs);
  if (!st.ok()) return st;

  BucketPlan plan;
  plan.specs = specs;
  plan.bucket_bytes = bucket_bytes;
  plan.hash = PlanHash(specs, bucket_bytes);
  Bucket current;
  size_t used = 0;  // bytes used in `current`, including padding
  auto close_bucket = [&]() {
    if (current.pieces.empty()) return;
    current.bytes = used;
    plan.buckets.push_back(std::move(current));
    current = Bucket();
    used = 0;
  };
  for (int i = 0; i < static_cast<int>(specs.size()); ++i) {
    const size_t elem = specs[i].ElementBytes();
    const size_t total = specs[i].Bytes();
    plan.tensor_bytes += total;
    size_t done = 0;
    while (done < total) {
      size_t start = (used + elem - 1) / elem * elem;
      // Room for at least one element, else start a new bucket.
      if (start + elem > bucket_bytes) {
        close_bucket();
        start = 0;
      }
      const size_t room = (bucket_bytes - start) / elem * elem;
      const size_t take = std::min(room, total - done);
      current.pieces.push_back(BucketPiece{i, done, start, take});
      used = start + take;
      done += take;
    }
  }
  close_bucket();
  return plan;
}

std::vector<Transfer> PlanTransfers(const BucketPlan& plan, bool whole_buckets) {
  std::vector<Transfer> out;
  for (size_t b = 0; b < plan.buckets.size(); ++b) {
    const std::vector<BucketPiece>& pieces = plan.buckets[b].pieces;
    if (whole_buckets) {
      out.push_back(Transfer{b, 0, plan.buckets[b].bytes, 0, pieces.size()});
      continue;
    }
    size_t i = 0;
    while (i < pieces.size()) {
      size_t j = i + 1;
      if (pieces[i].bytes < kOwnTransferBytes) {
        while (j < pieces.size() && pieces[j].bytes < kOwnTransferBytes) ++j;
      }
      const size_t begin = pieces[i].bucket_offset;
      const size_t end = pieces[j - 1].bucket_offset + pieces[j - 1].bytes;
      out.push_back(Transfer{b, begin, end - begin, i, j - i});
      i = j;
    }
  }
  return out;
}

}  // namespace weight_sync
}  // namespace colo
