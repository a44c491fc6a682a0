"""Cross-ISA determinism of the whole engine (issue 5): the same prompt gives bit-identical
logits, and the same seed the same sampled tokens, whether pylm runs its scalar, AVX2 or AVX-512
kernels. Every kernel the engine calls performs one canonical float evaluation on every ISA
(RMSNorm, RoPE, activations, attention: tests/test_kernels_det.py; the quantized matmuls:
tests/test_qdot_det.py, tests/test_qdot_kquant_det.py)."""

from __future__ import annotations

import numpy as np
import pytest

import pylm

PROMPT = "def add(a, b):\n    return a + b\n\ndef mul(a, b):\n    return"
DECODE = [1, 2, 3, 4]  # fixed continuation positions: ids taken from the prompt itself

_models: dict = {}


def _model(name, path):
    if name not in _models:
        _models[name] = pylm.load(path, threads=2, n_ctx=256)
    return _models[name]


@pytest.fixture(params=["smollm2", "gemma3-270m"])
def model(request):
    from conftest import model_path

    return _model(request.param, model_path(request.param))


def _prefill_and_decode(m):
    """Logits of a prefill (every row), then of a few one-token decode steps."""
    ids = m.tokenize(PROMPT)
    seq = m.new_sequence()
    try:
        rows = [seq.feed(ids, all_logits=True)]
        rows += [seq.feed([ids[i]])[None] for i in DECODE]
    finally:
        seq.free()
    return np.concatenate(rows)


def _per_isa(fn):
    out = {}
    for isa in pylm.available_isas():
        with pylm.use_isa(isa):
            out[isa] = fn()
    return out


def test_logits_bit_identical_across_isas(model):
    got = _per_isa(lambda: _prefill_and_decode(model))
    for isa, lg in got.items():
        np.testing.assert_array_equal(lg, got["scalar"], err_msg=f"{isa} vs scalar")


@pytest.mark.parametrize("packed_isa", [i for i in ("avx2", "avx512") if i in pylm.available_isas()])
def test_repacked_weights_give_the_same_logits(model, packed_isa):
    """The engine's packed copies (Q4_0/Q4_1/Q8_0 matrices, the ISA's gemm_packed) change no
    bit: the same prefill and decode logits as the GGUF rows (repack=False), the screened head
    too."""
    plain = pylm.load(model.path, threads=2, n_ctx=256, repack=False)
    assert plain._engine.repacked_bytes == 0
    with pylm.use_isa(packed_isa):
        packed = pylm.load(model.path, threads=2, n_ctx=256)
        # SmolLM2: Q4_1 layers and a Q8_0 head (all but the norms); Gemma 3: its Q8_0 head
        assert packed._engine.repacked_bytes > (0.9 if model.architecture == "llama" else 0.6) * (
            model.file.file_size)
        np.testing.assert_array_equal(_prefill_and_decode(packed), _prefill_and_decode(plain))
        screen0 = packed._engine.repacked_bytes
        packed.head_screen = plain.head_screen = 8
        assert packed._engine.repacked_bytes > screen0  # the Q4_0 screen copy is packed too
        np.testing.assert_array_equal(_prefill_and_decode(packed), _prefill_and_decode(plain))


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_seeded_sampling_identical_across_isas(model, seed):
    ids = model.tokenize("Once upon a time, there was")

    def sample():
        r = model.generate(ids, max_tokens=40, temperature=0.8, top_p=0.95, seed=seed,
                           ignore_eos=True, return_stats=True)
        return r.token_ids

    got = _per_isa(sample)
    assert all(len(t) == 40 for t in got.values())
    for isa, toks in got.items():
        assert toks == got["scalar"], f"seed {seed}: {isa} vs scalar"
