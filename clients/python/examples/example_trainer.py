#!/usr/bin/env python3
"""An example colocated RL trainer loop over colo_client.

Each cycle (RL step):
  1. rollout: greedy generation on every engine (reports the weight version
     that produced it);
  2. prepare_training: the controller pauses the engines and releases their
     weights, KV cache and graph buffers (verified);
  3. "training": allocates working memory and makes new weights (the
     checkpoint perturbed deterministically by the step);
  4. begin_weight_sync: the engines' weights come back; the new weights are
     streamed to every engine with update_weights_from_tensors;
  5. the trainer frees its copy; finish_weight_sync resumes the KV cache and
     generation continues.

    example_trainer.py --controller=127.0.0.1:50051 --model_dir=DIR --cycles=3

Prints one line per cycle (JSON with --json) and exits non-zero when an
engine does not report the version it was sent.
"""

import argparse
import json
import os
import sys
import time

import torch

from colo_client import ColoError, ControllerClient, EngineClient, ipc_domain
from colo_client import safetensors


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--controller", required=True, help="controller host:port")
    p.add_argument("--model_dir", required=True,
                   help="HF-layout model dir whose *.safetensors the trainer starts from")
    p.add_argument("--cycles", type=int, default=3)
    p.add_argument("--start_step", type=int, default=0,
                   help="first RL step (0: one past the controller's current step)")
    p.add_argument("--pause_mode", default="retract", choices=["abort", "retract", "in_place"])
    p.add_argument("--prompt", default="1,2,3,4,5", help="comma-separated token ids")
    p.add_argument("--max_new_tokens", type=int, default=8)
    p.add_argument("--train_mb", type=int, default=64,
                   help="working memory the 'training' step allocates (MiB)")
    p.add_argument("--token_file", default=None, help="bearer token for controller and engines")
    p.add_argument("--chunk_bytes", type=int, default=None,
                   help="cap per message (default: fit the engine's receive limit)")
    p.add_argument("--handoff", default="auto", choices=["auto", "ipc", "tensor"],
                   help="auto: shared memory (update_weights_from_ipc) for engines the "
                   "controller says share this process's ipc_domain, the gRPC stream "
                   "(update_weights_from_tensors) for the others")
    p.add_argument("--json", action="store_true", help="print one JSON object per cycle")
    return p.parse_args(argv)


def rollout(engines, prompt, max_new_tokens):
    """Greedy generation on every engine: [(tokens, weight_version)]."""
    out = []
    for engine in engines:
        result = engine.generate_tokens(prompt, max_new_tokens=max_new_tokens, ignore_eos=True,
                                        timeout=120.0)
        out.append((result.output_ids, result.weight_version))
    return out


def train(checkpoint, step, train_mb):
    """Stands in for a training step: uses `train_mb` of working memory and
    returns new weights (the checkpoint perturbed by a step-seeded noise)."""
    work = torch.empty(train_mb * (1 << 20) // 4, dtype=torch.float32)
    work.fill_(float(step))
    gen = torch.Generator().manual_seed(1000 + step)
    new = {name: (t.float() + 1e-2 * torch.randn(t.shape, generator=gen)).to(t.dtype)
           for name, t in checkpoint.items()}
    del work
    return new


def main(argv=None):
    args = parse_args(argv)
    prompt = [int(x) for x in args.prompt.split(",") if x]
    checkpoint = safetensors.load_model_dir(args.model_dir)
    controller = ControllerClient(args.controller, token_file=args.token_file)
    controller.wait_ready(timeout=30.0)
    state = controller.get_state()
    if state.phase != "ROLLOUT":
        print(f"node is in {state.phase} ({state.reason}); expected ROLLOUT", file=sys.stderr)
        return 1
    step = args.start_step or state.step + 1
    engines = [EngineClient(e.address, token_file=args.token_file)
               for e in controller.list_engines()]
    try:
        return run_cycles(args, controller, engines, checkpoint, prompt, step)
    finally:
        # Close the channels before the interpreter exits, also on errors.
        for engine in engines:
            engine.close()
        controller.close()


def run_cycles(args, controller, engines, checkpoint, prompt, step):
    for cycle in range(1, args.cycles + 1):
        t0 = time.monotonic()
        rolled = rollout(engines, prompt, args.max_new_tokens)
        controller.prepare_training(step, pause_mode=args.pause_mode)
        new_weights = train(checkpoint, step, args.train_mb)
        sync = controller.begin_weight_sync(
            step, trainer_ipc_domain=ipc_domain() if args.handoff != "tensor" else None)
        version = f"step-{step}"
        paths = []
        for endpoint in sync.engines:
            ipc = args.handoff == "ipc" or (args.handoff == "auto"
                                            and endpoint.weight_path == "ipc")
            paths.append("ipc" if ipc else "tensor")
            with EngineClient(endpoint.address, token_file=args.token_file) as engine:
                if ipc:
                    engine.update_weights_from_ipc(new_weights, weight_version=version,
                                                   flush_cache=True)
                else:
                    engine.update_weights_from_tensors(new_weights, weight_version=version,
                                                       flush_cache=True,
                                                       chunk_bytes=args.chunk_bytes)
        del new_weights  # the trainer's copy is gone: the KV cache may come back
        done = controller.finish_weight_sync(step, trainer_weights_freed=True)
        versions = [e.weight_version for e in done.state.engines]
        report = {
            "cycle": cycle,
            "step": step,
            "phase": done.state.phase,
            "rollout_weight_versions": [v for _, v in rolled],
            "rollout_tokens": [t for t, _ in rolled],
            "new_weight_version": version,
            "handoff": paths,
            "engine_weight_versions": versions,
            "seconds": round(time.monotonic() - t0, 3),
        }
        if args.json:
            print(json.dumps(report), flush=True)
        else:
            print(f"cycle {cycle} (step {step}): rollout on weights "
                  f"{report['rollout_weight_versions']} -> sent {version}; engines now "
                  f"{versions}, phase {done.state.phase} ({report['seconds']}s)", flush=True)
        if any(v != version for v in versions) or done.state.phase != "ROLLOUT":
            print(f"engines report {versions} in {done.state.phase}, expected {version} in "
                  "ROLLOUT", file=sys.stderr)
            return 1
        step += 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ColoError as e:
        print(f"example_trainer: {e}", file=sys.stderr)
        sys.exit(1)
