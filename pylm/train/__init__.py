"""pylm.train: train Llama-architecture models with native, hand-written backward passes.

    from pylm.train import LlamaConfig, Trainer
    tr = Trainer(LlamaConfig(vocab=4096, d_model=256, n_layers=4, n_heads=4, ffn=688),
                 train_tokens, val_tokens, tokenizer=tok, max_steps=2000)
    tr.fit()
    tr.export("model.gguf")          # runs with pylm.load and llama.cpp

Pieces: ops (native forward / backward ops), model (LlamaModel: forward / backward over a
flat parameter buffer), optim (AdamW, clipping, schedule), data (tokenizer, windows),
export (GGUF out), import_gguf (a llama GGUF in, for fine-tuning), trainer (the loop),
corpus (an offline English corpus: CPython's own documentation).
"""

from . import ops
from .config import LlamaConfig
from .data import ByteTokenizer, Windows, make_tokenizer, split, tokenize
from .export import export_gguf
from .import_gguf import load_gguf
from .model import LlamaModel
from .optim import AdamW, cosine_lr
from .trainer import TrainArgs, Trainer

__all__ = [
    "AdamW",
    "ByteTokenizer",
    "LlamaConfig",
    "LlamaModel",
    "TrainArgs",
    "Trainer",
    "Windows",
    "cosine_lr",
    "export_gguf",
    "load_gguf",
    "make_tokenizer",
    "ops",
    "split",
    "tokenize",
]
