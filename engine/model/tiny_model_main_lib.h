// Flag handling for the colo-tiny-model binary:
//   colo-tiny-model --out=DIR --arch=llama|mistral|qwen2|qwen3|qwen3_moe|gpt_oss
//     --layers=N --hidden=N --heads=N --kv_heads=N --head_dim=N
//     --intermediate=N --vocab=N --max_position=N --sliding_window=N
//     --layer_types=full,sliding,... --tie_embeddings --dtype=f32|f16|bf16
//     --seed=N --rope_theta=X
//   MoE: --experts=N --experts_per_token=K --moe_intermediate=N
//     --norm_topk_prob --decoder_sparse_step=N --mlp_only_layers=1,3 (qwen3_moe)
//     --mxfp4 (gpt_oss)
// Returns the process exit code (0 on success, 1 with a message on stderr).
#ifndef COLO_ENGINE_MODEL_TINY_MODEL_MAIN_LIB_H_
#define COLO_ENGINE_MODEL_TINY_MODEL_MAIN_LIB_H_

namespace colo {
namespace engine {

int TinyModelMain(int argc, char** argv);

}  // namespace engine
}  // namespace colo

#endif  // COLO_ENGINE_MODEL_TINY_MODEL_MAIN_LIB_H_
