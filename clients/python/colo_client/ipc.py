"""Same-device weight handoff (RolloutEngine.UpdateWeightsFromIpc): the
trainer shares its tensors by handle instead of sending their bytes.

CPU tensors already in shared memory (tensor.share_memory_(), e.g. a CPU
trainer that keeps its parameters shared) are handed over where they are:
the engine reads them through /proc/<pid>/fd/<n> of their storage, one copy
in all. Other CPU tensors go through two POSIX shared-memory buckets (files
under /dev/shm, `bucket_bytes` each, used alternately): while the engine
copies bucket k the trainer fills bucket k+1, and a bucket is refilled only
after the engine acknowledged it, so a model of any size needs 2 x
bucket_bytes of extra memory. Tensors larger than a bucket go in pieces.

CUDA tensors are shared zero-copy: each bucket names the CUDA IPC handles
of the tensors' storages (torch's storage._share_cuda_(): the 64-byte
cudaIpcMemHandle_t and the storage's offset inside its allocation); the
engine opens them, copies on its own stream, synchronizes and closes them
before it acknowledges. The trainer's current CUDA stream is synchronized
before the first bucket is sent, and the tensors must stay alive and
unchanged until update_weights_from_ipc returns.

torch is imported lazily.
"""

import mmap
import os
import threading
import uuid
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

from colo.v1 import common_pb2, engine_pb2

from colo_client.tensors import NamedTensors, dtype_name, items

DEFAULT_BUCKET_BYTES = 256 * 1024 * 1024
DEFAULT_SHM_DIR = "/dev/shm"


def ipc_domain() -> str:
    """Where this process can share memory: "<kernel boot id>/<IPC
    namespace>", the string engines report as GetServerInfo.ipc_domain.
    Equal strings mean UpdateWeightsFromIpc works between the two."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip() or "unknown-boot"
    except OSError:
        boot = "unknown-boot"
    try:
        ns = os.readlink("/proc/self/ns/ipc")
    except OSError:
        ns = "ipc:[unknown]"
    return f"{boot}/{ns}"


def _shape(tensor: Any) -> Any:
    return common_pb2.TensorShape(dims=list(tensor.shape))


class CallEnded(RuntimeError):
    """The UpdateWeightsFromIpc call ended while buckets were being built."""


class ShmBucket:
    """One shared-memory file of `size` bytes, mapped read-write; removed on
    close(). write() and close() exclude each other, so a bucket being
    filled by gRPC's request thread is never unmapped under it."""

    def __init__(self, size: int, directory: str = DEFAULT_SHM_DIR):
        import torch

        self._lock = threading.Lock()
        self._closed = False
        self.size = size
        self.path = os.path.join(directory, f"colo-ipc-{os.getpid()}-{uuid.uuid4().hex[:12]}")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, size)
            self._map = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self.view = torch.frombuffer(self._map, dtype=torch.uint8)

    def write(self, offset: int, data: Any) -> None:
        """Copies the uint8 tensor `data` to `offset`; CallEnded once closed."""
        with self._lock:
            if self._closed:
                raise CallEnded("the bucket was closed (the call ended)")
            self.view[offset:offset + data.numel()].copy_(data)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self.view = None
            try:
                self._map.close()
            except BufferError:
                pass  # a view is still alive; the file is removed anyway
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def _byte_view(tensor: Any) -> Any:
    """A flat uint8 view of a contiguous CPU tensor (any of the 3 dtypes)."""
    import torch

    t = tensor.detach()
    if t.device.type != "cpu":
        raise ValueError("CPU path got a tensor on " + str(t.device))
    t = t.contiguous().reshape(-1)
    return t.view(torch.uint8) if t.numel() > 0 else torch.empty(0, dtype=torch.uint8)


def shared_segment(tensor: Any) -> Optional[Tuple[str, int, int]]:
    """(path, storage bytes, tensor byte offset) of a CPU tensor whose
    storage already lives in shared memory (tensor.share_memory_(), torch's
    default "file_descriptor" strategy): /proc/<this pid>/fd/<n> of the
    storage's open shm file, which the engine reads directly. None when the
    tensor is not shared."""
    if not tensor.is_shared():
        return None
    storage = tensor.untyped_storage() if hasattr(tensor, "untyped_storage") \
        else tensor.storage().untyped()
    try:
        fd, size = storage._share_fd_cpu_()[:2]
    except (RuntimeError, AttributeError):
        return None  # e.g. the "file_system" strategy: pack it instead
    return (f"/proc/{os.getpid()}/fd/{fd}", int(size),
            tensor.storage_offset() * tensor.element_size())


def cpu_buckets(named_tensors: NamedTensors, buckets: List[ShmBucket],
                wait_reusable: Callable[[int], None], zero_copy: bool = True,
                bucket_bytes: Optional[int] = None) -> Iterator[Any]:
    """IpcBucket messages for CPU tensors. Tensors already in shared memory
    (zero_copy) are named where they are, grouped up to `bucket_bytes` per
    message; the others are packed into `buckets` (used in turn). Before a
    bucket is refilled, wait_reusable(m) is called with the index of the
    message that used it last: it must return once the engine acknowledged
    that message."""
    bucket_bytes = bucket_bytes or buckets[0].size
    seen = set()
    index = 0          # messages yielded so far
    slot_index = 0     # packed buckets used so far
    last_use = [-1] * len(buckets)
    slot = buckets[0]
    used = 0
    pending: List[Any] = []
    shared_segments: List[Any] = []
    shared_by_path: Dict[str, int] = {}
    shared_tensors: List[Any] = []
    shared_bytes = 0

    def flush_packed() -> Any:
        nonlocal index, used, pending
        last_use[(slot_index - 1) % len(buckets)] = index
        msg = engine_pb2.IpcBucket(
            segments=[engine_pb2.IpcSegment(shm_path=slot.path, offset_bytes=0, size_bytes=used)],
            tensors=pending)
        index += 1
        used = 0
        pending = []
        return msg

    def flush_shared() -> Any:
        nonlocal index, shared_segments, shared_by_path, shared_tensors, shared_bytes
        msg = engine_pb2.IpcBucket(segments=shared_segments, tensors=shared_tensors)
        index += 1
        shared_segments, shared_by_path, shared_tensors, shared_bytes = [], {}, [], 0
        return msg

    def claim() -> None:
        nonlocal slot, slot_index
        i = slot_index % len(buckets)
        if last_use[i] >= 0:
            wait_reusable(last_use[i])
        slot = buckets[i]
        slot_index += 1

    claimed = False
    for name, tensor in items(named_tensors):
        if name in seen:
            raise ValueError(f"tensor '{name}' given twice")
        seen.add(name)
        dtype = dtype_name(tensor)
        shared = shared_segment(tensor.detach()) if zero_copy and tensor.is_contiguous() else None
        if shared is not None:
            path, size, offset = shared
            if path not in shared_by_path:
                shared_by_path[path] = len(shared_segments)
                shared_segments.append(engine_pb2.IpcSegment(shm_path=path, offset_bytes=0,
                                                             size_bytes=size))
            nbytes = tensor.numel() * tensor.element_size()
            shared_tensors.append(engine_pb2.IpcTensor(
                name=name, dtype=dtype, shape=_shape(tensor), segment=shared_by_path[path],
                offset_bytes=offset, length_bytes=nbytes))
            shared_bytes += nbytes
            if shared_bytes >= bucket_bytes:
                yield flush_shared()
            continue
        if not claimed:
            claim()
            claimed = True
        data = _byte_view(tensor)
        total = int(data.numel())
        offset = 0
        while True:
            room = slot.size - used
            remaining = total - offset
            # A tensor that fits a bucket is not split across two.
            if room == 0 or (offset == 0 and pending and room < remaining <= slot.size):
                yield flush_packed()
                claim()
                continue
            n = min(room, remaining)
            if n > 0:
                slot.write(used, data[offset:offset + n])
            pending.append(engine_pb2.IpcTensor(
                name=name, dtype=dtype, shape=_shape(tensor), segment=0, offset_bytes=used,
                tensor_offset_bytes=offset, length_bytes=n))
            used += n
            offset += n
            if offset >= total:
                break
    if pending:
        yield flush_packed()
    if shared_tensors:
        yield flush_shared()


def share_cuda(tensor: Any) -> Tuple[bytes, int, int, int]:
    """(handle, storage offset in its allocation, storage bytes, tensor byte
    offset inside the storage) of a contiguous CUDA tensor, from torch's
    storage._share_cuda_()."""
    if hasattr(tensor, "untyped_storage"):
        storage = tensor.untyped_storage()
    else:  # torch < 2.0
        storage = tensor.storage()._untyped()
    shared = storage._share_cuda_()
    # (device, handle, size_bytes, offset_bytes, ref_counter_handle,
    #  ref_counter_offset, event_handle, event_sync_required)
    handle, size_bytes, offset_bytes = shared[1], int(shared[2]), int(shared[3])
    return bytes(handle), offset_bytes, size_bytes, tensor.storage_offset() * tensor.element_size()


def cuda_buckets(named_tensors: NamedTensors, bucket_bytes: int,
                 share: Callable[[Any], Tuple[bytes, int, int, int]] = share_cuda,
                 keep: Optional[List[Any]] = None) -> Iterator[Any]:
    """IpcBucket messages naming CUDA IPC handles (zero copy); a bucket
    groups tensors up to `bucket_bytes`. Tensors that are not contiguous are
    made contiguous first (those copies are kept alive in `keep`)."""
    seen = set()
    segments: List[Any] = []
    by_handle: Dict[bytes, int] = {}
    tensors: List[Any] = []
    size = 0
    for name, tensor in items(named_tensors):
        if name in seen:
            raise ValueError(f"tensor '{name}' given twice")
        seen.add(name)
        dtype = dtype_name(tensor)
        t = tensor.detach()
        if not t.is_contiguous():
            t = t.contiguous()
            if keep is not None:
                keep.append(t)
        handle, storage_offset, storage_bytes, offset = share(t)
        if handle not in by_handle:
            by_handle[handle] = len(segments)
            segments.append(engine_pb2.IpcSegment(cuda_ipc_handle=handle,
                                                  offset_bytes=storage_offset,
                                                  size_bytes=storage_bytes))
        nbytes = t.numel() * t.element_size()
        tensors.append(engine_pb2.IpcTensor(name=name, dtype=dtype, shape=_shape(tensor),
                                            segment=by_handle[handle], offset_bytes=offset,
                                            length_bytes=nbytes))
        size += nbytes
        if size >= bucket_bytes:
            yield engine_pb2.IpcBucket(segments=segments, tensors=tensors)
            segments, by_handle, tensors, size = [], {}, [], 0
    if tensors:
        yield engine_pb2.IpcBucket(segments=segments, tensors=tensors)


class AckTracker:
    """Counts the engine's bucket acknowledgements; wait(k) blocks until
    bucket k was acknowledged or the call failed (then it raises)."""

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._acked = 0
        self._failed: Optional[BaseException] = None

    def ack(self, bucket: int) -> None:
        with self._cv:
            self._acked = max(self._acked, bucket + 1)
            self._cv.notify_all()

    def fail(self, error: BaseException) -> None:
        with self._cv:
            self._failed = error
            self._cv.notify_all()

    def wait(self, bucket: int) -> None:
        with self._cv:
            while self._acked <= bucket and self._failed is None:
                self._cv.wait()
            if self._acked <= bucket:
                raise CallEnded("the UpdateWeightsFromIpc call ended") from self._failed


def requests(buckets: Iterable[Any], weight_version: str, flush_cache: bool,
             on_error: Callable[[BaseException], None]) -> Iterator[Any]:
    """The request stream: every bucket, then the commit. A failure while
    building buckets is reported with on_error and ends the stream without a
    commit (the engine then applies nothing)."""
    try:
        for b in buckets:
            yield engine_pb2.IpcUpdateRequest(bucket=b)
    except Exception as e:  # noqa: BLE001 - re-raised by the caller
        # (GeneratorExit, when gRPC closes the stream early, is not caught.)
        on_error(e)
        return
    yield engine_pb2.IpcUpdateRequest(commit=engine_pb2.WeightCommit(
        weight_version=weight_version, flush_cache=flush_cache))


def is_cuda(named_tensors: NamedTensors) -> Tuple[bool, NamedTensors]:
    """Whether the tensors are on a GPU (judged by the first one), and the
    tensors again (an iterator's first item is put back)."""
    if isinstance(named_tensors, dict) or hasattr(named_tensors, "items"):
        values = list(named_tensors.values())
        return bool(values) and values[0].device.type == "cuda", named_tensors
    it = iter(named_tensors)
    try:
        first = next(it)
    except StopIteration:
        return False, []

    def chain() -> Iterator[Tuple[str, Any]]:
        yield first
        yield from it

    return first[1].device.type == "cuda", chain()
