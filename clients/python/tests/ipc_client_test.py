"""colo_client.ipc without an engine: CPU tensors packed into two reused
shared-memory buckets (pieces cover every tensor exactly, a bucket is reused
only after its acknowledgement, tensors that fit are not split), CUDA
buckets built from (fake) IPC handles, ipc_domain(), and the chunk sizing of
update_weights_from_tensors. The RPCs are tested in tests/weight_sync."""

import os
import tempfile
import unittest

import system_python  # noqa: F401  (re-executes under /usr/bin/python3)

import torch

from colo_client import ipc
from colo_client.tensors import chunk_bytes_for, weight_chunks


class CpuBucketsTest(unittest.TestCase):
    def test_pieces_cover_every_tensor_and_buckets_wait_for_acks(self):
        tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        buckets = [ipc.ShmBucket(64, tmp), ipc.ShmBucket(64, tmp)]
        tensors = {
            "a": torch.arange(4, dtype=torch.float32),        # 16 bytes
            "b": torch.arange(40, dtype=torch.float32),       # 160 bytes: split
            "c": torch.ones(8, dtype=torch.bfloat16) * 3,     # 16 bytes
            "empty": torch.zeros(0, 5, dtype=torch.float16),  # 0 bytes
        }
        waits = []
        got = {name: bytearray() for name in tensors}
        messages = 0
        for k, msg in enumerate(ipc.cpu_buckets(iter(tensors.items()), buckets, waits.append)):
            messages += 1
            self.assertEqual(len(msg.segments), 1)
            seg = msg.segments[0]
            self.assertEqual(seg.shm_path, buckets[k % 2].path)
            self.assertLessEqual(seg.size_bytes, 64)
            with open(seg.shm_path, "rb") as f:
                data = f.read()
            for t in msg.tensors:
                self.assertEqual(t.tensor_offset_bytes, len(got[t.name]))
                got[t.name] += data[t.offset_bytes:t.offset_bytes + t.length_bytes]
        for name, t in tensors.items():
            self.assertEqual(bytes(got[name]), t.contiguous().view(-1).view(torch.uint8)
                             .numpy().tobytes() if t.numel() else b"")
        # Bucket k >= 2 reuses bucket k - 2 only after waiting for its ack.
        self.assertEqual(waits, list(range(messages - 2)))
        for b in buckets:
            b.close()

    def test_a_tensor_that_fits_is_not_split(self):
        tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        buckets = [ipc.ShmBucket(100, tmp), ipc.ShmBucket(100, tmp)]
        tensors = [("x", torch.zeros(20)), ("y", torch.zeros(20))]  # 80 bytes each
        msgs = list(ipc.cpu_buckets(tensors, buckets, lambda k: None))
        self.assertEqual([[t.name for t in m.tensors] for m in msgs], [["x"], ["y"]])
        for b in buckets:
            b.close()

    def test_shared_tensors_are_named_where_they_are(self):
        tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        buckets = [ipc.ShmBucket(64, tmp), ipc.ShmBucket(64, tmp)]
        shared = torch.arange(30, dtype=torch.float32)
        shared.share_memory_()
        view = shared[10:20]  # a piece of a shared storage
        msgs = list(ipc.cpu_buckets([("s", view), ("p", torch.ones(4))], buckets,
                                    lambda k: None, bucket_bytes=1 << 20))
        packed = [m for m in msgs if m.segments[0].shm_path == buckets[0].path]
        zero_copy = [m for m in msgs if m.segments[0].shm_path.startswith("/proc/")]
        self.assertEqual(len(packed), 1)
        self.assertEqual(len(zero_copy), 1)
        seg, t = zero_copy[0].segments[0], zero_copy[0].tensors[0]
        self.assertEqual(seg.size_bytes, 120)
        self.assertEqual((t.name, t.offset_bytes, t.length_bytes), ("s", 40, 40))
        with open(seg.shm_path, "rb") as f:  # what the engine reads
            data = f.read()
        self.assertEqual(data[t.offset_bytes:t.offset_bytes + 40], view.numpy().tobytes())
        for b in buckets:
            b.close()

    def test_write_after_close_is_call_ended(self):
        tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        b = ipc.ShmBucket(16, tmp)
        b.close()
        with self.assertRaises(ipc.CallEnded):
            b.write(0, torch.zeros(4, dtype=torch.uint8))


class CudaBucketsTest(unittest.TestCase):
    def test_segments_are_shared_per_allocation(self):
        # Two tensors in one allocation (storage) and one in another.
        base = torch.zeros(32)
        tensors = {"p": base[:8], "q": base[8:16], "r": torch.zeros(4, dtype=torch.bfloat16)}

        def share(t):
            if t.storage().data_ptr() == base.storage().data_ptr():
                return b"H" * 64, 512, 128, t.storage_offset() * t.element_size()
            return b"G" * 64, 0, 8, 0

        msgs = list(ipc.cuda_buckets(tensors, bucket_bytes=1 << 20, share=share))
        self.assertEqual(len(msgs), 1)
        m = msgs[0]
        self.assertEqual([s.cuda_ipc_handle for s in m.segments], [b"H" * 64, b"G" * 64])
        self.assertEqual([(s.offset_bytes, s.size_bytes) for s in m.segments], [(512, 128), (0, 8)])
        self.assertEqual([(t.name, t.segment, t.offset_bytes, t.length_bytes) for t in m.tensors],
                         [("p", 0, 0, 32), ("q", 0, 32, 32), ("r", 1, 0, 8)])
        self.assertEqual(m.tensors[2].dtype, "bfloat16")

    def test_buckets_split_at_bucket_bytes_and_non_contiguous_is_copied(self):
        keep = []
        t = torch.zeros(4, 4).t()  # not contiguous
        msgs = list(ipc.cuda_buckets([("a", torch.zeros(16)), ("b", t)], bucket_bytes=64,
                                     share=lambda x: (bytes([len(keep)]) * 64, 0, 64, 0),
                                     keep=keep))
        self.assertEqual([[x.name for x in m.tensors] for m in msgs], [["a"], ["b"]])
        self.assertEqual(len(keep), 1)
        self.assertTrue(keep[0].is_contiguous())


class HelpersTest(unittest.TestCase):
    def test_ipc_domain_names_boot_and_namespace(self):
        d = ipc.ipc_domain()
        with open("/proc/sys/kernel/random/boot_id") as f:
            self.assertTrue(d.startswith(f.read().strip() + "/ipc:["), d)

    def test_chunks_fit_the_limit_with_their_headers(self):
        limit = 1 << 16
        name = "model.layers.0.mlp.down_proj.weight"
        t = torch.arange(3 * limit, dtype=torch.float32).reshape(3, -1)
        chunks = list(weight_chunks({name: t}, "v", max_message_bytes=limit))
        self.assertGreater(len(chunks), 10)
        for c in chunks:
            self.assertLessEqual(c.ByteSize(), limit)
        self.assertLess(chunk_bytes_for(limit, name, "float32", 2), limit)
        self.assertGreater(chunk_bytes_for(limit, name, "float32", 2), limit - 256)


if __name__ == "__main__":
    unittest.main()
