"""pylm.load(): a GGUF model on the native engine, with a llama-cpp-python-like API.

    m = pylm.load("smollm2", threads=2)
    m.generate("The capital of France is", max_tokens=8)      # ' Paris. ...'
    m.logits(m.tokenize("Hello"))                              # (T, n_vocab) float32

The forward pass is native: Python calls the engine once per batch of tokens. Sequences live in
a paged KV cache (``Sequence``: feed / fork / truncate / free); several can be decoded in one
call with ``decode_batch``.

``device="cuda"`` runs the same model on the GPU (pylm._cuda.Engine: weights uploaded once in
their GGUF form, paged KV cache in device memory, decode steps replayed from CUDA graphs); the
Python API, the sampler and speculative decoding are the same. A CUDA device that was asked for
and is not there is a RuntimeError, never a silent CPU fallback.
"""

from __future__ import annotations

import os
from typing import Sequence as Seq

import numpy as np

from . import _core, arch, hub
from .errors import PylmError
from .gguf import GGUFFile
from .sampling import SamplingParams

KVPoolExhausted = _core.KVPoolExhausted


class Sequence:
    """One sequence in the model's paged KV cache."""

    def __init__(self, model: "Model", sid: int):
        self.model, self.id = model, sid

    def __len__(self) -> int:
        return self.model._engine.seq_len(self.id)

    def feed(self, tokens: Seq[int], all_logits: bool = False) -> np.ndarray:
        """Append tokens; returns logits of the last token (n_vocab,) or of all (T, n_vocab)."""
        out = self.model._engine.forward([self.id], [list(map(int, tokens))], all_logits)
        return out if all_logits else out[0]

    def fork(self) -> "Sequence":
        """A new sequence sharing this one's cached prefix (copy-on-write)."""
        return Sequence(self.model, self.model._engine.seq_fork(self.id))

    def truncate(self, n_tokens: int) -> None:
        """Keep only the first n_tokens (rolls back speculative tokens)."""
        self.model._engine.seq_truncate(self.id, int(n_tokens))

    def free(self) -> None:
        self.model._engine.seq_free(self.id)


def parse_device(device) -> tuple[str, int]:
    """("cpu", 0) or ("cuda", index) from "cpu", "cuda", "cuda:1" (or None: cpu).

    >>> parse_device("cuda:1")
    ('cuda', 1)
    """
    if device is None:
        return "cpu", 0
    text = str(device).strip().lower()
    kind, _, idx = text.partition(":")
    if kind == "cpu" and not idx:
        return "cpu", 0
    if kind == "cuda":
        if not idx:
            return "cuda", 0
        if idx.isdigit():
            return "cuda", int(idx)
    raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")


def _cuda_engine_class(index: int):
    """pylm._cuda.Engine after checking that the extension and device `index` are usable;
    RuntimeError naming what is missing otherwise."""
    from . import cuda

    mod = cuda._module()  # RuntimeError: built without CUDA
    if not hasattr(mod, "Engine"):
        raise RuntimeError("device='cuda': this pylm CUDA extension has no inference engine "
                           "(rebuild pylm with CUDA)")
    try:
        n = mod.device_count()
    except RuntimeError as e:
        raise RuntimeError(f"device='cuda': no usable CUDA device ({e})") from e
    if n <= 0:
        raise RuntimeError("device='cuda' requested but no usable CUDA device was found "
                           "(driver missing or no GPU visible)")
    if index >= n:
        raise RuntimeError(f"device='cuda:{index}' requested but only {n} CUDA device(s) exist")
    return mod.Engine


class Model:
    """A loaded GGUF model. See ``pylm.load``."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None, n_ctx: int | None = None,
                 kv_cache_tokens: int | None = None, block_size: int = 16, device: str = "cpu",
                 kv_dtype: str = "float16", cuda_graphs: bool = True, repack: bool = True):
        # The device first: a missing GPU fails before the file is read.
        kind, index = parse_device(device)
        engine_cls = _cuda_engine_class(index) if kind == "cuda" else None
        self.device = "cpu" if kind == "cpu" else f"cuda:{index}"
        self.path = hub.resolve(path)
        self.file = GGUFFile(self.path)
        self.config, weights = arch.build(self.file)
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.n_ctx = int(n_ctx or min(self.config["n_ctx_train"], 4096))
        if self.n_ctx < 1:
            raise ValueError(f"n_ctx must be >= 1, got {self.n_ctx}")
        self.config["n_ctx"] = self.n_ctx
        kv_tokens = int(kv_cache_tokens or 2 * self.n_ctx)
        kv_blocks = max(1, -(-kv_tokens // block_size))
        if engine_cls is None:
            self._engine = _core.Engine(self.config, weights, kv_blocks, block_size, int(threads or 0),
                                        bool(repack))
        else:
            self._engine = engine_cls(self.config, weights, kv_blocks, block_size, index, kv_dtype,
                                      bool(cuda_graphs))
        self._tokenizer = None

    # ---- metadata ----
    @property
    def n_vocab(self) -> int:
        return self.config["n_vocab"]

    @property
    def architecture(self) -> str:
        return self.config["arch"]

    @property
    def metadata(self) -> dict:
        return self.file.metadata

    @property
    def threads(self) -> int:
        return self._engine.threads

    @threads.setter
    def threads(self, n: int) -> None:
        self._engine.threads = int(n)

    @property
    def head_rows(self) -> int:
        """Logits are computed for token ids < head_rows only (the others are -inf); n_vocab
        by default. A smaller value shrinks the output head to a vocabulary prefix: for a draft
        model in speculative decoding, whose BPE ids roughly follow merge order (frequency),
        this is FR-Spec's frequency-ranked draft head (Zhao et al. 2025). Proposals stay valid:
        verification uses the distribution the draft actually sampled from."""
        return getattr(self._engine, "head_rows", self.n_vocab)

    @head_rows.setter
    def head_rows(self, n: int) -> None:
        self._set_head_option("head_rows", n)

    def _set_head_option(self, name: str, value: int) -> None:
        """An int option of the engine's output head (head_rows, head_screen): TypeError for a
        non-int, NotImplementedError where the engine lacks it, ValueError from the engine."""
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be an int, got {value!r}")
        if not hasattr(self._engine, name):
            raise NotImplementedError(f"{name} is not supported on {self.device}")
        setattr(self._engine, name, int(value))

    @property
    def head_screen(self) -> int:
        """k > 0: logits come from a 4-bit (Q4_0) copy of the output head, and the k tokens
        with the largest of those are recomputed with the head itself (the same bits as
        unscreened). For a greedy draft model in speculative decoding: the proposals are the
        head's own argmax unless it lies outside the copy's top k, and the head reads about half
        its bytes (SmolLM2's Q8_0 head: 30 -> 16 MB). Setting k > 0 builds the copy once
        (n_vocab x n_embd values); 0 (the default) turns it off and frees it."""
        return getattr(self._engine, "head_screen", 0)

    @head_screen.setter
    def head_screen(self, k: int) -> None:
        self._set_head_option("head_screen", k)

    # ---- tokenizer ----
    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from .tokenizer import Tokenizer

            self._tokenizer = Tokenizer.from_gguf(self.path)
        return self._tokenizer

    def tokenize(self, text: str, add_special: bool | None = None, parse_special: bool = False) -> list[int]:
        """Token ids of text; BOS/EOS added per the model's metadata unless add_special says."""
        if add_special is None:
            add_special = True
        return self.tokenizer.encode(text, add_special=add_special, parse_special=parse_special)

    def detokenize(self, ids: Seq[int]) -> str:
        return self.tokenizer.decode(list(ids))

    def eog_ids(self) -> set[int]:
        """Token ids that end generation (EOS, EOT and end-of-turn markers), as llama.cpp marks them."""
        return set(self.tokenizer.eog_ids)

    # ---- sequences ----
    def new_sequence(self) -> Sequence:
        return Sequence(self, self._engine.seq_new())

    def reset(self) -> None:
        """Free every sequence."""
        self._engine.clear()

    @property
    def kv_free_blocks(self) -> int:
        return self._engine.free_blocks

    def decode_batch(self, seqs: Seq[Sequence], tokens: Seq[int]) -> np.ndarray:
        """One token for each of several sequences in one engine call -> (len(seqs), n_vocab)."""
        return self._engine.forward([s.id for s in seqs], [[int(t)] for t in tokens], False)

    def logits(self, ids: Seq[int]) -> np.ndarray:
        """Full forward of a fresh sequence: logits (len(ids), n_vocab) float32."""
        seq = self.new_sequence()
        try:
            return seq.feed(ids, all_logits=True)
        finally:
            seq.free()

    # ---- generation ----
    def generate(self, prompt: str | Seq[int], max_tokens: int | None = None,
                 temperature: float | None = None, stream: bool = False,
                 stop: Seq[str] | str | None = None, seed: int | None = None,
                 add_special: bool | None = None, *, params: SamplingParams | None = None,
                 logprobs: int | None = None, return_stats: bool = False, draft=None,
                 n_draft: int | None = None, adaptive_draft: bool = False, **sampling):
        """Continue a prompt (text or token ids). Greedy unless temperature > 0.

        Args:
            prompt: text (tokenized with special-token parsing) or token ids.
            max_tokens, temperature, stop, seed, logprobs, **sampling: fields of
                `pylm.SamplingParams` (top_k, top_p, min_p, typical_p, repetition_penalty, ...);
                they override `params` (default max_tokens 64, greedy).
            stream: return a `TextStream` (an iterator of text pieces, with `.result`).
            return_stats: return a `GenerationResult` (text, token_ids, finish_reason, logprobs,
                stats) instead of the text. Implied by logprobs.
            draft: speculative decoding: a `Model` with the same vocabulary, or "ngram" (prompt
                lookup); n_draft = tokens proposed per round (default 4, ngram 8);
                adaptive_draft=True picks it per round in 1..2*n_draft from measured
                acceptance and costs (pylm.speculative.GammaController).
        Returns:
            str, or GenerationResult (return_stats / logprobs), or TextStream (stream).

        Example:
            >>> m.generate("The capital of France is", max_tokens=8)   # ' Paris. ...'
        """
        from . import generation

        params = generation.make_params(params, max_tokens=max_tokens, temperature=temperature,
                                        stop=stop, seed=seed, logprobs=logprobs, **sampling)
        result = generation.GenerationResult()
        it = generation.run(self, prompt, params, add_special, result, draft=draft,
                            n_draft=n_draft, adaptive=adaptive_draft)
        if stream:
            return generation.TextStream(it, result)
        for _ in it:
            pass
        return result if (return_stats or params.logprobs is not None) else result.text

    def chat(self, messages: list[dict], max_tokens: int | None = None, stream: bool = False, **kw):
        """Chat with the model using its GGUF chat template (Jinja); same options as generate
        (default max_tokens 256)."""
        prompt = self.apply_chat_template(messages, add_generation_prompt=True)
        if max_tokens is None and kw.get("params") is None:
            max_tokens = 256
        return self.generate(prompt, max_tokens=max_tokens, stream=stream, add_special=False, **kw)

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        from .chat import render

        return render(self, messages, add_generation_prompt)


def load(path: str | os.PathLike, threads: int | None = None, n_ctx: int | None = None,
         device: str = "cpu", **kw) -> Model:
    """Load a GGUF model from a path, or a name known to `pylm pull` ("smollm2", "gemma3-270m").

    device: "cpu" (default), "cuda" or "cuda:N" (RuntimeError when CUDA is not usable).
    CUDA-only options: kv_dtype ("float16" default, or "float32") and cuda_graphs (True).
    CPU-only option: repack (True): on AVX2 / AVX-512 CPUs the Q4_0/Q4_1/Q8_0 matrices get a packed
    copy for faster decode (same results, extra memory of their size; llama.cpp's --no-repack
    is repack=False).
    """
    return Model(path, threads=threads, n_ctx=n_ctx, device=device, **kw)


__all__ = ["Model", "Sequence", "load", "KVPoolExhausted", "PylmError"]
