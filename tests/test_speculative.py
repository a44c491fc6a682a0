"""Speculative decoding: the acceptance rule tested statistically on made-up distributions (no
model), exactness on a deterministic fake model, and greedy identity on the real SmolLM2."""

from __future__ import annotations

import math

import numpy as np
import pytest
from fakelm import FakeDetok, FakeModel, greedy_reference
from test_sampling import chi2_critical

from pylm import generation
from pylm.generation import GenerationResult, make_params
from pylm.sampling import Dist
from pylm.speculative import NgramProposer, residual, verify


def _chi2(counts, probs):
    n = counts.sum()
    assert counts[probs == 0].sum() == 0
    keep = probs * n >= 5  # pool rare cells (standard chi-square validity rule)
    obs = np.append(counts[keep], counts[~keep].sum())
    exp = np.append(probs[keep] * n, probs[~keep].sum() * n)
    if exp[-1] == 0:
        obs, exp = obs[:-1], exp[:-1]
    return float(((obs - exp) ** 2 / exp).sum()), len(obs) - 1


# ---- the rule on a Markov chain: target P, draft Q (rows = next-token distributions) ------------

V = 6


def _chains(seed):
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.full(V, 0.7), size=V)
    Q = rng.dirichlet(np.full(V, 0.7), size=V)
    Q[:, 2] = 0.0  # the draft never proposes token 2: only the residual can produce it
    Q /= Q.sum(1, keepdims=True)
    return P, Q


def spec_chain(P, Q, x0, n_out, gamma, rng):
    out, prev, first_accept = [], x0, None
    while len(out) < n_out:
        props, qs, c = [], [], prev
        for _ in range(gamma):
            q = Dist.from_dense(Q[c])
            c = q.sample(rng)
            props.append(c)
            qs.append(q)
        ps = [Dist.from_dense(P[t]) for t in [prev] + props]
        n, nxt = verify(props, qs, ps, rng)
        if first_accept is None:
            first_accept = n > 0
        out += props[:n] + [nxt]
        prev = out[-1]
    return out[:n_out], first_accept


@pytest.mark.parametrize("gamma", [1, 3])
def test_rejection_sampling_follows_target_chain(gamma):
    P, Q = _chains(1)
    x0, N = 4, 8000
    rng = np.random.Generator(np.random.PCG64(2024 + gamma))
    pairs = np.zeros((V, V), dtype=np.int64)
    fourth = np.zeros(V, dtype=np.int64)
    accepts = 0
    for _ in range(N):
        out, acc = spec_chain(P, Q, x0, 4, gamma, rng)
        pairs[out[0], out[1]] += 1
        fourth[out[3]] += 1
        accepts += acc
    want_pairs = P[x0][:, None] * P  # P(a | x0) P(b | a)
    stat, df = _chi2(pairs.ravel(), want_pairs.ravel())
    assert stat < chi2_critical(df), (stat, df)
    want_fourth = np.linalg.matrix_power(P, 4)[x0]
    stat, df = _chi2(fourth, want_fourth)
    assert stat < chi2_critical(df), (stat, df)
    # First proposal accepted with probability sum_x min(p(x), q(x)).
    alpha = np.minimum(P[x0], Q[x0]).sum()
    sd = math.sqrt(alpha * (1 - alpha) / N)
    assert abs(accepts / N - alpha) < 4.5 * sd, (accepts / N, alpha)


def test_greedy_verification_is_exact_and_lazy():
    one = lambda t: Dist.one_hot(t, 10)  # noqa: E731

    class Lazy:
        def __init__(self, rows):
            self.rows, self.read = rows, []

        def __getitem__(self, i):
            self.read.append(i)
            return one(self.rows[i])

    rng = np.random.default_rng(0)
    p = Lazy([3, 5, 8, 1])
    assert verify([3, 5, 9], [one(3), one(5), one(9)], p, rng) == (2, 8)
    assert p.read == [0, 1, 2]
    assert verify([3, 5, 8], [one(3), one(5), one(8)], Lazy([3, 5, 8, 1]), rng) == (3, 1)
    assert verify([], [], Lazy([6]), rng) == (0, 6)
    with pytest.raises(ValueError, match="probability 0"):
        verify([4], [one(3)], Lazy([4, 4]), rng)


def test_residual():
    p = Dist(np.array([1, 2, 4]), np.array([0.5, 0.3, 0.2]), 6)
    q = Dist.from_dense(np.array([0, 0.6, 0.1, 0.1, 0.2, 0]))
    r = residual(p, q)
    np.testing.assert_allclose(r.dense(), [0, 0, 0.2 / 0.2, 0, 0, 0])
    assert residual(p, p) is p


def test_ngram_lookup():
    ng = NgramProposer(100, n_max=3)
    # last 3-gram (7 8 9) occurred at 1..3, followed by 4 5
    assert ng.lookup([0, 7, 8, 9, 4, 5, 6, 7, 8, 9], 2) == [4, 5]
    # latest occurrence wins; continuation may run into the tail
    assert ng.lookup([1, 2, 3, 1, 2, 9, 1, 2], 3) == [9, 1, 2]
    # falls back to shorter n-grams, then to nothing
    assert ng.lookup([5, 6, 1, 2, 6], 4) == [1, 2, 6]
    assert ng.lookup([1, 2, 3], 4) == []
    with pytest.raises(ValueError, match="n_min"):
        NgramProposer(100, n_max=2, n_min=3)


# ---- the fake model: exact greedy identity, target distribution when sampling -----------------

@pytest.fixture
def fake_detok(monkeypatch):
    monkeypatch.setattr(generation, "_detokenizer", lambda model, ids: FakeDetok())


def spec_run(m, ids, draft, n_draft=None, adaptive=False, **kw):
    res = GenerationResult()
    list(generation.run(m, ids, make_params(None, **kw), None, res, draft=draft, n_draft=n_draft,
                        adaptive=adaptive))
    assert m.live == 0 and (isinstance(draft, str) or draft.live == 0)
    return res


@pytest.mark.parametrize("n_draft,adaptive", [(1, False), (4, False), (3, True)])
def test_greedy_speculative_identical_on_fake(fake_detok, n_draft, adaptive):
    target = FakeModel(seed=11)
    for noise, prompts in ((0.0, [[1, 2]]), (1.5, [[1, 2], [9], [30, 31, 32, 33]])):
        draft = FakeModel(base=target, noise=noise, seed=5)
        for ids in prompts:
            want = greedy_reference(target, ids, 60, eos=False)
            target.calls = 0
            res = spec_run(target, ids, draft, n_draft, adaptive, max_tokens=60, ignore_eos=True)
            st = res.stats
            assert res.token_ids == want
            assert target.calls == st.target_calls + 1 and st.generated_tokens == 60
            assert st.tokens_per_target_call == pytest.approx(59 / st.target_calls)
            assert 0 <= st.accepted <= st.proposed
            if noise == 0:
                assert st.acceptance_rate == 1.0


def test_greedy_ngram_identical_on_fake(fake_detok):
    target = FakeModel(seed=12, sharp=6.0)  # sharp: greedy output falls into a loop quickly
    for ids in ([1, 2], [5, 6, 7, 5, 6, 7], [40]):
        want = greedy_reference(target, ids, 80, eos=False)
        res = spec_run(target, ids, "ngram", max_tokens=80, ignore_eos=True)
        assert res.token_ids == want
        assert res.stats.tokens_per_target_call > 1.5  # loops are easy to look up


@pytest.mark.parametrize("draft_kind", ["model", "ngram"])
def test_sampling_speculative_follows_target(fake_detok, draft_kind):
    """First two tokens of generate(temperature=0.8, top_k=6, draft=...) over many seeds follow
    the target's own chain, computed exactly from the fake model's logits."""
    target = FakeModel(V=8, seed=21, sharp=1.0)
    draft = FakeModel(base=target, noise=1.0, seed=3) if draft_kind == "model" else "ngram"
    ids = [1, 2, 1, 2, 1]
    from pylm.sampling import Sampler, SamplingParams

    params = SamplingParams(temperature=0.8, top_k=6)
    s = Sampler(params, 8)
    p1 = s.dist(target.row(ids), ids).dense()
    want = np.array([p1[a] * s.dist(target.row(ids + [a]), ids + [a]).dense() for a in range(8)])
    N = 3000
    counts = np.zeros((8, 8), dtype=np.int64)
    for seed in range(N):
        res = spec_run(target, ids, draft, 3, False, max_tokens=4, temperature=0.8, top_k=6,
                       seed=seed, ignore_eos=True)
        counts[res.token_ids[0], res.token_ids[1]] += 1
    stat, df = _chi2(counts.ravel(), want.ravel())
    assert stat < chi2_critical(df), (stat, df)


def test_gamma_controller_follows_acceptance_and_costs():
    from pylm.speculative import GammaController

    hi = GammaController(4, 8, True)
    for _ in range(10):  # every proposal accepted, draft step 1 ms, verify 10 ms + 0.5 ms/token
        hi.update(hi.gamma, hi.gamma, 1e-3 * hi.gamma, hi.gamma, 0.010 + 0.0005 * hi.gamma)
    assert hi.gamma == 8
    lo = GammaController(4, 8, True)
    for _ in range(10):  # first proposal always rejected, draft half as costly as the target
        lo.update(0, lo.gamma, 5e-3 * lo.gamma, lo.gamma, 0.010 + 0.0005 * lo.gamma)
    assert lo.gamma == 1
    fixed = GammaController(4, 4, False)
    fixed.update(0, 4, 0.02, 4, 0.012)
    assert fixed.gamma == 4


def test_bad_draft_arguments(fake_detok):
    target = FakeModel(seed=1)
    with pytest.raises(ValueError, match="n_draft"):
        spec_run(target, [1], "ngram", n_draft=0, max_tokens=4)
    with pytest.raises(ValueError, match="draft"):
        spec_run(target, [1], "lookahead", max_tokens=4)
    with pytest.raises(ValueError, match="n_vocab"):
        spec_run(target, [1], FakeModel(V=30), max_tokens=4)


# ---- the real SmolLM2 ----------------------------------------------------------------------
# Greedy speculation reproduces greedy decoding exactly because the engine is batch-invariant:
# every kernel computes a row in the same order whatever the batch size (test_engine checks the
# logits bit for bit), so verifying 5 tokens in one forward gives the single-token logits.

REAL_PROMPTS = ["The capital of France is", "def fibonacci(n):\n"]


@pytest.fixture(scope="module")
def smol(smollm2_path):
    import pylm

    return pylm.load(smollm2_path, threads=2, n_ctx=256)


def test_real_greedy_identical_on_every_isa(smol, isa):
    free = smol.kv_free_blocks
    for p in REAL_PROMPTS:
        want = smol.generate(p, max_tokens=10, ignore_eos=True, return_stats=True)
        for draft in (smol, "ngram"):  # the model as its own draft: its own sequence
            got = smol.generate(p, max_tokens=10, ignore_eos=True, return_stats=True,
                                draft=draft, n_draft=4)
            assert got.token_ids == want.token_ids, (isa, p, draft)
            assert got.text == want.text
            if draft is smol:
                assert got.stats.alpha == 1.0 and got.stats.target_calls < 9
    assert smol.kv_free_blocks == free  # both sequences of every run were freed


def test_real_draft_head_rows(smollm2_path):
    # A second instance of the file as draft, its output head cut to the first 16384 ids
    # (FR-Spec): logits below the cut equal the full head's, the rest are -inf; greedy
    # speculation with it is still the target's greedy output, and sampling follows the
    # restricted q (the draft never proposes a cut id).
    import pylm

    target = pylm.load(smollm2_path, threads=2, n_ctx=256)
    draft = pylm.load(smollm2_path, threads=2, n_ctx=256)
    ids = target.tokenize(REAL_PROMPTS[1])
    s = draft.new_sequence()
    full = s.feed(ids)
    s.truncate(len(ids) - 1)
    draft.head_rows = 16384
    cut = s.feed(ids[-1:])
    s.free()
    np.testing.assert_array_equal(cut[:16384], full[:16384])
    assert np.isneginf(cut[16384:]).all() and draft.head_rows == 16384
    for bad in (0, draft.n_vocab + 1):
        with pytest.raises(ValueError, match="head_rows"):
            draft.head_rows = bad
    for p in REAL_PROMPTS:
        want = target.generate(p, max_tokens=24, ignore_eos=True, return_stats=True)
        got = target.generate(p, max_tokens=24, ignore_eos=True, return_stats=True, draft=draft,
                              n_draft=4)
        assert got.token_ids == want.token_ids, p
        assert got.stats.target_calls < 23
    got = target.generate(REAL_PROMPTS[0], max_tokens=16, temperature=0.9, seed=7, draft=draft,
                          return_stats=True)
    assert got.finish_reason in ("stop", "length") and got.stats.proposed > 0


def test_real_draft_head_screen(smollm2_path):
    # head_screen = k: logits from a Q4_0 copy of the (Q8_0) head, the copy's top k recomputed
    # with the head itself. Those k are the unscreened logits bit for bit and hold the argmax;
    # the rest track the head (Q4_0 error); the draft's own greedy text is unchanged; a
    # screened draft keeps speculation exact; 0 turns it off.
    import pylm

    target = pylm.load(smollm2_path, threads=2, n_ctx=256)
    draft = pylm.load(smollm2_path, threads=2, n_ctx=256)
    ref = pylm.load(smollm2_path, threads=2, n_ctx=256)
    draft.head_screen = 16
    assert draft.head_screen == 16 and ref.head_screen == 0
    for p in REAL_PROMPTS:
        ids = target.tokenize(p)
        sr, sd = ref.new_sequence(), draft.new_sequence()
        full, scr = sr.feed(ids), sd.feed(ids)
        sr.free()
        sd.free()
        same = np.flatnonzero(full == scr)
        assert len(same) >= 16 and int(np.argmax(full)) in same
        assert int(np.argmax(scr)) == int(np.argmax(full))
        assert np.corrcoef(full, scr)[0, 1] > 0.95  # 0.98 measured: Q4_0 vs Q8_0 rows
        assert draft.generate(p, max_tokens=24, ignore_eos=True) == \
            ref.generate(p, max_tokens=24, ignore_eos=True)
        want = target.generate(p, max_tokens=24, ignore_eos=True, return_stats=True)
        got = target.generate(p, max_tokens=24, ignore_eos=True, return_stats=True, draft=draft,
                              n_draft=4)
        assert got.token_ids == want.token_ids, p
        assert got.stats.target_calls < 23
    for bad in (-1, draft.n_vocab + 1):
        with pytest.raises(ValueError, match="head_screen"):
            draft.head_screen = bad
    with pytest.raises(TypeError, match="head_screen"):
        draft.head_screen = 1.5
    draft.head_screen = 0
    ids = target.tokenize(REAL_PROMPTS[0])
    sr, sd = ref.new_sequence(), draft.new_sequence()
    np.testing.assert_array_equal(sd.feed(ids), sr.feed(ids))


def test_real_f16_target_with_its_q4_1_draft(smollm2_path, tmp_path):
    # The pair: SmolLM2 requantized to F16 by pylm quantize (target) and the original
    # Q4_1 file (draft). The two disagree now and then, so rounds are rejected and both caches
    # rolled back; greedy output must still be the target's own, token for token.
    import pylm
    from pylm.commands.quantize import quantize_model

    f16 = tmp_path / "smollm2-f16.gguf"
    quantize_model(smollm2_path, f16, "F16", progress=False)
    target = pylm.load(f16, threads=2, n_ctx=256)
    draft = pylm.load(smollm2_path, threads=2, n_ctx=256)
    screened = pylm.load(smollm2_path, threads=2, n_ctx=256)
    screened.head_screen = 16
    prompts = REAL_PROMPTS + ["Photosynthesis is the process by which",
                              "List three prime numbers:"]
    rejected = accepted = 0
    for p in prompts:
        want = target.generate(p, max_tokens=32, ignore_eos=True, return_stats=True)
        for d, n, adaptive in ((draft, 4, False), (screened, 3, False), (draft, 4, True)):
            got = target.generate(p, max_tokens=32, ignore_eos=True, return_stats=True, draft=d,
                                  n_draft=n, adaptive_draft=adaptive)
            assert got.token_ids == want.token_ids, (p, n, adaptive)
            assert got.stats.target_calls < 32
            rejected += got.stats.rejected
            accepted += got.stats.accepted
    assert rejected > 0  # the rollback path ran
    assert accepted / (accepted + rejected) > 0.7  # 0.97 in the bench: same model, 4-bit draft


def test_real_sampling_seeded_and_streaming(smol):
    kw = dict(max_tokens=8, temperature=0.8, top_k=40, top_p=0.95, seed=3)
    a = smol.generate(REAL_PROMPTS[0], **kw)
    s = smol.generate(REAL_PROMPTS[0], stream=True, **kw)
    assert "".join(s) == a == s.result.text and s.result.finish_reason in ("stop", "length")
    spec = smol.generate(REAL_PROMPTS[0], draft="ngram", return_stats=True, **kw)
    assert spec.finish_reason in ("stop", "length") and spec.stats.target_calls >= 1


def test_cli_generate_with_draft_and_sampling_flags(smol, smollm2_path, capsys):
    from pylm.cli import main

    args = ["generate", "-m", str(smollm2_path), "-p", REAL_PROMPTS[0], "-n", "8", "-t", "2",
            "-c", "256", "--draft", "ngram", "--n-draft", "3", "-v"]
    assert main(args) == 0
    out = capsys.readouterr()
    assert out.out == smol.generate(REAL_PROMPTS[0], max_tokens=8) + "\n"
    assert "ngram: acceptance" in out.err
    assert main(args[:-5] + ["--temp", "0.7", "--top-k", "20", "--seed", "5"]) == 0
    first = capsys.readouterr().out
    assert main(args[:-5] + ["--temp", "0.7", "--top-k", "20", "--seed", "5"]) == 0
    assert capsys.readouterr().out == first
    assert main(args[:-5] + ["--top-p", "1.5"]) == 2
    assert "top_p" in capsys.readouterr().err
    assert main(args[:-5] + ["--draft", str(smollm2_path), "--draft-head-rows", "16384"]) == 0
    assert capsys.readouterr().out == smol.generate(REAL_PROMPTS[0], max_tokens=8) + "\n"
    assert main(args + ["--draft-head-rows", "16384"]) == 2  # ngram has no head
    assert "draft-head-rows" in capsys.readouterr().err
    assert main(args[:-5] + ["--draft-head-rows", "16384"]) == 2  # and no draft at all
    assert "needs --draft" in capsys.readouterr().err
    assert main(args[:-5] + ["--draft", str(smollm2_path), "--draft-head-screen", "16"]) == 0
    assert capsys.readouterr().out == smol.generate(REAL_PROMPTS[0], max_tokens=8) + "\n"
    assert main(args + ["--draft-head-screen", "16"]) == 2
    assert "--draft-head-screen 16 needs --draft" in capsys.readouterr().err


def test_gamma_controller_escapes_gamma_one_when_everything_is_accepted():
    # Draft 0.4x the target's step, verification +5% per extra token: with alpha ~ 1 the best
    # gamma is large. Starting at 1 (a pessimistic first guess), every round accepts its single
    # proposal; the alpha estimate must keep rising (memory per proposal, not per round) and
    # gamma must grow back.
    from pylm.speculative import GammaController

    ctl = GammaController(1, 8, True)
    t = 0.010
    for _ in range(60):
        g = ctl.gamma
        ctl.update(g, g, 0.4 * t * g, g, t * (1 + 0.05 * g))
    assert ctl.gamma >= 5


def test_gamma_controller_keeps_gamma_after_a_fully_accepted_start():
    # The bench pair's costs (draft 0.37x a step, verification +6.5% per extra token). A first
    # round that accepts all 5 proposals is evidence for a high alpha, not against it: the
    # old Laplace estimate (6/7 = 0.86) cut gamma to 1 and spent a dozen rounds regrowing it.
    from pylm.speculative import GammaController

    ctl = GammaController(5, 10, True)
    t = 0.010
    seen = []
    for _ in range(4):
        g = ctl.gamma
        ctl.update(g, g, 0.37 * t * g, g, t * (1 + 0.065 * g))
        seen.append(ctl.gamma)
    assert min(seen) >= 4, seen


def test_gamma_controller_survives_a_rejection_after_wide_verifications():
    # Verification cost as measured for the bench pair (SmolLM2 F16, 2 threads): flat up to
    # 4 tokens, then +10-15 % per token; draft 0.4x a step; one rejection in ~30 proposals.
    # Widths narrower than any verified so far must not be priced on the steep line through
    # the widest two (that put a 2-token verification below a single step's cost and sent
    # gamma from 7 to 1 after the first rejection).
    from pylm.speculative import GammaController

    v = {1: 1.0, 2: 1.07, 3: 1.10, 4: 1.20, 5: 1.30, 6: 1.44, 7: 1.60, 8: 1.90, 9: 2.2, 10: 2.5,
         11: 2.8}
    t = 0.011
    ctl = GammaController(5, 10, True)
    seen, proposals = [], 0
    for _ in range(40):
        g = ctl.gamma
        n_acc = g
        if proposals // 30 != (proposals + g) // 30:  # a rejection every ~30 proposals
            n_acc = min(g - 1, (30 - proposals % 30) - 1)
        proposals += g
        ctl.update(n_acc, g, 0.4 * t * g, g, t * v[g + 1])
        seen.append(ctl.gamma)
    assert min(seen) >= 3, seen
    assert sum(seen[-20:]) / 20 >= 4, seen
