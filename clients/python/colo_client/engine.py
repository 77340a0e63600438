"""EngineClient: generation, sessions, pause/continue, tag release/resume
and weight updates on one colo-engine.

    eng = EngineClient("127.0.0.1:30000")
    for chunk in eng.generate([1, 2, 3], max_new_tokens=16):
        print(chunk.output_ids, chunk.finish_reason)
    eng.update_weights_from_tensors(model.state_dict(), weight_version="step-7")

Every call raises a ColoError subclass on failure. Thread-safe.
"""

from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence

import grpc
from colo.v1 import common_pb2, engine_pb2, engine_pb2_grpc

from colo_client import _rpc, ipc
from colo_client.errors import from_rpc_error
from colo_client.results import (GenerateChunk, GenerateResult, ServerInfo,
                                 UpdateWeightsResult)
from colo_client.tensors import DEFAULT_MAX_MESSAGE_BYTES, NamedTensors, weight_chunks

DEFAULT_TIMEOUT_S = 60.0

TAGS = ("weights", "kv_cache", "cuda_graph")


class EngineClient:
    """Client of colo.v1.RolloutEngine."""

    def __init__(self, address: str, token: Optional[str] = None,
                 timeout: float = DEFAULT_TIMEOUT_S, token_file: Optional[str] = None,
                 root_certificates: Optional[bytes] = None):
        """`address` is host:port; `token`/`token_file` the bearer token of
        the engine's --auth_token_file; `timeout` the default deadline in
        seconds of unary calls (generate streams take their own)."""
        self.address = address
        self._max_message_bytes: Optional[int] = None  # the engine's, fetched once
        self._channel = _rpc.make_channel(address, root_certificates)
        self._rpc = _rpc.RpcHelper("RolloutEngine",
                                   engine_pb2_grpc.RolloutEngineStub(self._channel),
                                   _rpc.read_token(token, token_file), timeout)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "EngineClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def wait_ready(self, timeout: float = 30.0, service: str = "") -> None:
        """Blocks until the health service `service` is SERVING ("" is the
        process; "colo.generate" the readiness the Kubernetes probes use)."""
        _rpc.wait_until_serving(self._channel, service, timeout)

    def health(self, service: str = "", timeout: float = 5.0) -> str:
        """"SERVING", "NOT_SERVING", ... of the engine's health service."""
        return _rpc.health_check(self._channel, service, timeout)

    # --- generation ------------------------------------------------------------

    def generate(self, input_ids: Sequence[int], max_new_tokens: int = 16,
                 temperature: float = 0.0, top_p: float = 0.0, top_k: int = 0,
                 seed: Optional[int] = None, stop_token_ids: Sequence[int] = (),
                 ignore_eos: bool = False, return_logprob: bool = False, rid: str = "",
                 session_id: str = "", fail_if_unavailable: bool = False,
                 timeout: Optional[float] = None) -> Iterator[GenerateChunk]:
        """Streams the new tokens of one request (temperature 0 = greedy).
        The last chunk carries finish_reason. Stopping the iteration cancels
        the request. `timeout` bounds the whole stream (None: no deadline)."""
        params = engine_pb2.SamplingParams(
            max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, top_k=top_k,
            stop_token_ids=list(stop_token_ids), ignore_eos=ignore_eos)
        if seed is not None:
            params.seed = seed
        request = engine_pb2.GenerateRequest(
            rid=rid, input_ids=list(input_ids), sampling_params=params,
            return_logprob=return_logprob, session_id=session_id,
            fail_if_unavailable=fail_if_unavailable)
        for response in self._rpc.stream_out("Generate", request, timeout):
            yield GenerateChunk.from_proto(response)

    def generate_tokens(self, input_ids: Sequence[int], **kwargs: Any) -> GenerateResult:
        """generate() collected: every output token and the final fields."""
        ids: List[int] = []
        logprobs: List[float] = []
        last: Optional[GenerateChunk] = None
        for chunk in self.generate(input_ids, **kwargs):
            ids.extend(chunk.output_ids)
            logprobs.extend(chunk.output_logprobs)
            last = chunk
        if last is None:
            return GenerateResult(rid="", output_ids=ids, output_logprobs=logprobs,
                                  finish_reason="", prompt_tokens=0, cached_tokens=0,
                                  weight_version="")
        return GenerateResult(rid=last.rid, output_ids=ids, output_logprobs=logprobs,
                              finish_reason=last.finish_reason, prompt_tokens=last.prompt_tokens,
                              cached_tokens=last.cached_tokens, weight_version=last.weight_version)

    def abort(self, rid: str) -> bool:
        """Aborts one request; True when it was found."""
        return self._rpc.unary("Abort", engine_pb2.AbortRequest(rid=rid)).found

    # --- sessions ----------------------------------------------------------------

    def open_session(self, capacity_tokens: int, session_id: str = "") -> str:
        """Opens a streaming session (KV kept between turns); returns its id."""
        reply = self._rpc.unary("OpenSession", engine_pb2.OpenSessionRequest(
            session_id=session_id, capacity_tokens=capacity_tokens))
        return reply.session_id

    def close_session(self, session_id: str) -> int:
        """Closes a session; returns the tokens it freed."""
        reply = self._rpc.unary("CloseSession",
                                engine_pb2.CloseSessionRequest(session_id=session_id))
        return reply.freed_tokens

    # --- pause / memory --------------------------------------------------------------

    def pause(self, mode: str = "retract") -> Any:
        """PauseGeneration (mode: abort, retract, in_place); returns the reply
        (num_aborted, num_retracted, num_kept)."""
        return self._rpc.unary("PauseGeneration", engine_pb2.PauseGenerationRequest(mode=mode))

    def continue_generation(self, torch_empty_cache: bool = True) -> Any:
        """ContinueGeneration; the reply has reserved_bytes_before/after."""
        return self._rpc.unary("ContinueGeneration", engine_pb2.ContinueGenerationRequest(
            torch_empty_cache=torch_empty_cache))

    def release_tags(self, tags: Iterable[str] = ()) -> Any:
        """Frees the physical memory of `tags` (empty: all); the reply has
        per-tag bytes (see results.tag_bytes) and device free before/after."""
        return self._rpc.unary("ReleaseTags", engine_pb2.ReleaseTagsRequest(tags=list(tags)))

    def resume_tags(self, tags: Iterable[str] = ()) -> Any:
        """Maps memory back for `tags` (empty: all)."""
        return self._rpc.unary("ResumeTags", engine_pb2.ResumeTagsRequest(tags=list(tags)))

    def flush_cache(self) -> int:
        """Drops the prefix cache; returns the pages freed."""
        return self._rpc.unary("FlushCache", engine_pb2.FlushCacheRequest()).freed_pages

    def get_memory_info(self) -> Any:
        """colo.v1.MemoryInfo: per-tag bytes, caching allocator, device."""
        return self._rpc.unary("GetMemoryInfo", engine_pb2.GetMemoryInfoRequest()).memory

    def get_server_info(self) -> ServerInfo:
        return ServerInfo.from_proto(
            self._rpc.unary("GetServerInfo", engine_pb2.GetServerInfoRequest()))

    # --- weights --------------------------------------------------------------------

    def max_receive_message_bytes(self) -> int:
        """The largest gRPC message the engine accepts (GetServerInfo; gRPC's
        default 4 MiB for engines that do not say), fetched once."""
        if self._max_message_bytes is None:
            reply = self._rpc.unary("GetServerInfo", engine_pb2.GetServerInfoRequest())
            self._max_message_bytes = (reply.max_receive_message_bytes
                                       or DEFAULT_MAX_MESSAGE_BYTES)
        return self._max_message_bytes

    def update_weights_from_tensors(self, named_tensors: NamedTensors, weight_version: str,
                                    flush_cache: bool = False,
                                    chunk_bytes: Optional[int] = None,
                                    timeout: Optional[float] = None) -> UpdateWeightsResult:
        """Streams PyTorch tensors (float32/float16/bfloat16; a mapping such
        as a state_dict, or (name, tensor) pairs) to the engine in chunks
        that fit its receive limit (max_receive_message_bytes, headers
        included; `chunk_bytes` caps them further), then commits
        `weight_version`. All-or-nothing on the engine: a failed update
        leaves the previous weights serving."""
        limit = min(self.max_receive_message_bytes(), _rpc.MAX_MESSAGE_BYTES)
        chunks = weight_chunks(named_tensors, weight_version, flush_cache, chunk_bytes,
                               max_message_bytes=limit)
        return UpdateWeightsResult.from_proto(
            self._rpc.stream_in("UpdateWeightsFromTensor", chunks, timeout))

    def update_weights_from_ipc(self, named_tensors: NamedTensors, weight_version: str,
                                flush_cache: bool = False,
                                bucket_bytes: int = ipc.DEFAULT_BUCKET_BYTES,
                                shm_dir: str = ipc.DEFAULT_SHM_DIR,
                                timeout: Optional[float] = None) -> UpdateWeightsResult:
        """Hands tensors to an engine on this machine by handle
        (UpdateWeightsFromIpc; see colo_client.ipc): CPU tensors already in
        shared memory (tensor.share_memory_()) zero-copy where they are,
        other CPU tensors through two shared-memory buckets of
        `bucket_bytes` in `shm_dir` (a directory the engine allows,
        --ipc_shm_dirs), CUDA tensors zero-copy by CUDA IPC handle. `named_tensors` is a mapping or an iterator of (name,
        tensor) pairs, all on the CPU or all on GPUs. Commits
        `weight_version` all-or-nothing; the engine holds nothing of this
        process's memory once this returns."""
        if bucket_bytes <= 0:
            raise ValueError(f"bucket_bytes must be > 0, got {bucket_bytes}")
        on_gpu, named_tensors = ipc.is_cuda(named_tensors)
        tracker = ipc.AckTracker()
        build_error: List[BaseException] = []
        shm: List[ipc.ShmBucket] = []
        keep: List[Any] = []
        if on_gpu:
            import torch

            torch.cuda.current_stream().synchronize()
            buckets: Iterator[Any] = ipc.cuda_buckets(named_tensors, bucket_bytes, keep=keep)
        else:
            buckets = ipc.cpu_buckets(named_tensors, shm, tracker.wait, bucket_bytes=bucket_bytes)

        def on_error(e: BaseException) -> None:
            if not isinstance(e, ipc.CallEnded):  # the call's own error wins
                build_error.append(e)

        done = None
        try:
            if not on_gpu:
                shm.extend(ipc.ShmBucket(bucket_bytes, shm_dir) for _ in range(2))
            call = self._rpc.stub_method("UpdateWeightsFromIpc")(
                ipc.requests(buckets, weight_version, flush_cache, on_error),
                timeout=timeout, metadata=self._rpc.metadata)
            try:
                for reply in call:
                    if reply.HasField("ack"):
                        tracker.ack(reply.ack.bucket)
                    elif reply.HasField("done"):
                        done = reply.done
            except grpc.RpcError as e:
                tracker.fail(e)
                if build_error:
                    raise build_error[0] from None
                raise from_rpc_error(e, "RolloutEngine/UpdateWeightsFromIpc") from None
            finally:
                tracker.fail(ipc.CallEnded("the call finished"))
        finally:
            for b in shm:
                b.close()
            del keep[:]
        if build_error:
            raise build_error[0]
        if done is None:
            raise RuntimeError("UpdateWeightsFromIpc ended without its final reply")
        return UpdateWeightsResult.from_proto(done)

    def update_weights_from_disk(self, model_path: str, weight_version: str,
                                 flush_cache: bool = False,
                                 timeout: Optional[float] = None) -> UpdateWeightsResult:
        """Loads a Hugging Face layout checkpoint from the engine's disk."""
        request = engine_pb2.UpdateWeightsFromDiskRequest(
            model_path=model_path, weight_version=weight_version, flush_cache=flush_cache)
        return UpdateWeightsResult.from_proto(
            self._rpc.unary("UpdateWeightsFromDisk", request, timeout))

    def init_weights_update_group(self, master_address: str, master_port: int,
                                  rank_offset: int, world_size: int, group_name: str,
                                  backend: str = "gloo", rendezvous: str = "colo",
                                  torch_group: str = "world", init_timeout_ms: int = 0,
                                  transfer_timeout_ms: int = 0,
                                  timeout: Optional[float] = None) -> int:
        """Joins the trainer's collective group; returns this engine's rank.
        rendezvous="torch" joins a group a stock torch.distributed trainer
        formed with init_process_group(init_method=f"tcp://{master_address}:
        {master_port}") (torch_group: "world", "new_group" or "custom" for
        SGLang's init_custom_process_group pattern, see engine.proto); the
        trainer then broadcasts each tensor of update_weights_from_distributed
        with plain dist.broadcast, in order. The call blocks until the group
        is formed, so call it from a thread while the trainer forms it."""
        request = engine_pb2.InitWeightsUpdateGroupRequest(
            master_address=master_address, master_port=master_port, rank_offset=rank_offset,
            world_size=world_size, group_name=group_name, backend=backend,
            rendezvous=rendezvous, torch_group=torch_group, init_timeout_ms=init_timeout_ms,
            transfer_timeout_ms=transfer_timeout_ms)
        return self._rpc.unary("InitWeightsUpdateGroup", request, timeout).rank

    def destroy_weights_update_group(self, group_name: str) -> None:
        self._rpc.unary("DestroyWeightsUpdateGroup",
                        engine_pb2.DestroyWeightsUpdateGroupRequest(group_name=group_name))

    def list_weights_update_groups(self) -> List[Any]:
        """colo.v1.WeightsUpdateGroupInfo of every group the engine holds
        (group_name, rendezvous, rank, world_size, state: creating / ready /
        updating / broken, updates, last_error)."""
        return list(self._rpc.unary("ListWeightsUpdateGroups",
                                    engine_pb2.ListWeightsUpdateGroupsRequest()).groups)

    def update_weights_from_distributed(self, names: Sequence[str], dtypes: Sequence[str],
                                        shapes: Sequence[Sequence[int]], group_name: str,
                                        weight_version: str, flush_cache: bool = False,
                                        bucket_bytes: int = 0,
                                        timeout: Optional[float] = None) -> UpdateWeightsResult:
        """Receives tensors the trainer broadcasts over the group. On a torch
        group (rendezvous="torch") the trainer runs plain
        dist.broadcast(tensor, src=0, group=...) once per name, in order,
        while this call runs (call it from a thread first). On a colo group
        rank 0 runs colo's update protocol with the same names, dtypes,
        shapes and bucket size (weight_sync/update_protocol.h), as
        `colo-weight-sender` and the C++ WeightSender do."""
        request = engine_pb2.UpdateWeightsFromDistributedRequest(
            names=list(names), dtypes=list(dtypes),
            shapes=[common_pb2.TensorShape(dims=list(s)) for s in shapes],
            group_name=group_name, flush_cache=flush_cache, weight_version=weight_version,
            bucket_bytes=bucket_bytes)
        return UpdateWeightsResult.from_proto(
            self._rpc.unary("UpdateWeightsFromDistributed", request, timeout))

    def get_weight_checksums(self, names: Iterable[str] = ()) -> Dict[str, int]:
        """{name: CRC32C} of the weights the engine holds (empty: all)."""
        reply = self._rpc.unary("GetWeightChecksums",
                                engine_pb2.GetWeightChecksumsRequest(names=list(names)))
        return {c.name: c.crc32c for c in reply.checksums}
