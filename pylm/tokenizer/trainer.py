"""train_bpe: a byte-level BPE tokenizer learned from text, ready to store in a GGUF.

Counting and merging are native (csrc/tokenizer/trainer.cpp): words come from the same
pre-tokenizer the tokenizer will use, then the most frequent adjacent pair is merged until the
vocabulary is full, with incremental pair counts (not quadratic in the number of merges).

Worked example (Sennrich et al. 2016): words " low" x5, " lower" x2, " newest" x6 give pair
counts (l,o)=7 (o,w)=7 (w,e)=8 (e,r)=2 (n,e)=6 (e,s)=6 (s,t)=6 (plus the pairs with the
leading-space marker); the first merge is (w,e) -> "we".

>>> tok = train_bpe([" low"] * 5 + [" lower"] * 2 + [" newest"] * 6, vocab_size=258)
>>> tok.merges[0]
('w', 'e')
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable

from .. import _core
from .tokenizer import Tokenizer

# GPT-2 byte alphabet: byte b -> printable character (see csrc/tokenizer/unicode.h).
_DIRECT = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]


def _byte_alphabet() -> list[str]:
    out, n = [""] * 256, 0
    for b in range(256):
        if b in _DIRECT:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + n)
            n += 1
    return out


BYTE_ALPHABET = _byte_alphabet()


def _encode_bytes(b: bytes) -> str:
    return "".join(BYTE_ALPHABET[x] for x in b)


def _progress(done: int, total: int, t0: float, out=sys.stderr) -> None:
    width = 30
    frac = done / total if total else 1.0
    bar = "#" * int(frac * width)
    out.write(f"\rtrain_bpe [{bar:<{width}}] {done}/{total} merges {time.perf_counter() - t0:.1f}s")
    out.flush()


def train_bpe(texts: Iterable[str | bytes], vocab_size: int, pre: str = "gpt2",
              special_tokens: Iterable[str] = (), min_frequency: int = 2,
              progress: bool = False, batch: int = 4096) -> Tokenizer:
    """Learns a byte-level BPE tokenizer.

    Args:
        texts: an iterable of str (or UTF-8 bytes); consumed in batches, so a generator works.
        vocab_size: total tokens: special tokens + 256 byte tokens + merges.
        pre: the pre-tokenizer ("gpt2", "smollm", "llama-bpe", "qwen2"), stored as
            tokenizer.ggml.pre so llama.cpp splits text the same way.
        special_tokens: control tokens (e.g. "<|endoftext|>") placed first, ids 0, 1, ...;
            the first is also BOS and EOS.
        min_frequency: stop when the best pair occurs fewer times than this.
        progress: draw a progress bar on stderr.

    Returns:
        A Tokenizer; ``.merges`` lists the merges in order and ``.to_gguf_metadata()`` gives the
        ``tokenizer.ggml.*`` keys for a GGUF writer.
    """
    specials = list(dict.fromkeys(special_tokens))
    n_merges = int(vocab_size) - 256 - len(specials)
    if n_merges < 0:
        raise ValueError(f"train_bpe: vocab_size={vocab_size} is smaller than 256 byte tokens + "
                         f"{len(specials)} special tokens")
    if min_frequency < 1:
        raise ValueError(f"train_bpe: min_frequency must be >= 1, got {min_frequency}")
    trainer = _core.BpeTrainer(pre)
    buf: list = []
    for t in texts:
        buf.append(t)
        if len(buf) >= batch:
            trainer.add_texts(buf)
            buf.clear()
    if buf:
        trainer.add_texts(buf)
    trainer.start()
    t0 = time.perf_counter()
    done, chunk = 0, max(1, n_merges // 100)
    while done < n_merges:
        k = trainer.step(min(chunk, n_merges - done), min_frequency)
        done += k
        if progress:
            _progress(done, n_merges, t0)
        if k == 0:
            break
    if progress:
        sys.stderr.write("\n")
    return _build(trainer, specials, pre)


def _build(trainer: _core.BpeTrainer, specials: list[str], pre: str) -> Tokenizer:
    symbols = trainer.symbols  # raw bytes per symbol: 0..255 are the bytes, then merges in order
    merges = trainer.merges
    tokens = list(specials) + [_encode_bytes(s) for s in symbols]
    types = [3] * len(specials) + [1] * len(symbols)
    merge_lines = [f"{_encode_bytes(symbols[a])} {_encode_bytes(symbols[b])}" for a, b in merges]
    p = "tokenizer.ggml."
    meta = {p + "model": "gpt2", p + "pre": pre, p + "tokens": tokens, p + "token_type": types,
            p + "merges": merge_lines, p + "add_bos_token": False, p + "add_eos_token": False}
    if specials:
        meta[p + "bos_token_id"] = 0
        meta[p + "eos_token_id"] = 0
    return Tokenizer.from_metadata(meta)
