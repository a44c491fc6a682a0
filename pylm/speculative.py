"""Speculative decoding: a cheap proposer guesses γ tokens, the target checks them in ONE forward.

    m.generate(prompt, draft=pylm.load(small_path), n_draft=4)   # draft model (same vocabulary)
    m.generate(prompt, draft="ngram")                             # prompt lookup, no draft model

Each round (target cache = context minus its last token a; proposals d1..dγ with draft
distributions q1..qγ):

    target.feed([a, d1, ..., dγ], all_logits=True) -> p1..p(γ+1)      # one batched forward
    verify: accept di with probability min(1, pi(di) / qi(di)); at the first rejection draw from
            norm(max(0, pi - qi)); if all are accepted draw a bonus token from p(γ+1)
    truncate both KV caches past the last accepted token

This is Leviathan et al. 2023 ("Fast Inference from Transformers via Speculative Decoding"),
Algorithm 1: the output follows the target's distribution exactly. Greedy decoding is the case
where p and q are one-hot: the output is the target's greedy output, token for token (up to the
engine's batched and single-token logits agreeing on the argmax). Prompt lookup (Saxena 2023)
proposes the continuation of the latest earlier occurrence of the context's last n-gram, with a
one-hot q. Adaptive γ (`GammaController`): each round picks the γ that maximizes the expected
tokens per second under Leviathan et al.'s model, from running estimates of α (it shrinks after
rejections, grows after acceptances), of the draft's step time and of the target's verification
time as a function of its width (a γ+1-token forward is not free on a CPU).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

import numpy as np

from .sampling import Dist, Sampler, TokenLogprobs

__all__ = ["verify", "NgramProposer", "DraftProposer", "speculative_tokens"]


def _probs_at(d: Dist, toks: np.ndarray) -> np.ndarray:
    """d's probabilities of token ids toks (n,) -> (n,) float64."""
    if d.ids is None:
        return d.w[toks] / d.total
    i = np.minimum(np.searchsorted(d.ids, toks), len(d.ids) - 1)
    return np.where(d.ids[i] == toks, d.w[i], 0.0) / d.total


def residual(p: Dist, q: Dist) -> Dist:
    """norm(max(0, p - q)) over p's support (the residual is 0 outside it)."""
    toks = np.arange(p.n_vocab) if p.ids is None else p.ids
    r = np.maximum(p.w / p.total - _probs_at(q, toks), 0.0)
    if not r.sum() > 0:  # p == q up to rounding: the rejection had probability ~0; fall back to p
        return p
    return Dist(p.ids, r, p.n_vocab)


def verify(proposed: Sequence[int], q: Sequence[Dist], p: Sequence[Dist],
           rng: np.random.Generator) -> tuple[int, int]:
    """Leviathan et al.'s acceptance rule.

    Args:
        proposed: γ draft tokens.
        q: γ draft distributions (proposed[i] was drawn from q[i]).
        p: at least γ + 1 target distributions (p[i] scores proposed[i]; p[γ] gives the bonus);
            may be lazy (only p[0..n] are read, n = the number accepted).
        rng: one rng.random() per proposal examined, plus one for the final draw.
    Returns:
        (n accepted, the next token): resampled at the first rejection, else the bonus token.
    """
    for i, x in enumerate(proposed):
        qx = q[i].prob(x)
        if not qx > 0:
            raise ValueError(f"proposed token {x} at position {i} has probability 0 under its q")
        pi = p[i]
        if rng.random() * qx < pi.prob(x):  # u < p/q without dividing
            continue
        return i, residual(pi, q[i]).sample(rng)
    return len(proposed), p[len(proposed)].sample(rng)


class NgramProposer:
    """Prompt lookup: the continuation of the latest earlier occurrence of the context's last
    n-gram (n from n_max down to n_min)."""

    kind = "ngram"

    def __init__(self, n_vocab: int, n_max: int = 4, n_min: int = 1):
        if not 1 <= n_min <= n_max:
            raise ValueError(f"ngram sizes need 1 <= n_min <= n_max, got n_min={n_min}, "
                             f"n_max={n_max}")
        self.n_vocab, self.n_max, self.n_min = n_vocab, n_max, n_min

    def start(self, ids: list[int], stats) -> None:
        pass

    def propose(self, hist: list[int], gamma: int, stats) -> tuple[list[int], list[Dist]]:
        toks = self.lookup(hist, gamma)
        return toks, [Dist.one_hot(t, self.n_vocab) for t in toks]

    def lookup(self, hist: Sequence[int], gamma: int) -> list[int]:
        a = np.asarray(hist, dtype=np.int64)
        L = len(a)
        for n in range(min(self.n_max, L - 1), self.n_min - 1, -1):
            tail = a[L - n:]
            # starts s < L - n with a[s:s+n] == tail, latest first
            cand = np.flatnonzero(a[: L - n] == tail[0])
            for k in range(1, n):
                cand = cand[a[cand + k] == tail[k]]
            if len(cand):
                s = int(cand[-1]) + n
                return a[s: s + gamma].tolist()
        return []

    def accept(self, n_accepted: int, gamma: int) -> None:
        pass

    def close(self) -> None:
        pass


class DraftProposer:
    """A draft model with the target's vocabulary, sampling with the target's parameters."""

    kind = "draft"

    def __init__(self, draft, target, sampler: Sampler):
        if draft.n_vocab != target.n_vocab:
            raise ValueError(f"draft n_vocab={draft.n_vocab} but target n_vocab={target.n_vocab}")
        dt = draft.metadata.get("tokenizer.ggml.tokens")
        tt = target.metadata.get("tokenizer.ggml.tokens")
        if dt is not None and tt is not None and list(dt) != list(tt):
            raise ValueError("draft and target vocabularies differ (tokenizer.ggml.tokens)")
        self.model = draft
        seed = sampler.params.seed
        rng = np.random.Generator(np.random.PCG64([seed, 1] if seed is not None else None))
        self.sampler = Sampler(sampler.params, draft.n_vocab, rng=rng)
        self.seq = None

    def start(self, ids: list[int], stats) -> None:
        self.seq = self.model.new_sequence()
        self.seq.feed(ids)

    def propose(self, hist: list[int], gamma: int, stats) -> tuple[list[int], list[Dist]]:
        """γ tokens, feeding the draft everything in hist it has not seen, then its own guesses."""
        toks, qs = [], []
        gamma = min(gamma, self.model.n_ctx - len(hist) + 1)  # the draft sees hist + gamma - 1
        pending = hist[len(self.seq):]
        t0 = time.perf_counter()
        for _ in range(gamma):
            logits = self.seq.feed(pending)
            stats.draft_calls += 1
            q = self.sampler.dist(logits, hist + toks)
            x = q.sample(self.sampler.rng)
            toks.append(x)
            qs.append(q)
            pending = [x]
        stats.draft_s += time.perf_counter() - t0
        self.n_hist = len(hist)
        return toks, qs

    def accept(self, n_accepted: int, gamma: int) -> None:
        # The draft has seen hist + all proposals but the last; keep hist + the accepted ones.
        self.seq.truncate(min(len(self.seq), self.n_hist + n_accepted))

    def close(self) -> None:
        if self.seq is not None:
            self.seq.free()
            self.seq = None


class GammaController:
    """Chooses γ per round: argmax over 1..gamma_max of E[tokens] / E[time], where
    E[tokens] = (1 - α^(γ+1)) / (1 - α) and E[time] = γ t_draft + t_verify(γ + 1).

    α: accepted / examined proposals with exponential forgetting per examined proposal
    (~1/(1 - decay) proposals of memory, so a run at γ = 1 can still learn that α is high and
    grow γ again), smoothed by half a pseudo-proposal (Jeffreys) rather than Laplace's two:
    Laplace puts a fully accepted first round of 5 at α = 0.86, which sends γ to 1 and costs
    the next dozen rounds; and γ stays at the caller's value until 2γ proposals are examined;
    t_draft: running mean seconds per draft step; t_verify(w): running mean per verification
    width w; unseen widths: linear between the seen ones around them, beyond the widest by the
    slope of the two widest, below the narrowest as the narrowest."""

    def __init__(self, gamma: int, gamma_max: int, adaptive: bool, decay: float = 0.97):
        self.gamma, self.gamma_max, self.adaptive, self.decay = gamma, gamma_max, adaptive, decay
        self.gamma0, self.n_exam = gamma, 0
        self.acc = self.exam = 0.0
        self.t_draft: float | None = None
        self.t_verify: dict[int, float] = {}

    def _ema(self, old: float | None, new: float) -> float:
        return new if old is None else 0.7 * old + 0.3 * new

    def update(self, n_acc: int, g: int, draft_s: float, draft_calls: int, verify_s: float) -> None:
        if g:
            examined = n_acc + (n_acc < g)
            self.n_exam += examined
            w = self.decay ** examined
            self.acc = w * self.acc + n_acc
            self.exam = w * self.exam + examined
        if draft_calls:
            self.t_draft = self._ema(self.t_draft, draft_s / draft_calls)
        self.t_verify[g + 1] = self._ema(self.t_verify.get(g + 1), verify_s)
        if self.adaptive:
            self.gamma = self.best()

    def verify_time(self, width: int) -> float:
        t = self.t_verify
        if width in t:
            return t[width]
        ws = sorted(t)
        if width < ws[0]:
            # No cheaper than the narrowest seen: a few tokens cost the weights' memory
            # traffic, not their count (SmolLM2 F16, 2 threads: widths 1-4 within 20 % of a
            # step, 6-8 +10-15 % per token), so a line through two wide verifications would
            # put narrow ones far below their cost and send gamma to 1 after one rejection.
            return t[ws[0]]
        if width > ws[-1]:
            if len(ws) == 1:  # one width seen: assume +6% per extra token
                return t[ws[0]] * (1 + 0.06 * (width - ws[0]))
            lo, hi = ws[-2], ws[-1]
        else:  # between two seen widths
            lo = max(w for w in ws if w < width)
            hi = min(w for w in ws if w > width)
        slope = max((t[hi] - t[lo]) / (hi - lo), 0.0)
        return max(t[lo] + slope * (width - lo), 1e-9)

    def best(self) -> int:
        if self.n_exam < 2 * self.gamma0:  # warm-up: too few proposals to judge the caller's γ
            return self.gamma
        alpha = min((self.acc + 0.5) / (self.exam + 1), 0.995)
        td = self.t_draft or 0.0
        rate = [(1 - alpha ** (g + 1)) / (1 - alpha) / (g * td + self.verify_time(g + 1))
                for g in range(1, self.gamma_max + 1)]
        return 1 + int(np.argmax(rate))


class _LazyTargetDists:
    """p[i] = the target's distribution at row i, computed on first use (verification stops at
    the first rejection, so later rows usually are never processed)."""

    def __init__(self, sampler: Sampler, rows: np.ndarray, hist: list[int], proposed: list[int]):
        self.sampler, self.rows, self.hist, self.proposed = sampler, rows, hist, proposed
        self.z: dict[int, np.ndarray] = {}
        self.d: dict[int, Dist] = {}

    def adjusted(self, i: int) -> np.ndarray:
        if i not in self.z:
            self.z[i] = self.sampler.adjust(self.rows[i], self.hist + self.proposed[:i])
        return self.z[i]

    def __getitem__(self, i: int) -> Dist:
        if i not in self.d:
            if self.sampler.raw_greedy and i not in self.z:  # no adjusted copy needed
                self.d[i] = self.sampler.dist(self.rows[i])
            else:
                self.d[i] = self.sampler.dist_adjusted(self.adjusted(i))
        return self.d[i]


def speculative_tokens(target, draft, ids: list[int], sampler: Sampler, stats, budget: int,
                       k_logprobs: int | None, n_draft: int | None = None,
                       adaptive: bool = False) -> Iterator[tuple[int, TokenLogprobs | None]]:
    """Token source for pylm.generation: speculative rounds until `budget` tokens."""
    if isinstance(draft, str):
        if draft != "ngram":
            raise ValueError(f"draft must be a Model or 'ngram', got {draft!r}")
        proposer = NgramProposer(target.n_vocab)
        gamma = 8 if n_draft is None else n_draft
    else:
        proposer = DraftProposer(draft, target, sampler)
        gamma = 4 if n_draft is None else n_draft
    if isinstance(gamma, bool) or not isinstance(gamma, (int, np.integer)) or gamma < 1:
        raise ValueError(f"n_draft must be an int >= 1, got {gamma!r}")
    ctl = GammaController(int(gamma), 2 * int(gamma) if adaptive else int(gamma), adaptive)
    stats.speculative = proposer.kind
    seq = target.new_sequence()
    try:
        t0 = time.perf_counter()
        logits = seq.feed(ids)
        proposer.start(ids, stats)
        stats.prefill_s = time.perf_counter() - t0
        hist = list(ids)
        z = sampler.adjust(logits, hist)
        tok = sampler.dist_adjusted(z).sample(sampler.rng)
        hist.append(tok)
        yield tok, (sampler.logprobs(z, tok, k_logprobs) if k_logprobs is not None else None)
        produced = 1
        while produced < budget:
            # The target's cache holds hist[:-1]; hist[-1] is fed with the proposals.
            g = min(ctl.gamma, budget - produced - 1)
            d_s, d_calls = stats.draft_s, stats.draft_calls
            proposed, qs = proposer.propose(hist, g, stats) if g > 0 else ([], [])
            g = len(proposed)
            t0 = time.perf_counter()
            rows = seq.feed([hist[-1]] + proposed, all_logits=True)  # (g + 1, V)
            t_verify = time.perf_counter() - t0
            stats.target_s += t_verify
            stats.target_calls += 1
            ps = _LazyTargetDists(sampler, rows, list(hist), proposed)
            n_acc, nxt = verify(proposed, qs, ps, sampler.rng)
            seq.truncate(len(hist) + n_acc)
            if g:
                proposer.accept(n_acc, g)
                stats.proposed += g
                stats.accepted += n_acc
                stats.rejected += int(n_acc < g)
            ctl.update(n_acc, g, stats.draft_s - d_s, stats.draft_calls - d_calls, t_verify)
            for i, t in enumerate(proposed[:n_acc] + [nxt]):
                hist.append(t)
                produced += 1
                lp = None
                if k_logprobs is not None:
                    lp = sampler.logprobs(ps.adjusted(i), t, k_logprobs)
                yield t, lp
    finally:
        seq.free()
        proposer.close()
