// PrefillAttention, DecodeAttention (split-K + merge) and WritePagedKv
// against a double-precision host reference over the same rounded inputs:
// page tables with page_size 1 and 16, GQA with one and several head groups,
// head_dim 24..256 (256 needs more than 48 KiB of shared memory), sliding
// windows through a full->SWA map with unmapped slots, attention sinks,
// every compute dtype with its own and an fp8 KV cache, batch invariance,
// and padded graph rows that point at an unmapped padding page. Skips
// without a GPU (fails under COLO_REQUIRE_GPU=1); run under
// compute-sanitizer memcheck by tests/gpu/run_gpu_suite.sh.
#include "kernels/cuda/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cuda/attention_plan.h"
#include "kernels/cuda/cuda_stream.h"
#include "kernels/cuda/device_array.h"
#include "kernels/cuda/kv_write.h"
#include "kernels/cuda/test_util.h"
#include "tests/util/status_matchers.h"

namespace colo::kernels::cuda {
namespace {

using testing::Download;
using testing::Eps;
using testing::RandomFloats;
using testing::RoundAll;
using testing::Upload;

struct Config {
  int heads = 8;
  int kv_heads = 2;
  int head_dim = 64;
  int32_t page_size = 16;
  int32_t window = 0;
  bool sinks = false;
  bool sliding_map = false;  // read the pool through a full->SWA map
  DType dtype = DType::kBFloat16;
  DType kv_dtype = DType::kBFloat16;
  std::string Name() const {
    return ::testing::PrintToString(heads) + "/" + std::to_string(kv_heads) + " d" +
           std::to_string(head_dim) + " P" + std::to_string(page_size) + " w" +
           std::to_string(window) + (sinks ? " sinks" : "") + (sliding_map ? " swa" : "") +
           " " + std::string(DTypeName(dtype)) + "/" + std::string(DTypeName(kv_dtype));
  }
};

struct Req {
  int32_t kv_len = 0;  // positions after this step
  int32_t n_new = 0;   // new tokens (at the end)
};

// A batch on the host: pools, page tables, queries, and the same on the
// device.
class Fixture {
 public:
  Fixture(const Config& c, const std::vector<Req>& reqs, uint32_t seed, cudaStream_t stream)
      : c_(c), reqs_(reqs), stream_(stream), rng_(seed) {}

  absl::Status Build() {
    const int32_t p = c_.page_size;
    int32_t pages_needed = 1;  // page 0 is the padding page
    for (const Req& r : reqs_) pages_needed += PageCount(r.kv_len, p);
    num_slots_ = (pages_needed + 3) * p;
    // Pages: a random permutation of 1.. (never page 0).
    std::vector<int32_t> free_pages(pages_needed + 2);
    std::iota(free_pages.begin(), free_pages.end(), 1);
    std::shuffle(free_pages.begin(), free_pages.end(), rng_);
    size_t next = 0;
    page_begin_.push_back(0);
    for (size_t r = 0; r < reqs_.size(); ++r) {
      for (int32_t i = 0; i < PageCount(reqs_[r].kv_len, p); ++i) pages_.push_back(free_pages[next++]);
      page_begin_.push_back(static_cast<int32_t>(pages_.size()));
      for (int32_t i = 0; i < reqs_[r].n_new; ++i) {
        positions_.push_back(reqs_[r].kv_len - reqs_[r].n_new + i);
        token_req_.push_back(static_cast<int32_t>(r));
      }
    }
    const int64_t slot_elems = int64_t{c_.kv_heads} * c_.head_dim;
    // The SWA map sends full slot s to SWA slot (s * 7 + 3) % num_slots (a
    // permutation when num_slots is coprime to 7, which we ensure), except
    // positions before each request's first attended key: unmapped.
    if (c_.sliding_map) {
      while (num_slots_ % 7 == 0) num_slots_ += p;
      map_.assign(num_slots_, -1);
      for (size_t r = 0; r < reqs_.size(); ++r) {
        const int32_t first_new = reqs_[r].kv_len - reqs_[r].n_new;
        for (int32_t pos = WindowStart(first_new, c_.window); pos < reqs_[r].kv_len; ++pos) {
          const int32_t s = FullSlot(static_cast<int32_t>(r), pos);
          map_[s] = static_cast<int32_t>((int64_t{s} * 7 + 3) % num_slots_);
        }
      }
    }
    k_pool_ = RoundAll(c_.kv_dtype, RandomFloats(num_slots_ * slot_elems, rng_(), -2.0f, 2.0f));
    v_pool_ = RoundAll(c_.kv_dtype, RandomFloats(num_slots_ * slot_elems, rng_(), -2.0f, 2.0f));
    q_stride_ = int64_t{c_.heads + 2 * c_.kv_heads} * c_.head_dim;  // a fused qkv row
    q_ = RoundAll(c_.dtype,
                  RandomFloats(positions_.size() * q_stride_, rng_(), -1.5f, 1.5f));
    if (c_.sinks) sinks_ = RandomFloats(c_.heads, rng_(), -1.0f, 3.0f);

    auto up_i = [&](const std::vector<int32_t>& v, DeviceArray<int32_t>* out) -> absl::Status {
      absl::StatusOr<DeviceArray<int32_t>> a =
          DeviceArray<int32_t>::FromHost(v.empty() ? std::vector<int32_t>{0} : v, stream_);
      if (!a.ok()) return a.status();
      *out = std::move(*a);
      return absl::OkStatus();
    };
    if (auto s = up_i(positions_, &d_positions_); !s.ok()) return s;
    if (auto s = up_i(token_req_, &d_token_req_); !s.ok()) return s;
    if (auto s = up_i(page_begin_, &d_page_begin_); !s.ok()) return s;
    if (auto s = up_i(pages_, &d_pages_); !s.ok()) return s;
    if (c_.sliding_map) {
      if (auto s = up_i(map_, &d_map_); !s.ok()) return s;
    }
    auto up_f = [&](const std::vector<float>& v, DType d, DeviceArray<uint8_t>* out) {
      absl::StatusOr<DeviceArray<uint8_t>> a = Upload(v, d, stream_);
      if (!a.ok()) return a.status();
      *out = std::move(*a);
      return absl::OkStatus();
    };
    // Device pools are indexed by layer slot: permute through the map.
    std::vector<float> k_dev = k_pool_, v_dev = v_pool_;
    if (c_.sliding_map) {
      for (int32_t s = 0; s < num_slots_; ++s) {
        if (map_[s] < 0) continue;
        std::copy_n(k_pool_.begin() + s * slot_elems, slot_elems,
                    k_dev.begin() + int64_t{map_[s]} * slot_elems);
        std::copy_n(v_pool_.begin() + s * slot_elems, slot_elems,
                    v_dev.begin() + int64_t{map_[s]} * slot_elems);
      }
    }
    if (auto s = up_f(k_dev, c_.kv_dtype, &d_k_); !s.ok()) return s;
    if (auto s = up_f(v_dev, c_.kv_dtype, &d_v_); !s.ok()) return s;
    if (auto s = up_f(q_, c_.dtype, &d_q_); !s.ok()) return s;
    if (c_.sinks) {
      absl::StatusOr<DeviceArray<float>> a = DeviceArray<float>::FromHost(sinks_, stream_);
      if (!a.ok()) return a.status();
      d_sinks_ = std::move(*a);
    }
    absl::StatusOr<DeviceArray<uint8_t>> out = DeviceArray<uint8_t>::Create(
        std::max<size_t>(1, positions_.size()) * c_.heads * c_.head_dim * DTypeBytes(c_.dtype));
    if (!out.ok()) return out.status();
    d_out_ = std::move(*out);
    return absl::OkStatus();
  }

  int32_t FullSlot(int32_t req, int32_t pos) const {
    return pages_[page_begin_[req] + pos / c_.page_size] * c_.page_size + pos % c_.page_size;
  }

  PagedBatch Batch() const {
    PagedBatch b;
    b.num_tokens = static_cast<int32_t>(positions_.size());
    b.positions = d_positions_.data();
    b.token_req = d_token_req_.data();
    b.req_page_begin = d_page_begin_.data();
    b.pages = d_pages_.data();
    b.page_size = c_.page_size;
    b.full_to_swa = c_.sliding_map ? d_map_.data() : nullptr;
    return b;
  }

  AttentionParams Params() const {
    AttentionParams p;
    p.num_heads = c_.heads;
    p.num_kv_heads = c_.kv_heads;
    p.head_dim = c_.head_dim;
    p.scale = 1.0f / std::sqrt(static_cast<float>(c_.head_dim));
    p.window = c_.window;
    p.sinks = c_.sinks ? d_sinks_.data() : nullptr;
    return p;
  }

  // Double-precision attention of token t, head h.
  std::vector<double> Reference(int32_t t, int h) const {
    const int d = c_.head_dim;
    const int32_t req = token_req_[t], pos = positions_[t];
    const int kvh = KvHeadOf(h, c_.heads, c_.kv_heads);
    const double scale = 1.0 / std::sqrt(static_cast<double>(d));
    std::vector<double> scores;
    std::vector<int32_t> slots;
    for (int32_t k = WindowStart(pos, c_.window); k <= pos; ++k) {
      const int32_t s = FullSlot(req, k);
      double dot = 0.0;
      for (int i = 0; i < d; ++i) {
        dot += double{q_[t * q_stride_ + h * d + i]} *
               k_pool_[(int64_t{s} * c_.kv_heads + kvh) * d + i];
      }
      scores.push_back(dot * static_cast<float>(scale));
      slots.push_back(s);
    }
    double mx = c_.sinks ? sinks_[h] : -INFINITY;
    for (double s : scores) mx = std::max(mx, s);
    double denom = c_.sinks ? std::exp(sinks_[h] - mx) : 0.0;
    std::vector<double> out(d, 0.0);
    for (size_t j = 0; j < scores.size(); ++j) {
      const double e = std::exp(scores[j] - mx);
      denom += e;
      for (int i = 0; i < d; ++i) {
        out[i] += e * v_pool_[(int64_t{slots[j]} * c_.kv_heads + kvh) * d + i];
      }
    }
    for (double& x : out) x /= denom;
    return out;
  }

  void ExpectRowsMatch(const std::vector<int32_t>& tokens, const std::string& what) {
    ASSERT_OK_AND_ASSIGN(std::vector<float> got, Download(d_out_, c_.dtype, stream_));
    int bad = 0;
    const float tol_rel = Eps(c_.dtype) + 1e-5f;
    for (int32_t t : tokens) {
      for (int h = 0; h < c_.heads; ++h) {
        const std::vector<double> want = Reference(t, h);
        for (int i = 0; i < c_.head_dim; ++i) {
          const float g = got[(int64_t{t} * c_.heads + h) * c_.head_dim + i];
          const double w = want[i];
          if (!(std::fabs(g - w) <= 1e-4 + tol_rel * std::fabs(w))) {
            if (++bad <= 5) {
              ADD_FAILURE() << what << " " << c_.Name() << ": token " << t << " head " << h
                            << " dim " << i << ": got " << g << " want " << w;
            }
          }
        }
      }
    }
    EXPECT_EQ(bad, 0) << what << " " << c_.Name();
  }

  absl::Status RunPrefill() {
    const RowLayout layout = MakeRowLayout(c_.heads, c_.kv_heads);
    std::vector<int32_t> begin, count;
    int32_t at = 0;
    for (const Req& r : reqs_) {
      begin.push_back(at);
      count.push_back(r.n_new);
      at += r.n_new;
    }
    std::vector<PrefillTile> tiles = PlanPrefillTiles(begin, count, layout.tokens_per_block);
    // Single-token requests go through prefill too in this test (a tile of
    // one token).
    for (int32_t r : DecodeRequests(count)) tiles.push_back({r, begin[r], 1});
    std::vector<int32_t> raw(tiles.size() * 3);
    std::memcpy(raw.data(), tiles.data(), raw.size() * sizeof(int32_t));
    absl::StatusOr<DeviceArray<int32_t>> d_tiles = DeviceArray<int32_t>::FromHost(raw, stream_);
    if (!d_tiles.ok()) return d_tiles.status();
    if (absl::Status s = PrefillAttention(
            d_q_.data(), q_stride_, c_.dtype, Batch(),
            reinterpret_cast<const PrefillTile*>(d_tiles->data()),
            static_cast<int32_t>(tiles.size()), d_k_.data(), d_v_.data(), c_.kv_dtype, Params(),
            d_out_.data(), stream_);
        !s.ok()) {
      return s;
    }
    return CudaStatus(cudaStreamSynchronize(stream_), "sync");
  }

  // Decode of every token (all requests must have n_new == 1).
  absl::Status RunDecode(int32_t splits) { return RunDecodeItems(AllTokens(), splits); }

  // Decode of the given batch tokens only.
  absl::Status RunDecodeItems(const std::vector<int32_t>& items, int32_t splits) {
    absl::StatusOr<DeviceArray<int32_t>> d_items = DeviceArray<int32_t>::FromHost(items, stream_);
    if (!d_items.ok()) return d_items.status();
    const size_t ws =
        DecodeWorkspaceFloats(static_cast<int32_t>(items.size()), splits, c_.heads, c_.head_dim);
    absl::StatusOr<DeviceArray<float>> d_ws = DeviceArray<float>::Create(std::max<size_t>(1, ws));
    if (!d_ws.ok()) return d_ws.status();
    if (absl::Status s = DecodeAttention(d_q_.data(), q_stride_, c_.dtype, Batch(),
                                         d_items->data(), static_cast<int32_t>(items.size()),
                                         splits, d_k_.data(), d_v_.data(), c_.kv_dtype, Params(),
                                         d_ws->data(), ws, d_out_.data(), stream_);
        !s.ok()) {
      return s;
    }
    return CudaStatus(cudaStreamSynchronize(stream_), "sync");
  }

  std::vector<int32_t> AllTokens() const {
    std::vector<int32_t> t(positions_.size());
    std::iota(t.begin(), t.end(), 0);
    return t;
  }
  const DeviceArray<uint8_t>& out() const { return d_out_; }

 private:
  const Config c_;
  const std::vector<Req> reqs_;
  cudaStream_t stream_;
  std::mt19937 rng_;
  int32_t num_slots_ = 0;
  std::vector<int32_t> positions_, token_req_, page_begin_, pages_, map_;
  std::vector<float> k_pool_, v_pool_, q_, sinks_;
  int64_t q_stride_ = 0;
  DeviceArray<int32_t> d_positions_, d_token_req_, d_page_begin_, d_pages_, d_map_;
  DeviceArray<uint8_t> d_k_, d_v_, d_q_, d_out_;
  DeviceArray<float> d_sinks_;
};

std::vector<Config> Configs() {
  std::vector<Config> out;
  for (DType d : testing::kComputeDTypes) {
    for (DType kv : {d, DType::kFp8E4M3}) {
      Config c;
      c.dtype = d;
      c.kv_dtype = kv;
      out.push_back(c);  // 8/2 heads, d64, P16
    }
  }
  Config c;
  c.heads = 32;  // one KV head, two head groups of 16
  c.kv_heads = 1;
  c.head_dim = 128;
  c.page_size = 1;
  out.push_back(c);
  c = Config();
  c.heads = 6;  // groups of 3: 5 tokens per prefill tile
  c.kv_heads = 2;
  c.head_dim = 24;
  c.window = 5;
  c.sliding_map = true;
  out.push_back(c);
  c = Config();
  c.heads = 4;
  c.kv_heads = 4;
  c.head_dim = 256;  // > 48 KiB of shared memory
  c.sinks = true;
  c.dtype = c.kv_dtype = DType::kFloat16;
  out.push_back(c);
  c = Config();
  c.window = 40;
  c.sinks = true;
  c.sliding_map = true;
  c.dtype = c.kv_dtype = DType::kFloat32;
  out.push_back(c);
  return out;
}

TEST(CudaAttentionTest, PrefillMatchesReference) {
  COLO_SKIP_WITHOUT_GPU();
  ASSERT_OK_AND_ASSIGN(CudaStream stream, CudaStream::Create());
  // A fresh prefill, an extend over a cached prefix crossing pages, a
  // single-token request, and one long enough for several key tiles.
  const std::vector<Req> reqs = {{37, 37}, {90, 21}, {5, 1}, {300, 70}};
  for (const Config& c : Configs()) {
    Fixture f(c, reqs, 11, stream.get());
    ASSERT_OK(f.Build());
    ASSERT_OK(f.RunPrefill()) << c.Name();
    f.ExpectRowsMatch(f.AllTokens(), "prefill");
  }
}

TEST(CudaAttentionTest, DecodeWithAndWithoutSplitsMatchesReference) {
  COLO_SKIP_WITHOUT_GPU();
  ASSERT_OK_AND_ASSIGN(CudaStream stream, CudaStream::Create());
  const std::vector<Req> reqs = {{1, 1}, {17, 1}, {64, 1}, {1000, 1}, {333, 1}};
  for (const Config& c : Configs()) {
    for (int32_t splits : {1, 2, 5, kMaxDecodeSplits}) {
      SCOPED_TRACE(splits);
      Fixture f(c, reqs, 12, stream.get());
      ASSERT_OK(f.Build());
      ASSERT_OK(f.RunDecode(splits)) << c.Name();
      f.ExpectRowsMatch(f.AllTokens(), "decode splits=" + std::to_string(splits));
    }
  }
}

// A request's output does not depend on the batch it ran in: decoding
// token 0 alone and with others gives the same bits.
TEST(CudaAttentionTest, ResultsAreBatchInvariant) {
  COLO_SKIP_WITHOUT_GPU();
  ASSERT_OK_AND_ASSIGN(CudaStream stream, CudaStream::Create());
  Config c;
  Fixture f(c, {{500, 1}, {20, 1}, {900, 1}}, 21, stream.get());
  ASSERT_OK(f.Build());
  const int64_t row = int64_t{c.heads} * c.head_dim;
  ASSERT_OK(f.RunDecodeItems({0}, 4));
  ASSERT_OK_AND_ASSIGN(std::vector<float> alone, Download(f.out(), c.dtype, stream.get()));
  f.ExpectRowsMatch({0}, "alone");
  ASSERT_OK(f.RunDecodeItems({2, 0, 1}, 4));
  ASSERT_OK_AND_ASSIGN(std::vector<float> batched, Download(f.out(), c.dtype, stream.get()));
  for (int64_t i = 0; i < row; ++i) ASSERT_EQ(alone[i], batched[i]) << i;
  f.ExpectRowsMatch({0, 1, 2}, "batched");
}

// Padded rows of a CUDA-graph batch point at the padding page, whose SWA
// slots are unmapped: KV writes and reads skip them and the output is 0.
TEST(CudaAttentionTest, UnmappedPaddingRowsAreSkipped) {
  COLO_SKIP_WITHOUT_GPU();
  ASSERT_OK_AND_ASSIGN(CudaStream stream, CudaStream::Create());
  const int d = 64, kvh = 2, heads = 4;
  const int64_t slots = 64, elems = int64_t{kvh} * d;
  const std::vector<int32_t> positions = {0};
  const std::vector<int32_t> token_req = {0};
  const std::vector<int32_t> begin = {0, 1};
  const std::vector<int32_t> pages = {0};
  const std::vector<int32_t> map(slots, -1);
  ASSERT_OK_AND_ASSIGN(auto d_pos, DeviceArray<int32_t>::FromHost(positions, stream.get()));
  ASSERT_OK_AND_ASSIGN(auto d_req, DeviceArray<int32_t>::FromHost(token_req, stream.get()));
  ASSERT_OK_AND_ASSIGN(auto d_begin, DeviceArray<int32_t>::FromHost(begin, stream.get()));
  ASSERT_OK_AND_ASSIGN(auto d_pages, DeviceArray<int32_t>::FromHost(pages, stream.get()));
  ASSERT_OK_AND_ASSIGN(auto d_map, DeviceArray<int32_t>::FromHost(map, stream.get()));
  const std::vector<float> pool(slots * elems, 7.0f);
  ASSERT_OK_AND_ASSIGN(auto d_k, Upload(pool, DType::kBFloat16, stream.get()));
  ASSERT_OK_AND_ASSIGN(auto d_v, Upload(pool, DType::kBFloat16, stream.get()));
  const int64_t stride = int64_t{heads + 2 * kvh} * d;
  ASSERT_OK_AND_ASSIGN(auto d_q, Upload(std::vector<float>(stride, 1.0f), DType::kBFloat16,
                                        stream.get()));
  ASSERT_OK_AND_ASSIGN(auto d_out, Upload(std::vector<float>(heads * d, 5.0f), DType::kBFloat16,
                                          stream.get()));
  PagedBatch b;
  b.num_tokens = 1;
  b.positions = d_pos.data();
  b.token_req = d_req.data();
  b.req_page_begin = d_begin.data();
  b.pages = d_pages.data();
  b.page_size = 16;
  b.full_to_swa = d_map.data();
  ASSERT_OK(WritePagedKv(d_q.data() + heads * d * 2, d_q.data() + (heads + kvh) * d * 2,
                         DType::kBFloat16, stride, b, elems, d_k.data(), d_v.data(),
                         DType::kBFloat16, stream.get()));
  AttentionParams p;
  p.num_heads = heads;
  p.num_kv_heads = kvh;
  p.head_dim = d;
  p.window = 8;
  const std::vector<int32_t> items = {0};
  ASSERT_OK_AND_ASSIGN(auto d_items, DeviceArray<int32_t>::FromHost(items, stream.get()));
  ASSERT_OK(DecodeAttention(d_q.data(), stride, DType::kBFloat16, b, d_items.data(), 1, 1,
                            d_k.data(), d_v.data(), DType::kBFloat16, p, nullptr, 0,
                            d_out.data(), stream.get()));
  ASSERT_OK_AND_ASSIGN(std::vector<float> k_after, Download(d_k, DType::kBFloat16, stream.get()));
  ASSERT_OK_AND_ASSIGN(std::vector<float> out, Download(d_out, DType::kBFloat16, stream.get()));
  EXPECT_EQ(k_after, pool) << "an unmapped slot was written";
  EXPECT_EQ(out, std::vector<float>(heads * d, 0.0f)) << "no visible key: output 0";
}

TEST(CudaKvWriteTest, WritesEachTokenAtItsPagedSlotInTheCacheDtype) {
  COLO_SKIP_WITHOUT_GPU();
  ASSERT_OK_AND_ASSIGN(CudaStream stream, CudaStream::Create());
  const int kvh = 2, d = 32;
  const int64_t elems = int64_t{kvh} * d, slots = 80;
  // Two requests, page size 4: r0 pages {3, 5} positions 2..6; r1 page {9} position 1.
  const std::vector<int32_t> positions = {2, 3, 4, 5, 6, 1};
  const std::vector<int32_t> token_req = {0, 0, 0, 0, 0, 1};
  const std::vector<int32_t> begin = {0, 2, 3};
  const std::vector<int32_t> pages = {3, 5, 9};
  const std::vector<int32_t> want_slot = {14, 15, 20, 21, 22, 37};
  for (DType src : testing::kComputeDTypes) {
    for (DType kv : {src, DType::kFp8E4M3}) {
      SCOPED_TRACE(::testing::Message() << DTypeName(src) << " -> " << DTypeName(kv));
      const int64_t stride = 3 * elems;  // k, v, and a gap
      const std::vector<float> rows =
          RoundAll(src, RandomFloats(positions.size() * stride, 31, -500.0f, 500.0f));
      ASSERT_OK_AND_ASSIGN(auto d_rows, Upload(rows, src, stream.get()));
      ASSERT_OK_AND_ASSIGN(auto d_k, Upload(std::vector<float>(slots * elems, 0.0f), kv,
                                            stream.get()));
      ASSERT_OK_AND_ASSIGN(auto d_v, Upload(std::vector<float>(slots * elems, 0.0f), kv,
                                            stream.get()));
      ASSERT_OK_AND_ASSIGN(auto d_pos, DeviceArray<int32_t>::FromHost(positions, stream.get()));
      ASSERT_OK_AND_ASSIGN(auto d_req, DeviceArray<int32_t>::FromHost(token_req, stream.get()));
      ASSERT_OK_AND_ASSIGN(auto d_begin, DeviceArray<int32_t>::FromHost(begin, stream.get()));
      ASSERT_OK_AND_ASSIGN(auto d_pages, DeviceArray<int32_t>::FromHost(pages, stream.get()));
      PagedBatch b;
      b.num_tokens = static_cast<int32_t>(positions.size());
      b.positions = d_pos.data();
      b.token_req = d_req.data();
      b.req_page_begin = d_begin.data();
      b.pages = d_pages.data();
      b.page_size = 4;
      const size_t bytes = DTypeBytes(src);
      ASSERT_OK(WritePagedKv(d_rows.data(), d_rows.data() + elems * bytes, src, stride, b, elems,
                             d_k.data(), d_v.data(), kv, stream.get()));
      ASSERT_OK_AND_ASSIGN(std::vector<float> k, Download(d_k, kv, stream.get()));
      ASSERT_OK_AND_ASSIGN(std::vector<float> v, Download(d_v, kv, stream.get()));
      std::vector<float> want_k(slots * elems, 0.0f), want_v(slots * elems, 0.0f);
      for (size_t t = 0; t < positions.size(); ++t) {
        for (int64_t e = 0; e < elems; ++e) {
          want_k[want_slot[t] * elems + e] = testing::RoundTo(kv, rows[t * stride + e]);
          want_v[want_slot[t] * elems + e] = testing::RoundTo(kv, rows[t * stride + elems + e]);
        }
      }
      EXPECT_EQ(k, want_k);
      EXPECT_EQ(v, want_v);
    }
  }
}

TEST(CudaAttentionTest, RejectsBadShapes) {
  PagedBatch b;
  AttentionParams p;
  p.num_heads = 6;
  p.num_kv_heads = 4;  // not a divisor
  p.head_dim = 64;
  EXPECT_THAT(PrefillAttention(nullptr, 1024, DType::kBFloat16, b, nullptr, 0, nullptr, nullptr,
                               DType::kBFloat16, p, nullptr, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument));
  p.num_kv_heads = 2;
  p.head_dim = 512;  // above kAttnMaxHeadDim
  EXPECT_THAT(DecodeAttention(nullptr, 4096, DType::kBFloat16, b, nullptr, 0, 1, nullptr,
                              nullptr, DType::kBFloat16, p, nullptr, 0, nullptr, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace colo::kernels::cuda
