// OpDriver: drives a KvCacheManager with a random stream of operations
// (extend, decode, speculative over-allocation, commit, insert, match,
// evict, finish, abort, retract, session open/turn/close/timeout, flush,
// release/resume) and checks it after every operation against a reference
// model: page ownership counts per pool, the length ladder of every request,
// the full audit, and the *content* of the KV: every committed position
// writes a fingerprint of its prefix into K of every layer, and every cache
// hit / live window is read back and compared. Used by the randomized
// property test and by the libFuzzer target (entropy from the fuzz input).
//
// Not thread-safe.
#ifndef COLO_KVCACHE_TESTING_OP_DRIVER_H_
#define COLO_KVCACHE_TESTING_OP_DRIVER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/memory/tagged_pool.h"
#include "kvcache/kv_cache_manager.h"
#include "kvcache/testing/test_pool.h"

namespace colo::kvcache::test_support {

// Source of choices: a seeded PRNG or the bytes of a fuzz input.
class Entropy {
 public:
  virtual ~Entropy() = default;
  // Uniform-ish in [0, bound); bound >= 1.
  virtual uint32_t Next(uint32_t bound) = 0;
  virtual bool Exhausted() const = 0;
};

class PrngEntropy : public Entropy {
 public:
  explicit PrngEntropy(uint64_t seed) : rng_(seed) {}
  uint32_t Next(uint32_t bound) override {
    return static_cast<uint32_t>(rng_() % bound);
  }
  bool Exhausted() const override { return false; }

 private:
  std::mt19937_64 rng_;
};

class ByteEntropy : public Entropy {
 public:
  ByteEntropy(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  uint32_t Next(uint32_t bound) override {
    uint32_t v = 0;
    for (int i = 0; i < 2 && pos_ < size_; ++i) v = (v << 8) | data_[pos_++];
    return v % bound;
  }
  bool Exhausted() const override { return pos_ >= size_; }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

struct DriverConfig {
  int32_t page_size = 1;
  int32_t sliding_window = 0;  // 0: all layers full; else layer 1 is sliding.
  bool sessions = true;
  int64_t full_capacity_tokens = 256;
  int64_t swa_capacity_tokens = 192;
  int32_t max_requests = 8;
  int32_t vocab = 4;          // Small: prompts share prefixes often.
  int32_t max_prompt = 96;
  int32_t num_documents = 6;  // Shared prompt stems.
  bool audit_every_op = true;
  std::string Describe() const;
};

struct DriverStats {
  int64_t ops = 0;
  int64_t hits_tokens = 0;
  int64_t prompt_tokens = 0;
  int64_t resource_exhausted = 0;
  int64_t releases = 0;
  int64_t sessions_closed = 0;
};

class OpDriver {
 public:
  static absl::StatusOr<std::unique_ptr<OpDriver>> Create(const DriverConfig& config);
  ~OpDriver();

  // One random operation followed by the checks. A non-OK status is a bug
  // in the cache (or the model): its message names the op and the failure.
  absl::Status Step(Entropy& entropy);
  // Finishes everything (abort requests, close sessions, flush) and checks
  // that every page of every pool is free: zero leaks.
  absl::Status Drain();

  const DriverStats& stats() const { return stats_; }
  KvCacheManager& manager() { return *manager_; }

 private:
  struct Req {
    RequestId id;
    std::vector<int32_t> prompt;  // Full prompt of this request.
    std::vector<int32_t> tokens;  // Tokens with KV allocated, [0, allocated).
    int32_t committed = 0;
    int32_t allocated = 0;
    int32_t protected_len = 0;
    int32_t swa_evicted = 0;      // Expected SWA window frontier.
    int32_t target_len = 0;       // Stop generating here.
    std::optional<SessionId> session;
  };
  struct Sess {
    std::vector<int32_t> tokens;  // Committed tokens (history).
    bool busy = false;
    int32_t protected_len = 0;    // Expected, page aligned.
    int32_t swa_evicted = 0;      // Expected SWA window frontier.
    bool has_kv = false;
  };

  OpDriver(const DriverConfig& config, std::unique_ptr<TestPool> pool,
           std::unique_ptr<KvCacheManager> manager);

  absl::Status OpBegin(Entropy& e);
  absl::Status OpAllocate(Entropy& e);
  absl::Status OpCommit(Entropy& e);
  absl::Status OpInsert(Entropy& e);
  absl::Status OpRelease(Entropy& e, int kind);  // 0 finish, 1 abort, 2 retract
  absl::Status OpMatch(Entropy& e);
  absl::Status OpEvict(Entropy& e);
  absl::Status OpSession(Entropy& e);
  absl::Status OpFlush();
  absl::Status OpReleaseResume();
  absl::Status CheckAll(const char* op);
  absl::Status CheckWindow(const Req& r, int32_t upto, const char* what);
  void WriteKv(const Req& r, int32_t from, int32_t to);
  uint64_t Fingerprint(const std::vector<int32_t>& tokens, int32_t pos) const;
  std::vector<int32_t> MakePrompt(Entropy& e);

  const DriverConfig config_;
  std::unique_ptr<TestPool> pool_;
  std::unique_ptr<KvCacheManager> manager_;
  std::vector<std::vector<int32_t>> documents_;
  std::map<RequestId, Req> reqs_;
  std::map<SessionId, Sess> sessions_;
  SessionId next_session_ = 1;
  DriverStats stats_;
};

}  // namespace colo::kvcache::test_support

#endif  // COLO_KVCACHE_TESTING_OP_DRIVER_H_
