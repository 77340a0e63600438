// Flag handling for colo-generate-offline: loads a model directory, runs
// GenerateOffline on the given prompts and prints one JSON object
//   {"results": [{"tokens": [...], "logprobs": [...]}, ...]}
// to stdout. Flags:
//   --model_dir=DIR --prompts="1,2,3;4,5" --max_new_tokens=N --batch_size=N
//   --prefill_chunk=N --temperature=F --top_k=N --top_p=F --seed=N
//   --threads=N (0 = default pool)
// Returns the process exit code (errors go to stderr with exit code 1).
#ifndef COLO_ENGINE_MODEL_GENERATE_OFFLINE_MAIN_LIB_H_
#define COLO_ENGINE_MODEL_GENERATE_OFFLINE_MAIN_LIB_H_

namespace colo {
namespace engine {

int GenerateOfflineMain(int argc, char** argv);

}  // namespace engine
}  // namespace colo

#endif  // COLO_ENGINE_MODEL_GENERATE_OFFLINE_MAIN_LIB_H_
