// MemoryTag: the owner class of every engine device allocation. Tags are
// strings on the wire ("weights", "kv_cache", "cuda_graph").
#ifndef COLO_ENGINE_MEMORY_MEMORY_TAG_H_
#define COLO_ENGINE_MEMORY_MEMORY_TAG_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace colo {
namespace engine {

enum class MemoryTag {
  kWeights = 0,
  kKvCache = 1,
  kCudaGraph = 2,
};

inline constexpr int kNumMemoryTags = 3;

// All tags, in the internal resume order (cuda_graph, weights, kv_cache).
const std::vector<MemoryTag>& AllMemoryTags();

// "weights", "kv_cache", "cuda_graph".
absl::string_view MemoryTagName(MemoryTag tag);

// Inverse of MemoryTagName. Unknown -> INVALID_ARGUMENT naming the valid tags.
absl::StatusOr<MemoryTag> ParseMemoryTag(absl::string_view name);

// Parses a list of tag names. Empty list = all tags. Duplicates are removed;
// the result is in AllMemoryTags() order. Any unknown name -> INVALID_ARGUMENT.
absl::StatusOr<std::vector<MemoryTag>> ParseMemoryTags(
    const std::vector<std::string>& names);

}  // namespace engine
}  // namespace colo

#endif  // COLO_ENGINE_MEMORY_MEMORY_TAG_H_
