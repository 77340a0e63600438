#include "engine/tp/shard_loader.h"

#include <cstring>
#include <vector>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/model/mxfp4.h"
#include "proto/status/status_macros.h"

namespace colo {
namespace engine {
namespace {

std::string ShapeString(const std::vector<int64_t>& s) {
  return absl::StrCat("[", absl::StrJoin(s, ", "), "]");
}

}  // namespace

absl::Status ReadShard(const SafetensorsCheckpoint& checkpoint, const ShardPlan& plan,
                       ModelWeights* local) {
  for (const WeightInfo& info : local->List()) {
    ASSIGN_OR_RETURN(TensorShard shard, plan.Shard(info.name));
    if (shard.local_shape != info.shape) {
      return absl::InternalError(absl::StrCat("tensor \"", info.name, "\": local shape ",
                                              ShapeString(info.shape), " but the plan says ",
                                              ShapeString(shard.local_shape)));
    }
    std::memset(info.data, 0, info.NumElements() * sizeof(float));  // padding / zero shards
    if (CheckpointHasMxfp4(checkpoint, info.name)) {
      // MXFP4 experts (gpt-oss): dequantize the full tensor, keep the shard.
      std::vector<float> full(static_cast<size_t>(shard.FullElements()));
      RETURN_IF_ERROR(ReadCheckpointTensor(checkpoint, info.name, shard.full_shape, full.data()));
      ShardPlan::ForEachLocalRange(
          shard, sizeof(float), 0, shard.FullElements() * int64_t{sizeof(float)},
          [&](int64_t local_offset, int64_t range_offset, int64_t n) {
            std::memcpy(reinterpret_cast<char*>(info.data) + local_offset,
                        reinterpret_cast<const char*>(full.data()) + range_offset, n);
          });
      continue;
    }
    ASSIGN_OR_RETURN(const TensorView* view, checkpoint.Find(info.name));
    if (view->shape != shard.full_shape) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor \"", info.name, "\" has shape ", ShapeString(view->shape),
          " but config.json implies ", ShapeString(shard.full_shape)));
    }
    if (view->dtype == TensorDtype::kOther) {
      return absl::InvalidArgumentError(absl::StrCat("tensor \"", info.name,
                                                     "\" has unsupported dtype ",
                                                     view->dtype_name,
                                                     " (supported: F32, F16, BF16)"));
    }
    const int64_t esize = static_cast<int64_t>(TensorDtypeBytes(view->dtype));
    absl::Status converted;
    ShardPlan::ForEachLocalRange(
        shard, esize, 0, shard.FullElements() * esize,
        [&](int64_t local_offset, int64_t range_offset, int64_t n) {
          if (!converted.ok()) return;
          converted = ConvertToFloat(view->dtype, view->data + range_offset, n / esize,
                                     info.data + local_offset / esize);
        });
    RETURN_IF_ERROR(converted);
  }
  return absl::OkStatus();
}

absl::StatusOr<ShardedModel> LoadShardedModel(const ShardedModelOptions& options) {
  if (options.weights_pool == nullptr || options.allocator == nullptr ||
      (options.size > 1 && options.collectives == nullptr)) {
    return absl::InvalidArgumentError(
        "LoadShardedModel needs weights_pool, allocator and (tp_size > 1) collectives");
  }
  auto fail = [&](const absl::Status& s) {
    return absl::Status(s.code(),
                        absl::StrCat("--model=", options.model_dir, " (tensor-parallel rank ",
                                     options.rank, "/", options.size, "): ", s.message()));
  };
  absl::StatusOr<ModelConfig> config = LoadModelConfig(options.model_dir + "/config.json");
  if (!config.ok()) return fail(config.status());
  absl::StatusOr<ShardPlan> plan = ShardPlan::Create(*config, options.rank, options.size);
  if (!plan.ok()) return fail(plan.status());
  absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> ckpt =
      SafetensorsCheckpoint::Open(options.model_dir);
  if (!ckpt.ok()) return fail(ckpt.status());
  absl::StatusOr<std::unique_ptr<ModelWeights>> weights =
      ModelWeights::Allocate(plan->local_config(), options.weights_pool);
  if (!weights.ok()) return fail(weights.status());
  if (absl::Status s = ReadShard(**ckpt, *plan, weights->get()); !s.ok()) return fail(s);
  absl::StatusOr<std::unique_ptr<TransformerModel>> model =
      TransformerModel::Create(*std::move(weights), options.allocator, options.threads);
  if (!model.ok()) return fail(model.status());
  TensorParallelShard shard;
  shard.rank = options.rank;
  shard.size = options.size;
  shard.full_vocab_size = config->vocab_size;
  shard.vocab_begin = plan->vocab_begin();
  shard.collectives = options.collectives;
  (*model)->set_tensor_parallel(shard);
  ShardedModel out;
  out.model = *std::move(model);
  out.full_config = *config;
  return out;
}

}  // namespace engine
}  // namespace colo
