"""GGUF tokenizers, exact vs llama.cpp, with a native encoder; streaming decode; a BPE trainer.

>>> from pylm.tokenizer import Tokenizer
>>> tok = Tokenizer.from_gguf("SmolLM2-135M-Instruct.Q4_1.gguf")   # doctest: +SKIP
>>> tok.encode("Hello world")                                     # doctest: +SKIP
[19556, 905]
"""

from .gguf_meta import read_tokenizer_metadata
from .streaming import StreamingDetokenizer
from .tokenizer import Tokenizer
from .trainer import train_bpe

__all__ = ["StreamingDetokenizer", "Tokenizer", "read_tokenizer_metadata", "train_bpe"]
