#include "kvcache/testing/op_driver.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "proto/status/status_macros.h"

namespace colo::kvcache::test_support {
namespace {

uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

int32_t FloorP(int32_t x, int32_t p) { return x / p * p; }
int32_t CeilPages(int32_t x, int32_t p) { return (x + p - 1) / p; }

absl::Status Fail(const char* op, const std::string& what) {
  return absl::InternalError(absl::StrCat("after ", op, ": ", what));
}

// Expect a specific error code (or OK) from an operation.
absl::Status Expect(const absl::Status& s, absl::StatusCode code, const char* op) {
  if (s.code() != code) {
    return Fail(op, absl::StrCat("expected code ", absl::StatusCodeToString(code), ", got ",
                                 s.ToString()));
  }
  return absl::OkStatus();
}

}  // namespace

std::string DriverConfig::Describe() const {
  return absl::StrCat("page_size=", page_size, " window=", sliding_window,
                      " sessions=", sessions, " full_tokens=", full_capacity_tokens,
                      " swa_tokens=", swa_capacity_tokens, " rows=", max_requests);
}

absl::StatusOr<std::unique_ptr<OpDriver>> OpDriver::Create(const DriverConfig& config) {
  ASSIGN_OR_RETURN(std::unique_ptr<TestPool> pool, TestPool::Create());
  KvCacheManager::Options o;
  o.page_size = config.page_size;
  o.num_layers = 2;
  o.layer_is_sliding = {false, config.sliding_window > 0};
  o.sliding_window = config.sliding_window;
  o.kv_heads = 1;
  o.head_dim = 2;
  o.full_capacity_tokens = config.full_capacity_tokens;
  o.swa_capacity_tokens = config.swa_capacity_tokens;
  o.max_requests = config.max_requests;
  o.max_context_tokens = config.max_prompt + 64;
  ASSIGN_OR_RETURN(std::unique_ptr<KvCacheManager> manager,
                   KvCacheManager::Create(o, pool->pool()));
  return std::unique_ptr<OpDriver>(new OpDriver(config, std::move(pool), std::move(manager)));
}

OpDriver::OpDriver(const DriverConfig& config, std::unique_ptr<TestPool> pool,
                   std::unique_ptr<KvCacheManager> manager)
    : config_(config), pool_(std::move(pool)), manager_(std::move(manager)) {
  std::mt19937_64 rng(1234);
  for (int d = 0; d < config_.num_documents; ++d) {
    std::vector<int32_t> doc(config_.max_prompt);
    for (auto& t : doc) t = static_cast<int32_t>(rng() % config_.vocab);
    documents_.push_back(std::move(doc));
  }
}

OpDriver::~OpDriver() { manager_.reset(); }

std::vector<int32_t> OpDriver::MakePrompt(Entropy& e) {
  const auto& doc = documents_[e.Next(documents_.size())];
  const int32_t shared = e.Next(config_.max_prompt);
  std::vector<int32_t> prompt(doc.begin(), doc.begin() + shared);
  const int32_t extra = 1 + e.Next(std::max<int32_t>(1, config_.max_prompt - shared));
  for (int32_t i = 0; i < extra; ++i) prompt.push_back(e.Next(config_.vocab));
  return prompt;
}

uint64_t OpDriver::Fingerprint(const std::vector<int32_t>& tokens, int32_t pos) const {
  uint64_t h = 0x1234;
  for (int32_t i = 0; i <= pos; ++i) h = Mix(h ^ static_cast<uint32_t>(tokens[i]));
  return h;
}

namespace {
void Store(float* base, int64_t slot, uint64_t fp) {
  uint32_t w[2] = {static_cast<uint32_t>(fp), static_cast<uint32_t>(fp >> 32)};
  std::memcpy(base + slot * 2, w, sizeof(w));
}
uint64_t Load(const float* base, int64_t slot) {
  uint32_t w[2];
  std::memcpy(w, base + slot * 2, sizeof(w));
  return (static_cast<uint64_t>(w[1]) << 32) | w[0];
}
}  // namespace

void OpDriver::WriteKv(const Req& r, int32_t from, int32_t to) {
  const KvSeq* seq = manager_->FindRequest(r.id);
  const int32_t* row = manager_->req_to_token() +
                       static_cast<int64_t>(seq->row) * manager_->max_context_tokens();
  uint64_t h = 0x1234;
  for (int32_t i = 0; i < to; ++i) {
    h = Mix(h ^ static_cast<uint32_t>(r.tokens[i]));
    if (i < from) continue;
    const int32_t slot = row[i];
    Store(manager_->GetLayerKv(0).KFloat(), slot, h);
    if (config_.sliding_window > 0) {
      const int32_t s = manager_->full_to_swa()[slot];
      if (s >= 0) Store(manager_->GetLayerKv(1).KFloat(), s, h);
    }
  }
}

absl::Status OpDriver::CheckWindow(const Req& r, int32_t upto, const char* what) {
  const KvSeq* seq = manager_->FindRequest(r.id);
  const int32_t* row = manager_->req_to_token() +
                       static_cast<int64_t>(seq->row) * manager_->max_context_tokens();
  uint64_t h = 0x1234;
  for (int32_t i = 0; i < upto; ++i) {
    h = Mix(h ^ static_cast<uint32_t>(r.tokens[i]));
    const int32_t slot = row[i];
    if (Load(manager_->GetLayerKv(0).KFloat(), slot) != h) {
      return Fail(what, absl::StrCat("request ", r.id, " full KV at position ", i, " (slot ",
                                     slot, ") holds another prefix's KV; upto ", upto));
    }
    if (config_.sliding_window > 0 && i >= upto - config_.sliding_window) {
      const int32_t s = manager_->full_to_swa()[slot];
      if (s < 0) {
        return Fail(what, absl::StrCat("request ", r.id, " position ", i,
                                       " inside the window has no SWA slot; upto ", upto));
      }
      if (Load(manager_->GetLayerKv(1).KFloat(), s) != h) {
        return Fail(what, absl::StrCat("request ", r.id, " SWA KV at position ", i,
                                       " (swa slot ", s, ") is wrong"));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status OpDriver::OpBegin(Entropy& e) {
  const int32_t p = config_.page_size;
  std::optional<SessionId> sid;
  std::vector<int32_t> prompt;
  if (config_.sessions && e.Next(2) == 0) {
    std::vector<SessionId> idle;
    for (auto& [id, s] : sessions_) {
      if (!s.busy) idle.push_back(id);
    }
    if (!idle.empty()) {
      sid = idle[e.Next(idle.size())];
      prompt = sessions_[*sid].tokens;
      const int32_t add = 1 + e.Next(24);
      if (prompt.empty()) prompt = MakePrompt(e);
      for (int32_t i = 0; i < add; ++i) prompt.push_back(e.Next(config_.vocab));
    }
  }
  if (!sid.has_value()) prompt = MakePrompt(e);
  absl::StatusOr<KvCacheManager::BeginResult> br =
      manager_->BeginRequest(prompt, {.session_id = sid});
  if (!br.ok()) {
    if (br.status().code() == absl::StatusCode::kResourceExhausted) {
      ++stats_.resource_exhausted;
      return absl::OkStatus();
    }
    return Fail("begin", br.status().ToString());
  }
  Req r;
  r.id = br->id;
  r.prompt = prompt;
  r.committed = r.allocated = br->cached_len;
  r.tokens.assign(prompt.begin(), prompt.begin() + br->cached_len);
  r.session = sid;
  r.target_len = static_cast<int32_t>(prompt.size()) + e.Next(24);
  if (br->cached_len >= static_cast<int32_t>(prompt.size())) {
    return Fail("begin", "cached the whole prompt (nothing left to compute)");
  }
  if (sid.has_value() && sessions_[*sid].has_kv) {
    Sess& s = sessions_[*sid];
    if (br->cached_len != static_cast<int32_t>(s.tokens.size())) {
      return Fail("begin", absl::StrCat("session turn cached ", br->cached_len, " != history ",
                                        s.tokens.size()));
    }
    r.protected_len = s.protected_len;
    r.swa_evicted = s.swa_evicted;
  } else {
    if (br->cached_len % p != 0) return Fail("begin", "unaligned cache hit");
    r.protected_len = br->cached_len;
    r.swa_evicted = br->cached_len;
  }
  if (sid.has_value()) sessions_[*sid].busy = true;
  stats_.hits_tokens += br->cached_len;
  stats_.prompt_tokens += static_cast<int64_t>(prompt.size());
  reqs_[r.id] = r;
  return CheckWindow(reqs_[r.id], br->cached_len, "begin (cache hit content)");
}

absl::Status OpDriver::OpAllocate(Entropy& e) {
  if (reqs_.empty()) return absl::OkStatus();
  auto it = reqs_.begin();
  std::advance(it, e.Next(reqs_.size()));
  Req& r = it->second;
  std::vector<int32_t> toks;
  const int32_t plen = static_cast<int32_t>(r.prompt.size());
  if (r.committed < plen) {
    const int32_t n = std::min(plen - r.committed, 1 + static_cast<int32_t>(e.Next(40)));
    toks.assign(r.prompt.begin() + r.committed, r.prompt.begin() + r.committed + n);
  } else {
    const int32_t n = 1 + (e.Next(4) == 0 ? e.Next(3) : 0);  // speculative
    for (int32_t i = 0; i < n; ++i) toks.push_back(e.Next(config_.vocab));
  }
  absl::Status s = manager_->Allocate(r.id, toks);
  if (!s.ok()) {
    if (s.code() != absl::StatusCode::kResourceExhausted) return Fail("allocate", s.ToString());
    ++stats_.resource_exhausted;
    if (manager_->FindRequest(r.id)->allocated_len != r.allocated) {
      return Fail("allocate", "failed allocation changed the request");
    }
    return absl::OkStatus();
  }
  const int32_t end = r.committed + static_cast<int32_t>(toks.size());
  if (end > r.allocated) {
    r.tokens.resize(end);
    r.allocated = end;
  }
  std::copy(toks.begin(), toks.end(), r.tokens.begin() + r.committed);
  return absl::OkStatus();
}

absl::Status OpDriver::OpCommit(Entropy& e) {
  std::vector<Req*> ready;
  for (auto& [id, r] : reqs_) {
    if (r.allocated > r.committed) ready.push_back(&r);
  }
  if (ready.empty()) return absl::OkStatus();
  Req& r = *ready[e.Next(ready.size())];
  const int32_t to = r.committed + 1 + e.Next(r.allocated - r.committed);
  WriteKv(r, r.committed, to);
  RETURN_IF_ERROR(manager_->Commit(r.id, to));
  r.committed = to;
  if (config_.sliding_window > 0) {
    // Spec: SWA slots below floor_P(committed - max(window, P) - P) are freed.
    const int32_t p = config_.page_size;
    const int32_t frontier = FloorP(std::max(0, to - std::max(config_.sliding_window, p) - p), p);
    r.swa_evicted = std::max(r.swa_evicted, frontier);
  }
  return CheckWindow(r, r.committed, "commit (live window)");
}

absl::Status OpDriver::OpInsert(Entropy& e) {
  std::vector<Req*> candidates;
  for (auto& [id, r] : reqs_) {
    if (!r.session.has_value()) candidates.push_back(&r);
  }
  if (candidates.empty()) return absl::OkStatus();
  Req& r = *candidates[e.Next(candidates.size())];
  RETURN_IF_ERROR(manager_->InsertPrefix(r.id));
  r.protected_len = std::max(r.protected_len, FloorP(r.committed, config_.page_size));
  r.swa_evicted = std::max(r.swa_evicted, r.protected_len);
  return CheckWindow(r, r.committed, "insert prefix");
}

absl::Status OpDriver::OpRelease(Entropy& e, int kind) {
  if (reqs_.empty()) return absl::OkStatus();
  auto it = reqs_.begin();
  std::advance(it, e.Next(reqs_.size()));
  Req r = it->second;
  reqs_.erase(it);
  const bool cache = kind == 0;
  RETURN_IF_ERROR(manager_->ReleaseRequest(r.id, {.cache = cache}));
  ++stats_.releases;
  if (manager_->FindRequest(r.id) != nullptr) return Fail("release", "request still present");
  if (r.session.has_value()) {
    Sess& s = sessions_[*r.session];
    s.busy = false;
    const KvSeq* seq = manager_->FindSession(*r.session);
    if (seq == nullptr) return Fail("release", "session lost its state");
    if (cache) {
      if (!s.has_kv) {
        s.protected_len = std::max(r.protected_len, FloorP(r.committed, config_.page_size));
      }
      s.swa_evicted = std::max(r.swa_evicted, s.protected_len);
      s.has_kv = r.committed > 0;
      s.tokens.assign(r.tokens.begin(), r.tokens.begin() + r.committed);
    } else if (seq->committed_len == 0 && seq->protected_len == 0 && seq->full_pages.empty()) {
      s.has_kv = false;  // Turn 1 aborted, or rollback impossible (SWA freed).
      s.tokens.clear();
      s.protected_len = 0;
      s.swa_evicted = 0;
    } else if (!s.has_kv || seq->committed_len != static_cast<int32_t>(s.tokens.size())) {
      return Fail("abort turn", "session not rolled back to its previous turn");
    } else {
      s.swa_evicted = r.swa_evicted;  // Freed SWA slots stay freed.
    }
    return absl::OkStatus();
  }
  if (kind == 2 && r.committed > 0) {
    // Retract: the scheduler re-queues prompt + generated tokens; recompute.
    std::vector<int32_t> prompt(r.tokens.begin(), r.tokens.begin() + r.committed);
    absl::StatusOr<KvCacheManager::BeginResult> br = manager_->BeginRequest(prompt, {});
    if (!br.ok()) {
      if (br.status().code() == absl::StatusCode::kResourceExhausted) return absl::OkStatus();
      return Fail("retract re-begin", br.status().ToString());
    }
    Req n;
    n.id = br->id;
    n.prompt = prompt;
    n.committed = n.allocated = n.protected_len = n.swa_evicted = br->cached_len;
    n.tokens.assign(prompt.begin(), prompt.begin() + br->cached_len);
    n.target_len = r.target_len;
    reqs_[n.id] = n;
    return CheckWindow(reqs_[n.id], n.committed, "retract re-begin");
  }
  return absl::OkStatus();
}

absl::Status OpDriver::OpMatch(Entropy& e) {
  std::vector<int32_t> prompt = MakePrompt(e);
  const int32_t len = manager_->MatchPrefixLength(prompt);
  if (len % config_.page_size != 0 || len > static_cast<int32_t>(prompt.size())) {
    return Fail("match", absl::StrCat("bad match length ", len));
  }
  return absl::OkStatus();
}

absl::Status OpDriver::OpEvict(Entropy& e) {
  if (e.Next(2) == 0) {
    manager_->EvictFull(e.Next(8));
  } else {
    manager_->EvictSwa(e.Next(8));
  }
  return absl::OkStatus();
}

absl::Status OpDriver::OpSession(Entropy& e) {
  if (!config_.sessions) return absl::OkStatus();
  switch (e.Next(5)) {
    case 0:
    case 1: {
      if (sessions_.size() >= 3) return absl::OkStatus();
      const SessionId id = next_session_++;
      absl::Status s = manager_->OpenSession(id);
      if (s.code() == absl::StatusCode::kResourceExhausted) return absl::OkStatus();
      RETURN_IF_ERROR(s);
      sessions_[id] = Sess();
      return Expect(manager_->OpenSession(id), absl::StatusCode::kFailedPrecondition,
                    "open twice");
    }
    case 2: {
      RETURN_IF_ERROR(Expect(manager_->CloseSession(next_session_ + 1000),
                             absl::StatusCode::kNotFound, "close unknown"));
      if (sessions_.empty()) return absl::OkStatus();
      auto it = sessions_.begin();
      std::advance(it, e.Next(sessions_.size()));
      if (it->second.busy) {
        return Expect(manager_->CloseSession(it->first), absl::StatusCode::kFailedPrecondition,
                      "close busy session");
      }
      RETURN_IF_ERROR(manager_->CloseSession(it->first));
      sessions_.erase(it);
      ++stats_.sessions_closed;
      return absl::OkStatus();
    }
    case 3: {
      // Timeout reaper: with a far-future clock every idle session is closed.
      int expected = 0;
      for (auto& [id, s] : sessions_) expected += s.busy ? 0 : 1;
      const int closed =
          manager_->CloseIdleSessions(absl::Now() + absl::Hours(1), absl::Minutes(1));
      if (closed != expected) {
        return Fail("close idle", absl::StrCat("closed ", closed, " expected ", expected));
      }
      for (auto it = sessions_.begin(); it != sessions_.end();) {
        it = it->second.busy ? std::next(it) : sessions_.erase(it);
      }
      stats_.sessions_closed += closed;
      return absl::OkStatus();
    }
    default: {
      // Unknown session turn.
      std::vector<int32_t> prompt = {1, 2, 3};
      return Expect(manager_->BeginRequest(prompt, {.session_id = next_session_ + 1000}).status(),
                    absl::StatusCode::kNotFound, "turn on unknown session");
    }
  }
}

absl::Status OpDriver::OpFlush() {
  if (!reqs_.empty()) {
    return Expect(manager_->Flush(), absl::StatusCode::kFailedPrecondition, "flush busy");
  }
  RETURN_IF_ERROR(manager_->Flush());
  for (auto& [id, s] : sessions_) s = Sess();
  KvUsage u = manager_->Usage();
  if (u.full.free != u.full.capacity || u.swa.free != u.swa.capacity) {
    return Fail("flush", "free != capacity after flush");
  }
  return absl::OkStatus();
}

absl::Status OpDriver::OpReleaseResume() {
  if (!reqs_.empty()) {
    return Expect(manager_->ResetForRelease(), absl::StatusCode::kFailedPrecondition,
                  "reset for release while busy");
  }
  const engine::MemoryTag tag = engine::MemoryTag::kKvCache;
  RETURN_IF_ERROR(manager_->ResetForRelease());
  const engine::TagInfo before = pool_->KvInfo();
  RETURN_IF_ERROR(pool_->pool()->Release({tag}).status());
  const engine::TagInfo after = pool_->KvInfo();
  // Every pool (full and SWA K/V of all layers, the map, the request table)
  // is in the tag: nothing of it may stay resident.
  if (after.resident_bytes != 0 ||
      before.resident_bytes < static_cast<uint64_t>(manager_->DeviceBytes())) {
    return Fail("release", absl::StrCat("kv_cache resident before ", before.resident_bytes,
                                        " after ", after.resident_bytes, ", storage bytes ",
                                        manager_->DeviceBytes()));
  }
  std::vector<int32_t> prompt = {1, 2};
  RETURN_IF_ERROR(Expect(manager_->BeginRequest(prompt, {}).status(),
                         absl::StatusCode::kFailedPrecondition, "begin while released"));
  RETURN_IF_ERROR(pool_->pool()->Resume({tag}).status());
  RETURN_IF_ERROR(manager_->OnResumed());
  for (auto& [id, s] : sessions_) s = Sess();
  ++stats_.releases;
  return absl::OkStatus();
}

absl::Status OpDriver::CheckAll(const char* op) {
  const int32_t p = config_.page_size;
  absl::Status s = manager_->CheckConservation();
  if (s.ok() && config_.audit_every_op) s = manager_->Audit();
  if (!s.ok()) return Fail(op, s.ToString());
  int64_t in_flight = 0, session_held = 0, rows_in_flight = 0;
  int64_t swa_in_flight = 0, swa_session_held = 0;
  const bool swa = config_.sliding_window > 0;
  for (const auto& [id, r] : reqs_) {
    const KvSeq* seq = manager_->FindRequest(id);
    if (seq == nullptr) return Fail(op, absl::StrCat("request ", id, " missing"));
    if (seq->committed_len != r.committed || seq->allocated_len != r.allocated ||
        seq->protected_len != r.protected_len) {
      return Fail(op, absl::StrCat("request ", id, " lengths (prot/comm/alloc) ",
                                   seq->protected_len, "/", seq->committed_len, "/",
                                   seq->allocated_len, " != model ", r.protected_len, "/",
                                   r.committed, "/", r.allocated));
    }
    in_flight += CeilPages(r.allocated, p) - r.protected_len / p;
    if (swa) {
      if (seq->swa_evicted_len != r.swa_evicted) {
        return Fail(op, absl::StrCat("request ", id, " swa_evicted ", seq->swa_evicted_len,
                                     " != model ", r.swa_evicted));
      }
      swa_in_flight += CeilPages(r.allocated, p) - std::max(r.protected_len, r.swa_evicted) / p;
    }
    if (!r.session.has_value()) ++rows_in_flight;
  }
  for (const auto& [id, sess] : sessions_) {
    if (sess.busy) continue;
    const KvSeq* seq = manager_->FindSession(id);
    if (seq == nullptr) return Fail(op, absl::StrCat("session ", id, " missing"));
    const int32_t committed = static_cast<int32_t>(sess.tokens.size());
    if (seq->committed_len != committed || seq->allocated_len != committed ||
        seq->protected_len != sess.protected_len) {
      return Fail(op, absl::StrCat("session ", id, " lengths ", seq->protected_len, "/",
                                   seq->committed_len, "/", seq->allocated_len, " != model ",
                                   sess.protected_len, "/", committed));
    }
    if (seq->protected_len % p != 0) return Fail(op, "session protected length unaligned");
    session_held += CeilPages(committed, p) - sess.protected_len / p;
    if (swa) {
      if (seq->swa_evicted_len != sess.swa_evicted) {
        return Fail(op, absl::StrCat("session ", id, " swa_evicted ", seq->swa_evicted_len,
                                     " != model ", sess.swa_evicted));
      }
      swa_session_held +=
          CeilPages(committed, p) - std::max(sess.protected_len, sess.swa_evicted) / p;
    }
  }
  KvUsage u = manager_->Usage();
  if (u.full.in_flight != in_flight || u.full.session_held != session_held ||
      u.rows.in_flight != rows_in_flight ||
      u.rows.sessions != static_cast<int64_t>(sessions_.size())) {
    return Fail(op, absl::StrCat("page ownership differs from the model: in_flight ",
                                 u.full.in_flight, " vs ", in_flight, ", session_held ",
                                 u.full.session_held, " vs ", session_held, ", rows ",
                                 u.rows.in_flight, " vs ", rows_in_flight));
  }
  if (u.swa.in_flight != swa_in_flight || u.swa.session_held != swa_session_held) {
    return Fail(op, absl::StrCat("SWA page ownership differs from the model: in_flight ",
                                 u.swa.in_flight, " vs ", swa_in_flight, ", session_held ",
                                 u.swa.session_held, " vs ", swa_session_held));
  }
  if (reqs_.empty() && sessions_.empty() &&
      (u.full.protected_pages != 0 || u.swa.protected_pages != 0)) {
    return Fail(op, "locks left with nothing running");
  }
  return absl::OkStatus();
}

absl::Status OpDriver::Step(Entropy& e) {
  ++stats_.ops;
  const uint32_t op = e.Next(100);
  const char* name = "?";
  absl::Status s;
  if (op < 14) {
    name = "begin";
    s = OpBegin(e);
  } else if (op < 40) {
    name = "allocate";
    s = OpAllocate(e);
  } else if (op < 62) {
    name = "commit";
    s = OpCommit(e);
  } else if (op < 66) {
    name = "insert";
    s = OpInsert(e);
  } else if (op < 74) {
    name = "finish";
    s = OpRelease(e, 0);
  } else if (op < 77) {
    name = "abort";
    s = OpRelease(e, 1);
  } else if (op < 79) {
    name = "retract";
    s = OpRelease(e, 2);
  } else if (op < 84) {
    name = "match";
    s = OpMatch(e);
  } else if (op < 88) {
    name = "evict";
    s = OpEvict(e);
  } else if (op < 97) {
    name = "session";
    s = OpSession(e);
  } else if (op < 99) {
    name = "flush";
    s = OpFlush();
  } else {
    name = "release/resume";
    s = OpReleaseResume();
  }
  if (!s.ok()) return absl::InternalError(absl::StrCat("op #", stats_.ops, " ", name, ": ", s.message()));
  return CheckAll(name);
}

absl::Status OpDriver::Drain() {
  for (auto& [id, r] : reqs_) RETURN_IF_ERROR(manager_->ReleaseRequest(id, {.cache = false}));
  reqs_.clear();
  for (auto& [id, s] : sessions_) RETURN_IF_ERROR(manager_->CloseSession(id));
  sessions_.clear();
  RETURN_IF_ERROR(manager_->Audit());
  RETURN_IF_ERROR(manager_->Flush());
  RETURN_IF_ERROR(manager_->Audit());
  KvUsage u = manager_->Usage();
  if (u.full.free != u.full.capacity || u.swa.free != u.swa.capacity ||
      u.rows.free != u.rows.capacity) {
    return absl::InternalError(absl::StrCat("leak after drain: full free ", u.full.free, "/",
                                            u.full.capacity, " swa free ", u.swa.free, "/",
                                            u.swa.capacity, " rows free ", u.rows.free, "/",
                                            u.rows.capacity));
  }
  return absl::OkStatus();
}

}  // namespace colo::kvcache::test_support
