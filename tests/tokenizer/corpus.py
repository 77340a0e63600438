"""Deterministic test strings for the tokenizer parity tests.

Mixes what trips tokenizers: ASCII words and contractions, digits runs,
punctuation, whitespace runs (spaces, tabs, newlines, CRLF, Unicode spaces),
emoji (ZWJ sequences, flags, skin tones), CJK, Hangul (precomposed and as
jamo, so NFC matters), combining marks (precomposed vs decomposed), RTL
scripts, Devanagari, symbols, and caller-provided added/special tokens.
"""
import random

WORDS = ("the quick brown fox jumps over lazy dog hello world tokenizer colo engine rollout "
         "weights memory cache radix page request stream sample token model layer attention "
         "I you we they it's don't can't we'll they've she'd I'm THE Hello HELLO CamelCase "
         "snake_case x y z a an of to in is on at by for with naïve café résumé façade "
         "Straße ſs İstanbul ǅ").split()
PUNCT = list(".,;:!?\"'()[]{}<>-_=+*/\\|@#$%^&~`…—–«»¿¡")
SPACES = [" ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n", "\t\t", "\u00a0", "\u3000",
          "\u2028", "\u0085", "\u2009", "\u200b", "\u180e", "\u202f", "\ufeff", "      ", "\n \n"]
EMOJI = ["😀", "👍🏽", "👨‍👩‍👧‍👦", "🇫🇷", "🏳️‍🌈", "❤️", "🤖", "✨", "🧪", "🐍", "👩🏿‍💻", "1️⃣", "🫠"]
CJK = ["你好", "世界", "中文分词", "東京", "日本語のテキスト", "カタカナ", "ひらがな", "漢字", "한국어", "안녕하세요",
       "\u1100\u1161\u11a8", "\u1112\u1161\u11ab", "中", "𠀀𠀁", "〜", "。", "，"]
MARKS = ["e\u0301", "a\u0308", "o\u0302\u0323", "\u0301", "n\u0303", "A\u030a", "ñ", "é", "ǖ",
         "q\u0307\u0323", "\u0915\u093f", "\u0928\u092e\u0938\u094d\u0924\u0947"]
OTHER = ["مرحبا", "שלום", "Привет", "Ελληνικά", "ไทย", "∑∫√∞", "€£¥", "½", "²", "ﬁ", "Ⅻ",
         "①", "ℌ", "\u0000", "\u0007", "\x7f", "\U0010ffff", "\ufffd", "Ａ", "ｶ"]


def _number(rng):
    n = rng.choice([1, 2, 3, 4, 5, 7, 12])
    return "".join(rng.choice("0123456789") for _ in range(n))


def _chunk(rng, added):
    r = rng.random()
    if r < 0.40:
        return rng.choice(WORDS)
    if r < 0.50:
        return _number(rng)
    if r < 0.58:
        return "".join(rng.choice(PUNCT) for _ in range(rng.randint(1, 3)))
    if r < 0.66:
        return rng.choice(EMOJI)
    if r < 0.74:
        return rng.choice(CJK)
    if r < 0.80:
        return rng.choice(MARKS)
    if r < 0.86:
        return rng.choice(OTHER)
    if r < 0.92 and added:
        return rng.choice(added)
    return "".join(rng.choice(WORDS[:20]) for _ in range(rng.randint(2, 4)))  # long words


def make_strings(seed, count, added=(), max_chunks=24):
    """`count` strings; chunks joined by spaces or whitespace runs."""
    rng = random.Random(seed)
    out = ["", " ", "  ", "\n", "hello", " hello", "hello ", "a", "'s", "'S", "'ll", " 's",
           "123456789", "1 2 3", "  leading", "trailing  ", "\t\ttabs", "x\r\ny", "ſ's", "K'LL"]
    for a in added:
        out += [a, " " + a, a + " ", "x" + a + "y", a + a, " " + a + "  " + a + " ", "word" + a, a + "word"]
    while len(out) < count:
        parts = []
        for _ in range(rng.randint(1, max_chunks)):
            parts.append(_chunk(rng, list(added)))
            parts.append(rng.choice(SPACES) if rng.random() < 0.3 else " " if rng.random() < 0.8 else "")
        out.append("".join(parts))
    return out[:count]


def make_invalid_utf8(seed, count):
    """Byte strings that are not valid UTF-8 (stray continuation bytes,
    truncated sequences, overlongs, surrogates, bytes that never occur)."""
    rng = random.Random(seed)
    bad = [b"\x80", b"\xbf", b"\xc0\xaf", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80", b"\xf0\x9f\x98",
           b"\xf4\x90\x80\x80", b"\xff", b"\xfe\xff", b"\xf8\x88\x80\x80\x80", b"\xc1\xbf", b"\xe0\x80\x80"]
    valid = make_strings(seed + 1, count)
    out = []
    for i in range(count):
        s = valid[i].encode("utf-8")
        for _ in range(rng.randint(1, 3)):
            pos = rng.randint(0, len(s))
            s = s[:pos] + rng.choice(bad) + s[pos:]
        out.append(s)
    out += [b"\xff", b"\x80\x80\x80", b"abc\xe2\x82", b"\xe2\x82abc", b"\xc3\xa9\xc3"]
    return out
