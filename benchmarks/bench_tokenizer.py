#!/usr/bin/env python3
"""Tokenizer throughput: MB/s of encoding >= 10 MB of mixed text on one thread.

Compared on the same vocabulary (SmolLM2's byte-level BPE, 49k tokens):
  pylm           pylm.tokenizer.Tokenizer (native, word cache)
  hf-tokenizers  HF `tokenizers` BPE built from the GGUF vocab/merges (digits split, byte-level)
  tiktoken       tiktoken.Encoding with SmolLM2's merges as ranks and its regex
  llama.cpp      llama-cpp-python, Llama(vocab_only=True).tokenize
plus pylm and llama.cpp on Gemma 3's SentencePiece-style vocabulary (262k tokens).

The text is generated deterministically from benchmarks/data/tokenizer_seed.txt (prose, code,
eight scripts, emoji, numbers): lines are drawn with a seeded RNG, numbers are re-rolled, and
documents of ~4 KB are encoded one call at a time. Agreement with llama.cpp's ids is reported
for every tokenizer (HF and tiktoken are not exact for this vocabulary).

Usage: python benchmarks/bench_tokenizer.py [--mb 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import time
from pathlib import Path

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # HF tokenizers: one thread
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CACHE = Path(os.environ.get("PYLM_CACHE") or Path.home() / ".cache" / "pylm")
SMOLLM2 = CACHE / "SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA3 = CACHE / "gemma-3-270m-q4_k_m.gguf"


def make_corpus(mb: float, seed: int = 1234, doc_bytes: int = 4096) -> list[str]:
    lines = (ROOT / "benchmarks" / "data" / "tokenizer_seed.txt").read_text("utf-8").splitlines()
    rng = random.Random(seed)
    num = re.compile(r"\d+")
    docs, cur, size, total = [], [], 0, 0
    target = int(mb * 1e6)
    while total < target:
        line = num.sub(lambda m: str(rng.randint(0, 10 ** len(m.group()))), rng.choice(lines))
        cur.append(line)
        n = len(line.encode("utf-8")) + 1
        size += n
        total += n
        if size >= doc_bytes:
            docs.append("\n".join(cur) + "\n")
            cur, size = [], 0
    if cur:
        docs.append("\n".join(cur) + "\n")
    return docs


def make_train_corpus(mb: float, seed: int = 99) -> list[str]:
    """Synthetic text with a Zipf-like distribution over 50k invented words (the encoding
    corpus repeats its seed lines, too few distinct words to train a vocabulary on)."""
    rng = random.Random(seed)
    syl = ["ka", "ri", "to", "men", "sa", "lo", "ve", "ne", "qu", "is", "an", "el", "or", "th",
           "st", "ing", "ed", "er", "pre", "con", "tion", "al", "ou", "ch", "mi", "da", "z", "x"]
    words = ["".join(rng.choice(syl) for _ in range(rng.randint(1, 4))) for _ in range(50000)]
    weights = [1.0 / (r + 10) for r in range(len(words))]
    docs, total = [], 0
    while total < mb * 1e6:
        ws = rng.choices(words, weights, k=600)
        doc = " ".join(w.capitalize() if rng.random() < 0.05 else w for w in ws) + ".\n"
        docs.append(doc)
        total += len(doc)
    return docs


def timed(fn, docs, repeat: int = 2) -> tuple[float, list]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = [fn(d) for d in docs]
        best = min(best, time.perf_counter() - t0)
    return best, out


def hf_from_gguf(meta):
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers

    vocab = {t.decode("utf-8"): i for i, t in enumerate(meta["tokenizer.ggml.tokens"].tolist())}
    merges = [tuple(m.decode("utf-8").split(" ", 1)) for m in meta["tokenizer.ggml.merges"].tolist()]
    hf = HFTokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=False))
    hf.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    hf.decoder = decoders.ByteLevel()
    return hf


def tiktoken_from_gguf(meta):
    import tiktoken

    from pylm.tokenizer.trainer import BYTE_ALPHABET

    inv = {c: b for b, c in enumerate(BYTE_ALPHABET)}

    def raw(s: str) -> bytes:
        return bytes(inv[c] for c in s)

    ranks = {bytes([b]): b for b in range(256)}
    for i, m in enumerate(meta["tokenizer.ggml.merges"].tolist()):
        a, b = m.decode("utf-8").split(" ", 1)
        ranks.setdefault(raw(a) + raw(b), 256 + i)
    # SmolLM2: every digit alone, then GPT-2's regex.
    pat = r"""\p{N}|'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
    enc = tiktoken.Encoding("smollm2-ranks", pat_str=pat, mergeable_ranks=ranks, special_tokens={})
    vocab = {t: i for i, t in enumerate(meta["tokenizer.ggml.tokens"].tolist())}
    to_id = {}
    for tb, r in ranks.items():
        text = "".join(BYTE_ALPHABET[x] for x in tb).encode("utf-8")
        to_id[r] = vocab.get(text, -1)
    return enc, to_id


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=10.0, help="megabytes of text (default 10)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    from pylm import set_threads
    from pylm.tokenizer import Tokenizer, read_tokenizer_metadata

    set_threads(1)
    docs = make_corpus(args.mb)
    nbytes = sum(len(d.encode("utf-8")) for d in docs)
    mb = nbytes / 1e6
    print(f"text: {mb:.1f} MB in {len(docs)} documents, one thread")
    results = {}

    def report(name, secs, ids, ref_ids, map_ids=None):
        if map_ids:
            ids = [[map_ids.get(i, -1) for i in d] for d in ids]
        same = sum(a == b for a, b in zip(ids, ref_ids)) / len(ref_ids) if ref_ids else float("nan")
        results[name] = {"seconds": secs, "MB_per_s": mb / secs, "docs_identical_to_llama_cpp": same,
                         "tokens": sum(len(d) for d in ids)}
        print(f"  {name:<22} {mb / secs:8.2f} MB/s  {results[name]['tokens']:>10} tokens  "
              f"ids == llama.cpp: {same * 100:.1f}% of documents")

    try:
        import llama_cpp
    except ImportError:
        llama_cpp = None

    for label, path in (("SmolLM2 (byte-level BPE)", SMOLLM2), ("Gemma 3 (SPM)", GEMMA3)):
        if not path.exists():
            print(f"{label}: {path} not found, skipped")
            continue
        print(label)
        key = "smollm2" if path == SMOLLM2 else "gemma3"
        ref_ids = []
        if llama_cpp is not None:
            llm = llama_cpp.Llama(str(path), vocab_only=True, verbose=False)

            def llama_encode(d, llm=llm):
                return llm.tokenize(d.encode("utf-8"), add_bos=False, special=False)

            secs, ref_ids = timed(llama_encode, docs, 1)
            report(f"{key}/llama.cpp", secs, ref_ids, ref_ids)
        tok = Tokenizer.from_gguf(path)
        secs, ids = timed(tok.encode, docs)
        report(f"{key}/pylm", secs, ids, ref_ids)
        if key == "smollm2":
            meta = read_tokenizer_metadata(path)
            try:
                hf = hf_from_gguf(meta)

                def hf_encode(d, hf=hf):
                    return hf.encode(d, add_special_tokens=False).ids

                secs, ids = timed(hf_encode, docs)
                report(f"{key}/hf-tokenizers", secs, ids, ref_ids)
            except ImportError:
                print("  hf-tokenizers not installed, skipped")
            try:
                enc, to_id = tiktoken_from_gguf(meta)
                secs, ids = timed(enc.encode_ordinary, docs)
                report(f"{key}/tiktoken", secs, ids, ref_ids, to_id)
            except ImportError:
                print("  tiktoken not installed, skipped")
            base = results[f"{key}/pylm"]["MB_per_s"]
            for other in ("hf-tokenizers", "tiktoken", "llama.cpp"):
                if f"{key}/{other}" in results:
                    ratio = base / results[f"{key}/{other}"]["MB_per_s"]
                    results[f"{key}/pylm_vs_{other}"] = ratio
                    print(f"  pylm / {other}: {ratio:.2f}x")
    from pylm.tokenizer import train_bpe

    train_docs = make_train_corpus(min(args.mb, 5.0))
    mb = sum(len(d) for d in train_docs) / 1e6
    t0 = time.perf_counter()
    trained = train_bpe(train_docs, vocab_size=8192, pre="smollm")
    secs = time.perf_counter() - t0
    results["train_bpe"] = {"seconds": secs, "MB_per_s": mb / secs, "merges": trained.n_merges}
    print(f"train_bpe on {mb:.1f} MB (synthetic words, vocab 8192): {secs:.2f} s, "
          f"{trained.n_merges} merges, {mb / secs:.1f} MB/s")
    if args.json:
        Path(args.json).write_text(json.dumps({"MB": mb, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
