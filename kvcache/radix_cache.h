// RadixCache: a page-granular radix prefix cache, optionally SWA-aware.
//
// Keys are token ids, always a whole number of pages; children are keyed by
// their first page, so nodes split only at page boundaries. Each node owns
// `full_pages` (one full-pool page per key page) and, in SWA mode, either one
// SWA page per key page or none at all (a *tombstone*: the SWA KV fell out of
// the window and was freed, the full KV is kept).
//
// Ownership: pages handed to Insert() belong to the tree unless returned in
// InsertResult::dup_full_pages / dup_swa_pages (the caller frees those). The
// tree frees pages itself (through the allocators given in Options) when it
// evicts or is cleared, and keeps the SwaPageMap in sync page-wide.
//
// Locks: Lock(node) pins the full KV of the node and all its ancestors, and
// the SWA KV of the nearest live nodes covering `sliding_window` tokens
// (stopping at a tombstone). Locked KV is never evicted. Unlock() with the
// returned handle undoes exactly that, even if nodes were split meanwhile.
//
// Invariants (CheckInvariants): page-aligned keys; page counts match;
// tombstone <=> no SWA pages; no tombstone leaf; full_lock >= swa_lock >= 0;
// a locked node's parent is locked; counters equal a walk of the tree.
//
// Not thread-safe: confined to the scheduler thread.
#ifndef COLO_KVCACHE_RADIX_CACHE_H_
#define COLO_KVCACHE_RADIX_CACHE_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/types/span.h"
#include "kvcache/page_allocator.h"
#include "kvcache/swa_page_map.h"

namespace colo::kvcache {

class RadixCache {
 public:
  struct Node;

  struct Options {
    int32_t page_size = 1;
    // 0: full-attention only (no SWA pages). > 0: SWA mode with this window
    // (tokens); a prefix counts as a hit only if it has no tombstone or at
    // least `sliding_window` live tokens after its last tombstone.
    int32_t sliding_window = 0;
    PageAllocator* full_allocator = nullptr;  // Not owned; required.
    PageAllocator* swa_allocator = nullptr;   // Not owned; required in SWA mode.
    SwaPageMap* swa_map = nullptr;            // Not owned; required in SWA mode.
  };

  struct LockHandle {
    Node* node = nullptr;   // nullptr: nothing locked (root).
    int32_t swa_stop = 0;   // Nodes on the path starting at >= this are SWA locked.
  };

  struct MatchResult {
    int32_t length = 0;              // Matched tokens, a multiple of page_size.
    std::vector<int32_t> full_pages; // length / page_size pages.
    std::vector<int32_t> swa_pages;  // Same count in SWA mode; -1 = tombstone.
    Node* node = nullptr;            // Last matched node (root if none).
  };

  struct InsertResult {
    int32_t cached_length = 0;    // Tokens of the key present before the insert.
    int32_t inserted_length = 0;  // Tokens of the key the tree now holds.
    // The tree's pages for [0, inserted_length) after the insert.
    std::vector<int32_t> full_pages;
    std::vector<int32_t> swa_pages;
    // Caller's pages within [0, inserted_length) that duplicate the tree's;
    // the caller must free them (ids equal to the tree's own page at the same
    // index are the tree's and are not listed). Pages beyond inserted_length stay the caller's.
    std::vector<int32_t> dup_full_pages;
    std::vector<int32_t> dup_swa_pages;
    Node* node = nullptr;  // Node ending at inserted_length (root if 0).
  };

  explicit RadixCache(const Options& options);
  ~RadixCache();
  RadixCache(const RadixCache&) = delete;
  RadixCache& operator=(const RadixCache&) = delete;

  // Longest cached, SWA-valid, page-aligned prefix of `tokens`. May split the
  // last node at a page boundary; refreshes LRU times along the hit.
  MatchResult Match(absl::Span<const int32_t> tokens);

  // Inserts `tokens` (size a multiple of page_size) with the caller's pages:
  // full_pages[i] for key page i and, in SWA mode, swa_pages[i] (-1 when the
  // caller already freed it; the -1 pages must form a prefix).
  InsertResult Insert(absl::Span<const int32_t> tokens,
                      absl::Span<const int32_t> full_pages,
                      absl::Span<const int32_t> swa_pages);

  LockHandle Lock(Node* node);
  void Unlock(const LockHandle& handle);

  // Evicts unlocked leaves in LRU order until `num_pages` full pages were
  // freed or nothing is evictable. Returns full pages freed.
  int32_t EvictFull(int32_t num_pages);
  // Frees SWA pages of SWA-unlocked nodes in LRU order (tombstoning internal
  // nodes, deleting leaves). Returns SWA pages freed.
  int32_t EvictSwa(int32_t num_pages);

  // Drops every node. With free_pages, returns their pages to the allocators
  // (flush); without, the caller resets the allocators (reset-for-release).
  // Precondition: nothing locked (checked by the caller).
  void Clear(bool free_pages);

  // All full / SWA pages the tree owns (audit).
  void CollectPages(std::vector<int32_t>* full, std::vector<int32_t>* swa) const;

  // O(nodes) walk checking the invariants above; INTERNAL naming the first one.
  absl::Status CheckInvariants() const;

  bool swa_mode() const { return options_.sliding_window > 0; }
  int32_t page_size() const { return options_.page_size; }
  int32_t total_full_pages() const { return total_full_; }
  int32_t protected_full_pages() const { return protected_full_; }
  int32_t evictable_full_pages() const { return total_full_ - protected_full_; }
  int32_t total_swa_pages() const { return total_swa_; }
  int32_t protected_swa_pages() const { return protected_swa_; }
  int32_t evictable_swa_pages() const { return total_swa_ - protected_swa_; }
  int64_t num_nodes() const { return num_nodes_; }
  bool HasLocks() const { return protected_full_ > 0; }
  // Approximate host bytes used by the tree (nodes, keys, page lists, maps).
  int64_t HostBytes() const;

  struct Node {
    Node* parent = nullptr;
    absl::flat_hash_map<uint64_t, Node*> children;  // Owned; keyed by PageHash.
    std::vector<int32_t> tokens;
    std::vector<int32_t> full_pages;
    std::vector<int32_t> swa_pages;  // Empty iff tombstone (SWA mode).
    bool tombstone = false;
    int32_t full_lock = 0;
    int32_t swa_lock = 0;
    int32_t start = 0;  // Tokens on the path above this node.
    uint64_t last_access = 0;
    int32_t num_pages() const { return static_cast<int32_t>(full_pages.size()); }
  };

 private:
  uint64_t PageHash(const int32_t* page) const;
  Node* FindChild(Node* node, const int32_t* page) const;
  // Splits `node` after `k` pages; returns the new upper node.
  Node* Split(Node* node, int32_t k);
  // Adds a child holding pages [begin, end) of the key.
  Node* AddChild(Node* parent, absl::Span<const int32_t> tokens,
                 absl::Span<const int32_t> full_pages,
                 absl::Span<const int32_t> swa_pages, bool tombstone);
  // Removes a childless unlocked node, freeing its pages; then removes
  // tombstone ancestors that became leaves. Returns full pages freed.
  int32_t DeleteLeaf(Node* node, std::vector<Node*>* new_leaves);
  void FreeSwaOf(Node* node);
  void DeleteSubtree(Node* node, bool free_pages);
  absl::Status CheckNode(const Node* node, int64_t* full, int64_t* pfull,
                         int64_t* swa, int64_t* pswa, int64_t* nodes) const;

  const Options options_;
  std::unique_ptr<Node> root_;
  uint64_t clock_ = 0;
  int32_t total_full_ = 0;
  int32_t protected_full_ = 0;
  int32_t total_swa_ = 0;
  int32_t protected_swa_ = 0;
  int64_t num_nodes_ = 0;
};

}  // namespace colo::kvcache

#endif  // COLO_KVCACHE_RADIX_CACHE_H_
