"""A minimal reader of .safetensors files (float32/float16/bfloat16) into
torch tensors, so trainers and examples can start from a colo model dir
without the `safetensors` package. Format: 8-byte little-endian header
length, a JSON header {name: {dtype, shape, data_offsets}}, then the data."""

import glob
import json
import os
import struct
from typing import Any, Dict

from colo_client.tensors import tensor_from_bytes

_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}


def load_file(path: str) -> Dict[str, Any]:
    """{name: tensor} of one .safetensors file (file order)."""
    with open(path, "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_len))
        base = 8 + header_len
        out: Dict[str, Any] = {}
        for name, meta in header.items():
            if name == "__metadata__":
                continue
            if meta["dtype"] not in _DTYPES:
                raise ValueError(f"{path}: tensor '{name}' has dtype {meta['dtype']} "
                                 f"(supported: {', '.join(_DTYPES)})")
            begin, end = meta["data_offsets"]
            f.seek(base + begin)
            out[name] = tensor_from_bytes(f.read(end - begin), _DTYPES[meta["dtype"]],
                                          meta["shape"])
        return out


def load_model_dir(model_dir: str) -> Dict[str, Any]:
    """{name: tensor} of every *.safetensors file in a model directory."""
    files = sorted(glob.glob(os.path.join(model_dir, "*.safetensors")))
    if not files:
        raise FileNotFoundError(f"no *.safetensors in {model_dir}")
    out: Dict[str, Any] = {}
    for path in files:
        out.update(load_file(path))
    return out
