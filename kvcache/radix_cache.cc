#include "kvcache/radix_cache.h"

#include <algorithm>
#include <functional>
#include <queue>
#include <utility>

#include "absl/strings/str_cat.h"
#include "proto/logging/logging.h"

namespace colo::kvcache {
namespace {

uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

using Node = RadixCache::Node;

struct OlderFirst {
  bool operator()(const Node* a, const Node* b) const {
    return a->last_access > b->last_access;
  }
};
using LruHeap = std::priority_queue<Node*, std::vector<Node*>, OlderFirst>;

}  // namespace

RadixCache::RadixCache(const Options& options)
    : options_(options), root_(std::make_unique<Node>()) {
  COLO_CHECK(options_.page_size >= 1);
  COLO_CHECK(options_.full_allocator != nullptr);
  if (swa_mode()) {
    COLO_CHECK(options_.swa_allocator != nullptr && options_.swa_map != nullptr);
  }
}

RadixCache::~RadixCache() { Clear(/*free_pages=*/false); }

uint64_t RadixCache::PageHash(const int32_t* page) const {
  uint64_t h = 0;
  for (int32_t i = 0; i < options_.page_size; ++i) {
    h = Mix(h ^ static_cast<uint32_t>(page[i]));
  }
  return h;
}

Node* RadixCache::FindChild(Node* node, const int32_t* page) const {
  auto it = node->children.find(PageHash(page));
  if (it == node->children.end()) return nullptr;
  Node* child = it->second;
  // Verify: a 64-bit hash collision between different pages is a miss.
  if (!std::equal(page, page + options_.page_size, child->tokens.begin())) {
    return nullptr;
  }
  return child;
}

Node* RadixCache::Split(Node* node, int32_t k) {
  const int32_t p = options_.page_size;
  auto upper_owned = std::make_unique<Node>();
  Node* upper = upper_owned.release();
  ++num_nodes_;
  upper->parent = node->parent;
  upper->tokens.assign(node->tokens.begin(), node->tokens.begin() + k * p);
  upper->full_pages.assign(node->full_pages.begin(), node->full_pages.begin() + k);
  if (!node->swa_pages.empty()) {
    upper->swa_pages.assign(node->swa_pages.begin(), node->swa_pages.begin() + k);
    node->swa_pages.erase(node->swa_pages.begin(), node->swa_pages.begin() + k);
  }
  upper->tombstone = node->tombstone;
  upper->full_lock = node->full_lock;
  upper->swa_lock = node->swa_lock;
  upper->start = node->start;
  upper->last_access = node->last_access;
  node->tokens.erase(node->tokens.begin(), node->tokens.begin() + k * p);
  node->full_pages.erase(node->full_pages.begin(), node->full_pages.begin() + k);
  node->start += k * p;
  // Same first page, so the parent's key for upper is node's old key.
  node->parent->children[PageHash(upper->tokens.data())] = upper;
  upper->children[PageHash(node->tokens.data())] = node;
  node->parent = upper;
  return upper;
}

Node* RadixCache::AddChild(Node* parent, absl::Span<const int32_t> tokens,
                           absl::Span<const int32_t> full_pages,
                           absl::Span<const int32_t> swa_pages, bool tombstone) {
  Node* child = new Node();
  ++num_nodes_;
  child->parent = parent;
  child->tokens.assign(tokens.begin(), tokens.end());
  child->full_pages.assign(full_pages.begin(), full_pages.end());
  child->tombstone = tombstone;
  if (!tombstone) child->swa_pages.assign(swa_pages.begin(), swa_pages.end());
  child->start = parent->start + parent->num_pages() * options_.page_size;
  child->last_access = ++clock_;
  parent->children[PageHash(child->tokens.data())] = child;
  total_full_ += child->num_pages();
  if (swa_mode() && !tombstone) total_swa_ += child->num_pages();
  return child;
}

RadixCache::MatchResult RadixCache::Match(absl::Span<const int32_t> tokens) {
  const int32_t p = options_.page_size;
  const int32_t len = static_cast<int32_t>(tokens.size());
  std::vector<Node*> path;
  Node* node = root_.get();
  int32_t pos = 0;
  while (pos + p <= len) {
    Node* child = FindChild(node, tokens.data() + pos);
    if (child == nullptr) break;
    int32_t k = 1;
    const int32_t n = child->num_pages();
    while (k < n && pos + (k + 1) * p <= len &&
           std::equal(tokens.begin() + pos + k * p, tokens.begin() + pos + (k + 1) * p,
                      child->tokens.begin() + k * p)) {
      ++k;
    }
    if (k < n) child = Split(child, k);
    path.push_back(child);
    pos += k * p;
    node = child;
    if (k < n) break;
  }
  // SWA validity: the hit must be tombstone-free from the root or end with at
  // least `window` live tokens after the last tombstone.
  int best = -1;
  if (!swa_mode()) {
    best = static_cast<int>(path.size()) - 1;
  } else {
    int64_t live = 0;
    bool seen_tombstone = false;
    for (int i = 0; i < static_cast<int>(path.size()); ++i) {
      if (path[i]->tombstone) {
        live = 0;
        seen_tombstone = true;
      } else {
        live += static_cast<int64_t>(path[i]->num_pages()) * p;
      }
      if (!path[i]->tombstone && (!seen_tombstone || live >= options_.sliding_window)) best = i;
    }
  }
  MatchResult result;
  result.node = root_.get();
  const uint64_t now = ++clock_;
  for (int i = 0; i <= best; ++i) {
    Node* n = path[i];
    n->last_access = now;
    result.full_pages.insert(result.full_pages.end(), n->full_pages.begin(),
                             n->full_pages.end());
    if (swa_mode()) {
      if (n->tombstone) {
        result.swa_pages.insert(result.swa_pages.end(), n->num_pages(), kNoSwaSlot);
      } else {
        result.swa_pages.insert(result.swa_pages.end(), n->swa_pages.begin(),
                                n->swa_pages.end());
      }
    }
    result.node = n;
  }
  result.length = static_cast<int32_t>(result.full_pages.size()) * p;
  return result;
}

RadixCache::InsertResult RadixCache::Insert(absl::Span<const int32_t> tokens,
                                            absl::Span<const int32_t> full_pages,
                                            absl::Span<const int32_t> swa_pages) {
  const int32_t p = options_.page_size;
  const int32_t num_pages = static_cast<int32_t>(full_pages.size());
  COLO_CHECK(static_cast<int32_t>(tokens.size()) == num_pages * p);
  COLO_CHECK(!swa_mode() || static_cast<int32_t>(swa_pages.size()) == num_pages);
  InsertResult result;
  Node* node = root_.get();
  int32_t i = 0;
  const uint64_t now = ++clock_;
  auto append_node_pages = [&](Node* n) {
    result.full_pages.insert(result.full_pages.end(), n->full_pages.begin(),
                             n->full_pages.end());
    if (!swa_mode()) return;
    if (n->tombstone) {
      result.swa_pages.insert(result.swa_pages.end(), n->num_pages(), kNoSwaSlot);
    } else {
      result.swa_pages.insert(result.swa_pages.end(), n->swa_pages.begin(),
                              n->swa_pages.end());
    }
  };
  while (i < num_pages) {
    Node* child = FindChild(node, tokens.data() + i * p);
    if (child == nullptr) break;
    int32_t k = 1;
    const int32_t n = child->num_pages();
    while (k < n && i + k < num_pages &&
           std::equal(tokens.begin() + (i + k) * p, tokens.begin() + (i + k + 1) * p,
                      child->tokens.begin() + k * p)) {
      ++k;
    }
    if (k < n) child = Split(child, k);
    // The caller's full pages over [i, i+k) duplicate the tree's.
    // A page id equal to the tree's is the tree's own page (the caller's
    // locked prefix), not a duplicate.
    for (int32_t j = i; j < i + k; ++j) {
      if (full_pages[j] != child->full_pages[j - i]) result.dup_full_pages.push_back(full_pages[j]);
    }
    if (swa_mode()) {
      if (!child->tombstone) {
        for (int32_t j = i; j < i + k; ++j) {
          if (swa_pages[j] != kNoSwaSlot && swa_pages[j] != child->swa_pages[j - i]) {
            result.dup_swa_pages.push_back(swa_pages[j]);
          }
        }
      } else {
        // Revive the tombstone from the caller's live SWA pages (a suffix).
        int32_t first_live = i;
        while (first_live < i + k && swa_pages[first_live] == kNoSwaSlot) ++first_live;
        if (first_live < i + k) {
          if (first_live > i) {
            Split(child, first_live - i);  // Upper part stays a tombstone.
            append_node_pages(child->parent);
            child->parent->last_access = now;
          }
          child->tombstone = false;
          child->swa_pages.assign(swa_pages.begin() + first_live, swa_pages.begin() + i + k);
          total_swa_ += child->num_pages();
          if (child->swa_lock > 0) protected_swa_ += child->num_pages();
          for (int32_t j = 0; j < child->num_pages(); ++j) {
            options_.swa_map->Set(child->full_pages[j], child->swa_pages[j]);
          }
        }
      }
    }
    append_node_pages(child);
    child->last_access = now;
    node = child;
    i += k;
    if (k < n) break;
  }
  result.cached_length = i * p;
  // A 64-bit hash collision with a different first page (FindChild missed but
  // the key is taken): keep the rest of the key out rather than orphan a node.
  if (i < num_pages && node->children.contains(PageHash(tokens.data() + i * p))) {
    result.inserted_length = i * p;
    result.node = node;
    return result;
  }
  if (i < num_pages) {
    int32_t first_live = i;
    if (swa_mode()) {
      while (first_live < num_pages && swa_pages[first_live] == kNoSwaSlot) ++first_live;
    }
    // A tombstone-only tail would be a tombstone leaf: keep it out.
    const int32_t end = first_live < num_pages ? num_pages : i;
    if (first_live > i && end > i) {
      node = AddChild(node, tokens.subspan(i * p, (first_live - i) * p),
                      full_pages.subspan(i, first_live - i), {}, /*tombstone=*/true);
      append_node_pages(node);
      i = first_live;
    }
    if (i < end) {
      node = AddChild(node, tokens.subspan(i * p, (end - i) * p),
                      full_pages.subspan(i, end - i),
                      swa_mode() ? swa_pages.subspan(i, end - i) : absl::Span<const int32_t>(),
                      /*tombstone=*/false);
      append_node_pages(node);
      if (swa_mode()) {
        for (int32_t j = 0; j < node->num_pages(); ++j) {
          options_.swa_map->Set(node->full_pages[j], node->swa_pages[j]);
        }
      }
      i = end;
    }
  }
  result.inserted_length = i * p;
  result.node = node;
  return result;
}

RadixCache::LockHandle RadixCache::Lock(Node* node) {
  LockHandle handle;
  if (node == nullptr || node == root_.get()) return handle;
  handle.node = node;
  handle.swa_stop = node->start + node->num_pages() * options_.page_size;
  bool swa_active = swa_mode();
  int64_t live = 0;
  for (Node* n = node; n != root_.get(); n = n->parent) {
    if (n->full_lock++ == 0) protected_full_ += n->num_pages();
    if (swa_active) {
      if (n->tombstone) {
        swa_active = false;
      } else {
        if (n->swa_lock++ == 0) protected_swa_ += n->num_pages();
        handle.swa_stop = n->start;
        live += static_cast<int64_t>(n->num_pages()) * options_.page_size;
        if (live >= options_.sliding_window) swa_active = false;
      }
    }
  }
  return handle;
}

void RadixCache::Unlock(const LockHandle& handle) {
  if (handle.node == nullptr) return;
  for (Node* n = handle.node; n != root_.get(); n = n->parent) {
    COLO_CHECK(n->full_lock > 0) << "unlock of an unlocked node";
    if (--n->full_lock == 0) protected_full_ -= n->num_pages();
    if (swa_mode() && n->start >= handle.swa_stop) {
      COLO_CHECK(n->swa_lock > 0 && !n->tombstone) << "SWA unlock mismatch";
      if (--n->swa_lock == 0) protected_swa_ -= n->num_pages();
    }
  }
}

void RadixCache::FreeSwaOf(Node* node) {
  if (!swa_mode() || node->tombstone) return;
  for (int32_t fp : node->full_pages) options_.swa_map->Clear(fp);
  absl::Status s = options_.swa_allocator->Free(node->swa_pages);
  COLO_CHECK(s.ok()) << s;
  total_swa_ -= node->num_pages();
  node->swa_pages.clear();
  node->tombstone = true;
}

int32_t RadixCache::DeleteLeaf(Node* node, std::vector<Node*>* new_leaves) {
  int32_t freed = 0;
  while (true) {
    COLO_CHECK(node != root_.get() && node->children.empty() && node->full_lock == 0);
    FreeSwaOf(node);
    absl::Status s = options_.full_allocator->Free(node->full_pages);
    COLO_CHECK(s.ok()) << s;
    freed += node->num_pages();
    total_full_ -= node->num_pages();
    Node* parent = node->parent;
    parent->children.erase(PageHash(node->tokens.data()));
    delete node;
    --num_nodes_;
    if (parent == root_.get() || !parent->children.empty()) break;
    if (!parent->tombstone) {
      if (new_leaves != nullptr && parent->full_lock == 0) new_leaves->push_back(parent);
      break;
    }
    node = parent;  // A tombstone must not become a leaf: delete it too.
  }
  return freed;
}

int32_t RadixCache::EvictFull(int32_t num_pages) {
  LruHeap heap;
  std::vector<Node*> stack = {root_.get()};
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (auto& [key, child] : n->children) stack.push_back(child);
    if (n != root_.get() && n->children.empty() && n->full_lock == 0) heap.push(n);
  }
  int32_t freed = 0;
  std::vector<Node*> new_leaves;
  while (freed < num_pages && !heap.empty()) {
    Node* n = heap.top();
    heap.pop();
    new_leaves.clear();
    freed += DeleteLeaf(n, &new_leaves);
    for (Node* leaf : new_leaves) heap.push(leaf);
  }
  return freed;
}

int32_t RadixCache::EvictSwa(int32_t num_pages) {
  if (!swa_mode()) return 0;
  LruHeap heap;
  std::vector<Node*> stack = {root_.get()};
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (auto& [key, child] : n->children) stack.push_back(child);
    if (n != root_.get() && !n->tombstone && n->swa_lock == 0) heap.push(n);
  }
  int32_t freed = 0;
  while (freed < num_pages && !heap.empty()) {
    Node* n = heap.top();
    heap.pop();
    if (n->children.empty()) {
      if (n->full_lock > 0) continue;  // Would become a tombstone leaf.
      freed += n->num_pages();
      DeleteLeaf(n, nullptr);  // Only tombstone ancestors go with it.
    } else {
      freed += n->num_pages();
      FreeSwaOf(n);
    }
  }
  return freed;
}

void RadixCache::DeleteSubtree(Node* node, bool free_pages) {
  std::vector<Node*> stack;
  for (auto& [key, child] : node->children) stack.push_back(child);
  node->children.clear();
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (auto& [key, child] : n->children) stack.push_back(child);
    if (free_pages) {
      FreeSwaOf(n);
      absl::Status s = options_.full_allocator->Free(n->full_pages);
      COLO_CHECK(s.ok()) << s;
    }
    delete n;
  }
}

void RadixCache::Clear(bool free_pages) {
  DeleteSubtree(root_.get(), free_pages);
  total_full_ = protected_full_ = total_swa_ = protected_swa_ = 0;
  num_nodes_ = 0;
}

void RadixCache::CollectPages(std::vector<int32_t>* full,
                              std::vector<int32_t>* swa) const {
  std::vector<const Node*> stack = {root_.get()};
  while (!stack.empty()) {
    const Node* n = stack.back();
    stack.pop_back();
    for (const auto& [key, child] : n->children) stack.push_back(child);
    full->insert(full->end(), n->full_pages.begin(), n->full_pages.end());
    swa->insert(swa->end(), n->swa_pages.begin(), n->swa_pages.end());
  }
}

int64_t RadixCache::HostBytes() const {
  int64_t bytes = 0;
  std::vector<const Node*> stack = {root_.get()};
  while (!stack.empty()) {
    const Node* n = stack.back();
    stack.pop_back();
    for (const auto& [key, child] : n->children) stack.push_back(child);
    bytes += sizeof(Node) + 4 * (n->tokens.capacity() + n->full_pages.capacity() +
                                 n->swa_pages.capacity()) +
             n->children.capacity() * (sizeof(uint64_t) + sizeof(Node*) + 1);
  }
  return bytes;
}

absl::Status RadixCache::CheckNode(const Node* n, int64_t* full, int64_t* pfull,
                                   int64_t* swa, int64_t* pswa, int64_t* nodes) const {
  const int32_t p = options_.page_size;
  auto fail = [&](const std::string& what) {
    return absl::InternalError(absl::StrCat("radix cache invariant violated at node start=",
                                            n->start, " pages=", n->num_pages(), ": ", what));
  };
  if (n != root_.get()) {
    ++*nodes;
    if (n->num_pages() == 0) return fail("empty node");
    if (static_cast<int64_t>(n->tokens.size()) != static_cast<int64_t>(n->num_pages()) * p) {
      return fail("key not page aligned");
    }
    if (swa_mode()) {
      if (n->tombstone != n->swa_pages.empty()) return fail("tombstone <=> no SWA pages");
      if (!n->tombstone && n->swa_pages.size() != n->full_pages.size()) return fail("SWA page count");
      if (n->tombstone && n->children.empty()) return fail("tombstone leaf");
      if (n->tombstone && n->swa_lock != 0) return fail("locked tombstone");
    } else if (n->tombstone || !n->swa_pages.empty()) {
      return fail("SWA state in a full-only tree");
    }
    if (n->swa_lock < 0 || n->full_lock < n->swa_lock) return fail("full_lock >= swa_lock >= 0");
    if (n->parent != root_.get() && n->parent->full_lock < n->full_lock) {
      return fail("locked node with a less locked parent");
    }
    const int32_t expect_start =
        n->parent == root_.get() ? 0 : n->parent->start + n->parent->num_pages() * p;
    if (n->start != expect_start) return fail("start depth");
    *full += n->num_pages();
    if (n->full_lock > 0) *pfull += n->num_pages();
    if (!n->tombstone && swa_mode()) {
      *swa += n->num_pages();
      if (n->swa_lock > 0) *pswa += n->num_pages();
      for (int32_t j = 0; j < n->num_pages(); ++j) {
        if (options_.swa_map->Get(n->full_pages[j]) != n->swa_pages[j]) return fail("SWA map");
      }
    }
    if (n->tombstone) {
      for (int32_t fp : n->full_pages) {
        if (options_.swa_map->Get(fp) != kNoSwaSlot) return fail("tombstone still mapped");
      }
    }
  }
  for (const auto& [key, child] : n->children) {
    if (child->parent != n) return absl::InternalError("radix cache: bad parent pointer");
    if (key != PageHash(child->tokens.data())) return absl::InternalError("radix cache: child key");
    absl::Status s = CheckNode(child, full, pfull, swa, pswa, nodes);
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status RadixCache::CheckInvariants() const {
  int64_t full = 0, pfull = 0, swa = 0, pswa = 0, nodes = 0;
  absl::Status s = CheckNode(root_.get(), &full, &pfull, &swa, &pswa, &nodes);
  if (!s.ok()) return s;
  if (full != total_full_ || pfull != protected_full_ || swa != total_swa_ ||
      pswa != protected_swa_ || nodes != num_nodes_) {
    return absl::InternalError(absl::StrCat(
        "radix cache counters drifted: full ", total_full_, " vs walk ", full,
        ", protected full ", protected_full_, " vs ", pfull, ", swa ", total_swa_,
        " vs ", swa, ", protected swa ", protected_swa_, " vs ", pswa, ", nodes ",
        num_nodes_, " vs ", nodes));
  }
  return absl::OkStatus();
}

}  // namespace colo::kvcache
