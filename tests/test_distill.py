"""Draft distillation (pylm.train.distill): the prompt mix, the teacher corpus against the
target's own single-sequence forward, and a distilled draft end to end (trained by pylm's
trainer, written as GGUF, loaded, and used as a speculative draft whose greedy output is the
target's, token for token)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import model_path


def test_draft_prompts_mix_and_exclusions():
    import sys
    from pathlib import Path

    from pylm.train.distill import draft_prompts

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from bench_speculative import PROMPTS

    def chat(msgs):
        return "<user>" + msgs[0]["content"] + "</user>"

    ps = draft_prompts(200, seed=3, chat_template=chat)
    assert len(ps) == 200 and ps == draft_prompts(200, seed=3, chat_template=chat)
    assert ps != draft_prompts(200, seed=4, chat_template=chat)
    n_code = sum(p.startswith("def ") for p in ps)
    n_chat = sum(p.startswith("<user>") for p in ps)
    assert n_code == 50 and n_chat == 30
    assert len(set(ps)) >= 190
    # the benchmark's prompts (and their topics) are not trained on
    assert not set(PROMPTS) & set(ps)
    assert not any("Roman Empire" in p or "quicksort" in p or "hotosynthesis" in p for p in ps)
    assert sum(p.startswith("<user>") for p in draft_prompts(50, 0)) == 0  # no template: prose


def test_layer_subset_copies_the_named_layers():
    from pylm.train.config import LlamaConfig
    from pylm.train.distill import layer_subset
    from pylm.train.params import init_params

    cfg = LlamaConfig(vocab=40, d_model=16, n_layers=4, n_heads=2, ffn=24, context=8,
                      tie_embeddings=True)
    p = init_params(cfg, seed=1)
    sub, q = layer_subset(cfg, p, [0, 3])
    assert sub.n_layers == 2 and sub.d_model == 16
    np.testing.assert_array_equal(q["blk.1.ffn_down.weight"], p["blk.3.ffn_down.weight"])
    np.testing.assert_array_equal(q["blk.0.attn_qkv.weight"], p["blk.0.attn_qkv.weight"])
    np.testing.assert_array_equal(q["token_embd.weight"], p["token_embd.weight"])
    for bad in ([], [4], [-1]):
        with pytest.raises(ValueError, match="layer indices"):
            layer_subset(cfg, p, bad)


@pytest.fixture(scope="module")
def smol_target():
    import pylm

    return pylm.load(model_path("smollm2"), threads=2, n_ctx=1024)


def test_teacher_corpus_labels_are_the_targets_greedy_predictions(smol_target):
    """Batched greedy decoding of several prompts: every label equals the argmax of the
    target's own full forward of that sequence alone; continuations are generate()'s."""
    from pylm.train.distill import teacher_corpus

    m = smol_target
    free = m.kv_free_blocks
    prompts = ["The capital of France is", "def add(a, b):\n", "Water boils at"]
    tokens, labels = teacher_corpus(m, prompts, new_tokens=6, batch=2, progress=False)
    assert tokens.dtype == labels.dtype == np.int32 and tokens.shape == labels.shape
    start = 0
    for p in prompts:
        ids = m.tokenize(p, parse_special=True)
        want = m.generate(p, max_tokens=6, temperature=0.0, return_stats=True)
        seq = list(ids) + list(want.token_ids)  # an end-of-generation token: a label only
        n = len(seq)
        np.testing.assert_array_equal(tokens[start:start + n], seq)
        np.testing.assert_array_equal(labels[start:start + n],
                                      np.argmax(m.logits(seq), axis=-1))
        start += n
    assert start == len(tokens)
    assert m.kv_free_blocks == free  # every sequence was freed


def test_distilled_draft_end_to_end(tmp_path, smol_target, capsys):
    """`pylm distill` with tiny budgets: teacher corpus, a 2-layer draft trained for a few
    steps with a 4096-row head, written as GGUF; loaded as a draft (its head cut the same way),
    greedy speculation reproduces the target alone token for token."""
    import pylm
    from pylm.cli import main

    path = model_path("smollm2")
    out = tmp_path / "draft.gguf"
    corpus = tmp_path / "corpus.npz"
    args = ["distill", str(path), str(out), "--tokens", "480", "--new-tokens", "24",
            "--context", "32", "--batch", "2", "--steps", "4", "--eval-every", "2",
            "--head-rows", "4096", "-t", "2", "--corpus", str(corpus)]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "teacher: 20/20 prompts" in err and "best validation loss" in err
    z = np.load(corpus)
    assert len(z["tokens"]) > 480
    draft = pylm.load(out, threads=2, n_ctx=1024)
    assert draft.n_vocab == smol_target.n_vocab and draft.config["n_layer"] == 2
    assert draft.tokenize("Hello world") == smol_target.tokenize("Hello world")
    draft.head_rows = 4096
    for p in ["The history of the printing press", "def mean(xs):\n"]:
        want = smol_target.generate(p, max_tokens=20, ignore_eos=True, return_stats=True)
        got = smol_target.generate(p, max_tokens=20, ignore_eos=True, return_stats=True,
                                   draft=draft, n_draft=3)
        assert got.token_ids == want.token_ids, p
        assert got.stats.proposed > 0
    # a time budget instead of a step count (the corpus is read back from its cache)
    out2 = tmp_path / "draft2.gguf"
    assert main(args[:2] + [str(out2)] + args[3:] + ["--minutes", "0.03", "-q"]) == 0
    assert "teacher:" not in capsys.readouterr().err
    assert pylm.load(out2, threads=2).config["n_layer"] == 2
    # a corpus too small for its held-out part is an error naming the value
    small = ["distill", str(path), str(tmp_path / "x.gguf"), "--tokens", "40", "--new-tokens",
             "8", "--context", "32", "--batch", "2", "-t", "2", "-q"]
    assert main(small) == 2
    assert "--tokens 40" in capsys.readouterr().err
    assert main(args[:-2] + ["--minutes", "-1"]) == 2
    assert "--minutes -1" in capsys.readouterr().err


def test_teacher_corpus_sampled_continuations_keep_greedy_labels(smol_target):
    """At a temperature the text is sampled (seeded) but each label is still the target's
    argmax at that position."""
    from pylm.train.distill import teacher_corpus

    m = smol_target
    p = "Once upon a time"
    ids = m.tokenize(p, parse_special=True)
    tokens, labels = teacher_corpus(m, [p], new_tokens=12, progress=False, temperature=1.0, seed=5)
    again, _ = teacher_corpus(m, [p], new_tokens=12, progress=False, temperature=1.0, seed=5)
    greedy, _ = teacher_corpus(m, [p], new_tokens=12, progress=False)
    np.testing.assert_array_equal(tokens, again)
    np.testing.assert_array_equal(tokens[:len(ids)], ids)
    assert len(tokens) == len(ids) + 12 and not np.array_equal(tokens, greedy)
    np.testing.assert_array_equal(labels, np.argmax(m.logits(tokens.tolist()), axis=-1))
    with pytest.raises(ValueError, match="temperature=-1"):
        teacher_corpus(m, [p], new_tokens=2, progress=False, temperature=-1)
