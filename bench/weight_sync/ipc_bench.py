"""IPC handoff (UpdateWeightsFromIpc) vs a raw memcpy of the same bytes.

    bazel build //bench/weight_sync:ipc_bench
    bazel-bin/bench/weight_sync/ipc_bench [--rounds=5] [--bucket_mb=256]

Starts colo-engine processes on a ~1.09 GiB float32 model (hidden 2048, one
layer, a tied 131072 x 2048 embedding), one with the NaN/inf check on and one
with it off, and times update_weights_from_ipc from this (torch trainer)
process, for tensors that are
  - "shared": already in shared memory (tensor.share_memory_(), a CPU
    trainer keeping its parameters shared): the engine reads them where they
    are, one copy in all;
  - "packed": ordinary tensors: the client copies them into two 256 MiB
    shared-memory buckets in turn while the engine copies the other one.
After a warm-up round (which populates the engine's staging pages), each
round's wall time is compared with a raw single-threaded memcpy of the same
bytes between two resident buffers (ratio = memcpy time / handoff time, goal
>= 0.8). Prints one line per round and a summary.
"""

import argparse
import ctypes
import os
import subprocess
import sys
import tempfile
import time

import venv_python  # noqa: F401  (re-executes under the test venv's torch)

import torch
from colo.v1 import engine_pb2

from colo_client import EngineClient
from colo_client.ipc import ipc_domain
from local_cluster import START_TIMEOUT_S, Process, binary


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--bucket_mb", type=int, default=256)
    args = p.parse_args()
    tmp = tempfile.mkdtemp(prefix="ipc-bench-")
    model = os.path.join(tmp, "model")
    subprocess.run([binary("engine/model/colo-tiny-model"), f"--out={model}", "--arch=llama",
                    "--layers=1", "--hidden=2048", "--heads=16", "--kv_heads=4",
                    "--intermediate=2048", "--vocab=131072", "--tie_embeddings", "--seed=5"],
                   check=True, stdout=subprocess.PIPE)
    engines = {}
    for check in ("true", "false"):
        engines[check] = Process(f"engine-check-{check}",
                                 [binary("engine/server/colo-engine"), f"--model={model}",
                                  "--device=cpu", "--kv_cache_bytes=16777216",
                                  f"--weight_update_check_finite={check}"], tmp)
    try:
        clients = {k: EngineClient(e.address, timeout=600) for k, e in engines.items()}
        for c in clients.values():
            c.wait_ready(START_TIMEOUT_S)
        assert clients["true"].get_server_info().proto.ipc_domain == ipc_domain()
        g = torch.Generator().manual_seed(1)
        shapes = {c.name: list(c.shape.dims) for c in clients["true"]._rpc.unary(
            "GetWeightChecksums", engine_pb2.GetWeightChecksumsRequest()).checksums}
        tensors = {n: torch.randn(s, generator=g) * 0.02 for n, s in shapes.items()}
        total = sum(t.numel() * 4 for t in tensors.values())
        gib = total / (1 << 30)
        src = torch.empty(total, dtype=torch.uint8).fill_(1)
        dst = torch.empty(total, dtype=torch.uint8).fill_(2)

        def memcpy() -> float:
            t0 = time.perf_counter()
            ctypes.memmove(dst.data_ptr(), src.data_ptr(), total)
            return time.perf_counter() - t0

        print(f"model: {len(tensors)} tensors, {gib:.3f} GiB float32; bucket "
              f"{args.bucket_mb} MiB x 2; torch {torch.__version__}, {os.cpu_count()} CPUs")
        shared = {n: t.clone().share_memory_() for n, t in tensors.items()}
        kinds = {"shared": shared, "packed": tensors}
        results = {(k, c): [] for k in kinds for c in clients}
        mem = []
        for r in range(args.rounds + 1):
            for kind, named in kinds.items():
                for check, c in clients.items():
                    t0 = time.perf_counter()
                    c.update_weights_from_ipc(named, f"r{r}", bucket_bytes=args.bucket_mb << 20)
                    dt = time.perf_counter() - t0
                    m = memcpy()
                    if r == 0:
                        print(f"warm-up ({kind}, check {check}): {dt:.3f} s")
                        continue
                    mem.append(m)
                    results[(kind, check)].append(dt)
                    print(f"round {r} {kind:6} check={check:5}: handoff {dt * 1000 / gib:7.1f} "
                          f"ms/GiB ({gib / dt:5.2f} GiB/s); memcpy {m * 1000 / gib:6.1f} ms/GiB "
                          f"({gib / m:5.2f} GiB/s); ratio {m / dt:.2f}")
        best_m = min(mem)
        med_m = sorted(mem)[len(mem) // 2]
        print(f"memcpy: best {gib / best_m:.2f} GiB/s, median {gib / med_m:.2f} GiB/s")
        for (kind, check), times in results.items():
            best = min(times)
            med = sorted(times)[len(times) // 2]
            print(f"summary {kind:6} check={check:5}: best {gib / best:.2f} GiB/s (ratio "
                  f"{best_m / best:.2f} of the best memcpy), median {gib / med:.2f} GiB/s "
                  f"(ratio {med_m / med:.2f} of the median memcpy)")
        for kind in kinds:
            cost = (min(results[(kind, "true")]) - min(results[(kind, "false")])) * 1000 / gib
            print(f"NaN/inf check cost, {kind}: {cost:.1f} ms/GiB (best vs best)")
    finally:
        for e in engines.values():
            e.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
