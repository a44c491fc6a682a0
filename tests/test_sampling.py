"""pylm.sampling against an independent reference written here (Python sorts with explicit
(value desc, token id asc) keys, float64), plus chi-square tests of the draws."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pylm.sampling import Dist, Sampler, SamplingParams

# ---- reference chain: lists of (token id, logit), no numpy sorting ------------------------------


def ref_adjust(logits, history, p: SamplingParams):
    z = [float(v) for v in logits]
    n = p.penalty_last_n
    window = list(history) if n < 0 else (list(history)[-n:] if n > 0 else [])
    for t in set(window):
        c = window.count(t)
        z[t] = z[t] * p.repetition_penalty if z[t] <= 0 else z[t] / p.repetition_penalty
        z[t] -= c * p.frequency_penalty + p.presence_penalty
    for t, b in (p.logit_bias or {}).items():
        z[t] += b
    return z


def ref_probs(cands):
    m = max(v for _, v in cands)
    e = [math.exp(v - m) for _, v in cands]
    s = sum(e)
    return [x / s for x in e]


def ref_top_k(cands, k):
    if k <= 0:
        return cands
    return sorted(cands, key=lambda c: (-c[1], c[0]))[:k]


def ref_top_p(cands, mass):
    if mass >= 1:
        return cands
    probs = dict(zip((t for t, _ in cands), ref_probs(cands)))
    out, cum = [], 0.0
    for t, v in sorted(cands, key=lambda c: (-c[1], c[0])):
        out.append((t, v))
        cum += probs[t]
        if cum >= mass:
            break
    return out


def ref_typical(cands, mass):
    if mass >= 1:
        return cands
    pr = ref_probs(cands)
    ent = -sum(q * math.log(q) for q in pr if q > 0)
    scored = sorted(((abs(-math.log(q) - ent) if q > 0 else math.inf, t, v, q)
                     for (t, v), q in zip(cands, pr)), key=lambda s: (s[0], s[1]))
    out, cum = [], 0.0
    for _, t, v, q in scored:
        out.append((t, v))
        cum += q
        if cum > mass:
            break
    return out


def ref_min_p(cands, min_p):
    if min_p <= 0:
        return cands
    pr = ref_probs(cands)
    pmax = max(pr)
    return [c for c, q in zip(cands, pr) if q >= min_p * pmax]


def ref_dist(logits, history, p: SamplingParams) -> np.ndarray:
    """Dense (V,) probabilities the next token is drawn from."""
    z = ref_adjust(logits, history, p)
    out = np.zeros(len(z))
    if p.temperature == 0:
        out[int(np.argmax(z))] = 1.0
        return out
    cands = [(i, v) for i, v in enumerate(z)]
    cands = ref_typical(ref_top_k(cands, p.top_k), p.typical_p)
    cands = ref_min_p(ref_top_p(cands, p.top_p), p.min_p)
    for (t, _), q in zip(cands, ref_probs([(t, v / p.temperature) for t, v in cands])):
        out[t] = q
    return out


def chi2_critical(df: int, alpha: float = 1e-3) -> float:
    """Upper alpha quantile of chi-square(df): scipy when present, else Wilson-Hilferty (relative
    error < 1% for df >= 3, far below the margin a biased sampler produces at these N)."""
    try:
        from scipy.stats import chi2

        return float(chi2.ppf(1 - alpha, df))
    except ImportError:
        z = 3.090232306167813  # standard normal 1 - 1e-3 quantile
        return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


# ---- transforms on hand-made logits -------------------------------------------------------------

HAND = np.array([2.0, -1.0, 0.5, 3.0, 3.0, -0.25, 1.5, 0.0], dtype=np.float32)


def test_penalties_and_bias_hand_made():
    p = SamplingParams(temperature=1.0, repetition_penalty=2.0, frequency_penalty=0.5,
                       presence_penalty=0.25, penalty_last_n=4, logit_bias={6: -1.0, 7: 2.0})
    hist = [3, 1, 0, 0, 1, 3]  # window: [0, 0, 1, 3]
    z = Sampler(p, 8).adjust(HAND, hist)
    want = HAND.astype(np.float64).copy()
    want[0] = 2.0 / 2 - 2 * 0.5 - 0.25
    want[1] = -1.0 * 2 - 0.5 - 0.25
    want[3] = 3.0 / 2 - 0.5 - 0.25
    want[6] -= 1.0
    want[7] += 2.0
    np.testing.assert_array_equal(z, want)
    np.testing.assert_array_equal(z, ref_adjust(HAND, hist, p))


def test_penalty_window_all_and_off():
    hist = [0, 0, 4]
    for n, touched in ((-1, {0, 4}), (0, set()), (1, {4})):
        p = SamplingParams(temperature=1.0, presence_penalty=1.0, penalty_last_n=n)
        z = Sampler(p, 8).adjust(HAND, hist)
        changed = {int(i) for i in np.flatnonzero(z != HAND)}
        assert changed == touched, n


def test_greedy_is_argmax_after_bias_lowest_id_on_ties():
    s = Sampler(SamplingParams(temperature=0.0), 8)
    assert s.sample(HAND) == 3  # 3 and 4 tie: lowest id
    s = Sampler(SamplingParams(temperature=0.0, logit_bias={3: -math.inf}), 8)
    assert s.sample(HAND) == 4
    s = Sampler(SamplingParams(temperature=0.0, repetition_penalty=10.0), 8)
    assert s.sample(HAND, history=[3, 4]) == 0


def test_top_k_ties_keep_lowest_ids():
    d = Sampler(SamplingParams(temperature=1.0, top_k=2), 8).dist(HAND)
    assert d.ids.tolist() == [3, 4]
    d = Sampler(SamplingParams(temperature=1.0, top_k=3), 8).dist(HAND)
    assert d.ids.tolist() == [0, 3, 4]
    np.testing.assert_allclose(d.dense(), ref_dist(HAND, [], d_params(top_k=3)), rtol=0, atol=1e-15)


def d_params(**kw):
    return SamplingParams(temperature=kw.pop("temperature", 1.0), **kw)


@pytest.mark.parametrize("kw", [
    dict(top_k=3), dict(top_k=8), dict(top_p=0.5), dict(top_p=0.9), dict(top_p=0.999999),
    dict(min_p=0.3), dict(min_p=1.0), dict(typical_p=0.5), dict(typical_p=0.95),
    dict(temperature=0.3), dict(temperature=2.5, top_k=5, top_p=0.8, min_p=0.1),
    dict(top_k=6, typical_p=0.7, top_p=0.9, min_p=0.05, temperature=0.8),
])
def test_chain_hand_made_vs_reference(kw):
    p = d_params(**kw)
    got = Sampler(p, 8).dist(HAND).dense()
    np.testing.assert_allclose(got, ref_dist(HAND, [], p), rtol=0, atol=1e-14)


@pytest.mark.parametrize("V,scale", [(1000, 3.0), (50000, 1.0), (50000, 6.0)])
@pytest.mark.parametrize("kw", [
    dict(top_p=0.9), dict(typical_p=0.8), dict(min_p=0.02), dict(top_k=37, top_p=0.7),
    dict(top_p=0.95, min_p=0.01, temperature=0.7), dict(repetition_penalty=1.3, top_p=0.5),
])
def test_chain_random_logits_vs_reference(V, scale, kw):
    """Large V runs the fast paths (partition, top-1024 prefix, histogram buckets)."""
    rng = np.random.default_rng(V + int(scale))
    logits = (rng.standard_normal(V) * scale).astype(np.float32)
    logits[rng.integers(0, V, 50)] = logits[0]  # ties
    hist = rng.integers(0, V, 100).tolist()
    p = d_params(**kw)
    got = Sampler(p, V).dist(logits, hist)
    want = ref_dist(logits, hist, p)
    assert set(np.flatnonzero(got.dense() > 0)) == set(np.flatnonzero(want > 0))
    np.testing.assert_allclose(got.dense(), want, rtol=1e-9, atol=1e-15)


# ---- draws ------------------------------------------------------------------------------------

def _chi2(counts: np.ndarray, expected_p: np.ndarray) -> tuple[float, int]:
    n = counts.sum()
    keep = expected_p > 0
    assert counts[~keep].sum() == 0, "drew a token with zero probability"
    e = n * expected_p[keep]
    return float(((counts[keep] - e) ** 2 / e).sum()), int(keep.sum()) - 1


@pytest.mark.parametrize("kw", [
    dict(temperature=1.0), dict(temperature=0.7, top_k=6), dict(temperature=1.3, top_p=0.9),
    dict(temperature=1.0, min_p=0.1, repetition_penalty=1.5),
])
def test_draws_chi_square_small_vocab(kw):
    p = d_params(seed=1234, **kw)
    hist = [0, 3]
    expected = ref_dist(HAND, hist, p)
    s = Sampler(p, 8)
    n = 8000
    counts = np.bincount([s.sample(HAND, hist) for _ in range(n)], minlength=8)
    stat, df = _chi2(counts, expected)
    assert stat < chi2_critical(df), (stat, df, counts, expected * n)


def test_draws_chi_square_large_vocab_blocked_cdf():
    """V = 100k uses the blocked inverse CDF; tokens are pooled into 64 id ranges."""
    V = 100_000
    rng = np.random.default_rng(7)
    logits = (rng.standard_normal(V) * 2).astype(np.float32)
    logits[:V // 3] -= 3.0
    p = d_params(seed=99)
    d = Sampler(p, V).dist(logits)
    assert d.ids is None and len(d.w) == V
    rng = np.random.Generator(np.random.PCG64(99))
    draws = np.array([d.sample(rng) for _ in range(20000)])
    bins = np.arange(V) * 64 // V
    counts = np.bincount(bins[draws], minlength=64)
    expected = np.bincount(bins, weights=ref_dist(logits, [], p), minlength=64)
    stat, df = _chi2(counts, expected)
    assert stat < chi2_critical(df), (stat, df)


def test_same_seed_same_draws_and_inverse_cdf():
    p = d_params(temperature=0.9, top_p=0.95, seed=42)
    rng = np.random.default_rng(3)
    logits = (rng.standard_normal(20000) * 2).astype(np.float32)
    a, b = Sampler(p, 20000), Sampler(p, 20000)
    da = [a.sample(logits) for _ in range(200)]
    assert da == [b.sample(logits) for _ in range(200)]
    c = Sampler(d_params(temperature=0.9, top_p=0.95, seed=43), 20000)
    assert da != [c.sample(logits) for _ in range(200)]
    # Each draw is the inverse CDF (token-id order) of one PCG64 double.
    u = np.random.Generator(np.random.PCG64(42))
    probs = ref_dist(logits, [], p)
    cdf = np.cumsum(probs)
    want = [int(np.searchsorted(cdf, u.random() * cdf[-1], side="right")) for _ in range(200)]
    assert da == want


def test_dist_helpers():
    d = Dist(np.array([2, 5, 9]), np.array([1.0, 0.0, 3.0]), 10)
    assert d.prob(9) == 0.75 and d.prob(5) == 0.0 and d.prob(4) == 0.0 and d.argmax() == 9
    np.testing.assert_array_equal(d.dense(), [0, 0, .25, 0, 0, 0, 0, 0, 0, .75])
    rng = np.random.default_rng(0)
    assert {d.sample(rng) for _ in range(200)} == {2, 9}


# ---- logprobs -----------------------------------------------------------------------------------

def test_logprobs_are_log_softmax_of_processed_logits():
    V = 5000
    rng = np.random.default_rng(11)
    logits = (rng.standard_normal(V) * 3).astype(np.float32)
    hist = rng.integers(0, V, 30).tolist()
    p = d_params(temperature=0.8, top_k=50, repetition_penalty=1.2, logit_bias={17: 5.0},
                 logprobs=7, seed=5)
    tok, lp = Sampler(p, V).sample_with_logprobs(logits, hist, k=7)
    z = np.array(ref_adjust(logits, hist, p))
    ls = z - (z.max() + np.log(np.exp(z - z.max()).sum()))
    order = sorted(range(V), key=lambda i: (-z[i], i))[:7]
    assert [t for t, _ in lp.top] == order
    np.testing.assert_allclose([v for _, v in lp.top], ls[order], rtol=0, atol=1e-12)
    assert lp.token_id == tok and abs(lp.logprob - ls[tok]) < 1e-12


# ---- validation ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name,value", [
    ("temperature", -0.1), ("temperature", math.nan), ("top_k", -1), ("top_k", 2.5),
    ("top_p", 0.0), ("top_p", 1.01), ("min_p", -0.1), ("min_p", 1.5), ("typical_p", 0.0),
    ("typical_p", 2.0), ("repetition_penalty", 0.0), ("frequency_penalty", math.inf),
    ("presence_penalty", math.nan), ("penalty_last_n", -2), ("max_tokens", -1), ("seed", -5),
    ("logprobs", -1), ("stop", [""]), ("stop_token_ids", [-3]), ("logit_bias", {3: math.nan}),
    ("logit_bias", {-1: 1.0}),
])
def test_invalid_params_name_the_parameter(name, value):
    with pytest.raises(ValueError, match=name):
        SamplingParams(**{name: value})


def test_bad_inputs_at_sample_time():
    with pytest.raises(IndexError, match="logit_bias"):
        Sampler(SamplingParams(logit_bias={8: 1.0}), 8)
    s = Sampler(SamplingParams(temperature=1.0, presence_penalty=1.0), 8)
    with pytest.raises(ValueError, match="shape"):
        s.sample(np.zeros(9, np.float32))
    with pytest.raises(ValueError, match="NaN"):
        s.sample(np.array([0, 1, np.nan, 0, 0, 0, 0, 0], np.float32))
    with pytest.raises(IndexError, match="99"):
        s.sample(HAND, history=[99])
    ban_all = {i: -math.inf for i in range(8)}
    banned = Sampler(SamplingParams(temperature=1.0, logit_bias=ban_all), 8)
    with pytest.raises(ValueError, match="-inf"):
        banned.sample(HAND)


def test_stop_normalized():
    assert SamplingParams(stop="\n").stop == ("\n",)
    assert SamplingParams(stop=["a", "b"]).stop == ("a", "b")


def test_raw_greedy_matches_the_adjusted_chain():
    """Greedy with no penalty or bias skips the float64 copy (Sampler._raw_argmax): the same
    token as adjust + dist_adjusted, ties to the lowest id, and the same errors."""
    rng = np.random.default_rng(7)
    s = Sampler(SamplingParams(), 64)
    assert s.raw_greedy
    assert not Sampler(SamplingParams(presence_penalty=0.5), 64).raw_greedy
    assert not Sampler(SamplingParams(logit_bias={3: 1.0}), 64).raw_greedy
    for _ in range(50):
        x = rng.integers(-3, 4, 64).astype(np.float32)  # many ties
        x[rng.integers(0, 64, 5)] = -math.inf
        tok = s.dist(x).sample(rng)
        ref = s.dist_adjusted(s.adjust(x)).sample(rng)
        assert tok == ref == int(np.argmax(x.astype(np.float64)))
    with pytest.raises(ValueError, match="shape"):
        s.dist(np.zeros(65, np.float32))
    x = np.zeros(64, np.float32)
    x[9] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        s.dist(x)
    with pytest.raises(ValueError, match="-inf"):
        s.dist(np.full(64, -np.inf, np.float32))
