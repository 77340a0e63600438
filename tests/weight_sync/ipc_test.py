"""UpdateWeightsFromIpc and large tensors over gRPC against real engines,
with a torch trainer process (this test, PyPI torch 2.15):

- a model of ~1.2 GiB (one 1 GiB embedding, tied): every tensor handed over
  with update_weights_from_ipc (two 256 MiB shared-memory buckets), engine
  checksums equal the trainer's; then the 1 GiB tensor alone through
  update_weights_from_tensors (chunks sized from the engine's advertised
  receive limit);
- on a small model, every bad input of the IPC path is a clear gRPC error
  with nothing applied: wrong name / shape / dtype, a missing or too small
  segment, offsets past the end, a path outside --ipc_shm_dirs, NaN, a CUDA
  handle on a CPU engine, a second concurrent update, an update while the
  weights are released, a stream without commit.
"""

import os
import subprocess
import threading
import unittest

import venv_python  # noqa: F401  (re-executes under the test venv's torch)

import crc32c
import torch
from colo.v1 import common_pb2, engine_pb2

from colo_client import (ColoError, EngineClient, FailedPreconditionError, InvalidArgumentError,
                         ipc_domain)
from colo_client.ipc import ShmBucket
from local_cluster import START_TIMEOUT_S, Process, binary

TMP = os.environ.get("TEST_TMPDIR", "/tmp")


def tiny_model(out_dir, *flags):
    subprocess.run([binary("engine/model/colo-tiny-model"), f"--out={out_dir}", "--arch=llama"]
                   + list(flags), check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return out_dir


def start_engine(name, model, *flags):
    p = Process(name, [binary("engine/server/colo-engine"), f"--model={model}", "--device=cpu",
                       "--kv_cache_bytes=16777216", f"--ipc_shm_dirs=/dev/shm,{TMP}"] + list(flags),
                TMP)
    with EngineClient(p.address) as c:
        c.wait_ready(START_TIMEOUT_S)
    return p


def crc_of(t):
    return crc32c.crc32c(t.detach().float().contiguous().numpy().tobytes())


def random_like(client, seed, dtype=torch.float32):
    """Random tensors of every weight of the engine's model (names and shapes
    from its checksums), in `dtype`."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for c in client._rpc.unary("GetWeightChecksums", engine_pb2.GetWeightChecksumsRequest()).checksums:
        out[c.name] = (torch.randn(list(c.shape.dims), generator=g) * 0.02).to(dtype)
    return out


class BigModelTest(unittest.TestCase):
    """1 GiB through IPC and through the gRPC stream."""

    @classmethod
    def setUpClass(cls):
        cls.model = tiny_model(os.path.join(TMP, "big"), "--layers=1", "--hidden=2048",
                               "--heads=16", "--kv_heads=4", "--intermediate=2048",
                               "--vocab=131072", "--tie_embeddings", "--seed=5")
        cls.engine = start_engine("big", cls.model)

    @classmethod
    def tearDownClass(cls):
        cls.engine.stop()

    def test_one_gib_by_ipc_then_a_one_gib_tensor_by_grpc(self):
        with EngineClient(self.engine.address, timeout=600) as c:
            info = c.get_server_info().proto
            self.assertEqual(info.ipc_domain, ipc_domain())
            self.assertGreaterEqual(info.max_receive_message_bytes, 4 << 20)
            tensors = random_like(c, seed=11)
            total = sum(t.numel() * 4 for t in tensors.values())
            self.assertGreater(total, 1 << 30)
            # An iterator of (name, tensor): the client does not need a dict.
            result = c.update_weights_from_ipc(iter(tensors.items()), "ipc-1",
                                               bucket_bytes=256 << 20)
            self.assertEqual(result.bytes, total)
            self.assertEqual(result.num_tensors, len(tensors))
            want = {n: crc_of(t) for n, t in tensors.items()}
            self.assertEqual(c.get_weight_checksums(), want)
            self.assertEqual(c.get_server_info().weight_version, "ipc-1")
            # No segment is left behind in /dev/shm.
            self.assertEqual([f for f in os.listdir("/dev/shm") if f.startswith(
                f"colo-ipc-{os.getpid()}-")], [])

            # The 1 GiB embedding alone over UpdateWeightsFromTensor.
            name = "model.embed_tokens.weight"
            embed = torch.randn(tensors[name].shape, generator=torch.Generator().manual_seed(12))
            self.assertEqual(embed.numel() * 4, 1 << 30)
            result = c.update_weights_from_tensors({name: embed}, "grpc-1")
            self.assertEqual(result.bytes, 1 << 30)
            want[name] = crc_of(embed)
            self.assertEqual(c.get_weight_checksums(), want)
            del tensors, embed


class IpcBadInputTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.model = tiny_model(os.path.join(TMP, "small"), "--layers=1", "--hidden=64",
                               "--heads=4", "--kv_heads=2", "--vocab=128", "--seed=1")
        cls.engine = start_engine("small", cls.model)

    @classmethod
    def tearDownClass(cls):
        cls.engine.stop()

    def setUp(self):
        self.client = EngineClient(self.engine.address, timeout=60)
        self.addCleanup(self.client.close)
        self.client.update_weights_from_disk(self.model, "disk")
        self.before = self.client.get_weight_checksums()

    def tearDown(self):
        # Whatever failed, nothing was applied.
        self.assertEqual(self.client.get_weight_checksums(), self.before)
        self.assertEqual(self.client.get_server_info().weight_version, "disk")

    def raw(self, messages):
        """Sends raw IpcUpdateRequests; returns the replies or raises."""
        call = self.client._rpc.stub_method("UpdateWeightsFromIpc")(
            iter(messages), timeout=60, metadata=self.client._rpc.metadata)
        return list(call)

    def bucket_file(self, data: bytes, name: str = "seg"):
        path = os.path.join(TMP, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def norm(self, path, size=256, offset=0, dtype="float32", shape=(64,), name="model.norm.weight",
             segment_size=None):
        return engine_pb2.IpcUpdateRequest(bucket=engine_pb2.IpcBucket(
            segments=[engine_pb2.IpcSegment(shm_path=path, offset_bytes=0,
                                            size_bytes=size if segment_size is None
                                            else segment_size)],
            tensors=[engine_pb2.IpcTensor(name=name, dtype=dtype,
                                          shape=common_pb2.TensorShape(dims=list(shape)),
                                          segment=0, offset_bytes=offset)]))

    def commit(self):
        return engine_pb2.IpcUpdateRequest(commit=engine_pb2.WeightCommit(weight_version="bad"))

    def expect(self, messages, code, text):
        with self.assertRaises(Exception) as cm:
            self.raw(messages)
        e = cm.exception
        self.assertEqual(e.code().name, code, e.details())
        self.assertIn(text, e.details())

    def test_bad_buckets(self):
        ok = self.bucket_file(b"\0" * 256)
        self.expect([self.norm(ok, name="model.nope"), self.commit()], "INVALID_ARGUMENT",
                    '"model.nope": unknown tensor')
        self.expect([self.norm(ok, shape=(63,), size=252), self.commit()], "INVALID_ARGUMENT",
                    "shape [63], model has [64]")
        self.expect([self.norm(ok, dtype="int8"), self.commit()], "INVALID_ARGUMENT", "int8")
        self.expect([self.norm(os.path.join(TMP, "missing")), self.commit()], "INVALID_ARGUMENT",
                    "No such file")
        small = self.bucket_file(b"\0" * 100, "small_seg")
        self.expect([self.norm(small), self.commit()], "INVALID_ARGUMENT",
                    "has 100 bytes; the segment needs [0, 256)")
        self.expect([self.norm(ok, offset=8), self.commit()], "INVALID_ARGUMENT",
                    "past the end of segment 0")
        self.expect([self.norm("/etc/hostname"), self.commit()],
                    "INVALID_ARGUMENT", "not under the engine's shared-memory directories")
        cuda = engine_pb2.IpcUpdateRequest(bucket=engine_pb2.IpcBucket(
            segments=[engine_pb2.IpcSegment(cuda_ipc_handle=b"\1" * 64, size_bytes=256)],
            tensors=self.norm(ok).bucket.tensors))
        self.expect([cuda, self.commit()], "FAILED_PRECONDITION", "CUDA IPC")
        # Data but no commit: nothing applied.
        self.expect([self.norm(ok)], "INVALID_ARGUMENT", "without a commit")

    def test_nan_through_the_client(self):
        tensors = random_like(self.client, seed=3)
        tensors["model.norm.weight"][5] = float("inf")
        with self.assertRaises(InvalidArgumentError) as cm:
            self.client.update_weights_from_ipc(tensors, "bad", bucket_bytes=1 << 16,
                                                shm_dir=TMP)
        self.assertIn('tensor "model.norm.weight": element 5 (flat, row-major) is +inf',
                      cm.exception.details)

    def test_while_released_and_concurrent(self):
        tensors = random_like(self.client, seed=4)
        self.client.release_tags(["weights"])
        try:
            with self.assertRaises(FailedPreconditionError) as cm:
                self.client.update_weights_from_ipc(tensors, "bad", shm_dir=TMP)
            self.assertIn("weights tag is released", cm.exception.details)
        finally:
            self.client.resume_tags(["weights"])
            # Resumed without a backup: restore the disk weights for tearDown.
            self.client.update_weights_from_disk(self.model, "disk")
        # A second update while an IPC update waits for its next bucket.
        acked = threading.Event()
        release = threading.Event()
        path = self.bucket_file(b"\0" * 256)

        def stream():
            yield self.norm(path)
            release.wait(30)  # ends without commit: the first update applies nothing

        errors = []

        def first():
            call = self.client._rpc.stub_method("UpdateWeightsFromIpc")(
                stream(), timeout=60, metadata=self.client._rpc.metadata)
            try:
                for reply in call:
                    if reply.HasField("ack"):
                        acked.set()
            except Exception as e:  # noqa: BLE001
                errors.append(e)

        t = threading.Thread(target=first)
        t.start()
        try:
            # The engine copied the bucket and holds the update slot until
            # the stream ends.
            self.assertTrue(acked.wait(30))
            with self.assertRaises(FailedPreconditionError) as cm:
                self.client.update_weights_from_disk(self.model, "second")
            self.assertIn("another weight update (UpdateWeightsFromIpc", cm.exception.details)
        finally:
            release.set()
            t.join(60)
        self.assertEqual(len(errors), 1)
        self.assertIn("without a commit", errors[0].details())

    def test_shm_bucket_cleans_up(self):
        b = ShmBucket(4096, TMP)
        self.assertTrue(os.path.exists(b.path))
        b.close()
        self.assertFalse(os.path.exists(b.path))


@unittest.skipUnless(torch.cuda.is_available(), "no CUDA device: the GPU path runs on a GPU machine")
class CudaIpcTest(unittest.TestCase):
    """CUDA tensors handed over by CUDA IPC handle (zero copy): the engine
    (any build: it opens handles through the driver) copies them into its
    staging, synchronizes and closes them before each acknowledgement."""

    @classmethod
    def setUpClass(cls):
        cls.model = tiny_model(os.path.join(TMP, "cuda_small"), "--layers=1", "--hidden=64",
                               "--heads=4", "--kv_heads=2", "--vocab=128", "--seed=2")
        cls.engine = start_engine("cuda_small", cls.model)

    @classmethod
    def tearDownClass(cls):
        cls.engine.stop()

    def test_cuda_tensors_float32_and_bfloat16(self):
        with EngineClient(self.engine.address, timeout=120) as c:
            for dtype, version in ((torch.float32, "cuda-f32"), (torch.bfloat16, "cuda-bf16")):
                cpu = random_like(c, seed=21, dtype=dtype)
                gpu = {n: t.cuda() for n, t in cpu.items()}
                result = c.update_weights_from_ipc(gpu, version, bucket_bytes=1 << 14)
                self.assertEqual(result.num_tensors, len(gpu))
                self.assertEqual(c.get_weight_checksums(), {n: crc_of(t) for n, t in cpu.items()})
                self.assertEqual(c.get_server_info().weight_version, version)


if __name__ == "__main__":
    unittest.main()
