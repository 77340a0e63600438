"""PyTorch tensors to colo.v1.WeightChunk messages (UpdateWeightsFromTensor).

Each tensor is sent as contiguous little-endian row-major bytes in chunks
that fit the engine's receive limit with their headers; every chunk repeats
the name, dtype and shape and carries its byte offset. The stream ends with a WeightCommit. bfloat16 is
sent as its raw 16-bit patterns (tensor.view(torch.int16)), since numpy has
no bfloat16. torch is imported lazily so controller-only users need not
have it.
"""

import sys
from typing import Any, Dict, Iterable, Iterator, Mapping, Optional, Tuple, Union

from colo.v1 import common_pb2, engine_pb2

# gRPC's default receive limit: what engines that do not advertise theirs
# (GetServerInfo.max_receive_message_bytes) accept.
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024

NamedTensors = Union[Mapping[str, Any], Iterable[Tuple[str, Any]]]


def _dtype_names() -> Dict[Any, str]:
    import torch

    return {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}


def tensor_bytes(tensor: Any) -> Tuple[str, memoryview]:
    """(dtype name, a memoryview of the tensor's bytes) of a CPU copy of
    `tensor` in row-major little-endian layout. TypeError for other dtypes."""
    import torch

    names = _dtype_names()
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor, got {type(tensor).__name__}")
    if tensor.dtype not in names:
        raise TypeError(f"dtype {tensor.dtype} is not supported "
                        "(float32, float16 or bfloat16)")
    t = tensor.detach().to("cpu").contiguous()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    array = t.numpy()
    if sys.byteorder != "little":
        array = array.byteswap()
    return names[tensor.dtype], memoryview(array.reshape(-1).view("uint8"))


def items(named_tensors: NamedTensors) -> Iterable[Tuple[str, Any]]:
    """(name, tensor) pairs of a mapping or of an iterable of pairs."""
    if isinstance(named_tensors, Mapping):
        return named_tensors.items()
    return named_tensors


def dtype_name(tensor: Any) -> str:
    """"float32", "float16" or "bfloat16"; TypeError otherwise."""
    import torch

    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor, got {type(tensor).__name__}")
    names = _dtype_names()
    if tensor.dtype not in names:
        raise TypeError(f"dtype {tensor.dtype} is not supported (float32, float16 or bfloat16)")
    return names[tensor.dtype]


# Bytes of a WeightChunk besides its data: the name, dtype, shape and offset
# fields plus protobuf framing, with room to spare (see chunk_bytes_for).
_CHUNK_FRAMING_BYTES = 64


def chunk_bytes_for(max_message_bytes: int, name: str, dtype: str, ndims: int) -> int:
    """The largest data size of one WeightChunk of tensor `name` that fits a
    gRPC message of `max_message_bytes` (the engine's advertised receive
    limit), headers included: each shape dimension takes at most 11 bytes,
    every other field its bytes plus framing."""
    header = len(name.encode("utf-8")) + len(dtype) + 11 * ndims + 11 + _CHUNK_FRAMING_BYTES
    return max(1, max_message_bytes - header)


def weight_chunks(named_tensors: NamedTensors, weight_version: str, flush_cache: bool = False,
                  chunk_bytes: Optional[int] = None,
                  max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> Iterator[Any]:
    """The WeightChunk stream for `named_tensors` (a mapping or (name, tensor)
    pairs), ending with the commit. Each message fits `max_message_bytes`
    headers included (chunk_bytes_for); `chunk_bytes` caps the data per
    message further. Tensors are converted one at a time, so at most one CPU
    copy is alive besides the caller's tensors."""
    if chunk_bytes is not None and chunk_bytes <= 0:
        raise ValueError(f"chunk_bytes must be > 0, got {chunk_bytes}")
    seen = set()
    for name, tensor in items(named_tensors):
        if name in seen:
            raise ValueError(f"tensor '{name}' given twice")
        seen.add(name)
        dtype, data = tensor_bytes(tensor)
        limit = chunk_bytes_for(max_message_bytes, name, dtype, len(tensor.shape))
        if chunk_bytes is not None:
            limit = min(limit, chunk_bytes)
        shape = common_pb2.TensorShape(dims=list(tensor.shape))
        offset = 0
        while True:
            piece = data[offset:offset + limit]
            yield engine_pb2.WeightChunk(tensor=engine_pb2.TensorChunk(
                name=name, dtype=dtype, shape=shape, offset_bytes=offset, data=piece.tobytes()))
            offset += len(piece)
            if offset >= len(data):
                break
    yield engine_pb2.WeightChunk(
        commit=engine_pb2.WeightCommit(weight_version=weight_version, flush_cache=flush_cache))


def tensor_from_bytes(data: bytes, dtype: str, shape: Iterable[int]) -> Any:
    """The inverse of tensor_bytes (used by tests and checkpoint readers)."""
    import torch

    dims = list(shape)
    if dtype == "bfloat16":
        t = torch.frombuffer(bytearray(data), dtype=torch.int16).view(torch.bfloat16)
    else:
        by_name = {v: k for k, v in _dtype_names().items()}
        if dtype not in by_name:
            raise ValueError(f"dtype '{dtype}' is not supported")
        t = torch.frombuffer(bytearray(data), dtype=by_name[dtype])
    return t.reshape(dims)
