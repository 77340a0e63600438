// IpcStreamUpdate over real shared-memory files and memfds into the model's
// sink: buckets of float32/bfloat16 tensors, tensors in pieces, and every
// bad input (names, shapes, dtypes, segments, paths, sizes, NaN, CUDA
// handles on an engine without a GPU) rejected with nothing applied. The
// engine RPC and a torch trainer are covered in tests/weight_sync.
#include "weight_sync/ipc_update.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "engine/model/model_weights.h"
#include "engine/model/test_env.h"
#include "engine/model/tiny_model.h"
#include "engine/model/weight_update_sink.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/util/status_matchers.h"

namespace colo {
namespace weight_sync {
namespace {

using ::testing::HasSubstr;

struct Fixture {
  engine::ModelTestEnv env;
  std::unique_ptr<engine::ModelWeights> weights;
  std::unique_ptr<engine::ModelWeightUpdateSink> sink;
  std::string dir;

  Fixture() {
    engine::TinyModelOptions o;
    o.layers = 1;
    o.hidden = 32;
    o.vocab = 64;
    weights = engine::ModelWeights::Allocate(engine::TinyModelConfig(o).value(), env.pool.get())
                  .value();
    sink = engine::ModelWeightUpdateSink::Create({weights.get(), env.allocator.get()}).value();
    dir = engine::TestDir("ipc_update_test");
  }
  IpcUpdateOptions Options() {
    IpcUpdateOptions o;
    o.sink = sink.get();
    o.shm_dirs = {dir};
    return o;
  }
  engine::WeightInfo Info(const std::string& name) { return weights->Find(name).value(); }
  // Writes `bytes` to a file in the shm dir; returns its path.
  std::string File(const std::string& name, const std::string& bytes) {
    const std::string path = dir + "/" + name;
    std::ofstream(path, std::ios::binary).write(bytes.data(), bytes.size());
    return path;
  }
};

std::string Floats(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4);
}

std::vector<float> Ramp(size_t n, float start) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = start + 0.001f * static_cast<float>(i);
  return v;
}

v1::IpcTensor* AddTensor(v1::IpcBucket* b, const engine::WeightInfo& w, const std::string& dtype,
                         int segment, int64_t offset) {
  v1::IpcTensor* t = b->add_tensors();
  t->set_name(w.name);
  t->set_dtype(dtype);
  for (int64_t d : w.shape) t->mutable_shape()->add_dims(d);
  t->set_segment(segment);
  t->set_offset_bytes(offset);
  return t;
}

void AddShm(v1::IpcBucket* b, const std::string& path, int64_t offset, int64_t size) {
  v1::IpcSegment* s = b->add_segments();
  s->set_shm_path(path);
  s->set_offset_bytes(offset);
  s->set_size_bytes(size);
}

std::vector<float> Live(Fixture& f, const std::string& name) {
  engine::WeightInfo w = f.Info(name);
  return std::vector<float>(w.data, w.data + w.NumElements());
}

TEST(IpcStreamUpdateTest, BucketsOfFloat32AndBfloat16CommitTogether) {
  Fixture f;
  engine::WeightInfo norm = f.Info("model.norm.weight");       // [32]
  engine::WeightInfo embed = f.Info("model.embed_tokens.weight");  // [64, 32]
  const std::vector<float> norm_values = Ramp(32, 1.f);
  std::vector<float> embed_values = Ramp(64 * 32, -1.f);
  std::string bf16;
  for (float& v : embed_values) {
    const uint16_t b = engine::FloatToBf16(v);
    v = engine::Bf16ToFloat(b);
    bf16.append(reinterpret_cast<const char*>(&b), 2);
  }
  // Segment with a 100-byte header before the data: offsets are honoured.
  const std::string path = f.File("bucket", std::string(100, 'x') + Floats(norm_values) + bf16);
  IpcStreamUpdate update(f.Options());
  v1::IpcBucket b0;
  AddShm(&b0, path, 100, 128);
  AddTensor(&b0, norm, "float32", 0, 0);
  ASSERT_OK_AND_ASSIGN(v1::IpcBucketAck a0, update.Add(b0));
  EXPECT_EQ(a0.bucket(), 0);
  EXPECT_EQ(a0.bytes(), 128);
  v1::IpcBucket b1;
  AddShm(&b1, path, 228, static_cast<int64_t>(bf16.size()));
  AddTensor(&b1, embed, "bfloat16", 0, 0);
  ASSERT_OK_AND_ASSIGN(v1::IpcBucketAck a1, update.Add(b1));
  EXPECT_EQ(a1.bucket(), 1);
  // Nothing is live before the commit.
  EXPECT_NE(Live(f, "model.norm.weight"), norm_values);
  ASSERT_OK(update.Finish());
  ASSERT_OK(f.sink->Commit());
  EXPECT_EQ(Live(f, "model.norm.weight"), norm_values);
  EXPECT_EQ(Live(f, "model.embed_tokens.weight"), embed_values);
  EXPECT_EQ(update.tensors(), 2);
}

TEST(IpcStreamUpdateTest, TensorInPiecesAndMemfdSegments) {
  Fixture f;
  engine::WeightInfo embed = f.Info("model.embed_tokens.weight");  // 8192 bytes
  const std::vector<float> values = Ramp(64 * 32, 3.f);
  const std::string bytes = Floats(values);
  const int fd = memfd_create("colo-test", MFD_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
  const std::string proc = "/proc/" + std::to_string(getpid()) + "/fd/" + std::to_string(fd);
  IpcStreamUpdate update(f.Options());
  for (int piece = 0; piece < 2; ++piece) {
    v1::IpcBucket b;
    AddShm(&b, proc, piece * 4096, 4096);
    v1::IpcTensor* t = AddTensor(&b, embed, "float32", 0, 0);
    t->set_tensor_offset_bytes(piece * 4096);
    t->set_length_bytes(4096);
    ASSERT_OK(update.Add(b).status()) << "piece " << piece;
  }
  close(fd);
  ASSERT_OK(update.Finish());
  ASSERT_OK(f.sink->Commit());
  EXPECT_EQ(Live(f, "model.embed_tokens.weight"), values);
}

TEST(IpcStreamUpdateTest, BadBucketsAreRejectedBeforeAnyCopy) {
  Fixture f;
  const std::vector<float> before = Live(f, "model.norm.weight");
  engine::WeightInfo norm = f.Info("model.norm.weight");
  const std::string path = f.File("ok", Floats(Ramp(32, 5.f)));
  auto run = [&](const v1::IpcBucket& b) {
    IpcStreamUpdate update(f.Options());
    absl::Status st = update.Add(b).status();
    f.sink->Abort();  // what the engine does with a failed update
    return st;
  };
  {  // unknown name, wrong shape, unknown dtype: every offender named
    v1::IpcBucket b;
    AddShm(&b, path, 0, 128);
    AddTensor(&b, norm, "float32", 0, 0)->set_name("model.nope.weight");
    AddTensor(&b, norm, "int8", 0, 0);
    EXPECT_THAT(run(b), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("int8")));
    v1::IpcBucket c;
    AddShm(&c, path, 0, 128);
    AddTensor(&c, norm, "float32", 0, 0)->set_name("model.nope.weight");
    EXPECT_THAT(run(c), StatusIs(absl::StatusCode::kInvalidArgument,
                                 HasSubstr("\"model.nope.weight\": unknown tensor")));
    v1::IpcBucket d;
    AddShm(&d, path, 0, 128);
    AddTensor(&d, norm, "float32", 0, 0)->mutable_shape()->set_dims(0, 31);
    AddShm(&d, path, 0, 124);
    d.mutable_tensors(0)->set_segment(1);
    EXPECT_THAT(run(d), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("shape [31]")));
  }
  {  // segment index out of range; bytes past the segment's end
    v1::IpcBucket b;
    AddShm(&b, path, 0, 128);
    AddTensor(&b, norm, "float32", 3, 0);
    EXPECT_THAT(run(b), StatusIs(absl::StatusCode::kInvalidArgument,
                                 HasSubstr("segment 3 does not exist")));
    v1::IpcBucket c;
    AddShm(&c, path, 0, 128);
    AddTensor(&c, norm, "float32", 0, 8);
    EXPECT_THAT(run(c), StatusIs(absl::StatusCode::kInvalidArgument,
                                 HasSubstr("lie past the end of segment 0")));
  }
  {  // missing file, file smaller than the segment, a path outside the dirs
    v1::IpcBucket b;
    AddShm(&b, f.dir + "/missing", 0, 128);
    AddTensor(&b, norm, "float32", 0, 0);
    EXPECT_THAT(run(b), StatusIs(absl::StatusCode::kInvalidArgument,
                                 HasSubstr("No such file")));
    v1::IpcBucket c;
    AddShm(&c, f.File("small", std::string(64, '\0')), 0, 128);
    AddTensor(&c, norm, "float32", 0, 0);
    EXPECT_THAT(run(c), StatusIs(absl::StatusCode::kInvalidArgument,
                                 HasSubstr("has 64 bytes; the segment needs [0, 128)")));
    v1::IpcBucket d;
    AddShm(&d, "/etc/hostname", 0, 1);
    AddTensor(&d, norm, "float32", 0, 0)->set_length_bytes(1);
    EXPECT_THAT(run(d), StatusIs(absl::StatusCode::kInvalidArgument,
                                 HasSubstr("not under the engine's shared-memory directories")));
    const int fd = open("/etc/hostname", O_RDONLY | O_CLOEXEC);
    v1::IpcBucket e;
    AddShm(&e, "/proc/" + std::to_string(getpid()) + "/fd/" + std::to_string(fd), 0, 128);
    AddTensor(&e, norm, "float32", 0, 0);
    EXPECT_THAT(run(e), StatusIs(absl::StatusCode::kInvalidArgument,
                                 HasSubstr("neither a memfd nor a file under")));
    close(fd);
  }
  {  // a piece before the tensor's first piece
    v1::IpcBucket b;
    AddShm(&b, path, 0, 128);
    v1::IpcTensor* t = AddTensor(&b, norm, "float32", 0, 0);
    t->set_tensor_offset_bytes(64);
    t->set_length_bytes(64);
    EXPECT_THAT(run(b), StatusIs(absl::StatusCode::kInvalidArgument,
                                 HasSubstr("before its first piece")));
  }
  {  // a CUDA handle on an engine without a CUDA reader
    v1::IpcBucket b;
    v1::IpcSegment* s = b.add_segments();
    s->set_cuda_ipc_handle(std::string(64, '\1'));
    s->set_size_bytes(128);
    AddTensor(&b, norm, "float32", 0, 0);
    EXPECT_THAT(run(b), StatusIs(absl::StatusCode::kFailedPrecondition,
                                 HasSubstr("cannot open one")));
  }
  EXPECT_EQ(Live(f, "model.norm.weight"), before);
}

TEST(IpcStreamUpdateTest, NanIsRejectedWhileCopyingNamingTheElement) {
  Fixture f;
  std::vector<float> values = Ramp(32, 1.f);
  values[17] = std::nanf("");
  const std::string path = f.File("nan", Floats(values));
  // In pieces: the index is the tensor's, not the piece's.
  IpcStreamUpdate update(f.Options());
  v1::IpcBucket b;
  AddShm(&b, path, 0, 128);
  v1::IpcTensor* first = AddTensor(&b, f.Info("model.norm.weight"), "float32", 0, 0);
  first->set_length_bytes(40);
  v1::IpcTensor* second = AddTensor(&b, f.Info("model.norm.weight"), "float32", 0, 40);
  second->set_tensor_offset_bytes(40);
  EXPECT_THAT(update.Add(b).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("tensor \"model.norm.weight\": element 17 (flat, row-major) is NaN")));
  f.sink->Abort();
  // Without the check the copy goes through; the sink's own scan (on by
  // default) still refuses it at Finish.
  IpcUpdateOptions unchecked = f.Options();
  unchecked.check_finite = false;
  IpcStreamUpdate later(unchecked);
  v1::IpcBucket c;
  AddShm(&c, path, 0, 128);
  AddTensor(&c, f.Info("model.norm.weight"), "float32", 0, 0);
  ASSERT_OK(later.Add(c).status());
  EXPECT_THAT(later.Finish(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("is NaN")));
}

TEST(IpcStreamUpdateTest, UnlinkedSharedFileThroughProcFd) {
  // What torch's shared CPU storages look like: an open, unlinked file in
  // the shared-memory directory, named by /proc/<pid>/fd/<n>.
  Fixture f;
  const std::vector<float> values = Ramp(32, 9.f);
  const std::string path = f.File("unlinked", Floats(values));
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(unlink(path.c_str()), 0);
  IpcStreamUpdate update(f.Options());
  v1::IpcBucket b;
  AddShm(&b, "/proc/" + std::to_string(getpid()) + "/fd/" + std::to_string(fd), 0, 128);
  AddTensor(&b, f.Info("model.norm.weight"), "float32", 0, 0);
  ASSERT_OK(update.Add(b).status());
  close(fd);
  ASSERT_OK(update.Finish());
  ASSERT_OK(f.sink->Commit());
  EXPECT_EQ(Live(f, "model.norm.weight"), values);
}

TEST(CudaIpcReaderTest, WithoutAGpuCreateIsUnavailableOrWorks) {
  absl::StatusOr<std::unique_ptr<CudaIpcReader>> r = CudaIpcReader::Create(0);
  if (r.ok()) {
    // A GPU machine: a garbage handle is refused, not a crash.
    EXPECT_THAT((*r)->CopyOut(std::string(64, '\0'), 0, 16, {}),
                StatusIs(absl::StatusCode::kFailedPrecondition));
    EXPECT_THAT((*r)->CopyOut("short", 0, 16, {}), StatusIs(absl::StatusCode::kInvalidArgument));
  } else {
    EXPECT_THAT(r, StatusIs(absl::StatusCode::kUnavailable, HasSubstr("CUDA IPC unavailable")));
  }
}

}  // namespace
}  // namespace weight_sync
}  // namespace colo
