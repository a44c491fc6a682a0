"""The generation loop (pylm/generation.py) on a deterministic fake model: stop strings, stop
tokens, max_tokens, logprobs, seeds, partial results on errors. The real models are exercised in
test_speculative.py and test_engine.py."""

from __future__ import annotations

import numpy as np
import pytest
from fakelm import FakeDetok, FakeModel, greedy_reference, piece

from pylm import generation
from pylm.generation import GenerationResult, StopStrings, make_params


@pytest.fixture(autouse=True)
def fake_detok(monkeypatch):
    monkeypatch.setattr(generation, "_detokenizer", lambda model, ids: FakeDetok())


def run(m, ids, draft=None, n_draft=None, **kw):
    res = GenerationResult()
    it = generation.run(m, ids, make_params(None, **kw), None, res, draft=draft, n_draft=n_draft)
    pieces = list(it)
    assert m.live == 0 and (draft is None or isinstance(draft, str) or draft.live == 0)
    return res, pieces


PROMPTS = [[1, 2, 3], [5], [10, 11, 12, 13, 14, 15], [20, 4, 20, 4, 20]]


def test_greedy_matches_reference_and_stops_at_eos():
    m = FakeModel(seed=1)
    for ids in PROMPTS:
        res, pieces = run(m, ids, max_tokens=40)
        want = greedy_reference(m, ids, 40)
        assert res.token_ids == want
        assert res.text == "".join(pieces) == "".join(piece(t) for t in want)
        assert res.finish_reason == ("stop" if len(want) < 40 else "length")


def test_max_tokens_and_ignore_eos_and_stop_token_ids():
    m = FakeModel(seed=2)
    res, _ = run(m, [1, 2], max_tokens=30, ignore_eos=True)
    assert len(res.token_ids) == 30 and res.finish_reason == "length"
    assert res.stats.generated_tokens == 30 and res.stats.target_calls == 29
    full = greedy_reference(m, [1, 2], 30, eos=False)
    assert res.token_ids == full
    stop_tok = full[10]
    res, _ = run(m, [1, 2], max_tokens=30, ignore_eos=True, stop_token_ids=[stop_tok])
    assert res.token_ids == full[: full.index(stop_tok)] and res.finish_reason == "stop"
    res, pieces = run(m, [1, 2], max_tokens=0)
    assert res.token_ids == [] and pieces == [] and res.finish_reason == "length"


def test_context_limit_caps_generation():
    m = FakeModel(seed=2, n_ctx=12)
    res, _ = run(m, [1, 2, 3], max_tokens=100, ignore_eos=True)
    assert len(res.token_ids) == 9 and res.finish_reason == "length"
    with pytest.raises(ValueError, match="context"):
        run(m, list(range(12)), max_tokens=1)


def test_stop_strings_never_emitted_anywhere():
    """Every substring of the generated text that spans a token boundary, used as a stop string,
    cuts the text right before its first occurrence; no streamed piece ever holds stop text."""
    m = FakeModel(seed=3)
    full, _ = run(m, [1, 2], max_tokens=40, ignore_eos=True)
    text = full.text
    rng = np.random.default_rng(0)
    for _ in range(60):
        a = int(rng.integers(0, len(text) - 2))
        stop = text[a: a + int(rng.integers(1, 8))]
        other = "zzz-never"
        res, pieces = run(m, [1, 2], max_tokens=40, ignore_eos=True, stop=[other, stop])
        cut = text.find(stop)
        assert res.text == "".join(pieces) == text[:cut], stop
        assert res.finish_reason == "stop"
        emitted = ""
        for p in pieces:
            emitted += p
            assert stop not in emitted
    # A stop that never completes: held-back text comes out at the end.
    res, pieces = run(m, [1, 2], max_tokens=40, ignore_eos=True, stop=[text[-3:] + "#"])
    assert res.text == text and "".join(pieces) == text


def test_stop_strings_class():
    s = StopStrings(["\nUser:", "###"])
    assert s.push("Hello\nUs") == ("Hello", False)
    assert s.push("e") == ("", False)
    assert s.push("d it #") == ("\nUsed it ", False)
    assert s.push("#") == ("", False)
    assert s.flush() == "##"
    assert StopStrings(["ab"]).push("xxabyyab") == ("xx", True)


def test_logprobs_are_log_softmax_of_the_model_rows():
    m = FakeModel(seed=4)
    ids = [3, 9]
    res, _ = run(m, ids, max_tokens=6, temperature=0.9, seed=7, logprobs=3, ignore_eos=True)
    assert len(res.logprobs) == len(res.token_ids) == 6
    toks = list(ids)
    for lp, t in zip(res.logprobs, res.token_ids):
        z = m.row(toks).astype(np.float64)
        ls = z - (z.max() + np.log(np.exp(z - z.max()).sum()))
        assert lp.token_id == t and abs(lp.logprob - ls[t]) < 1e-12 and lp.text == piece(t)
        top = np.argsort(-ls, kind="stable")[:3]
        assert [i for i, _ in lp.top] == top.tolist()
        np.testing.assert_allclose([v for _, v in lp.top], ls[top], atol=1e-12)
        toks.append(t)


def test_same_seed_same_output_and_different_seed_differs():
    m = FakeModel(seed=5, sharp=1.0)
    a, _ = run(m, [1], max_tokens=30, temperature=1.0, seed=11, ignore_eos=True)
    b, _ = run(m, [1], max_tokens=30, temperature=1.0, seed=11, ignore_eos=True)
    c, _ = run(m, [1], max_tokens=30, temperature=1.0, seed=12, ignore_eos=True)
    assert a.token_ids == b.token_ids != c.token_ids


def test_exception_keeps_partial_result():
    m = FakeModel(seed=6)
    full, _ = run(m, [1, 2], max_tokens=20, ignore_eos=True)
    m.calls, m.fail_after = 0, 8  # the prefill + 7 decode steps succeed
    res = GenerationResult()
    got = []
    with pytest.raises(RuntimeError, match="injected") as e:
        params = make_params(None, max_tokens=20, ignore_eos=True)
        for p in generation.run(m, [1, 2], params, None, res):
            got.append(p)
    assert e.value.partial_result is res and res.finish_reason == "error"
    assert res.token_ids == full.token_ids[:8]
    assert "".join(got) == res.text == full.text[: len(res.text)]
    assert m.live == 0


def test_make_params():
    p = make_params(None, temperature=0.5, top_k=None)
    assert p.temperature == 0.5 and p.top_k == 0 and p.max_tokens == 64
    q = make_params(p, max_tokens=3)
    assert q.temperature == 0.5 and q.max_tokens == 3
    with pytest.raises(TypeError, match="top_kk"):
        make_params(None, top_kk=3)
    with pytest.raises(ValueError, match="top_p"):
        make_params(None, top_p=2.0)
