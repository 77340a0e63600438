#include "kvcache/kv_cache_manager.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "proto/logging/logging.h"
#include "proto/status/status_macros.h"

namespace colo::kvcache {
namespace {

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

absl::StatusOr<std::unique_ptr<KvCacheManager>> KvCacheManager::Create(
    const Options& options_in, engine::TaggedPool* pool) {
  Options options = options_in;
  const int32_t p = options.page_size;
  if (pool == nullptr) return absl::InvalidArgumentError("KvCacheManager: null TaggedPool");
  if (p < 1) {
    return absl::InvalidArgumentError(absl::StrCat("page_size must be >= 1, got ", p));
  }
  if (options.num_layers < 1 || options.kv_heads < 1 || options.head_dim < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "num_layers, kv_heads and head_dim must be >= 1, got ", options.num_layers, ", ",
        options.kv_heads, ", ", options.head_dim));
  }
  if (options.layer_is_sliding.empty()) options.layer_is_sliding.assign(options.num_layers, false);
  if (static_cast<int32_t>(options.layer_is_sliding.size()) != options.num_layers) {
    return absl::InvalidArgumentError(absl::StrCat(
        "layer_is_sliding has ", options.layer_is_sliding.size(), " entries for ",
        options.num_layers, " layers"));
  }
  const bool any_sliding = std::find(options.layer_is_sliding.begin(),
                                     options.layer_is_sliding.end(),
                                     true) != options.layer_is_sliding.end();
  if (any_sliding && (options.sliding_window < 1 || options.swa_capacity_tokens < 1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sliding layers need sliding_window >= 1 and swa_capacity_tokens >= 1, got ",
        options.sliding_window, " and ", options.swa_capacity_tokens));
  }
  if (!any_sliding) options.sliding_window = 0;
  if (options.full_capacity_tokens < 1 || options.max_requests < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "full_capacity_tokens and max_requests must be >= 1, got ",
        options.full_capacity_tokens, " and ", options.max_requests));
  }
  const int64_t full_pages = CeilDiv(options.full_capacity_tokens, p) + 1;
  const int64_t swa_pages = any_sliding ? CeilDiv(options.swa_capacity_tokens, p) + 1 : 0;
  if (full_pages > (int64_t{1} << 30) / p || swa_pages > (int64_t{1} << 30) / p) {
    return absl::InvalidArgumentError("KV capacity exceeds 2^30 slots");
  }
  if (options.max_context_tokens <= 0) {
    options.max_context_tokens = static_cast<int32_t>((full_pages - 1) * p);
  }
  KvStorage::Options so;
  so.page_size = p;
  so.layer_is_sliding = options.layer_is_sliding;
  so.kv_heads = options.kv_heads;
  so.head_dim = options.head_dim;
  so.dtype = options.dtype;
  so.num_full_slots = full_pages * p;
  so.num_swa_slots = swa_pages * p;
  so.max_requests = options.max_requests;
  so.max_context_tokens = options.max_context_tokens;
  ASSIGN_OR_RETURN(std::unique_ptr<KvStorage> storage, KvStorage::Create(so, pool));
  ASSIGN_OR_RETURN(PageAllocator full,
                   PageAllocator::Create({.num_pages = static_cast<int32_t>(full_pages),
                                          .name = "full"}));
  std::optional<PageAllocator> swa;
  if (any_sliding) {
    ASSIGN_OR_RETURN(swa, PageAllocator::Create({.num_pages = static_cast<int32_t>(swa_pages),
                                                 .name = "swa"}));
  }
  return std::unique_ptr<KvCacheManager>(
      new KvCacheManager(options, std::move(storage), std::move(full), std::move(swa)));
}

KvCacheManager::KvCacheManager(const Options& options, std::unique_ptr<KvStorage> storage,
                               PageAllocator full, std::optional<PageAllocator> swa)
    : options_(options),
      storage_(std::move(storage)),
      full_alloc_(std::move(full)),
      swa_alloc_(std::move(swa)),
      rows_(options.max_requests) {
  if (swa_alloc_.has_value()) {
    swa_map_ = std::make_unique<SwaPageMap>(full_alloc_.num_pages(), options_.page_size);
    swa_map_->AttachSlotWriter(SlotWriter());
    swa_map_->RewriteSlotTable();
  }
  tree_ = std::make_unique<RadixCache>(RadixCache::Options{
      .page_size = options_.page_size,
      .sliding_window = options_.sliding_window,
      .full_allocator = &full_alloc_,
      .swa_allocator = swa_alloc_.has_value() ? &*swa_alloc_ : nullptr,
      .swa_map = swa_map_.get()});
}

KvCacheManager::~KvCacheManager() {
  // Drop the tree before the allocators it points at.
  tree_.reset();
}

SwaPageMap::SlotWriter KvCacheManager::SlotWriter() {
  KvStorage* storage = storage_.get();
  return [storage](int64_t first_slot, const int32_t* values, int64_t n) {
    (void)storage->WriteFullToSwa(first_slot, values, n);  // Sticky on error.
  };
}

absl::Status KvCacheManager::CheckResident(const char* op) const {
  if (reset_for_release_ || storage_->IsReleased()) {
    return absl::FailedPreconditionError(absl::StrCat(
        op, ": kv_cache memory is released; Resume(kv_cache) and OnResumed() first"));
  }
  return absl::OkStatus();
}

absl::Status KvCacheManager::MaybeAudit() const {
  RETURN_IF_ERROR(storage_->table_status());
  if (options_.audit_every_op) return Audit();
#ifndef NDEBUG
  // Debug builds: the cheap conservation identity after every mutation.
  return CheckConservation();
#else
  return absl::OkStatus();
#endif
}

void KvCacheManager::AddOwn(const KvSeq& seq, bool session, int sign) {
  if (session) {
    session_full_ += sign * seq.own_full;
    session_swa_ += sign * seq.own_swa;
  } else {
    in_flight_full_ += sign * seq.own_full;
    in_flight_swa_ += sign * seq.own_swa;
  }
}

void KvCacheManager::WriteRow(const KvSeq& seq, int32_t from, int32_t to) {
  if (storage_->IsReleased() || to <= from) return;
  const int32_t p = options_.page_size;
  std::vector<int32_t> slots(to - from);
  for (int32_t i = from; i < to; ++i) slots[i - from] = seq.full_pages[i / p] * p + i % p;
  // An error is sticky in the storage and returned by the calling operation.
  (void)storage_->WriteReqToToken(seq.row, from, slots.data(), to - from);
}

int32_t KvCacheManager::MatchPrefixLength(absl::Span<const int32_t> tokens) {
  return tree_->Match(tokens).length;
}

absl::Status KvCacheManager::TakePages(int32_t n, std::vector<int32_t>* full,
                                       std::vector<int32_t>* swa) {
  if (n <= 0) return absl::OkStatus();
  const int64_t p = options_.page_size;
  if (full_alloc_.num_free() < n) tree_->EvictFull(n - full_alloc_.num_free());
  if (full_alloc_.num_free() < n) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "KV cache full pool exhausted: need ", n, " pages (", n * p, " tokens), ",
        full_alloc_.num_free(), " free after evicting, ", tree_->protected_full_pages(),
        " locked by the prefix cache, ", in_flight_full_, " held by running requests, ",
        session_full_, " by sessions, capacity ", full_alloc_.capacity(), " pages"));
  }
  if (swa_alloc_.has_value()) {
    if (swa_alloc_->num_free() < n) tree_->EvictSwa(n - swa_alloc_->num_free());
    if (swa_alloc_->num_free() < n) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "KV cache SWA pool exhausted: need ", n, " pages (", n * p, " tokens), ",
          swa_alloc_->num_free(), " free after evicting, ", tree_->protected_swa_pages(),
          " locked by the prefix cache, ", in_flight_swa_, " held by running requests, ",
          session_swa_, " by sessions, capacity ", swa_alloc_->capacity(), " pages"));
    }
  }
  COLO_CHECK(full_alloc_.Allocate(n, full).ok());
  if (swa_alloc_.has_value()) COLO_CHECK(swa_alloc_->Allocate(n, swa).ok());
  return absl::OkStatus();
}

absl::StatusOr<KvCacheManager::BeginResult> KvCacheManager::BeginRequest(
    absl::Span<const int32_t> prompt, const BeginOptions& options) {
  RETURN_IF_ERROR(CheckResident("BeginRequest"));
  const int64_t len = static_cast<int64_t>(prompt.size());
  if (len == 0) return absl::InvalidArgumentError("BeginRequest: empty prompt");
  const int64_t capacity_tokens = int64_t{full_alloc_.capacity()} * options_.page_size;
  if (len > options_.max_context_tokens || len > capacity_tokens) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "request of ", len, " tokens exceeds the KV cache: max context ",
        options_.max_context_tokens, " tokens, full pool capacity ", capacity_tokens,
        " tokens"));
  }
  Request req;
  Session* session = nullptr;
  if (options.session_id.has_value()) {
    auto it = sessions_.find(*options.session_id);
    if (it == sessions_.end()) {
      return absl::NotFoundError(absl::StrCat("unknown session ", *options.session_id));
    }
    session = &it->second;
    if (!session->seq.has_value()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "session ", *options.session_id, " already has a turn running"));
    }
    const KvSeq& s = *session->seq;
    if (len <= s.committed_len ||
        !std::equal(s.tokens.begin(), s.tokens.begin() + s.committed_len, prompt.begin())) {
      return absl::InvalidArgumentError(absl::StrCat(
          "session ", *options.session_id, ": a turn must extend the ", s.committed_len,
          " tokens of the previous turns by at least one token (got ", len, " tokens)"));
    }
    req.session = options.session_id;
    req.base_committed = s.committed_len;
    req.base_allocated = s.allocated_len;
    // A session whose history is empty (fresh, flushed, or every turn empty)
    // starts like a new request; it holds no pages and no lock then.
    req.session_had_lock = session->in_tree && s.committed_len > 0;
    if (!req.session_had_lock) {
      COLO_CHECK(s.full_pages.empty() && s.lock.node == nullptr);
    }
  } else if (rows_.num_free() == 0) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "no free request row: ", rows_.capacity(), " rows used by ", requests_.size(),
        " requests and ", sessions_.size(), " sessions"));
  }

  if (session != nullptr) {
    AddOwn(*session->seq, /*session=*/true, -1);
    req.seq = std::move(*session->seq);
    session->seq.reset();
  } else {
    req.seq.row = *rows_.Allocate();
  }
  KvSeq& seq = req.seq;
  if (session == nullptr || !req.session_had_lock) {
    // Fresh sequence: reuse the tree's prefix (at most len-1 tokens so that
    // at least one token is computed).
    RadixCache::MatchResult m = tree_->Match(prompt.subspan(0, len - 1));
    seq.lock = tree_->Lock(m.node);
    seq.full_pages = std::move(m.full_pages);
    seq.swa_pages.assign(swa_alloc_.has_value() ? seq.full_pages.size() : 0, kNoSwaSlot);
    seq.tokens.assign(prompt.begin(), prompt.begin() + m.length);
    seq.protected_len = seq.committed_len = seq.allocated_len = m.length;
    seq.swa_evicted_len = m.length;
    seq.own_full = seq.own_swa = 0;
    WriteRow(seq, 0, m.length);
  }
  // A session with KV continues at its committed length.
  AddOwn(seq, /*session=*/false, +1);
  BeginResult result;
  result.id = next_request_id_++;
  result.cached_len = seq.committed_len;
  result.row = seq.row;
  requests_.emplace(result.id, std::move(req));
  RETURN_IF_ERROR(MaybeAudit());
  return result;
}

absl::Status KvCacheManager::Allocate(RequestId id, absl::Span<const int32_t> tokens) {
  auto it = requests_.find(id);
  if (it == requests_.end()) return absl::NotFoundError(absl::StrCat("unknown request ", id));
  RETURN_IF_ERROR(CheckResident("Allocate"));
  KvSeq& seq = it->second.seq;
  const int32_t p = options_.page_size;
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (n == 0) return absl::InvalidArgumentError("Allocate: no tokens");
  const int64_t new_end = seq.committed_len + n;
  if (new_end > options_.max_context_tokens) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "request ", id, ": ", new_end, " tokens exceed max context ",
        options_.max_context_tokens));
  }
  const int32_t need = static_cast<int32_t>(
      std::max<int64_t>(0, CeilDiv(new_end, p) - static_cast<int64_t>(seq.full_pages.size())));
  if (need > full_alloc_.capacity() ||
      (swa_alloc_.has_value() && need > swa_alloc_->capacity())) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "request ", id, ": needs ", need, " more pages (", new_end,
        " tokens), more than the pool capacity (full ", full_alloc_.capacity(), ", swa ",
        swa_alloc_.has_value() ? swa_alloc_->capacity() : 0, " pages)"));
  }
  std::vector<int32_t> full, swa;
  RETURN_IF_ERROR(TakePages(need, &full, &swa));
  AddOwn(seq, false, -1);
  for (int32_t i = 0; i < need; ++i) {
    seq.full_pages.push_back(full[i]);
    if (swa_alloc_.has_value()) {
      seq.swa_pages.push_back(swa[i]);
      swa_map_->Set(full[i], swa[i]);
    }
  }
  seq.own_full += need;
  if (swa_alloc_.has_value()) seq.own_swa += need;
  if (new_end > seq.allocated_len) {
    seq.tokens.resize(new_end);
    seq.allocated_len = static_cast<int32_t>(new_end);
  }
  std::copy(tokens.begin(), tokens.end(), seq.tokens.begin() + seq.committed_len);
  AddOwn(seq, false, +1);
  WriteRow(seq, seq.committed_len, static_cast<int32_t>(new_end));
  return MaybeAudit();
}

void KvCacheManager::FreeSwaOutOfWindow(KvSeq* seq) {
  if (!swa_alloc_.has_value()) return;
  const int32_t p = options_.page_size;
  const int64_t margin = std::max(options_.sliding_window, p);
  const int64_t raw = seq->committed_len - margin - p;
  if (raw <= 0) return;
  const int32_t target = static_cast<int32_t>(raw / p * p);
  if (target <= seq->swa_evicted_len) return;
  std::vector<int32_t> freed;
  for (int32_t i = std::max(seq->swa_evicted_len, seq->protected_len) / p; i < target / p; ++i) {
    if (seq->swa_pages[i] == kNoSwaSlot) continue;
    freed.push_back(seq->swa_pages[i]);
    seq->swa_pages[i] = kNoSwaSlot;
    swa_map_->Clear(seq->full_pages[i]);
  }
  absl::Status s = swa_alloc_->Free(freed);
  COLO_CHECK(s.ok()) << s;
  seq->own_swa -= static_cast<int32_t>(freed.size());
  seq->swa_evicted_len = target;
}

absl::Status KvCacheManager::Commit(RequestId id, int32_t committed_len) {
  auto it = requests_.find(id);
  if (it == requests_.end()) return absl::NotFoundError(absl::StrCat("unknown request ", id));
  KvSeq& seq = it->second.seq;
  if (committed_len < seq.committed_len || committed_len > seq.allocated_len) {
    return absl::InvalidArgumentError(absl::StrCat(
        "request ", id, ": commit to ", committed_len, " outside [committed ",
        seq.committed_len, ", allocated ", seq.allocated_len, "]"));
  }
  AddOwn(seq, false, -1);
  seq.committed_len = committed_len;
  FreeSwaOutOfWindow(&seq);
  AddOwn(seq, false, +1);
  return MaybeAudit();
}

void KvCacheManager::FreeOwnPagesFrom(KvSeq* seq, int32_t first_page) {
  const int32_t p = options_.page_size;
  first_page = std::max(first_page, seq->protected_len / p);
  const int32_t n = static_cast<int32_t>(seq->full_pages.size());
  if (first_page >= n) return;
  std::vector<int32_t> full, swa;
  for (int32_t i = first_page; i < n; ++i) {
    full.push_back(seq->full_pages[i]);
    if (swa_alloc_.has_value()) {
      swa_map_->Clear(seq->full_pages[i]);
      if (seq->swa_pages[i] != kNoSwaSlot) swa.push_back(seq->swa_pages[i]);
    }
  }
  absl::Status s = full_alloc_.Free(full);
  COLO_CHECK(s.ok()) << s;
  if (swa_alloc_.has_value()) {
    s = swa_alloc_->Free(swa);
    COLO_CHECK(s.ok()) << s;
  }
  seq->own_full -= static_cast<int32_t>(full.size());
  seq->own_swa -= static_cast<int32_t>(swa.size());
  seq->full_pages.resize(first_page);
  if (swa_alloc_.has_value()) seq->swa_pages.resize(first_page);
}

void KvCacheManager::InsertIntoTree(KvSeq* seq) {
  const int32_t p = options_.page_size;
  const int32_t n = seq->committed_len / p;
  if (n * p <= seq->protected_len) return;
  const int32_t first_own = seq->protected_len / p;
  std::vector<int32_t> swa;
  if (swa_alloc_.has_value()) {
    swa.assign(seq->swa_pages.begin(), seq->swa_pages.begin() + n);
    for (int32_t i = 0; i < std::max(seq->protected_len, seq->swa_evicted_len) / p && i < n; ++i) {
      swa[i] = kNoSwaSlot;
    }
  }
  RadixCache::InsertResult r = tree_->Insert(
      absl::MakeConstSpan(seq->tokens.data(), static_cast<size_t>(n) * p),
      absl::MakeConstSpan(seq->full_pages.data(), n), swa);
  const int32_t inserted = r.inserted_length / p;
  COLO_CHECK(inserted >= first_own);
  // Every own page in [first_own, inserted) is now the tree's or a duplicate.
  for (int32_t i = first_own; i < inserted; ++i) {
    --seq->own_full;
    if (swa_alloc_.has_value() && swa[i] != kNoSwaSlot) --seq->own_swa;
  }
  // A duplicate full page's SWA page was either adopted by the tree (which
  // remapped it to its own full page) or is in dup_swa_pages: unmap it.
  if (swa_map_ != nullptr) {
    for (int32_t f : r.dup_full_pages) swa_map_->Clear(f);
  }
  absl::Status s = full_alloc_.Free(r.dup_full_pages);
  COLO_CHECK(s.ok()) << s;
  if (swa_alloc_.has_value()) {
    s = swa_alloc_->Free(r.dup_swa_pages);
    COLO_CHECK(s.ok()) << s;
  }
  for (int32_t i = 0; i < inserted; ++i) {
    seq->full_pages[i] = r.full_pages[i];
    if (swa_alloc_.has_value()) seq->swa_pages[i] = kNoSwaSlot;
  }
  if (r.inserted_length > seq->protected_len) {
    RadixCache::LockHandle lock = tree_->Lock(r.node);
    tree_->Unlock(seq->lock);
    seq->lock = lock;
    seq->protected_len = r.inserted_length;
    seq->swa_evicted_len = std::max(seq->swa_evicted_len, seq->protected_len);
  }
  WriteRow(*seq, 0, r.inserted_length);
}

absl::Status KvCacheManager::InsertPrefix(RequestId id) {
  auto it = requests_.find(id);
  if (it == requests_.end()) return absl::NotFoundError(absl::StrCat("unknown request ", id));
  if (it->second.session.has_value()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "request ", id, " is a session turn; sessions enter the tree at turn end"));
  }
  RETURN_IF_ERROR(CheckResident("InsertPrefix"));
  KvSeq& seq = it->second.seq;
  AddOwn(seq, false, -1);
  InsertIntoTree(&seq);
  AddOwn(seq, false, +1);
  return MaybeAudit();
}

void KvCacheManager::DropSessionKv(Session* session) {
  KvSeq& seq = *session->seq;
  AddOwn(seq, true, -1);
  FreeOwnPagesFrom(&seq, 0);
  tree_->Unlock(seq.lock);
  const int32_t row = seq.row;
  seq = KvSeq();
  seq.row = row;
  session->in_tree = false;
}

absl::Status KvCacheManager::ReleaseRequest(RequestId id, const ReleaseOptions& options) {
  auto it = requests_.find(id);
  if (it == requests_.end()) return absl::NotFoundError(absl::StrCat("unknown request ", id));
  RETURN_IF_ERROR(CheckResident("ReleaseRequest"));
  Request req = std::move(it->second);
  requests_.erase(it);
  KvSeq& seq = req.seq;
  const int32_t p = options_.page_size;
  AddOwn(seq, false, -1);
  if (!req.session.has_value()) {
    if (options.cache) InsertIntoTree(&seq);
    FreeOwnPagesFrom(&seq, 0);
    tree_->Unlock(seq.lock);
    COLO_CHECK(rows_.Free(seq.row).ok());
    return MaybeAudit();
  }
  Session& session = sessions_.at(*req.session);
  session.last_used = absl::Now();
  bool drop = false;
  if (options.cache) {
    if (!req.session_had_lock) InsertIntoTree(&seq);
    // Shrink: keep [0, ceil_P(committed)), free the over-allocation.
    FreeOwnPagesFrom(&seq, static_cast<int32_t>(CeilDiv(seq.committed_len, p)));
    seq.allocated_len = seq.committed_len;
    seq.tokens.resize(seq.committed_len);
    session.in_tree = true;
  } else if (!req.session_had_lock) {
    drop = true;  // Aborted first turn: the session stays empty.
  } else {
    // Aborted later turn: roll back to the session's state at turn start
    // unless SWA KV the session still needs was freed meanwhile.
    const int64_t margin = std::max(options_.sliding_window, p);
    const int64_t base_frontier =
        std::max<int64_t>(0, (req.base_committed - margin - p)) / p * p;
    if (swa_alloc_.has_value() &&
        seq.swa_evicted_len > std::max<int64_t>(base_frontier, seq.protected_len)) {
      drop = true;
    } else {
      FreeOwnPagesFrom(&seq, static_cast<int32_t>(CeilDiv(req.base_allocated, p)));
      seq.committed_len = req.base_committed;
      seq.allocated_len = req.base_allocated;
      seq.tokens.resize(req.base_allocated);
    }
  }
  AddOwn(seq, true, +1);
  session.seq = std::move(seq);
  if (drop) DropSessionKv(&session);
  return MaybeAudit();
}

absl::Status KvCacheManager::OpenSession(SessionId id) {
  RETURN_IF_ERROR(CheckResident("OpenSession"));
  if (sessions_.contains(id)) {
    return absl::FailedPreconditionError(absl::StrCat("session ", id, " is already open"));
  }
  ASSIGN_OR_RETURN(int32_t row, rows_.Allocate());
  Session session;
  session.seq.emplace();
  session.seq->row = row;
  session.last_used = absl::Now();
  sessions_.emplace(id, std::move(session));
  return MaybeAudit();
}

absl::Status KvCacheManager::CloseSession(SessionId id) {
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return absl::NotFoundError(absl::StrCat("unknown session ", id));
  if (!it->second.seq.has_value()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "session ", id, " has a turn running; release the request first"));
  }
  DropSessionKv(&it->second);
  COLO_CHECK(rows_.Free(it->second.seq->row).ok());
  sessions_.erase(it);
  return MaybeAudit();
}

int KvCacheManager::CloseIdleSessions(absl::Time now, absl::Duration timeout) {
  std::vector<SessionId> idle;
  for (const auto& [id, s] : sessions_) {
    if (s.seq.has_value() && now - s.last_used >= timeout) idle.push_back(id);
  }
  for (SessionId id : idle) COLO_CHECK(CloseSession(id).ok());
  return static_cast<int>(idle.size());
}

absl::Status KvCacheManager::Flush() {
  if (!requests_.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "Flush: ", requests_.size(), " requests are running; finish, abort or retract them"));
  }
  RETURN_IF_ERROR(CheckResident("Flush"));
  for (auto& [id, s] : sessions_) DropSessionKv(&s);
  tree_->Clear(/*free_pages=*/true);
  if (full_alloc_.num_free() != full_alloc_.capacity() ||
      (swa_alloc_.has_value() && swa_alloc_->num_free() != swa_alloc_->capacity())) {
    return absl::InternalError(absl::StrCat(
        "Flush left pages allocated: full free ", full_alloc_.num_free(), " of ",
        full_alloc_.capacity(), ", swa free ", swa_alloc_.has_value() ? swa_alloc_->num_free() : 0));
  }
  return MaybeAudit();
}

absl::Status KvCacheManager::ResetForRelease() {
  if (!requests_.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "ResetForRelease: ", requests_.size(), " requests are running"));
  }
  // Forget every index before the memory is unmapped.
  for (auto& [id, s] : sessions_) {
    const int32_t row = s.seq->row;
    s.seq = KvSeq();
    s.seq->row = row;
    s.in_tree = false;
  }
  session_full_ = session_swa_ = 0;
  tree_->Clear(/*free_pages=*/false);
  full_alloc_.Reset();
  if (swa_alloc_.has_value()) swa_alloc_->Reset();
  if (swa_map_ != nullptr) {
    swa_map_->AttachSlotWriter(nullptr);  // Do not write memory being released.
    swa_map_->Reset();
  }
  reset_for_release_ = true;
  return absl::OkStatus();
}

absl::Status KvCacheManager::OnResumed() {
  if (storage_->IsReleased()) {
    return absl::FailedPreconditionError(
        "OnResumed: kv_cache is still released; call TaggedPool::Resume(kv_cache) first");
  }
  if (!reset_for_release_ && !requests_.empty()) {
    return absl::FailedPreconditionError("OnResumed without ResetForRelease");
  }
  if (!reset_for_release_) RETURN_IF_ERROR(ResetForRelease());
  // Contents after resume are undefined: rewrite the tables we own.
  if (swa_map_ != nullptr) {
    swa_map_->AttachSlotWriter(SlotWriter());
    swa_map_->RewriteSlotTable();
  }
  RETURN_IF_ERROR(storage_->ClearPaddingRow());
  RETURN_IF_ERROR(storage_->table_status());
  reset_for_release_ = false;
  if (full_alloc_.num_free() != full_alloc_.capacity() ||
      (swa_alloc_.has_value() && swa_alloc_->num_free() != swa_alloc_->capacity())) {
    return absl::InternalError("OnResumed: free != capacity");
  }
  return Audit();
}

KvUsage KvCacheManager::Usage() const {
  KvUsage u;
  u.page_size = options_.page_size;
  u.full.capacity = full_alloc_.capacity();
  u.full.free = full_alloc_.num_free();
  u.full.evictable = tree_->evictable_full_pages();
  u.full.protected_pages = tree_->protected_full_pages();
  u.full.session_held = session_full_;
  u.full.in_flight = in_flight_full_;
  if (swa_alloc_.has_value()) {
    u.swa.capacity = swa_alloc_->capacity();
    u.swa.free = swa_alloc_->num_free();
    u.swa.evictable = tree_->evictable_swa_pages();
    u.swa.protected_pages = tree_->protected_swa_pages();
    u.swa.session_held = session_swa_;
    u.swa.in_flight = in_flight_swa_;
  }
  u.rows.capacity = rows_.capacity();
  u.rows.free = rows_.num_free();
  u.rows.sessions = static_cast<int64_t>(sessions_.size());
  for (const auto& [id, r] : requests_) {
    if (!r.session.has_value()) ++u.rows.in_flight;
  }
  return u;
}

int64_t KvCacheManager::AvailableTokens() const {
  int64_t pages = int64_t{full_alloc_.num_free()} + tree_->evictable_full_pages();
  if (swa_alloc_.has_value()) {
    pages = std::min<int64_t>(pages, int64_t{swa_alloc_->num_free()} + tree_->evictable_swa_pages());
  }
  return pages * options_.page_size;
}

namespace {
absl::Status CheckPool(const char* name, const PoolUsage& u) {
  const int64_t sum = u.free + u.evictable + u.protected_pages + u.session_held + u.in_flight;
  if (sum != u.capacity) {
    return absl::InternalError(absl::StrCat(
        "KV accounting broken in pool '", name, "': free ", u.free, " + evictable ",
        u.evictable, " + protected ", u.protected_pages, " + session_held ", u.session_held,
        " + in_flight ", u.in_flight, " = ", sum, " != capacity ", u.capacity, " pages (",
        u.capacity - sum, " leaked)"));
  }
  return absl::OkStatus();
}
}  // namespace

absl::Status KvCacheManager::CheckConservation() const {
  KvUsage u = Usage();
  RETURN_IF_ERROR(CheckPool("full", u.full));
  if (swa_alloc_.has_value()) RETURN_IF_ERROR(CheckPool("swa", u.swa));
  if (u.rows.free + u.rows.sessions + u.rows.in_flight != u.rows.capacity) {
    return absl::InternalError(absl::StrCat(
        "KV accounting broken in pool 'req_rows': free ", u.rows.free, " + sessions ",
        u.rows.sessions, " + in_flight ", u.rows.in_flight, " != capacity ",
        u.rows.capacity));
  }
  return absl::OkStatus();
}

absl::Status KvCacheManager::CheckSeq(const KvSeq& seq, const std::string& who) const {
  const int32_t p = options_.page_size;
  auto fail = [&](const std::string& what) {
    return absl::InternalError(absl::StrCat(
        who, ": ", what, " (protected ", seq.protected_len, ", committed ", seq.committed_len,
        ", allocated ", seq.allocated_len, ", swa_evicted ", seq.swa_evicted_len, ", pages ",
        seq.full_pages.size(), ", page_size ", p, ")"));
  };
  if (!(0 <= seq.protected_len && seq.protected_len <= seq.committed_len &&
        seq.committed_len <= seq.allocated_len)) {
    return fail("ladder protected <= committed <= allocated broken");
  }
  if (seq.protected_len % p != 0) return fail("protected length not page aligned");
  if (seq.swa_evicted_len % p != 0) return fail("swa_evicted length not page aligned");
  if (swa_alloc_.has_value() &&
      (seq.swa_evicted_len > seq.committed_len || seq.swa_evicted_len < seq.protected_len)) {
    return fail("protected <= swa_evicted <= committed broken");
  }
  if (static_cast<int64_t>(seq.full_pages.size()) != CeilDiv(seq.allocated_len, p)) {
    return fail("page count != ceil(allocated / page_size)");
  }
  if (static_cast<int32_t>(seq.tokens.size()) != seq.allocated_len) return fail("token count");
  if (swa_alloc_.has_value() && seq.swa_pages.size() != seq.full_pages.size()) {
    return fail("SWA page count");
  }
  if (!rows_.IsAllocated(seq.row)) return fail(absl::StrCat("row ", seq.row, " not allocated"));
  int32_t own_full = 0, own_swa = 0;
  for (int32_t i = 0; i < static_cast<int32_t>(seq.full_pages.size()); ++i) {
    const bool own = i >= seq.protected_len / p;
    if (own) ++own_full;
    if (swa_alloc_.has_value()) {
      const int32_t s = seq.swa_pages[i];
      if (!own && s != kNoSwaSlot) return fail("SWA page recorded for a tree-owned page");
      if (own && i < seq.swa_evicted_len / p && s != kNoSwaSlot) {
        return fail("SWA page below the window frontier still held");
      }
      if (own && s != kNoSwaSlot) ++own_swa;
      if (own && swa_map_->Get(seq.full_pages[i]) != s) return fail("full->SWA map mismatch");
    }
  }
  if (own_full != seq.own_full || own_swa != seq.own_swa) {
    return fail(absl::StrCat("own page counters ", seq.own_full, "/", seq.own_swa,
                             " != walk ", own_full, "/", own_swa));
  }
  if (!storage_->IsReleased() && !reset_for_release_) {
    std::vector<int32_t> row;
    RETURN_IF_ERROR(storage_->ReadReqToToken(seq.row, seq.allocated_len, &row));
    for (int32_t i = 0; i < seq.allocated_len; ++i) {
      if (row[i] != seq.full_pages[i / p] * p + i % p) {
        return fail(absl::StrCat("req_to_token[", seq.row, "][", i, "] = ", row[i], " stale"));
      }
    }
    if (swa_alloc_.has_value()) {
      for (int32_t i = seq.protected_len / p; i < static_cast<int32_t>(seq.full_pages.size());
           ++i) {
        std::vector<int32_t> map;
        RETURN_IF_ERROR(storage_->ReadFullToSwa(int64_t{seq.full_pages[i]} * p, p, &map));
        const int32_t s = seq.swa_pages[i];
        for (int32_t o = 0; o < p; ++o) {
          if (map[o] != (s == kNoSwaSlot ? kNoSwaSlot : s * p + o)) {
            return fail(absl::StrCat("full_to_swa slot table stale at full page ",
                                     seq.full_pages[i]));
          }
        }
      }
    }
  }
  return absl::OkStatus();
}

absl::Status KvCacheManager::Audit() const {
  RETURN_IF_ERROR(storage_->table_status());
  RETURN_IF_ERROR(tree_->CheckInvariants());
  const int32_t p = options_.page_size;
  std::vector<int32_t> tree_full, tree_swa;
  tree_->CollectPages(&tree_full, &tree_swa);
  absl::flat_hash_map<int32_t, int> tree_full_set;
  for (int32_t f : tree_full) tree_full_set[f]++;
  struct Owners {
    std::vector<uint8_t> free, tree, session, request;
  };
  auto make = [](int32_t n) {
    return Owners{std::vector<uint8_t>(n), std::vector<uint8_t>(n), std::vector<uint8_t>(n),
                  std::vector<uint8_t>(n)};
  };
  Owners full = make(full_alloc_.num_pages());
  Owners swa = make(swa_alloc_.has_value() ? swa_alloc_->num_pages() : 0);
  for (int32_t i = 1; i < full_alloc_.num_pages(); ++i) full.free[i] = !full_alloc_.IsAllocated(i);
  if (swa_alloc_.has_value()) {
    for (int32_t i = 1; i < swa_alloc_->num_pages(); ++i) swa.free[i] = !swa_alloc_->IsAllocated(i);
  }
  for (int32_t f : tree_full) full.tree[f]++;
  for (int32_t s : tree_swa) swa.tree[s]++;
  int64_t sum_full[2] = {0, 0}, sum_swa[2] = {0, 0};
  absl::flat_hash_map<int32_t, int> rows_seen;
  auto add_seq = [&](const KvSeq& seq, bool is_session, const std::string& who) -> absl::Status {
    RETURN_IF_ERROR(CheckSeq(seq, who));
    if (rows_seen[seq.row]++ > 0) return absl::InternalError(absl::StrCat(who, ": row shared"));
    for (int32_t i = 0; i < static_cast<int32_t>(seq.full_pages.size()); ++i) {
      const int32_t f = seq.full_pages[i];
      if (i < seq.protected_len / p) {
        if (!tree_full_set.contains(f)) {
          return absl::InternalError(absl::StrCat(
              who, ": protected page ", i, " (full page ", f, ") is not in the prefix cache"));
        }
        continue;
      }
      (is_session ? full.session : full.request)[f]++;
      if (swa_alloc_.has_value() && seq.swa_pages[i] != kNoSwaSlot) {
        (is_session ? swa.session : swa.request)[seq.swa_pages[i]]++;
      }
    }
    sum_full[is_session] += seq.own_full;
    sum_swa[is_session] += seq.own_swa;
    return absl::OkStatus();
  };
  for (const auto& [id, r] : requests_) {
    RETURN_IF_ERROR(add_seq(r.seq, false, absl::StrCat("request ", id)));
  }
  int64_t session_rows = 0;
  for (const auto& [id, s] : sessions_) {
    if (!s.seq.has_value()) continue;
    ++session_rows;
    RETURN_IF_ERROR(add_seq(*s.seq, true, absl::StrCat("session ", id)));
  }
  if (sum_full[0] != in_flight_full_ || sum_full[1] != session_full_ ||
      sum_swa[0] != in_flight_swa_ || sum_swa[1] != session_swa_) {
    return absl::InternalError(absl::StrCat(
        "KV counters drifted: in_flight full ", in_flight_full_, " vs ", sum_full[0],
        ", session full ", session_full_, " vs ", sum_full[1], ", in_flight swa ",
        in_flight_swa_, " vs ", sum_swa[0], ", session swa ", session_swa_, " vs ",
        sum_swa[1]));
  }
  auto check_pool = [&](const char* name, const Owners& o, int32_t num_pages) -> absl::Status {
    std::vector<int32_t> leaked, multi;
    int64_t n_free = 0, n_tree = 0, n_sess = 0, n_req = 0;
    for (int32_t i = 1; i < num_pages; ++i) {
      const int owners = o.free[i] + o.tree[i] + o.session[i] + o.request[i];
      n_free += o.free[i];
      n_tree += o.tree[i];
      n_sess += o.session[i];
      n_req += o.request[i];
      if (owners == 0) leaked.push_back(i);
      if (owners > 1) multi.push_back(i);
    }
    if (leaked.empty() && multi.empty()) return absl::OkStatus();
    if (leaked.size() > 16) leaked.resize(16);
    if (multi.size() > 16) multi.resize(16);
    return absl::InternalError(absl::StrCat(
        "KV audit failed for pool '", name, "': all ", num_pages - 1, " - free ", n_free,
        " - tree ", n_tree, " - sessions ", n_sess, " - requests ", n_req,
        "; leaked pages [", absl::StrJoin(leaked, ", "), "], pages with several owners [",
        absl::StrJoin(multi, ", "), "]"));
  };
  RETURN_IF_ERROR(check_pool("full", full, full_alloc_.num_pages()));
  if (swa_alloc_.has_value()) RETURN_IF_ERROR(check_pool("swa", swa, swa_alloc_->num_pages()));
  (void)session_rows;
  if (rows_.num_free() + static_cast<int64_t>(rows_seen.size()) != rows_.capacity()) {
    return absl::InternalError(absl::StrCat(
        "KV audit failed for pool 'req_rows': free ", rows_.num_free(), " + used ",
        rows_seen.size(), " != capacity ", rows_.capacity()));
  }
  // Last: the counter identity (the walks above name the pages when it breaks).
  return CheckConservation();
}

const KvSeq* KvCacheManager::FindRequest(RequestId id) const {
  auto it = requests_.find(id);
  return it == requests_.end() ? nullptr : &it->second.seq;
}

const KvSeq* KvCacheManager::FindSession(SessionId id) const {
  auto it = sessions_.find(id);
  return it == sessions_.end() || !it->second.seq.has_value() ? nullptr : &*it->second.seq;
}

int64_t KvCacheManager::HostBookkeepingBytes() const {
  int64_t bytes = tree_->HostBytes();
  bytes += int64_t{full_alloc_.num_pages()} * 5;  // Free list + state.
  if (swa_alloc_.has_value()) bytes += int64_t{swa_alloc_->num_pages()} * 5;
  if (swa_map_ != nullptr) bytes += int64_t{swa_map_->num_full_pages()} * 4;
  auto seq_bytes = [](const KvSeq& s) {
    return static_cast<int64_t>(sizeof(KvSeq) + 4 * (s.tokens.capacity() +
                                                     s.full_pages.capacity() +
                                                     s.swa_pages.capacity()));
  };
  for (const auto& [id, r] : requests_) bytes += seq_bytes(r.seq);
  for (const auto& [id, s] : sessions_) {
    if (s.seq.has_value()) bytes += seq_bytes(*s.seq);
  }
  return bytes;
}

}  // namespace colo::kvcache
