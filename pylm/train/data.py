"""Training data: a tokenizer (trained BPE, a GGUF's, or a byte-level fallback), a text file
tokenized once, a held-out validation split, and random / sequential windows of T tokens.

>>> tok = ByteTokenizer()
>>> tok.encode("hi"), tok.decode(tok.encode("hi")), tok.n_vocab
([105, 106], 'hi', 257)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

EOT = "<|endoftext|>"

# GPT-2 byte alphabet (byte -> printable character), as byte-level BPE vocabularies store it.
_DIRECT = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]


def _byte_alphabet() -> list[str]:
    out, n = [], 0
    for b in range(256):
        if b in _DIRECT:
            out.append(chr(b))
        else:
            out.append(chr(256 + n))
            n += 1
    return out


class ByteTokenizer:
    """Fallback tokenizer: id 0 = <|endoftext|>, ids 1..256 = the bytes. Exported as a GPT-2
    style BPE vocabulary without merges, which llama.cpp and pylm both read."""

    n_vocab = 257
    eos_id = 0
    bos_id = 0

    def encode(self, text: str | bytes, add_special: bool = False) -> list[int]:
        b = text.encode("utf-8") if isinstance(text, str) else text
        return [x + 1 for x in b]

    def decode(self, ids) -> str:
        return bytes(int(i) - 1 for i in ids if 0 < int(i) <= 256).decode("utf-8", "replace")

    def to_gguf_metadata(self) -> dict:
        p = "tokenizer.ggml."
        return {p + "model": "gpt2", p + "pre": "gpt-2", p + "tokens": [EOT, *_byte_alphabet()],
                p + "token_type": [3] + [1] * 256, p + "merges": np.array([], dtype=str),
                p + "bos_token_id": np.uint32(0), p + "eos_token_id": np.uint32(0),
                p + "add_bos_token": False, p + "add_eos_token": False}


def _bpe_module():
    try:
        from .. import tokenizer as tk  # pylm.tokenizer (native BPE + trainer)

        return tk if hasattr(tk, "train_bpe") else None
    except ImportError:
        return None


def make_tokenizer(text: str, tokenizer=None, vocab_size: int | None = None, progress=False):
    """The tokenizer to train with.

    Args:
        tokenizer: None (train a BPE on `text`), a path to a GGUF model or a tokenizer JSON
            (pylm.tokenizer), or an object with encode / decode / n_vocab / to_gguf_metadata.
        vocab_size: size of the BPE to train (default 4096). Without pylm.tokenizer the
            byte-level ByteTokenizer (257 tokens) is used instead.
    """
    if tokenizer is not None and not isinstance(tokenizer, (str, os.PathLike)):
        return tokenizer
    tk = _bpe_module()
    if tokenizer is not None:
        if tk is None:
            raise RuntimeError("reading a tokenizer file needs pylm.tokenizer, which is missing")
        path = Path(tokenizer)
        return tk.Tokenizer.from_gguf(path) if path.suffix == ".gguf" else tk.Tokenizer.load(path)
    if tk is None or vocab_size == ByteTokenizer.n_vocab:
        return ByteTokenizer()
    lines = text.splitlines(keepends=True)
    return tk.train_bpe(lines, int(vocab_size or 4096), pre="gpt2", special_tokens=[EOT],
                        progress=progress)


def tokenize(text: str, tok) -> np.ndarray:
    """Token ids of text as int32, in chunks of paragraphs (bounded memory per call)."""
    parts, chunk = [], 1 << 20
    start = 0
    while start < len(text):
        end = min(len(text), start + chunk)
        if end < len(text):  # cut after a newline so no token straddles two chunks
            nl = text.rfind("\n", start, end)
            end = nl + 1 if nl > start else end
        parts.append(np.asarray(tok.encode(text[start:end]), dtype=np.int32))
        start = end
    return np.concatenate(parts) if parts else np.zeros(0, np.int32)


def split(tokens: np.ndarray, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation): the last val_fraction of the tokens is held out."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n_val = int(len(tokens) * val_fraction)
    return tokens[: len(tokens) - n_val], tokens[len(tokens) - n_val:]


class Windows:
    """Windows of T tokens from a 1-D token array: (ids [B, T], targets [B, T]).

    Targets are the next tokens, or, with ``labels`` (same length as tokens), labels[i] is the
    target at position i: e.g. a teacher's prediction there (distillation), negative where
    nothing is to be learned (a prompt, the seam between two documents)."""

    def __init__(self, tokens: np.ndarray, T: int, labels: np.ndarray | None = None):
        self.tokens = np.ascontiguousarray(tokens, dtype=np.int32)
        self.T = int(T)
        if labels is None:  # next-token targets: a window needs one token more
            self.labels, self._extra = self.tokens[1:], 1
        else:
            self.labels, self._extra = np.ascontiguousarray(labels, dtype=np.int32), 0
            if self.labels.shape != self.tokens.shape:
                raise ValueError(f"labels has shape {self.labels.shape}, tokens {self.tokens.shape}")
        if len(self.tokens) < self.T + self._extra:
            raise ValueError(f"need at least {self.T + self._extra} tokens for windows of "
                             f"T = {self.T}, got {len(self.tokens)}")

    @property
    def n_windows(self) -> int:
        """Start positions a window can take."""
        return len(self.tokens) - self.T - self._extra + 1

    def _take(self, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        idx = starts[:, None] + np.arange(self.T)[None, :]
        return np.ascontiguousarray(self.tokens[idx]), np.ascontiguousarray(self.labels[idx])

    def sample(self, B: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """B windows at uniformly random offsets."""
        return self._take(rng.integers(0, self.n_windows, B))

    def sequential(self, B: int, max_batches: int | None = None):
        """Non-overlapping windows in order, B at a time. A last partial batch is dropped
        unless it is the only one (a new batch shape would mean new activation buffers)."""
        n = (len(self.tokens) - self._extra) // self.T
        if n >= B:
            n = n // B * B
        starts = np.arange(n) * self.T
        for i, b in enumerate(range(0, n, B)):
            if max_batches is not None and i >= max_batches:
                return
            yield self._take(starts[b:b + B])
