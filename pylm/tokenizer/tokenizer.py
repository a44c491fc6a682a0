"""Tokenizer: GGUF tokenizers (byte-level BPE and SentencePiece-style BPE), exact vs llama.cpp.

The encoder and decoder are native (csrc/tokenizer); this module reads the GGUF metadata,
applies llama.cpp's defaults for missing keys, and wraps the native object.

>>> tok = Tokenizer.from_gguf("SmolLM2-135M-Instruct.Q4_1.gguf")  # doctest: +SKIP
>>> ids = tok.encode("Hello world")                                # doctest: +SKIP
>>> tok.decode(ids)                                                # doctest: +SKIP
'Hello world'
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterable, Sequence

import numpy as np

from .. import _core
from .gguf_meta import read_tokenizer_metadata

# Pre-tokenizer names for which llama.cpp also skips merges for whole-word tokens and adds BOS
# by default (llama_vocab::impl::load).
_LLAMA3_PRES = ("llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0",
                "lfm2")
_ID_KEYS = {
    "bos": "bos_token_id", "eos": "eos_token_id", "eot": "eot_token_id", "eom": "eom_token_id",
    "unk": "unknown_token_id", "sep": "seperator_token_id", "pad": "padding_token_id",
    "fim_pre": "fim_pre_token_id", "fim_suf": "fim_suf_token_id", "fim_mid": "fim_mid_token_id",
    "fim_pad": "fim_pad_token_id", "fim_rep": "fim_rep_token_id", "fim_sep": "fim_sep_token_id",
}
_P = "tokenizer.ggml."
# Spellings of tokenizer.ggml.pre that llama.cpp accepts, for names pylm also takes.
_LLAMA_CPP_PRE = {"gpt2": "gpt-2"}


def _table(value) -> _core.TokStringTable:
    if isinstance(value, _core.TokStringTable):
        return value
    return _core.TokStringTable(list(value))


class Tokenizer:
    """A GGUF tokenizer whose ids are identical to llama.cpp's for the same file.

    Build with ``Tokenizer.from_gguf(path)`` (cached per file) or
    ``Tokenizer.from_metadata(dict_of_gguf_keys)``; ``pylm.tokenizer.train_bpe`` makes new ones.
    """

    def __init__(self, native: _core.Tokenizer, meta: dict):
        self._native = native
        self._meta = meta
        self.model: str = meta[_P + "model"]
        self.pre: str = meta.get(_P + "pre", "default")
        self.add_bos: bool = meta["_add_bos"]
        self.add_eos: bool = meta["_add_eos"]
        self.add_space_prefix: bool = meta["_add_space_prefix"]
        ids = native.special_ids
        self.bos_id: int | None = ids["bos"]
        self.eos_id: int | None = ids["eos"]
        self.eot_id: int | None = ids["eot"]
        self.special_ids: dict = ids

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_gguf(cls, path: str | os.PathLike) -> Tokenizer:
        """The tokenizer stored in a GGUF file (cached per path, size and mtime).

        Raises ValueError for an unsupported ``tokenizer.ggml.model`` or ``.pre`` (naming it) and
        the GGUF errors of pylm.errors for a malformed file.
        """
        p = os.path.realpath(os.fspath(path))
        st = os.stat(p)
        return _from_gguf_cached(p, st.st_size, st.st_mtime_ns)

    @classmethod
    def from_metadata(cls, meta: dict) -> Tokenizer:
        """Builds from GGUF ``tokenizer.ggml.*`` keys (lists of str or TokStringTable values)."""
        m = dict(meta)
        model = m.get(_P + "model")
        if model is None:
            raise ValueError("tokenizer: metadata has no tokenizer.ggml.model")
        if _P + "tokens" not in m:
            raise ValueError("tokenizer: metadata has no tokenizer.ggml.tokens")
        tokens = _table(m[_P + "tokens"])
        m[_P + "tokens"] = tokens
        n_vocab = len(tokens)
        pre = m.get(_P + "pre") or ""
        # llama.cpp's defaults per model (llama_vocab::impl::load), then the file's keys.
        if model == "llama":
            ids = {"bos": 1, "eos": 2, "unk": 0}
            add_bos, add_eos, add_space_prefix, ignore_merges = True, False, True, False
        elif model == "gpt2":
            if not pre:
                raise ValueError("tokenizer: unknown pre-tokenizer '' (tokenizer.ggml.pre is missing)")
            ids = {"bos": 11, "eos": 11}
            add_bos = pre in _LLAMA3_PRES
            add_eos, add_space_prefix, ignore_merges = False, False, pre in _LLAMA3_PRES
        else:
            raise ValueError(f"tokenizer: unsupported tokenizer model {model!r} "
                             "(tokenizer.ggml.model); implemented: 'gpt2', 'llama'")
        ids = {k: v for k, v in ids.items() if v < n_vocab}
        for name, key in _ID_KEYS.items():
            v = m.get(_P + key)
            if v is not None and 0 <= int(v) < n_vocab:
                ids[name] = int(v)
        add_bos = bool(m.get(_P + "add_bos_token", add_bos))
        add_eos = bool(m.get(_P + "add_eos_token", add_eos))
        add_space_prefix = bool(m.get(_P + "add_space_prefix", add_space_prefix))
        types = m.get(_P + "token_type")
        scores = m.get(_P + "scores")
        merges = m.get(_P + "merges")
        if merges is not None:
            merges = _table(merges)
            m[_P + "merges"] = merges
        native = _core.Tokenizer(
            tokens,
            None if types is None else np.asarray(types, dtype=np.int32),
            None if scores is None else np.asarray(scores, dtype=np.float32),
            merges, model, pre, ignore_merges, add_bos, add_eos, add_space_prefix, ids)
        m["_add_bos"], m["_add_eos"], m["_add_space_prefix"] = add_bos, add_eos, add_space_prefix
        return cls(native, m)

    # ---- encoding -----------------------------------------------------------------------
    def encode(self, text: str | bytes, add_special: bool = False, parse_special: bool = False) -> list[int]:
        """Token ids of text, as llama.cpp's llama_tokenize gives them.

        Args:
            text: str, or UTF-8 bytes (malformed bytes become U+FFFD, as in llama.cpp).
            add_special: add BOS/EOS as the model's add_bos_token/add_eos_token say.
            parse_special: recognize control tokens such as ``<|im_start|>`` in the text;
                otherwise they are plain text (user-defined tokens are always recognized).
        """
        return self._native.encode(text, add_special, parse_special)

    def encode_batch(self, texts: Iterable[str | bytes], add_special: bool = False,
                     parse_special: bool = False, threads: int = 0) -> list[list[int]]:
        """encode() of each text, in parallel on `threads` threads (0: pylm's default)."""
        return self._native.encode_batch(list(texts), add_special, parse_special, threads)

    # ---- decoding -----------------------------------------------------------------------
    def decode_bytes(self, ids: Sequence[int] | np.ndarray, skip_special: bool = False) -> bytes:
        """Concatenated bytes of the tokens' pieces. IndexError names an out-of-range id."""
        return self._native.decode(ids, skip_special)

    def decode(self, ids: Sequence[int] | np.ndarray, skip_special: bool = False) -> str:
        """Text of ids: exactly the encoded text for ids from encode(). Bytes that are not valid
        UTF-8 (a cut-off character) decode to U+FFFD. skip_special drops control tokens."""
        return self._native.decode(ids, skip_special).decode("utf-8", "replace")

    def id_to_bytes(self, token_id: int) -> bytes:
        """The bytes token_id decodes to (its "piece"); special tokens give their text."""
        return self._native.piece(token_id)

    def token_to_piece(self, token_id: int) -> str:
        """id_to_bytes as text (U+FFFD for a partial UTF-8 character)."""
        return self._native.piece(token_id).decode("utf-8", "replace")

    def token_text(self, token_id: int) -> str:
        """The token as stored in the vocabulary (e.g. 'Ġworld' or '▁world')."""
        return self._native.text(token_id).decode("utf-8", "replace")

    def token_to_id(self, text: str | bytes) -> int | None:
        """Id of the vocabulary entry spelled exactly `text`, or None."""
        i = self._native.find(text)
        return None if i < 0 else i

    def is_control(self, token_id: int) -> bool:
        """True for control/unknown tokens (dropped by decode(skip_special=True))."""
        return bool(self._native.attr(token_id) & 0b1001)

    # ---- properties ---------------------------------------------------------------------
    @property
    def n_vocab(self) -> int:
        return self._native.n_vocab

    def __len__(self) -> int:
        return self._native.n_vocab

    @property
    def eog_ids(self) -> list[int]:
        """Ids that end generation (EOS, EOT and llama.cpp's end-of-turn texts)."""
        return list(self._native.eog_ids)

    @property
    def n_merges(self) -> int:
        return self._native.n_merges

    @property
    def merges(self) -> list[tuple[str, str]]:
        """BPE merges in rank order, as (left, right) token texts (empty for SPM models)."""
        table = self._meta.get(_P + "merges")
        out = []
        for line in ([] if table is None else table.tolist()):
            text = line.decode("utf-8", "replace")
            sp = text.find(" ", 1)
            if sp > 0:
                out.append((text[:sp], text[sp + 1 :]))
        return out

    def __repr__(self) -> str:
        return (f"Tokenizer(model={self.model!r}, pre={self.pre!r}, n_vocab={self.n_vocab}, "
                f"bos={self.bos_id}, eos={self.eos_id})")

    # ---- export -------------------------------------------------------------------------
    def to_gguf_metadata(self) -> dict:
        """The GGUF ``tokenizer.ggml.*`` keys that rebuild this tokenizer (for GGUFWriter:
        lists of str, lists of int / float, ints and bools)."""
        m = self._meta
        out: dict = {_P + "model": self.model}
        if self.model == "gpt2":
            out[_P + "pre"] = _LLAMA_CPP_PRE.get(self.pre, self.pre)
        out[_P + "tokens"] = [b.decode("utf-8") for b in m[_P + "tokens"].tolist()]
        if m.get(_P + "token_type") is not None:
            out[_P + "token_type"] = [int(x) for x in m[_P + "token_type"]]
        if m.get(_P + "scores") is not None:
            out[_P + "scores"] = [float(x) for x in m[_P + "scores"]]
        if m.get(_P + "merges") is not None:
            out[_P + "merges"] = [b.decode("utf-8") for b in m[_P + "merges"].tolist()]
        for name, key in _ID_KEYS.items():
            v = self.special_ids.get(name)
            if v is not None and (_P + key) in m:
                out[_P + key] = int(v)
        for name in ("bos", "eos"):
            if self.special_ids.get(name) is not None:
                out[_P + _ID_KEYS[name]] = int(self.special_ids[name])
        out[_P + "add_bos_token"] = self.add_bos
        out[_P + "add_eos_token"] = self.add_eos
        out[_P + "add_space_prefix"] = self.add_space_prefix
        return out

    def add_to_gguf(self, writer) -> None:
        """Adds to_gguf_metadata() to a ``gguf.GGUFWriter`` with the types llama.cpp expects
        (uint32 ids, bool flags, string / int32 / float32 arrays)."""
        for key, value in self.to_gguf_metadata().items():
            if isinstance(value, bool):
                writer.add_bool(key, value)
            elif isinstance(value, int):
                writer.add_uint32(key, value)
            elif isinstance(value, str):
                writer.add_string(key, value)
            else:
                writer.add_array(key, value)

    def save(self, path: str | os.PathLike) -> None:
        """Writes the tokenizer as JSON (its GGUF metadata keys); Tokenizer.load reads it."""
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"format": "pylm-tokenizer", "version": 1, "metadata": self.to_gguf_metadata()},
                      f, ensure_ascii=False)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Tokenizer:
        """Reads a tokenizer written by save()."""
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        if not isinstance(doc, dict) or doc.get("format") != "pylm-tokenizer":
            raise ValueError(f"{os.fspath(path)}: not a pylm tokenizer file")
        return cls.from_metadata(doc["metadata"])


@functools.lru_cache(maxsize=8)
def _from_gguf_cached(path: str, size: int, mtime_ns: int) -> Tokenizer:
    return Tokenizer.from_metadata(read_tokenizer_metadata(path))
