"""Parity of colo's CPU engine with Hugging Face transformers 5.x, every
architecture colo supports.

For each architecture it writes a tiny random model with colo-tiny-model,
loads it in transformers exactly as published checkpoints load
(AutoModelForCausalLM.from_pretrained, fp32, eager attention; MXFP4 experts
dequantized), and runs greedy generate() for 64 new tokens on several prompts
(the oracle). Then it starts a real colo-engine at page size 1 and 16 and
checks, over gRPC:
  - every prompt, sent concurrently (one batch): the same 64 tokens, logprobs
    within 1e-3;
  - the radix cache: a prompt extending an earlier one (and a repeated one)
    reuses cached KV (cached_tokens > 0) and still gives the oracle's tokens;
  - a two-turn streaming session: turn 2 (sent as new tokens only) gives the
    oracle's tokens for the whole history.
gpt_oss models use a 16-token window with prompts up to 40 tokens and 64 new
tokens, so its sliding layers and attention sinks matter.

Usage (tests/parity/hf_parity_test.sh): hf_parity_test.py TINY_MODEL_BIN ENGINE_BIN
Runs under /opt/colo/venv (torch 2.15, transformers 5.25); the colo_client
package comes from the Bazel runfiles.
"""
import concurrent.futures
import json
import os
import subprocess
import sys
import tempfile
import time

import torch
import transformers

from colo_client import EngineClient
from local_cluster import Process

NEW_TOKENS = 64
TOLERANCE = 1e-3
LONG = [(i * 7919 + 13) % 256 for i in range(40)]
PROMPTS = [[1, 2, 3], [17, 5, 99, 42, 7, 7, 130], [250], list(range(40, 61)), LONG]
# Extends LONG: served from the radix cache after LONG ran.
EXTENDED = LONG + [9, 8, 7, 6, 5]
SESSION_TURN1 = PROMPTS[1]
SESSION_TURN1_TOKENS = 16
SESSION_TURN2 = [5, 6, 7, 200]

COMMON = ["--layers=3", "--hidden=64", "--heads=4", "--kv_heads=2", "--vocab=256"]
CASES = [
    ("llama", ["--arch=llama", "--seed=11"] + COMMON),
    ("llama_tied", ["--arch=llama", "--layers=2", "--hidden=48", "--heads=6", "--kv_heads=2",
                    "--vocab=256", "--tie_embeddings", "--seed=12"]),
    ("qwen2_bias", ["--arch=qwen2", "--layers=2", "--hidden=64", "--heads=4", "--kv_heads=1",
                    "--vocab=256", "--seed=13"]),
    ("mistral_sliding", ["--arch=mistral", "--sliding_window=8", "--seed=14"] + COMMON),
    ("qwen3_qknorm", ["--arch=qwen3", "--head_dim=32", "--seed=15"] + COMMON),
    ("qwen3_moe", ["--arch=qwen3_moe", "--experts=8", "--experts_per_token=2",
                   "--moe_intermediate=32", "--mlp_only_layers=1", "--seed=16"] + COMMON),
    ("gpt_oss_bf16", ["--arch=gpt_oss", "--layers=4", "--hidden=64", "--heads=4", "--kv_heads=2",
                      "--vocab=256", "--experts=8", "--experts_per_token=2",
                      "--moe_intermediate=64", "--sliding_window=16", "--dtype=bf16",
                      "--seed=17"]),
    ("gpt_oss_mxfp4", ["--arch=gpt_oss", "--layers=4", "--hidden=64", "--heads=4",
                       "--kv_heads=2", "--vocab=256", "--experts=8", "--experts_per_token=2",
                       "--moe_intermediate=64", "--sliding_window=16", "--dtype=bf16",
                       "--mxfp4", "--seed=18"]),
]


class Oracle:
    """transformers' greedy tokens and logprobs for one model directory."""

    def __init__(self, model_dir):
        with open(os.path.join(model_dir, "config.json")) as f:
            config = json.load(f)
        kwargs = {}
        if "quantization_config" in config:
            # On a CPU, transformers dequantizes MXFP4 experts (here to fp32).
            kwargs["quantization_config"] = transformers.Mxfp4Config(dequantize=True)
        self.model = transformers.AutoModelForCausalLM.from_pretrained(
            model_dir, dtype=torch.float32, attn_implementation="eager", **kwargs)
        self.model.eval()

    def generate(self, prompt, new_tokens=NEW_TOKENS):
        with torch.no_grad():
            out = self.model.generate(
                torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                output_scores=True, return_dict_in_generate=True, pad_token_id=0,
                eos_token_id=None)
        tokens = out.sequences[0, len(prompt):].tolist()
        logprobs = [torch.log_softmax(s[0].double(), -1)[t].item()
                    for s, t in zip(out.scores, tokens)]
        return tokens, logprobs


class Checker:
    def __init__(self):
        self.failures = []
        self.checked = 0

    def compare(self, what, want, got, cached_at_least=None):
        """want: (tokens, logprobs) of the oracle; got: a GenerateResult."""
        self.checked += 1
        tokens, logprobs = want
        if got.output_ids != tokens:
            self.failures.append("%s: tokens differ\n  hf  =%s\n  colo=%s"
                                 % (what, tokens, got.output_ids))
            return
        diff = max(abs(a - b) for a, b in zip(got.output_logprobs, logprobs))
        if len(got.output_logprobs) != len(tokens) or diff > TOLERANCE:
            self.failures.append("%s: %d logprobs, max diff %.2e" %
                                 (what, len(got.output_logprobs), diff))
            return
        if cached_at_least is not None and got.cached_tokens < cached_at_least:
            self.failures.append("%s: cached_tokens %d, expected >= %d"
                                 % (what, got.cached_tokens, cached_at_least))
            return
        print("ok   %s: %d tokens equal, max logprob diff %.2e, cached %d"
              % (what, len(tokens), diff, got.cached_tokens))


def check_engine(name, model_dir, engine_bin, page_size, oracle, want, tmp, checker):
    proc = Process("%s_p%d" % (name, page_size),
                   [engine_bin, "--model=" + model_dir, "--device=cpu",
                    "--page_size=%d" % page_size, "--kv_cache_bytes=16777216"], tmp)
    try:
        with EngineClient(proc.address, timeout=60) as eng:
            eng.wait_ready(30, "colo.generate")
            gen = lambda ids, n=NEW_TOKENS, session="": eng.generate_tokens(
                ids, max_new_tokens=n, ignore_eos=True, return_logprob=True,
                session_id=session, timeout=120)
            tag = "%s page_size=%d" % (name, page_size)
            # All prompts at once: the engine batches them.
            with concurrent.futures.ThreadPoolExecutor(len(PROMPTS)) as pool:
                results = list(pool.map(gen, PROMPTS))
            for i, r in enumerate(results):
                checker.compare("%s prompt %d (len %d)" % (tag, i, len(PROMPTS[i])), want[i], r)
            # Radix cache: a prompt extending LONG, and LONG again.
            aligned = len(LONG) // page_size * page_size
            checker.compare("%s radix: extends prompt 4" % tag, want["extended"],
                            gen(EXTENDED), cached_at_least=min(aligned, len(LONG) - 1))
            checker.compare("%s radix: prompt 4 again" % tag, want[4], gen(LONG),
                            cached_at_least=aligned - page_size)
            # A two-turn session (turn 2 sends only its new tokens).
            session = eng.open_session(capacity_tokens=512)
            turn1 = gen(SESSION_TURN1, SESSION_TURN1_TOKENS, session)
            checker.compare("%s session turn 1" % tag,
                            (want[1][0][:SESSION_TURN1_TOKENS], want[1][1][:SESSION_TURN1_TOKENS]),
                            turn1)
            history = SESSION_TURN1 + turn1.output_ids + SESSION_TURN2
            turn2 = gen(SESSION_TURN2, NEW_TOKENS, session)
            checker.compare("%s session turn 2 (history %d)" % (tag, len(history)),
                            oracle.generate(history), turn2,
                            cached_at_least=len(SESSION_TURN1) + SESSION_TURN1_TOKENS - page_size)
            eng.close_session(session)
    except Exception as e:  # pylint: disable=broad-except
        checker.failures.append("%s page_size=%d: %r\n%s" % (name, page_size, e, proc.log()))
    finally:
        proc.stop()


def main():
    tiny, engine_bin = sys.argv[1], sys.argv[2]
    print("torch %s, transformers %s" % (torch.__version__, transformers.__version__))
    torch.set_num_threads(1)
    checker = Checker()
    only = os.environ.get("PARITY_CASES")
    with tempfile.TemporaryDirectory(dir=os.environ.get("TEST_TMPDIR")) as tmp:
        for name, flags in CASES:
            if only and name not in only.split(","):
                continue
            t0 = time.time()
            d = os.path.join(tmp, name)
            subprocess.run([tiny, "--out=" + d] + flags, check=True, stdout=subprocess.DEVNULL)
            oracle = Oracle(d)
            want = {i: oracle.generate(p) for i, p in enumerate(PROMPTS)}
            want["extended"] = oracle.generate(EXTENDED)
            for page_size in (1, 16):
                check_engine(name, d, engine_bin, page_size, oracle, want, tmp, checker)
            print("---- %s: %.1f s" % (name, time.time() - t0))
    for f in checker.failures:
        print("FAIL " + f)
    print("%d checks, %d failed" % (checker.checked, len(checker.failures)))
    return 1 if checker.failures or checker.checked == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
