"""TEST ONLY: a stock PyTorch trainer (rank 0) that updates colo engines
over a torch.distributed gloo group, exactly as SGLang's contract asks:

    engine.InitWeightsUpdateGroup(rendezvous="torch")   (threads, one per engine)
    dist.init_process_group("gloo", init_method="tcp://...", rank=0)
    per update:  engine.UpdateWeightsFromDistributed(...)   (threads)
                 dist.broadcast(tensor, src=0, group=g)      (once per name, in order)

Runs under any python with torch + colo_client (the venv's torch 2.15 or
Debian's torch 1.13). Prints one JSON line per event on stdout:
  {"event": "group", "ranks": [...]}
  {"event": "update", "index": i, "kind": ..., "results": [{"code", "message"}...],
   "crc": {name: crc32c of the float32 values the engine should hold}}   (crc: venv only)

--updates is a comma list of KIND:DTYPE:VERSION, KIND one of
  ok            every tensor of --checkpoint, in --checkpoint order
  nan           like ok, with a NaN at element 3 of the first tensor
  wrong_name    the request names "model.nope.weight" for the first tensor
  wrong_shape   the request declares the first tensor's shape with one more row
  concurrent    a second UpdateWeightsFromDistributed on the same group while
                the first is in flight (reported as result index len(engines))
  released      ReleaseTags(weights) on every engine first, ResumeTags after
  kill:K        broadcast K tensors, then SIGKILL this process
"""

import argparse
import datetime
import inspect
import json
import os
import signal
import sys
import threading
from typing import Any, Dict, List

import torch
import torch.distributed as dist

from colo_client import ColoError, EngineClient
from colo_client.safetensors import load_model_dir

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def emit(**kwargs: Any) -> None:
    print(json.dumps(kwargs), flush=True)


def init_custom_process_group(init_method: str, world_size: int, group_name: str,
                              timeout: datetime.timedelta) -> Any:
    """SGLang's init_custom_process_group (python/sglang/srt/utils), made to
    work on torch 1.13 and 2.x: a PrefixStore named after the group and
    _new_process_group_helper, no default group."""
    from torch.distributed import distributed_c10d as c10d

    store, rank, world_size = next(c10d.rendezvous(init_method, 0, world_size, timeout=timeout))
    store.set_timeout(timeout)
    store = c10d.PrefixStore(group_name, store)
    params = inspect.signature(c10d._new_process_group_helper).parameters
    options = "backend_options" if "backend_options" in params else "pg_options"
    pg = c10d._new_process_group_helper(world_size, rank, [], c10d.Backend("gloo"), store,
                                        group_name=group_name, timeout=timeout, **{options: None})
    if isinstance(pg, tuple):
        pg = pg[0]
    ranks = {i: i for i in range(world_size)}
    if hasattr(c10d, "_world"):
        c10d._world.pg_group_ranks[pg] = ranks
    else:
        c10d._pg_group_ranks[pg] = ranks
    return pg


def crc_of(tensor: Any) -> int:
    import crc32c  # the venv has it (tests/python/requirements.txt)

    return crc32c.crc32c(tensor.detach().float().contiguous().numpy().tobytes())


def run_threads(fns: List[Any]) -> List[Dict[str, Any]]:
    results: List[Dict[str, Any]] = [{} for _ in fns]

    def call(i: int, fn: Any) -> None:
        try:
            fn()
            results[i] = {"code": "OK", "message": ""}
        except ColoError as e:
            results[i] = {"code": e.code.name, "message": e.details}

    threads = [threading.Thread(target=call, args=(i, fn)) for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    return threads, results


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--engines", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--torch_group", default="world")
    p.add_argument("--group_name", default="weights")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--updates", required=True)
    p.add_argument("--crc", action="store_true", help="report crc32c of the tensors")
    args = p.parse_args()

    engines = [EngineClient(a, timeout=120) for a in args.engines.split(",")]
    world = len(engines) + 1
    timeout = datetime.timedelta(seconds=60)
    init_method = f"tcp://127.0.0.1:{args.port}"
    ranks: List[int] = [0] * len(engines)

    def init(i: int) -> Any:
        def fn() -> None:
            ranks[i] = engines[i].init_weights_update_group(
                "127.0.0.1", args.port, rank_offset=i + 1, world_size=world,
                group_name=args.group_name, backend="gloo", rendezvous="torch",
                torch_group=args.torch_group, init_timeout_ms=60000,
                transfer_timeout_ms=30000)
        return fn

    threads, results = run_threads([init(i) for i in range(len(engines))])
    group = None
    if args.torch_group == "custom":
        group = init_custom_process_group(init_method, world, args.group_name, timeout)
    else:
        dist.init_process_group("gloo", init_method=init_method, world_size=world, rank=0,
                                timeout=timeout)
        if args.torch_group == "new_group":
            group = dist.new_group(list(range(world)), backend="gloo")
    for t in threads:
        t.join()
    emit(event="group", ranks=ranks, results=results)
    if any(r["code"] != "OK" for r in results):
        sys.exit(1)

    base = load_model_dir(args.checkpoint)
    for index, spec in enumerate(args.updates.split(",")):
        kind, dtype, version = spec.split(":", 2) if spec.count(":") >= 2 else (spec, "float32", "")
        kill_after = -1
        if kind.startswith("kill"):
            kind, kill_after = "kill", int(dtype)
            dtype, version = version.split(":") if ":" in version else ("float32", version)
        tensors = {n: t.to(DTYPES[dtype]) for n, t in base.items()}
        names = list(tensors)
        if kind == "nan":
            tensors[names[0]] = tensors[names[0]].clone()
            tensors[names[0]].view(-1)[3] = float("nan")
        req_names = list(names)
        req_shapes = [list(tensors[n].shape) for n in names]
        if kind == "wrong_name":
            req_names[0] = "model.nope.weight"
        if kind == "wrong_shape":
            # A trainer bug: a tensor of another shape, declared as such.
            t0 = tensors[names[0]]
            tensors[names[0]] = torch.zeros((t0.shape[0] + 1,) + tuple(t0.shape[1:]),
                                            dtype=t0.dtype)
            req_shapes[0] = list(tensors[names[0]].shape)
        if kind == "released":
            for e in engines:
                e.release_tags(["weights"])

        def update(e: EngineClient) -> Any:
            return lambda: e.update_weights_from_distributed(
                req_names, [dtype] * len(names), req_shapes, args.group_name, version,
                flush_cache=True)

        fns = [update(e) for e in engines]
        if kind == "concurrent":
            fns.append(update(engines[0]))
        threads, results = run_threads(fns[:len(engines)])
        if kind == "concurrent":
            # The engine must refuse the second update before any broadcast.
            second, second_results = run_threads(fns[len(engines):])
            for t in second:
                t.join()
        for k, n in enumerate(names):
            if kind == "kill" and k == kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
            dist.broadcast(tensors[n], src=0, group=group)
        for t in threads:
            t.join()
        if kind == "concurrent":
            results = results + second_results
        if kind == "released":
            for e in engines:
                e.resume_tags(["weights"])
        crc = {n: crc_of(tensors[n]) for n in names} if args.crc else {}
        emit(event="update", index=index, kind=kind, version=version, results=results, crc=crc)
    emit(event="done")
    if group is not None:
        dist.destroy_process_group(group)
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
