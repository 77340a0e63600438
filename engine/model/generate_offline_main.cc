// colo-generate-offline: runs the CPU model on token-id prompts and prints
// tokens + logprobs as JSON. See generate_offline_main_lib.h.
#include "engine/model/generate_offline_main_lib.h"

int main(int argc, char** argv) {
  return colo::engine::GenerateOfflineMain(argc, argv);
}
