// KvCacheManager: the facade the scheduler uses for all KV bookkeeping.
//
// Owns: the KV storage (full + SWA pools, the full->SWA slot map and the
// request-to-token table, all allocated from the TaggedPool `kv_cache` tag),
// the page allocators, the request-row allocator, the (SWA-aware) radix prefix
// cache, running requests and streaming sessions.
//
// Request lifecycle (one release path):
//   BeginRequest(prompt)     match the cached prefix (page aligned, at most
//                            len-1 tokens), lock it, take a row.
//   Allocate(req, tokens)    slots for positions [committed, committed+n)
//                            (extend: n prompt tokens; decode: n = 1;
//                            over-allocation for speculation: n > accepted).
//   Commit(req, len)         KV for [0, len) is written; frees SWA slots that
//                            fell out of the window (page aligned).
//   InsertPrefix(req)        optional: share floor_P(committed) with the tree
//                            while the request keeps running.
//   ReleaseRequest(req, {cache})  finish (cache=true: insert floor_P(committed)
//                            into the tree) or abort/retract (cache=false);
//                            frees exactly the pages the tree does not own.
// Sessions: OpenSession(id); BeginRequest(prompt, {session_id}) for each turn
// (the prompt must extend the tokens the session committed); the session keeps
// its row and KV between turns; turn 1's prefix floor_P(committed) is inserted
// in the tree and locked for the session's life (cache_protected_len, always
// page aligned); later turns stay out of the tree. CloseSession frees all.
//
// Accounting (Usage, CheckConservation, Audit): per pool, in whole pages,
//   free + evictable + protected + session_held + in_flight == capacity.
//
// Errors: INVALID_ARGUMENT malformed input; NOT_FOUND unknown request or
// session; FAILED_PRECONDITION wrong state (flush while requests run, using
// memory while released); RESOURCE_EXHAUSTED no pages/rows (with numbers).
// Every error path leaves the bookkeeping unchanged except for evicting
// unlocked cache entries.
//
// Not thread-safe: confined to the scheduler thread.
#ifndef COLO_KVCACHE_KV_CACHE_MANAGER_H_
#define COLO_KVCACHE_KV_CACHE_MANAGER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "engine/memory/tagged_pool.h"
#include "kvcache/kv_layout.h"
#include "kvcache/kv_seq.h"
#include "kvcache/kv_storage.h"
#include "kvcache/page_allocator.h"
#include "kvcache/radix_cache.h"
#include "kvcache/row_allocator.h"
#include "kvcache/swa_page_map.h"

namespace colo::kvcache {

using RequestId = int64_t;
using SessionId = int64_t;

// Page counts of one pool. The identity free + evictable + protected_pages +
// session_held + in_flight == capacity holds at every call boundary.
struct PoolUsage {
  int64_t capacity = 0;
  int64_t free = 0;
  int64_t evictable = 0;
  int64_t protected_pages = 0;
  int64_t session_held = 0;
  int64_t in_flight = 0;
};
struct RowUsage {
  int64_t capacity = 0;
  int64_t free = 0;
  int64_t sessions = 0;
  int64_t in_flight = 0;  // Rows of running requests that are not session turns.
};
struct KvUsage {
  PoolUsage full;
  PoolUsage swa;  // All zero without sliding layers.
  RowUsage rows;
  int32_t page_size = 1;
};

class KvCacheManager {
 public:
  struct Options {
    int32_t page_size = 1;
    int32_t num_layers = 0;
    // Per layer: true for sliding-window attention. Empty = all full.
    std::vector<bool> layer_is_sliding;
    int32_t sliding_window = 0;  // Tokens; required (> 0) with sliding layers.
    int32_t kv_heads = 0;
    int32_t head_dim = 0;
    KvDtype dtype = KvDtype::kFloat32;
    int64_t full_capacity_tokens = 0;  // Rounded up to whole pages.
    int64_t swa_capacity_tokens = 0;   // Used only with sliding layers.
    int32_t max_requests = 0;          // Rows (requests + sessions).
    int32_t max_context_tokens = 0;    // Row length; 0 = full capacity.
    // Run the O(capacity) Audit() after every mutating call (tests). Debug
    // builds (no NDEBUG) always run the cheap CheckConservation() instead.
    bool audit_every_op = false;
  };

  struct BeginOptions {
    std::optional<SessionId> session_id;
  };
  struct BeginResult {
    RequestId id = 0;
    int32_t cached_len = 0;  // Tokens of the prompt with KV already present.
    int32_t row = 0;
  };
  struct ReleaseOptions {
    // true: finished; insert floor_P(committed) into the tree (or keep it in
    // the session). false: abort/retract; a session turn rolls back.
    bool cache = true;
  };

  // INVALID_ARGUMENT for inconsistent options; RESOURCE_EXHAUSTED when the
  // tagged pool cannot hold the storage. `pool` must outlive the manager.
  static absl::StatusOr<std::unique_ptr<KvCacheManager>> Create(
      const Options& options, engine::TaggedPool* pool);
  ~KvCacheManager();

  // Longest usable cached prefix of `tokens` (read-only apart from LRU/splits).
  int32_t MatchPrefixLength(absl::Span<const int32_t> tokens);

  absl::StatusOr<BeginResult> BeginRequest(absl::Span<const int32_t> prompt,
                                           const BeginOptions& options);
  absl::Status Allocate(RequestId id, absl::Span<const int32_t> tokens);
  absl::Status Commit(RequestId id, int32_t committed_len);
  absl::Status InsertPrefix(RequestId id);
  absl::Status ReleaseRequest(RequestId id, const ReleaseOptions& options);

  absl::Status OpenSession(SessionId id);
  absl::Status CloseSession(SessionId id);
  // Closes sessions without an active turn idle since before `now - timeout`.
  int CloseIdleSessions(absl::Time now, absl::Duration timeout);

  // Drops the prefix cache and every session's KV (sessions stay open, empty).
  // FAILED_PRECONDITION while requests run.
  absl::Status Flush();
  // Like Flush but resets allocators, tree and sessions without touching the
  // memory: call right before TaggedPool::Release(kv_cache). Afterwards every
  // call that needs memory fails FAILED_PRECONDITION until OnResumed().
  absl::Status ResetForRelease();
  // After TaggedPool::Resume(kv_cache): rewrites the tables living in kv_cache
  // memory and checks free == capacity in every pool.
  absl::Status OnResumed();

  // Evicts unlocked cache entries until `full_pages` full pages are free.
  int32_t EvictFull(int32_t full_pages) { return tree_->EvictFull(full_pages); }
  int32_t EvictSwa(int32_t swa_pages) { return tree_->EvictSwa(swa_pages); }

  KvUsage Usage() const;
  // Tokens a new allocation can get right now (free + evictable pages, the
  // smaller of the full and SWA pools), for the scheduler's admission check.
  int64_t AvailableTokens() const;
  // Cheap: the conservation identity per pool from counters.
  absl::Status CheckConservation() const;
  // O(capacity + tree): single owner per page, leaked pages listed per pool,
  // ladder/alignment, tree invariants, tables consistent with bookkeeping.
  absl::Status Audit() const;

  // Storage views for the forward pass. These are device addresses: host
  // dereferenceable only on the CPU backend.
  LayerKv GetLayerKv(int32_t layer) const { return storage_->GetLayerKv(layer); }
  const int32_t* req_to_token() const { return storage_->req_to_token(); }
  const int32_t* full_to_swa() const { return storage_->full_to_swa(); }
  int32_t max_context_tokens() const { return options_.max_context_tokens; }
  const KvSeq* FindRequest(RequestId id) const;
  const KvSeq* FindSession(SessionId id) const;
  int64_t num_requests() const { return static_cast<int64_t>(requests_.size()); }
  int64_t num_sessions() const { return static_cast<int64_t>(sessions_.size()); }
  bool swa_enabled() const { return swa_alloc_.has_value(); }
  const Options& options() const { return options_; }
  const RadixCache& tree() const { return *tree_; }
  // Host bytes of bookkeeping (tree, maps, sequences), for the overhead bench.
  int64_t HostBookkeepingBytes() const;
  int64_t DeviceBytes() const { return storage_->bytes(); }
  const KvStorage& storage() const { return *storage_; }

 private:
  friend class KvCacheManagerTestPeer;  // Corrupts state to test the checker.
  struct Request {
    KvSeq seq;
    std::optional<SessionId> session;
    // Session turn: the session's state at turn start (abort rollback).
    int32_t base_committed = 0;
    int32_t base_allocated = 0;
    bool session_had_lock = false;
  };
  struct Session {
    std::optional<KvSeq> seq;  // Empty while a turn runs (moved into it).
    bool in_tree = false;      // Turn 1's prefix inserted and locked.
    absl::Time last_used;
  };

  KvCacheManager(const Options& options, std::unique_ptr<KvStorage> storage,
                 PageAllocator full, std::optional<PageAllocator> swa);

  absl::Status CheckResident(const char* op) const;
  SwaPageMap::SlotWriter SlotWriter();
  absl::Status MaybeAudit() const;
  // Takes pages for `full` new full (and SWA) pages, evicting as needed.
  absl::Status TakePages(int32_t n, std::vector<int32_t>* full,
                         std::vector<int32_t>* swa);
  // Frees the sequence's own pages with index >= first_page and truncates.
  void FreeOwnPagesFrom(KvSeq* seq, int32_t first_page);
  void FreeSwaOutOfWindow(KvSeq* seq);
  void WriteRow(const KvSeq& seq, int32_t from, int32_t to);
  // Inserts floor_P(committed) into the tree, frees duplicates, repoints the
  // sequence at the tree's pages and moves its lock to the new node.
  void InsertIntoTree(KvSeq* seq);
  void DropSessionKv(Session* session);
  void AddOwn(const KvSeq& seq, bool session, int sign);
  absl::Status CheckSeq(const KvSeq& seq, const std::string& who) const;

  Options options_;
  std::unique_ptr<KvStorage> storage_;
  PageAllocator full_alloc_;
  std::optional<PageAllocator> swa_alloc_;
  std::unique_ptr<SwaPageMap> swa_map_;  // Non-null iff SWA enabled.
  RowAllocator rows_;
  std::unique_ptr<RadixCache> tree_;
  absl::flat_hash_map<RequestId, Request> requests_;
  absl::flat_hash_map<SessionId, Session> sessions_;
  RequestId next_request_id_ = 1;
  bool reset_for_release_ = false;
  // Cheap counters: own pages of running requests / sessions.
  int64_t in_flight_full_ = 0, in_flight_swa_ = 0;
  int64_t session_full_ = 0, session_swa_ = 0;
};

}  // namespace colo::kvcache

#endif  // COLO_KVCACHE_KV_CACHE_MANAGER_H_
