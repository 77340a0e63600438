"""weight_chunks / tensor_bytes / the safetensors reader, without a server."""

import system_python  # noqa: F401  (first: re-exec under /usr/bin/python3)

import json
import os
import struct
import tempfile
import unittest

import torch

from colo_client import safetensors
from colo_client.tensors import tensor_bytes, tensor_from_bytes, weight_chunks


def reassemble(chunks):
    """{name: tensor} and the commit from a WeightChunk stream, checking
    that offsets are contiguous."""
    parts, meta, commit = {}, {}, None
    for c in chunks:
        if c.WhichOneof("kind") == "commit":
            commit = c.commit
            continue
        t = c.tensor
        buf = parts.setdefault(t.name, bytearray())
        assert t.offset_bytes == len(buf), (t.name, t.offset_bytes, len(buf))
        buf += t.data
        meta[t.name] = (t.dtype, list(t.shape.dims))
    return {n: tensor_from_bytes(bytes(b), *meta[n]) for n, b in parts.items()}, commit


class WeightChunksTest(unittest.TestCase):

    def test_round_trip_every_dtype_with_small_chunks(self):
        g = torch.Generator().manual_seed(3)
        tensors = {
            "a.f32": torch.randn(5, 7, generator=g),
            "b.f16": torch.randn(3, 4, 2, generator=g).half(),
            "c.bf16": torch.randn(9, generator=g).bfloat16(),
            "d.scalar": torch.tensor(1.5),
        }
        chunks = list(weight_chunks(tensors, "v7", flush_cache=True, chunk_bytes=10))
        self.assertEqual(chunks[-1].WhichOneof("kind"), "commit")
        self.assertTrue(all(len(c.tensor.data) <= 10 for c in chunks[:-1]))
        got, commit = reassemble(chunks)
        self.assertEqual(commit.weight_version, "v7")
        self.assertTrue(commit.flush_cache)
        self.assertEqual(list(got), list(tensors))
        for name, t in tensors.items():
            self.assertEqual(got[name].dtype, t.dtype, name)
            self.assertEqual(got[name].shape, t.shape, name)
            self.assertTrue(torch.equal(got[name], t), name)

    def test_bfloat16_is_sent_as_raw_16_bit_patterns(self):
        t = torch.tensor([1.0, -2.0], dtype=torch.bfloat16)
        dtype, data = tensor_bytes(t)
        self.assertEqual(dtype, "bfloat16")
        # bf16(1.0) = 0x3F80, bf16(-2.0) = 0xC000, little endian.
        self.assertEqual(data.tobytes(), bytes([0x80, 0x3F, 0x00, 0xC0]))

    def test_non_contiguous_and_pairs(self):
        t = torch.arange(12, dtype=torch.float32).reshape(3, 4).t()
        got, _ = reassemble(weight_chunks([("t", t)], "v1"))
        self.assertTrue(torch.equal(got["t"], t))

    def test_rejects_unsupported_dtype_and_duplicates(self):
        with self.assertRaises(TypeError):
            list(weight_chunks({"i": torch.zeros(2, dtype=torch.int32)}, "v"))
        with self.assertRaises(ValueError):
            list(weight_chunks([("x", torch.zeros(1)), ("x", torch.zeros(1))], "v"))
        with self.assertRaises(ValueError):
            list(weight_chunks({"x": torch.zeros(1)}, "v", chunk_bytes=0))

    def test_empty_tensor_still_sends_its_metadata(self):
        chunks = list(weight_chunks({"e": torch.zeros(0, 4)}, "v"))
        self.assertEqual(len(chunks), 2)
        self.assertEqual(list(chunks[0].tensor.shape.dims), [0, 4])


class SafetensorsTest(unittest.TestCase):

    def test_reads_what_the_format_says(self):
        a = torch.arange(6, dtype=torch.float32).reshape(2, 3)
        b = torch.tensor([0.5, 0.25], dtype=torch.bfloat16)
        blobs = [tensor_bytes(a)[1].tobytes(), tensor_bytes(b)[1].tobytes()]
        header = {
            "__metadata__": {"format": "pt"},
            "a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, len(blobs[0])]},
            "b": {"dtype": "BF16", "shape": [2],
                  "data_offsets": [len(blobs[0]), len(blobs[0]) + len(blobs[1])]},
        }
        raw = json.dumps(header).encode()
        with tempfile.TemporaryDirectory(dir=os.environ.get("TEST_TMPDIR")) as d:
            with open(os.path.join(d, "model.safetensors"), "wb") as f:
                f.write(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))
            got = safetensors.load_model_dir(d)
        self.assertTrue(torch.equal(got["a"], a))
        self.assertTrue(torch.equal(got["b"], b))
        self.assertEqual(got["b"].dtype, torch.bfloat16)


if __name__ == "__main__":
    unittest.main()
