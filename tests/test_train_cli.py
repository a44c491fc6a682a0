"""`pylm train` end to end on a small corpus: tokenizer, training, checkpoint, resume, export,
loss curve. (Registered here through its own parser: independent of pylm/cli.py's list.)"""

from __future__ import annotations

import argparse

import numpy as np
import pytest

import pylm
from pylm.commands import train as train_cmd
from pylm.train.corpus import python_topics_text


def run_cli(*argv: str) -> int:
    p = argparse.ArgumentParser()
    train_cmd.register(p.add_subparsers(dest="command"))
    args = p.parse_args(["train", *argv])
    return args.func(args)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "docs.txt"
    path.write_text(python_topics_text()[:60_000], encoding="utf-8")
    return path


def test_train_cli_end_to_end(corpus, tmp_path, capsys):
    out = tmp_path / "m.gguf"
    common = ["--data", str(corpus), "--vocab-size", "300", "--layers", "1", "--d-model", "32",
              "--heads", "2", "--context", "32", "--batch", "4", "--eval-every", "5",
              "--eval-batches", "2", "--threads", "1", "--out", str(out), "-q"]
    assert run_cli(*common, "--steps", "10") == 0
    f = pylm.gguf.GGUFFile(out)
    assert f.metadata["llama.block_count"] == 1 and f.metadata["tokenizer.ggml.model"] == "gpt2"
    assert len(f.metadata["tokenizer.ggml.tokens"]) == 300 == f.tensors["token_embd.weight"].ne[1]
    ckpt = out.with_suffix(".ckpt.npz")
    with np.load(ckpt) as z:
        first = z["params"].copy()
    # resume for 5 more steps: the checkpoint moves on from step 10
    assert run_cli(*common, "--steps", "15", "--resume") == 0
    with np.load(ckpt) as z:
        assert not np.array_equal(first, z["params"])
    assert str(out) in capsys.readouterr().out
    png = out.with_suffix(".loss.png")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert not png.exists()
    else:
        assert png.read_bytes()[:4] == b"\x89PNG"


def test_train_cli_errors(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(ValueError, match="is empty"):
        run_cli("--data", str(empty), "--out", str(tmp_path / "x.gguf"), "-q")


def test_exported_bpe_model_runs_in_pylm_and_llama_cpp(corpus, tmp_path):
    """A BPE-tokenized export: pylm.load generates from it and llama.cpp tokenizes the same."""
    if not hasattr(pylm._core, "Engine"):
        pytest.skip("the inference engine is not built in this tree")
    out = tmp_path / "bpe.gguf"
    assert run_cli("--data", str(corpus), "--vocab-size", "400", "--layers", "1", "--d-model",
                   "32", "--heads", "2", "--context", "32", "--batch", "4", "--steps", "3",
                   "--threads", "1", "--out", str(out), "-q") == 0
    m = pylm.load(out, threads=1)
    text = "The assert statement raises AssertionError."
    ids = m.tokenize(text, add_special=False)
    assert m.detokenize(ids) == text
    assert isinstance(m.generate("The ", max_tokens=5, seed=0), str)
    llama_cpp = pytest.importorskip("llama_cpp")
    ref = llama_cpp.Llama(str(out), vocab_only=True, verbose=False)
    assert ref.tokenize(text.encode(), add_bos=False) == ids


def test_train_cli_fine_tunes_a_gguf(corpus, tmp_path):
    from pylm.train import ByteTokenizer, LlamaConfig, LlamaModel
    from pylm.train.export import export_gguf

    cfg = LlamaConfig(vocab=257, d_model=32, n_layers=2, n_heads=2, ffn=48, context=32)
    base = export_gguf(LlamaModel(cfg, seed=2), tmp_path / "base.gguf", ByteTokenizer())
    out = tmp_path / "ft.gguf"
    assert run_cli("--data", str(corpus), "--init", str(base), "--trainable", "blk.1.*",
                   "--context", "32", "--batch", "2", "--steps", "3", "--threads", "1",
                   "--out", str(out), "-q") == 0
    a, b = pylm.gguf.GGUFFile(base), pylm.gguf.GGUFFile(out)
    assert bytes(a.tensor_data("blk.0.attn_q.weight")) == bytes(b.tensor_data("blk.0.attn_q.weight"))
    assert bytes(a.tensor_data("blk.1.attn_q.weight")) != bytes(b.tensor_data("blk.1.attn_q.weight"))
