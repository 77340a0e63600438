#!/opt/colo/venv/bin/python3
"""transformers baseline for bench/model/model_bench: decode tokens/s at
batch 1, 8, 32 (greedy generate, fp32, CPU) and prefill tokens/s, on the same
model directory. Usage: hf_bench.py MODEL_DIR [prompt_len decode_steps prefill_len]
Also prints tokens per second of process CPU time (load-independent with 1 thread).
Runs under the test venv (/opt/colo/venv, transformers 5.x); loads with
from_pretrained, so MoE checkpoints (per-expert tensors, MXFP4) load as published."""
import json
import os
import sys
import time

import torch
import transformers


def main():
    d = sys.argv[1]
    prompt_len, steps, prefill_len = (int(x) for x in (sys.argv[2:5] or [64, 16, 256]))
    if os.environ.get("HF_THREADS"):
        torch.set_num_threads(int(os.environ["HF_THREADS"]))
    kwargs = {}
    with open(os.path.join(d, "config.json")) as f:
        if "quantization_config" in json.load(f):
            kwargs["quantization_config"] = transformers.Mxfp4Config(dequantize=True)
    model = transformers.AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, **kwargs)
    config = model.config
    model.eval()
    print("torch threads %d, transformers %s" % (torch.get_num_threads(), transformers.__version__))
    v = config.vocab_size
    with torch.no_grad():
        ids = torch.tensor([[(i * 7919 + 13) % v for i in range(prefill_len)]])
        model(ids)
        t0, c0 = time.time(), time.process_time()
        model(ids)
        dt, dc = time.time() - t0, time.process_time() - c0
        print("prefill len %d: %.1f tokens/s (%.3f s; %.1f tokens per cpu-s)"
              % (prefill_len, prefill_len / dt, dt, prefill_len / dc))
        for b in (1, 8, 32):
            ids = torch.tensor([[((i * 1000 + t) * 7919 + 13) % v for t in range(prompt_len)] for i in range(b)])
            kw = dict(do_sample=False, pad_token_id=0, eos_token_id=None,
                      attention_mask=torch.ones_like(ids))
            t0, c0 = time.time(), time.process_time()
            model.generate(ids, max_new_tokens=1, min_new_tokens=1, **kw)
            t_prefill, c_prefill = time.time() - t0, time.process_time() - c0
            t0, c0 = time.time(), time.process_time()
            model.generate(ids, max_new_tokens=steps + 1, min_new_tokens=steps + 1, **kw)
            dt = time.time() - t0 - t_prefill
            dc = time.process_time() - c0 - c_prefill
            print("decode batch %d: %.1f tokens/s (%.1f ms/step; %.1f tokens per cpu-s)"
                  % (b, b * steps / dt, 1000 * dt / steps, b * steps / dc))


if __name__ == "__main__":
    main()
