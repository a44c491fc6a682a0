"""A tiny deterministic stand-in for pylm.Model (same sequence API), so the generation loop and
speculative decoding can be tested exactly and fast: its logits depend on the last two tokens
through fixed random tables, and a batched feed returns exactly what single feeds would."""

from __future__ import annotations

import numpy as np

# Pieces of text per token id: words, spaces, newlines and punctuation so that stop strings can
# span token boundaries.
_WORDS = ["The", " cat", " sat", " on", " the", " mat", ".", "\n", "User", ":", " Hello", "!",
          " world", ",", " and", " then", "\n\n", " a", " dog", "?", "Ass", "istant", " x", "y"]


def piece(i: int) -> str:
    return _WORDS[i % len(_WORDS)] + ("" if i < len(_WORDS) else str(i // len(_WORDS)))


class FakeSeq:
    def __init__(self, m: "FakeModel"):
        self.m, self.toks = m, []
        m.live += 1

    def __len__(self) -> int:
        return len(self.toks)

    def feed(self, tokens, all_logits: bool = False) -> np.ndarray:
        tokens = [int(t) for t in tokens]
        if not tokens:
            raise ValueError("feed: no tokens")
        if len(self.toks) + len(tokens) > self.m.n_ctx:
            raise ValueError(f"context of {self.m.n_ctx} exceeded")
        if self.m.fail_after is not None and self.m.calls >= self.m.fail_after:
            raise RuntimeError("injected failure")
        self.m.calls += 1
        self.m.fed += len(tokens)
        rows = []
        for t in tokens:
            self.toks.append(t)
            rows.append(self.m.row(self.toks))
        return np.stack(rows) if all_logits else rows[-1]

    def truncate(self, n: int) -> None:
        assert 0 <= n <= len(self.toks), (n, len(self.toks))
        del self.toks[n:]

    def free(self) -> None:
        self.m.live -= 1


class FakeModel:
    """logits(context) = sharp * A[last] + B[second to last] (float32)."""

    def __init__(self, V: int = 48, seed: int = 0, sharp: float = 3.0, n_ctx: int = 512,
                 base: "FakeModel | None" = None, noise: float = 0.0, eos: int = 7):
        rng = np.random.default_rng(seed)
        if base is None:
            self.A = rng.standard_normal((V, V)) * sharp
            self.B = rng.standard_normal((V, V))
        else:  # a "draft": the base model's tables plus noise
            V = base.n_vocab
            self.A = base.A + noise * rng.standard_normal(base.A.shape)
            self.B = base.B + noise * rng.standard_normal(base.B.shape)
        self.n_vocab, self.n_ctx, self.eos = V, n_ctx, eos
        self.calls = self.fed = self.live = 0
        self.fail_after = None
        self.metadata: dict = {}
        self.tokenizer = None

    def row(self, toks) -> np.ndarray:
        u = toks[-2] if len(toks) > 1 else 0
        return (self.A[toks[-1]] + self.B[u]).astype(np.float32)

    def new_sequence(self) -> FakeSeq:
        return FakeSeq(self)

    def eog_ids(self) -> set[int]:
        return {self.eos}

    def tokenize(self, text, add_special=None, parse_special=False):
        raise TypeError("FakeModel takes token ids")


class FakeDetok:
    def __init__(self, *_):
        pass

    def push(self, t: int) -> str:
        return piece(t)

    def flush(self) -> str:
        return ""


def greedy_reference(m: FakeModel, ids: list[int], n: int, eos: bool = True) -> list[int]:
    """Plain greedy decoding, one token per step, stopping at m.eos."""
    toks = list(ids)
    out = []
    for _ in range(n):
        t = int(np.argmax(m.row(toks)))
        if eos and t == m.eos:
            break
        out.append(t)
        toks.append(t)
    return out
