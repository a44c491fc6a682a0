"""The generation loop behind ``Model.generate`` / ``Model.chat``.

    token source (plain decoding, or speculative: pylm/speculative.py) -> (token id, logprobs)
      -> end-of-generation / stop token ids / max_tokens
      -> streaming detokenizer -> stop strings (held back until they cannot start a stop string)
      -> text pieces (stream) and a GenerationResult (text, token ids, logprobs, stats)

A token source is a generator over (token, TokenLogprobs | None); it runs the model lazily, so
nothing is computed past the last token the caller takes, and closing it frees its sequences.
On an exception (KV pool exhausted, Ctrl-C, ...) the partial GenerationResult rides on the
exception as ``e.partial_result``: nothing generated so far is lost.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from .sampling import Sampler, SamplingParams, TokenLogprobs

__all__ = ["GenerationResult", "GenerationStats", "StopStrings", "TextStream", "make_params"]


@dataclass
class GenerationStats:
    """Counts and times of one generation. Decode = everything after the prompt's prefill."""

    prompt_tokens: int = 0
    generated_tokens: int = 0
    prefill_s: float = 0.0
    decode_s: float = 0.0
    target_calls: int = 0  # target forward calls after the prefill
    target_s: float = 0.0  # time inside those calls
    draft_calls: int = 0  # draft model forward calls (speculative decoding)
    draft_s: float = 0.0
    proposed: int = 0  # draft tokens proposed
    accepted: int = 0  # draft tokens accepted by the target
    rejected: int = 0  # rounds that ended in a rejection (the rest accepted every proposal)
    speculative: str | None = None  # None, "draft" or "ngram"

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.proposed if self.proposed else math.nan

    @property
    def alpha(self) -> float:
        """Per-token acceptance probability, as in Leviathan et al.: accepted / examined, where
        a round examines its proposals up to and including the first rejection (the maximum
        likelihood estimate under their i.i.d. model)."""
        n = self.accepted + self.rejected
        return self.accepted / n if n else math.nan

    @property
    def tokens_per_target_call(self) -> float:
        """Tokens per decode forward of the target (1.0 without speculation). The first token
        comes from the prefill, so it is not counted."""
        return (self.generated_tokens - 1) / self.target_calls if self.target_calls else math.nan

    @property
    def tokens_per_s(self) -> float:
        """Decode speed: tokens after the first (which the prefill gives) per second."""
        n = self.generated_tokens - 1
        return n / self.decode_s if n > 0 and self.decode_s > 0 else math.nan

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.update(acceptance_rate=self.acceptance_rate, alpha=self.alpha,
                 tokens_per_target_call=self.tokens_per_target_call, tokens_per_s=self.tokens_per_s)
        return d

    def __str__(self) -> str:
        s = (f"{self.generated_tokens} tokens in {self.decode_s:.2f} s "
             f"({self.tokens_per_s:.1f} tok/s), prompt {self.prompt_tokens} tokens in {self.prefill_s:.2f} s")
        if self.speculative:
            s += (f"; {self.speculative}: acceptance {self.acceptance_rate:.2f}, "
                  f"{self.tokens_per_target_call:.2f} tokens per target call")
        return s


@dataclass
class GenerationResult:
    """text: the generated text (stop strings excluded). token_ids: generated ids (end-of-generation
    / stop token ids excluded; a stop string's tokens included). finish_reason: "stop" (end of
    generation, stop token or stop string) or "length" (max_tokens or the context)."""

    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    finish_reason: str | None = None
    logprobs: list[TokenLogprobs] | None = None
    stats: GenerationStats = field(default_factory=GenerationStats)

    def __str__(self) -> str:
        return self.text


class StopStrings:
    """Cuts text at the first stop string. Text that could still be the start of a stop string is
    held back, so a stop string split over several tokens is never emitted.

        >>> s = StopStrings(["\\nUser:"])
        >>> s.push("Hi\\nUs"), s.push("er: x")
        (('Hi', False), ('', True))
    """

    def __init__(self, stops):
        self.stops = tuple(stops)
        self.held = ""

    def push(self, piece: str) -> tuple[str, bool]:
        """Returns (text now safe to emit, whether a stop string was completed)."""
        if not self.stops:
            return piece, False
        buf = self.held + piece
        cut = min((i for i in (buf.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.held = ""
            return buf[:cut], True
        hold = 0
        for s in self.stops:
            for k in range(min(len(s) - 1, len(buf)), hold, -1):
                if buf.endswith(s[:k]):
                    hold = k
                    break
        self.held = buf[len(buf) - hold:]
        return buf[: len(buf) - hold], False

    def flush(self) -> str:
        out, self.held = self.held, ""
        return out


class TextStream:
    """What ``generate(stream=True)`` returns: an iterator of text pieces; ``.result`` is the
    GenerationResult, complete once the iterator is exhausted."""

    def __init__(self, gen: Iterator[str], result: GenerationResult):
        self._gen, self.result = gen, result

    def __iter__(self) -> TextStream:
        return self

    def __next__(self) -> str:
        return next(self._gen)

    def close(self) -> None:
        self._gen.close()


def make_params(params: SamplingParams | None, **kw) -> SamplingParams:
    """params (or the defaults) with every keyword that is not None replacing its field.
    Unknown keywords raise TypeError naming them."""
    fields = {f.name for f in dataclasses.fields(SamplingParams)}
    unknown = sorted(set(kw) - fields)
    if unknown:
        raise TypeError(f"unknown sampling argument(s): {', '.join(unknown)}")
    base = params if params is not None else SamplingParams()
    if not isinstance(base, SamplingParams):
        raise TypeError(f"params must be a SamplingParams, got {type(base).__name__}")
    overrides = {k: v for k, v in kw.items() if v is not None}
    return dataclasses.replace(base, **overrides) if overrides else base


def plain_tokens(model, ids: list[int], sampler: Sampler, stats: GenerationStats, budget: int,
                 k_logprobs: int | None) -> Iterator[tuple[int, TokenLogprobs | None]]:
    """One target forward per token."""
    seq = model.new_sequence()
    try:
        t0 = time.perf_counter()
        logits = seq.feed(ids)
        stats.prefill_s = time.perf_counter() - t0
        hist = list(ids)
        for i in range(budget):
            z = sampler.adjust(logits, hist)
            tok = sampler.dist_adjusted(z).sample(sampler.rng)
            hist.append(tok)
            yield tok, (sampler.logprobs(z, tok, k_logprobs) if k_logprobs is not None else None)
            if i + 1 < budget:
                t0 = time.perf_counter()
                logits = seq.feed([tok])
                stats.target_s += time.perf_counter() - t0
                stats.target_calls += 1
    finally:
        seq.free()


def run(model, prompt, params: SamplingParams, add_special: bool | None, result: GenerationResult,
        draft=None, n_draft: int | None = None, adaptive: bool = False) -> Iterator[str]:
    """Generates text pieces for `prompt` (text or token ids), filling `result` as it goes."""
    if isinstance(prompt, str):
        ids = model.tokenize(prompt, add_special=add_special, parse_special=True)
    else:
        ids = [int(t) for t in prompt]
    if not ids:
        raise ValueError("empty prompt")
    if len(ids) >= model.n_ctx:
        raise ValueError(f"prompt of {len(ids)} tokens does not fit the context of {model.n_ctx}")
    budget = min(params.max_tokens, model.n_ctx - len(ids))
    sampler = Sampler(params, model.n_vocab)
    stats = result.stats
    stats.prompt_tokens = len(ids)
    if params.logprobs is not None:
        result.logprobs = []
    if budget == 0:
        result.finish_reason = "length"
        return
    if draft is None:
        source = plain_tokens(model, ids, sampler, stats, budget, params.logprobs)
    else:
        from .speculative import speculative_tokens

        source = speculative_tokens(model, draft, ids, sampler, stats, budget, params.logprobs,
                                    n_draft=n_draft, adaptive=adaptive)
    yield from _emit(model, ids, params, source, result)


def _detokenizer(model, ids: list[int]):
    """A streaming detokenizer (push(id) -> str, flush() -> str) primed with the prompt's last
    token, so that the continuation keeps its leading space (SentencePiece strips it from the
    first token of a text)."""
    from .tokenizer import StreamingDetokenizer

    detok = StreamingDetokenizer(model.tokenizer, skip_special=True)
    detok.push(ids[-1])
    return detok


def _emit(model, ids, params: SamplingParams, source, result: GenerationResult) -> Iterator[str]:
    eog = set() if params.ignore_eos else set(model.eog_ids())
    enders = eog | set(params.stop_token_ids)
    detok = _detokenizer(model, ids)
    stops = StopStrings(params.stop)
    stats = result.stats
    t_start = time.perf_counter()
    stopped = False
    try:
        for tok, lp in source:
            if not stats.generated_tokens:
                t_start = time.perf_counter()  # decode starts after the first (prefill) token
            stats.generated_tokens += 1
            if tok in enders:
                result.finish_reason = "stop"
                break
            result.token_ids.append(tok)
            piece = detok.push(tok)
            if lp is not None:
                lp.text = piece
                result.logprobs.append(lp)
            out, stopped = stops.push(piece)
            if out:
                result.text += out
                yield out
            if stopped:
                result.finish_reason = "stop"
                break
        else:
            result.finish_reason = "length"
        if not stopped:  # an incomplete UTF-8 tail, then held-back text that never became a stop
            out, stopped = stops.push(detok.flush())
            out += "" if stopped else stops.flush()
            if out:
                result.text += out
                yield out
    except GeneratorExit:
        raise
    except BaseException as e:
        # Keep what was generated: held-back text was not a stop string (yet).
        result.text += stops.flush()
        result.finish_reason = result.finish_reason or "error"
        e.partial_result = result
        raise
    finally:
        source.close()
        stats.decode_s = time.perf_counter() - t_start
