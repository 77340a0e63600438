// colo-weight-sender: broadcast a safetensors checkpoint to engines.
#ifndef COLO_WEIGHT_SYNC_SENDER_MAIN_LIB_H_
#define COLO_WEIGHT_SYNC_SENDER_MAIN_LIB_H_

#include <string>

#include "absl/status/status.h"
#include "weight_sync/sender.h"

namespace colo {
namespace weight_sync {

struct SenderCliOptions {
  WeightSenderOptions sender;
  std::string checkpoint;  // directory with *.safetensors
  std::string weight_version;
  bool flush_cache = true;
  bool destroy_group_after = true;
};

// Connects, updates once, prints a per-engine summary to stdout, destroys
// the group when asked. Returns the first error.
absl::Status RunWeightSender(const SenderCliOptions& options);

// main() of colo-weight-sender (parses the flags).
int WeightSenderMain(int argc, char** argv);

}  // namespace weight_sync
}  // namespace colo

#endif  // COLO_WEIGHT_SYNC_SENDER_MAIN_LIB_H_
