#!/usr/bin/python3
"""Greedy-generation parity of colo's CPU model with Hugging Face transformers.

Generates tiny random models with colo-tiny-model (llama; qwen2 with qkv bias;
qwen3 with q/k norm when this transformers has Qwen3; mistral with a sliding
window applied to every layer), runs transformers' greedy generate() in fp32
on CPU, and checks colo-generate-offline produces the same tokens for 64 new
tokens on several prompts with logprobs within 1e-3.

Skips (exit 0 with a message) only when transformers cannot be imported.
Usage (Bazel sh/py test): hf_parity_test.py TINY_MODEL_BIN GENERATE_BIN
"""
import json
import os
import subprocess
import sys
import tempfile

try:
    import torch
    import transformers
    # torch 1.13 + Python 3.11: importing torch.distributed.fsdp fails; generate()
    # only uses it to ask whether the model is FSDP-managed (it is not).
    import transformers.generation.utils as _gen_utils
    _gen_utils.is_fsdp_managed_module = lambda module: False
    from safetensors.torch import load_file
except Exception as e:  # pragma: no cover
    print("SKIPPED: transformers not importable (%s); install tests/parity/requirements.txt" % e)
    sys.exit(0)

NEW_TOKENS = 64
PROMPTS = [[1, 2, 3], [17, 5, 99, 42, 7, 7, 130], [250], list(range(40, 61))]


def hf_generate(model_dir, prompt):
    config = transformers.AutoConfig.from_pretrained(model_dir)
    config._attn_implementation = "eager"
    model = transformers.AutoModelForCausalLM.from_config(config, torch_dtype=torch.float32)
    state = load_file(os.path.join(model_dir, "model.safetensors"))
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if not (config.tie_word_embeddings and m == "lm_head.weight")]
    assert not missing and not unexpected, (missing, unexpected)
    if config.tie_word_embeddings:
        model.tie_weights()
    model.eval()
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                             max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False,
                             output_scores=True, return_dict_in_generate=True, pad_token_id=0,
                             eos_token_id=None)
    tokens = out.sequences[0, len(prompt):].tolist()
    logprobs = [torch.log_softmax(s[0].double(), -1)[t].item() for s, t in zip(out.scores, tokens)]
    return tokens, logprobs


def main():
    tiny, gen = sys.argv[1], sys.argv[2]
    cases = [
        ("llama", ["--arch=llama", "--layers=3", "--hidden=64", "--heads=4", "--kv_heads=2", "--vocab=256", "--seed=11"]),
        ("llama_tied", ["--arch=llama", "--layers=2", "--hidden=48", "--heads=6", "--kv_heads=2",
                        "--vocab=256", "--tie_embeddings", "--seed=12"]),
        ("qwen2_bias", ["--arch=qwen2", "--layers=2", "--hidden=64", "--heads=4", "--kv_heads=1", "--vocab=256", "--seed=13"]),
        ("mistral_sliding", ["--arch=mistral", "--layers=2", "--hidden=64", "--heads=4", "--kv_heads=2", "--vocab=256",
                             "--sliding_window=8", "--seed=14"]),
    ]
    if hasattr(transformers, "Qwen3ForCausalLM"):
        cases.append(("qwen3_qknorm", ["--arch=qwen3", "--layers=2", "--hidden=64", "--heads=4", "--kv_heads=2",
                                       "--head_dim=32", "--vocab=256", "--seed=15"]))
    else:
        print("NOTE: transformers %s has no Qwen3; q/k norm is covered by forward_test's reference" %
              transformers.__version__)
    failures = 0
    checked = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name, flags in cases:
            d = os.path.join(tmp, name)
            subprocess.run([tiny, "--out=" + d] + flags, check=True, stdout=subprocess.DEVNULL)
            prompts = ";".join(",".join(map(str, p)) for p in PROMPTS)
            res = subprocess.run([gen, "--model_dir=" + d, "--prompts=" + prompts,
                                  "--max_new_tokens=%d" % NEW_TOKENS, "--batch_size=4"],
                                 capture_output=True, text=True)
            if res.returncode != 0:
                print("FAIL %s: colo-generate-offline: %s" % (name, res.stderr))
                failures += 1
                continue
            colo = json.loads(res.stdout)["results"]
            for i, prompt in enumerate(PROMPTS):
                ref_tokens, ref_lps = hf_generate(d, prompt)
                got = colo[i]
                checked += 1
                if got["tokens"] != ref_tokens:
                    failures += 1
                    print("FAIL %s prompt %d: tokens differ\n  hf  =%s\n  colo=%s" % (name, i, ref_tokens, got["tokens"]))
                    continue
                diff = max(abs(a - b) for a, b in zip(got["logprobs"], ref_lps))
                if diff > 1e-3:
                    failures += 1
                    print("FAIL %s prompt %d: max logprob diff %.2e" % (name, i, diff))
                else:
                    print("ok   %s prompt %d: %d tokens equal, max logprob diff %.2e" % (name, i, NEW_TOKENS, diff))
    print("%d passed, %d failed" % (checked - failures, failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
