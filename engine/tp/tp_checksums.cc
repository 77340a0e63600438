#include "engine/tp/tp_checksums.h"

#include <algorithm>
#include <map>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/tp/crc32c_combine.h"
#include "proto/status/status_macros.h"
#include "weight_sync/crc32c.h"

namespace colo {
namespace engine {

using colo::internal::TpChecksumsReply;
using colo::internal::TpPiece;
using colo::internal::TpTensorPieces;

absl::StatusOr<TpChecksumsReply> ShardChecksumPieces(const ShardPlan& plan,
                                                     const ModelWeights& local,
                                                     const std::vector<std::string>& names) {
  std::vector<WeightInfo> infos;
  if (names.empty()) {
    infos = local.List();
  } else {
    std::vector<std::string> unknown;
    for (const std::string& n : names) {
      absl::StatusOr<WeightInfo> info = local.Find(n);
      if (info.ok()) {
        infos.push_back(*info);
      } else {
        unknown.push_back(absl::StrCat("\"", n, "\""));
      }
    }
    if (!unknown.empty()) {
      return absl::NotFoundError(absl::StrCat("unknown tensors: ", absl::StrJoin(unknown, ", ")));
    }
  }
  TpChecksumsReply reply;
  for (const WeightInfo& w : infos) {
    ASSIGN_OR_RETURN(TensorShard shard, plan.Shard(w.name));
    TpTensorPieces* t = reply.add_tensors();
    t->set_name(w.name);
    for (int64_t d : shard.full_shape) t->add_full_shape(d);
    for (const HeldPiece& p : ShardPlan::HeldPieces(shard, sizeof(float))) {
      TpPiece* piece = t->add_pieces();
      piece->set_offset(p.offset);
      piece->set_bytes(p.bytes);
      piece->set_crc32c(weight_sync::Crc32c(
          reinterpret_cast<const char*>(w.data) + p.local_offset, static_cast<size_t>(p.bytes)));
    }
  }
  return reply;
}

absl::StatusOr<std::vector<WeightChecksumEntry>> CombineChecksumPieces(
    const std::vector<TpChecksumsReply>& ranks) {
  if (ranks.empty()) return absl::InternalError("no rank sent checksum pieces");
  // name -> rank -> its pieces of that tensor
  std::map<std::string, std::vector<const TpTensorPieces*>> by_name;
  for (const TpChecksumsReply& r : ranks) {
    for (const TpTensorPieces& t : r.tensors()) by_name[t.name()].push_back(&t);
  }
  std::map<uint64_t, Crc32cShift> shifts;
  std::vector<WeightChecksumEntry> out;
  for (const TpTensorPieces& first : ranks[0].tensors()) {
    const std::vector<const TpTensorPieces*>& per_rank = by_name[first.name()];
    if (per_rank.size() != ranks.size()) {
      return absl::InternalError(absl::StrCat("tensor \"", first.name(), "\": ", per_rank.size(),
                                              " of ", ranks.size(), " ranks sent checksums"));
    }
    // (offset, bytes) -> (crc, rank that sent it first)
    std::map<std::pair<int64_t, int64_t>, std::pair<uint32_t, int>> pieces;
    for (size_t rank = 0; rank < per_rank.size(); ++rank) {
      for (const TpPiece& p : per_rank[rank]->pieces()) {
        auto [it, inserted] =
            pieces.emplace(std::make_pair(p.offset(), p.bytes()),
                           std::make_pair(p.crc32c(), static_cast<int>(rank)));
        if (!inserted && it->second.first != p.crc32c()) {
          return absl::InternalError(absl::StrCat(
              "tensor \"", first.name(), "\": ranks ", it->second.second, " and ", rank,
              " hold different bytes [", p.offset(), ", ", p.offset() + p.bytes(),
              ") of a replicated piece (checksums ", it->second.first, " vs ", p.crc32c(), ")"));
        }
      }
    }
    int64_t total = sizeof(float);
    for (int64_t d : first.full_shape()) total *= d;
    uint32_t crc = 0;
    int64_t covered = 0;
    for (const auto& [range, value] : pieces) {
      if (range.first != covered) {
        return absl::InternalError(absl::StrCat(
            "tensor \"", first.name(), "\": the ranks' pieces ", range.first < covered ? "overlap" : "leave a gap",
            " at byte ", std::min(range.first, covered)));
      }
      auto shift = shifts.find(range.second);
      if (shift == shifts.end()) {
        shift = shifts.emplace(range.second, Crc32cShift(range.second)).first;
      }
      crc = covered == 0 ? value.first : shift->second.Combine(crc, value.first);
      covered += range.second;
    }
    if (covered != total) {
      return absl::InternalError(absl::StrCat("tensor \"", first.name(), "\": the ranks' pieces cover ",
                                              covered, " of ", total, " bytes"));
    }
    WeightChecksumEntry e;
    e.name = first.name();
    e.dtype = "float32";
    e.shape.assign(first.full_shape().begin(), first.full_shape().end());
    e.crc32c = crc;
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace engine
}  // namespace colo
