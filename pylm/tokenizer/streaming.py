"""StreamingDetokenizer: text from ids one at a time, never emitting a broken UTF-8 character.

A character can span tokens (byte-fallback tokens, or byte-level BPE pieces that end inside a
multi-byte character). push() holds back an incomplete trailing sequence until the token that
completes it arrives; bytes that can never become valid UTF-8 come out as U+FFFD.

>>> stream = StreamingDetokenizer(tok)              # doctest: +SKIP
>>> "".join(stream.push(i) for i in ids) + stream.flush() == tok.decode(ids)  # doctest: +SKIP
True
"""

from __future__ import annotations

import codecs

from .tokenizer import Tokenizer


class StreamingDetokenizer:
    """Incremental decode: ``push(id) -> str`` returns the newly completed text."""

    def __init__(self, tokenizer: Tokenizer, skip_special: bool = False):
        self.tokenizer = tokenizer
        self.skip_special = skip_special
        self.reset()

    def reset(self) -> None:
        """Start a new text."""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._first = True

    def push(self, token_id: int) -> str:
        """Adds one token; returns the text it completes ('' while a character is pending)."""
        tok = self.tokenizer
        if self.skip_special and tok.is_control(token_id):
            self._first = False
            return ""
        piece = tok.id_to_bytes(token_id)
        if self._first:
            # decode() drops one leading space when the encoder adds one (add_space_prefix).
            self._first = False
            if tok.add_space_prefix and piece.startswith(b" "):
                piece = piece[1:]
        return self._decoder.decode(piece)

    def flush(self) -> str:
        """Ends the text: a pending incomplete character comes out as U+FFFD."""
        out = self._decoder.decode(b"", final=True)
        self.reset()
        return out
