"""Parity of colo's tokenizer (engine/tokenizer) with Hugging Face tokenizers.

Trains tokenizers in the test (nothing is downloaded): byte-level BPE with the
Qwen2, Llama-3, GPT-OSS (o200k) split regexes and GPT-2's ByteLevel regex
(tokenizers' BpeTrainer), and a SentencePiece BPE model (sentencepiece's
trainer) used as tokenizer.model and converted to tokenizer.json the way
transformers' LlamaConverter does (legacy Prepend/Replace normalizers) and
the non-legacy way (Metaspace prepend_scheme=first). Then drives
colo-tokenize over a few thousand strings per tokenizer and requires:
  - identical ids (with and without special tokens),
  - identical decode (skip_special_tokens true and false) of those ids and of
    random id sequences,
  - streaming (IncrementalDecoder, one id at a time) == full decode,
  - invalid UTF-8: byte-level tokenizers keep every byte (the ids are what
    tokenizers gives for the valid runs plus the BPE of the invalid bytes'
    byte-level characters, and the tokens' bytes are the input bytes);
    SentencePiece tokenizers see U+FFFD (Python's errors="replace").

Also: the tokenizer colo-tiny-model writes (vocab 64, 256, 300, 4096) loads
in transformers' AutoTokenizer, which gives the same ids and text as colo.

Usage: hf_tokenizer_parity_test.py COLO_TOKENIZE [--tiny_model COLO_TINY_MODEL] [--strings N]
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import corpus  # noqa: E402

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers  # noqa: E402
from tokenizers import processors, trainers  # noqa: E402

QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
         r"\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
          r"\s*[\r\n]+|\s+(?!\S)|\s+")
O200K = "|".join([
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"\p{N}{1,3}", r" ?[^\s\p{L}\p{N}]+[\r\n/]*", r"\s*[\r\n]+", r"\s+(?!\S)", r"\s+"])

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# Added tokens exercising every flag.
ADDED = [
    AddedToken("<tool>", special=False, normalized=False),
    AddedToken("[MASK]", special=True, normalized=False, lstrip=True, rstrip=True),
    AddedToken("word", special=False, single_word=True),
    AddedToken("café", special=False, normalized=True),
    AddedToken(" spaced", special=False, lstrip=True),
]
ADDED_TEXT = SPECIALS + [t.content for t in ADDED]

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        if len(failures) <= 25:
            print("MISMATCH:", what, file=sys.stderr)


def run_cli(binary, model_dir, requests):
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in requests)
    p = subprocess.run([binary, "--model=" + model_dir, "--jsonl"], input=data.encode("utf-8"),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=600)
    if p.returncode != 0:
        raise RuntimeError("colo-tokenize failed: " + p.stderr.decode(errors="replace"))
    lines = p.stdout.decode("utf-8").split("\n")[:-1]  # not splitlines(): U+2028 etc.
    if len(lines) != len(requests):
        raise RuntimeError(f"{len(lines)} replies for {len(requests)} requests: "
                           + p.stderr.decode(errors="replace"))
    return [json.loads(line) for line in lines]


def byte_level_bpe(train, regex, *, nfc=False, ignore_merges=False, bos=None, gpt2=False, vocab_size=1200):
    tok = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    if nfc:
        tok.normalizer = normalizers.NFC()
    if gpt2:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(train, trainer)
    if bos is not None:
        tok.add_special_tokens([AddedToken(bos, special=True, normalized=False)])
        tok.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, tok.token_to_id(bos))])])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_tokens(ADDED)
    return tok


def train_sentencepiece(train, model_prefix):
    import sentencepiece as spm
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(train), model_prefix=model_prefix, vocab_size=800, model_type="bpe",
        byte_fallback=True, split_digits=True, normalization_rule_name="identity",
        add_dummy_prefix=True, remove_extra_whitespaces=False, character_coverage=0.9995,
        allow_whitespace_only_pieces=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        minloglevel=2, num_threads=1, max_sentence_length=100000)
    return model_prefix + ".model"


def sentencepiece_json(model_file, legacy):
    """tokenizer.json from a SentencePiece BPE model, as transformers converts Llama's."""
    # transformers' SentencePieceExtractor needs a newer protobuf than the
    # venv sees; the vocabulary comes from sentencepiece itself and the merges
    # from the same generate_merges the extractor calls.
    import sentencepiece as spm
    from transformers.tokenization_utils_base import generate_merges
    sp = spm.SentencePieceProcessor(model_file=model_file)
    vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=generate_merges(vocab), unk_token="<unk>", fuse_unk=True,
                               byte_fallback=True))
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in ("<unk>", "<s>", "</s>")])
    if legacy:
        tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    else:
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(content=" ", left=1)])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return tok


def bytes_of_tokens(tok, ids):
    """The bytes byte-level tokens stand for (added tokens: their UTF-8)."""
    table = {c: b for b, c in zip(range(256), _byte_chars())}
    added = {i: t.content for i, t in tok.get_added_tokens_decoder().items()}
    out = b""
    for i in ids:
        t = tok.id_to_token(i)
        if i in added:
            out += added[i].encode("utf-8")
        elif all(c in table for c in t):
            out += bytes(table[c] for c in t)
        else:
            out += t.encode("utf-8")
    return out


def _byte_chars():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for _, c in sorted(zip(bs, cs))]


def split_utf8_runs(data):
    """Maximal valid / invalid runs, as colo's SplitUtf8Runs cuts them."""
    runs, i = [], 0
    while i < len(data):
        n = _valid_len(data, i)
        valid = n > 0
        if not valid:
            n = _invalid_len(data, i)
        if runs and runs[-1][1] == valid:
            runs[-1] = (runs[-1][0] + data[i:i + n], valid)
        else:
            runs.append((data[i:i + n], valid))
        i += n
    return runs


def _lead(b):
    if b < 0x80:
        return 1, 0, 0
    if 0xC2 <= b <= 0xDF:
        return 2, 0x80, 0xBF
    if b == 0xE0:
        return 3, 0xA0, 0xBF
    if 0xE1 <= b <= 0xEC or 0xEE <= b <= 0xEF:
        return 3, 0x80, 0xBF
    if b == 0xED:
        return 3, 0x80, 0x9F
    if b == 0xF0:
        return 4, 0x90, 0xBF
    if 0xF1 <= b <= 0xF3:
        return 4, 0x80, 0xBF
    if b == 0xF4:
        return 4, 0x80, 0x8F
    return 0, 0, 0


def _prefix(data, i):
    n, lo, hi = _lead(data[i])
    if n <= 1:
        return n, (1 if n == 1 else 0)
    k = 1
    if i + 1 < len(data) and lo <= data[i + 1] <= hi:
        k = 2
        while k < n and i + k < len(data) and 0x80 <= data[i + k] <= 0xBF:
            k += 1
    return n, k


def _valid_len(data, i):
    n, k = _prefix(data, i)
    return n if n >= 1 and k == n else 0


def _invalid_len(data, i):
    n, k = _prefix(data, i)
    return 1 if n == 0 else k


def expected_invalid_ids(tok, data, add_special):
    """Byte-level tokenizers: valid runs as tokenizers encodes them, invalid
    runs through the BPE model as byte-level characters."""
    chars = _byte_chars()
    ids = []
    for part, valid in split_utf8_runs(data):
        if valid:
            ids += tok.encode(part.decode("utf-8"), add_special_tokens=False).ids
        else:
            ids += [t.id for t in tok.model.tokenize("".join(chars[b] for b in part))]
    if add_special:
        ids = _post(tok, ids)
    return ids


def normalize_runs(tok, data):
    """`data` with its valid runs normalized as the tokenizer's normalizer
    does (what the byte-level tokens of colo's ids spell)."""
    out = b""
    for part, valid in split_utf8_runs(data):
        if valid and tok.normalizer is not None:
            part = tok.normalizer.normalize_str(part.decode("utf-8")).encode("utf-8")
        out += part
    return out


def _post(tok, ids):
    """The post-processor's effect on a single sequence: encode "" with and
    without special tokens tells what is added around it."""
    with_special = tok.encode("", add_special_tokens=True).ids
    return with_special + ids if with_special else ids


def compare_tokenizer(name, tok, binary, tmp, strings, invalid, *, byte_level, sp_model=None, extra_files=None,
                      round_trip=True):
    d = os.path.join(tmp, name)
    os.makedirs(d, exist_ok=True)
    if tok is not None:
        tok.save(os.path.join(d, "tokenizer.json"))
    for fname, content in (extra_files or {}).items():
        with open(os.path.join(d, fname), "wb") as f:
            f.write(content)

    reqs, expect = [], []
    for s in strings:
        for add in (True, False):
            if sp_model is not None:
                want = sp_encode(sp_model, s, add)
            else:
                want = tok.encode(s, add_special_tokens=add).ids
            reqs.append({"encode": s, "add_special_tokens": add})
            expect.append(("encode", s, add, want))
    for raw in invalid:
        if byte_level:
            want = expected_invalid_ids(tok, raw, True)
        elif sp_model is not None:
            want = sp_encode(sp_model, raw.decode("utf-8", errors="replace"), True)
        else:
            want = tok.encode(raw.decode("utf-8", errors="replace")).ids
        reqs.append({"encode_hex": raw.hex()})
        expect.append(("encode_invalid", raw, True, want))
    replies = run_cli(binary, d, reqs)
    ids_for_decode = []
    for (kind, s, add, want), got in zip(expect, replies):
        check(got.get("ids") == want, f"{name} {kind} add_special={add} {s!r}: colo {got} hf {want}")
        if kind == "encode_invalid" and byte_level and round_trip and "ids" in got:
            check(bytes_of_tokens(tok, got["ids"][len(_post(tok, [])):]) == normalize_runs(tok, s),
                  f"{name} invalid UTF-8 bytes do not round-trip: {s!r}")
        if add:
            ids_for_decode.append(want)

    # Decode: the ids above plus random id sequences (all ids, specials included).
    vocab = sp_model.get_piece_size() if sp_model is not None else tok.get_vocab_size()
    rng = random.Random(hash(name) & 0xFFFF)
    for _ in range(len(strings) // 2):
        ids_for_decode.append([rng.randrange(vocab) for _ in range(rng.randint(0, 24))])
    reqs, expect = [], []
    for ids in ids_for_decode:
        for skip in (False, True):
            want = sp_decode(sp_model, ids, skip) if sp_model is not None else tok.decode(ids, skip_special_tokens=skip)
            reqs.append({"decode": ids, "skip_special_tokens": skip})
            expect.append(("decode", ids, skip, want))
            reqs.append({"stream": ids, "skip_special_tokens": skip})
            expect.append(("stream", ids, skip, want))
    replies = run_cli(binary, d, reqs)
    for (kind, ids, skip, want), got in zip(expect, replies):
        if kind == "decode":
            check(got.get("text") == want, f"{name} decode skip={skip} {ids}: colo {got} hf {want!r}")
        else:
            deltas = got.get("deltas", [])
            check("".join(deltas) == want and got.get("text") == want,
                  f"{name} stream skip={skip} {ids}: colo {got} full decode {want!r}")
            check(all("\ufffd" not in dl or "\ufffd" in want for dl in deltas),
                  f"{name} stream emitted U+FFFD that the full decode does not have: {ids} {deltas}")
    # Out-of-range ids are an error, not a crash.
    bad = run_cli(binary, d, [{"decode": [vocab + 5]}, {"decode": [-1]}])
    check(all(r.get("code") == "INVALID_ARGUMENT" for r in bad), f"{name} bad ids: {bad}")
    print(f"{name}: {len(strings)} strings, {len(invalid)} invalid UTF-8, {len(ids_for_decode)} decodes",
          file=sys.stderr)


def sp_encode(sp, text, add):
    """sentencepiece's ids with control pieces matched in the text (as
    transformers does for special tokens) and BOS prepended."""
    specials = [(sp.id_to_piece(i), i) for i in range(sp.get_piece_size()) if sp.is_control(i) or sp.is_unknown(i)]
    ids = [sp.bos_id()] if add else []
    pos = 0
    while pos <= len(text):
        best = None
        for piece, i in specials:
            j = text.find(piece, pos)
            if j >= 0 and (best is None or j < best[0] or (j == best[0] and len(piece) > len(best[1]))):
                best = (j, piece, i)
        end = best[0] if best else len(text)
        if end > pos:
            ids += sp.encode(text[pos:end])
        if not best:
            break
        ids.append(best[2])
        pos = best[0] + len(best[1])
    return ids


def sp_decode(sp, ids, skip):
    out, run = "", []

    def flush():
        nonlocal out, run
        if run:
            text = sp.decode(run)
            if out and sp.id_to_piece(run[0]).startswith("▁") and not text.startswith(" "):
                out += " "
            out += text
            run = []
    for i in ids:
        if sp.is_control(i) or sp.is_unknown(i):
            if skip:
                continue
            flush()
            out += sp.id_to_piece(i)
        else:
            run.append(i)
    flush()
    return out


def compare_tiny_models(binary, tiny_model, tmp, strings):
    from transformers import AutoTokenizer
    for vocab in (64, 256, 300, 4096):
        d = os.path.join(tmp, f"tiny{vocab}")
        subprocess.run([tiny_model, "--out=" + d, f"--vocab={vocab}", "--layers=1", "--hidden=16", "--heads=2",
                        "--kv_heads=1"], check=True, stdout=subprocess.DEVNULL)
        hf = AutoTokenizer.from_pretrained(d)
        check(len(hf) == vocab, f"tiny{vocab}: AutoTokenizer has {len(hf)} ids")
        reqs, expect = [{"info": True}], [None]
        for s in strings:
            for add in (True, False):
                reqs.append({"encode": s, "add_special_tokens": add})
                expect.append(("encode", s, add, hf(s, add_special_tokens=add)["input_ids"]))
        replies = run_cli(binary, d, reqs)
        info = replies[0]
        check(info.get("vocab_size") == vocab and info.get("bos_id") == hf.bos_token_id and
              info.get("eos_id") == hf.eos_token_id and info.get("pad_id") == hf.pad_token_id,
              f"tiny{vocab} info {info} vs bos {hf.bos_token_id} eos {hf.eos_token_id} pad {hf.pad_token_id}")
        decode_reqs, decode_expect = [], []
        for (kind, s, add, want), got in zip(expect[1:], replies[1:]):
            check(got.get("ids") == want, f"tiny{vocab} encode add_special={add} {s!r}: colo {got} hf {want}")
            for skip in (False, True):
                decode_reqs.append({"decode": want, "skip_special_tokens": skip})
                decode_expect.append((want, skip, hf.decode(want, skip_special_tokens=skip)))
        for (ids, skip, want), got in zip(decode_expect, run_cli(binary, d, decode_reqs)):
            check(got.get("text") == want, f"tiny{vocab} decode skip={skip} {ids}: colo {got} hf {want!r}")
        print(f"tiny{vocab}: {len(strings)} strings through AutoTokenizer", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("colo_tokenize")
    ap.add_argument("--strings", type=int, default=3000)
    ap.add_argument("--tiny_model", help="colo-tiny-model binary (checks its tokenizer in AutoTokenizer)")
    args = ap.parse_args()
    train = corpus.make_strings(seed=1, count=4000, added=())
    strings = corpus.make_strings(seed=2, count=args.strings, added=ADDED_TEXT)
    invalid = corpus.make_invalid_utf8(seed=3, count=max(50, args.strings // 20))
    with tempfile.TemporaryDirectory() as tmp:
        compare_tokenizer("qwen2", byte_level_bpe(train, QWEN2, nfc=True), args.colo_tokenize, tmp, strings,
                          invalid, byte_level=True)
        compare_tokenizer("llama3", byte_level_bpe(train, LLAMA3, ignore_merges=True, bos="<|begin_of_text|>"),
                          args.colo_tokenize, tmp, strings, invalid, byte_level=True)
        compare_tokenizer("o200k", byte_level_bpe(train, O200K), args.colo_tokenize, tmp, strings, invalid,
                          byte_level=True)
        # GPT-2's add_prefix_space adds a space before every run of text
        # (after each added token, as tokenizers does, and after each invalid
        # run), so its bytes are not the input's: ids are still compared.
        compare_tokenizer("gpt2", byte_level_bpe(train, None, gpt2=True), args.colo_tokenize, tmp, strings,
                          invalid, byte_level=True, round_trip=False)
        import sentencepiece as spm
        model_file = train_sentencepiece(train, os.path.join(tmp, "sp"))
        sp = spm.SentencePieceProcessor(model_file=model_file)
        with open(model_file, "rb") as f:
            model_bytes = f.read()
        compare_tokenizer("sentencepiece_model", None, args.colo_tokenize, tmp, strings, invalid,
                          byte_level=False, sp_model=sp, extra_files={"tokenizer.model": model_bytes})
        compare_tokenizer("sentencepiece_json_legacy", sentencepiece_json(model_file, legacy=True),
                          args.colo_tokenize, tmp, strings, invalid, byte_level=False)
        compare_tokenizer("sentencepiece_json_metaspace", sentencepiece_json(model_file, legacy=False),
                          args.colo_tokenize, tmp, strings, invalid, byte_level=False)
        if args.tiny_model:
            compare_tiny_models(args.colo_tokenize, args.tiny_model, tmp, strings[:1000])
    if failures:
        print(f"FAILED: {len(failures)} mismatches", file=sys.stderr)
        sys.exit(1)
    print("OK", file=sys.stderr)


if __name__ == "__main__":
    main()
