"""A stock torch trainer's gloo broadcast to a colo engine (rendezvous
"torch") vs the same broadcast to another torch process.

    bazel build //bench/weight_sync:torch_broadcast_bench
    bazel-bin/bench/weight_sync/torch_broadcast_bench [--rounds=5]

This process is rank 0 of two process groups formed like SGLang's
init_custom_process_group (so both live in one trainer): "raw" with a second
torch process (rank 1 receives with dist.broadcast into preallocated
tensors, then acknowledges with a small broadcast back), and "colo" with a
colo-engine that joined with rendezvous="torch" (UpdateWeightsFromDistributed
in a thread, then one dist.broadcast per tensor; the round ends when the RPC
returned, i.e. after the engine committed). Model: the ~1.06 GiB float32
config of weight_sync_bench (hidden 2048, 3 layers, vocab 32000); both
groups carry the same tensors. Rounds alternate raw / colo; ratio = raw time
/ colo time (goal >= 0.9).
"""

import argparse
import datetime
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

import venv_python  # noqa: F401  (re-executes under the test venv's torch)

import torch
import torch.distributed as dist
from colo.v1 import engine_pb2

from colo_client import EngineClient
from local_cluster import START_TIMEOUT_S, Process, binary

PEER = r"""
import datetime, json, sys, torch, torch.distributed as dist
sys.path.insert(0, {here!r})
from torch_broadcast_bench import custom_group
port, rounds, shapes = int(sys.argv[1]), int(sys.argv[2]), json.load(open(sys.argv[3]))
g = custom_group(f"tcp://127.0.0.1:{{port}}", 1, "raw")
bufs = [torch.empty(s) for s in shapes]
ack = torch.zeros(1)
for _ in range(rounds):
    for b in bufs:
        dist.broadcast(b, src=0, group=g)
    ack.fill_(1)
    dist.broadcast(ack, src=1, group=g)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def custom_group(init_method, rank, name):
    """SGLang's init_custom_process_group (world of 2, gloo)."""
    import inspect
    from torch.distributed import distributed_c10d as c10d

    timeout = datetime.timedelta(seconds=120)
    store, rank, world = next(c10d.rendezvous(init_method, rank, 2, timeout=timeout))
    store.set_timeout(timeout)
    store = c10d.PrefixStore(name, store)
    params = inspect.signature(c10d._new_process_group_helper).parameters
    options = "backend_options" if "backend_options" in params else "pg_options"
    pg = c10d._new_process_group_helper(2, rank, [], c10d.Backend("gloo"), store,
                                        group_name=name, timeout=timeout, **{options: None})
    pg = pg[0] if isinstance(pg, tuple) else pg
    c10d._world.pg_group_ranks[pg] = {0: 0, 1: 1}
    return pg


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--check_finite", default="true", help="the engine's NaN/inf check")
    args = p.parse_args()
    tmp = tempfile.mkdtemp(prefix="bcast-bench-")
    model = os.path.join(tmp, "model")
    subprocess.run([binary("engine/model/colo-tiny-model"), f"--out={model}", "--arch=llama",
                    "--layers=3", "--hidden=2048", "--heads=16", "--kv_heads=4",
                    "--intermediate=5504", "--vocab=32000", "--seed=3"], check=True,
                   stdout=subprocess.PIPE)
    engine = Process("engine", [binary("engine/server/colo-engine"), f"--model={model}",
                                "--device=cpu", "--kv_cache_bytes=16777216",
                                f"--weight_update_check_finite={args.check_finite}"], tmp)
    here = os.path.dirname(os.path.abspath(__file__))
    rounds = args.rounds + 1
    try:
        client = EngineClient(engine.address, timeout=600)
        client.wait_ready(START_TIMEOUT_S)
        # The engine's tensors, in its order, with their shapes.
        infos = client._rpc.unary("GetWeightChecksums",
                                  engine_pb2.GetWeightChecksumsRequest()).checksums
        tensors = [(c.name, torch.randn(list(c.shape.dims)) * 0.02) for c in infos]
        raw_tensors = [x.clone() for _, x in tensors]
        gib = sum(x.numel() * 4 for _, x in tensors) / (1 << 30)
        shapes_file = os.path.join(tmp, "shapes.json")
        with open(shapes_file, "w") as f:
            json.dump([list(x.shape) for x in raw_tensors], f)
        raw_port, colo_port = free_port(), free_port()
        peer = subprocess.Popen([sys.executable, "-c", PEER.format(here=here), str(raw_port),
                                 str(rounds), shapes_file],
                                env=dict(os.environ, TORCH_CPP_LOG_LEVEL="ERROR"))
        raw = custom_group(f"tcp://127.0.0.1:{raw_port}", 0, "raw")
        joined = []
        t = threading.Thread(target=lambda: joined.append(client.init_weights_update_group(
            "127.0.0.1", colo_port, 1, 2, "colo", backend="gloo", rendezvous="torch",
            torch_group="custom")))
        t.start()
        colo = custom_group(f"tcp://127.0.0.1:{colo_port}", 0, "colo")
        t.join()
        assert joined == [1], joined
        raw_gib = gib
        print(f"model: {len(tensors)} tensors, {gib:.3f} GiB float32 per update; torch "
              f"{torch.__version__}, {os.cpu_count()} CPUs; engine NaN/inf check "
              f"{args.check_finite}")
        ack = torch.zeros(1)
        raw_times, colo_times = [], []
        for r in range(rounds):
            t0 = time.perf_counter()
            for x in raw_tensors:
                dist.broadcast(x, src=0, group=raw)
            dist.broadcast(ack, src=1, group=raw)
            raw_dt = time.perf_counter() - t0

            result = []
            t0 = time.perf_counter()
            th = threading.Thread(target=lambda: result.append(client.update_weights_from_distributed(
                [n for n, _ in tensors], ["float32"] * len(tensors),
                [list(x.shape) for _, x in tensors], "colo", f"r{r}")))
            th.start()
            for _, x in tensors:
                dist.broadcast(x, src=0, group=colo)
            th.join()
            colo_dt = time.perf_counter() - t0
            assert result, "update failed"
            if r == 0:
                print(f"warm-up: raw {raw_dt:.3f} s, colo {colo_dt:.3f} s")
                continue
            raw_times.append(raw_dt / raw_gib)
            colo_times.append(colo_dt / gib)
            print(f"round {r}: raw torch {raw_gib / raw_dt:5.2f} GiB/s, colo engine "
                  f"{gib / colo_dt:5.2f} GiB/s (update {colo_dt * 1000:.0f} ms: transfer "
                  f"{result[0].proto.transfer_us / 1000:.0f} ms, commit "
                  f"{result[0].proto.commit_us / 1000:.0f} ms), ratio "
                  f"{(raw_dt / raw_gib) / (colo_dt / gib):.2f}")
        raw_best, colo_best = min(raw_times), min(colo_times)
        raw_med = sorted(raw_times)[len(raw_times) // 2]
        colo_med = sorted(colo_times)[len(colo_times) // 2]
        print(f"summary: best raw {1 / raw_best:.2f} GiB/s, best colo {1 / colo_best:.2f} GiB/s, "
              f"ratio {raw_best / colo_best:.2f}; medians {1 / raw_med:.2f} / {1 / colo_med:.2f} "
              f"GiB/s, ratio {raw_med / colo_med:.2f}")
        peer.wait(60)
    finally:
        engine.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
