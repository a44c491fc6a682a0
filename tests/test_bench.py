"""The benchmark harness: statistics arithmetic, warm-up / repetition accounting, the machine
probes on every ISA, and the bench-kernels JSON report. Nothing here asserts on speed."""

from __future__ import annotations

import doctest
import json
import math
import statistics

import numpy as np
import pytest

import pylm
from pylm import _core, bench, bench_cases, bench_kernels, cli

# ---- statistics ----


def test_stats_arithmetic():
    times = [3e-3, 1e-3, 2e-3, 6e-3]
    limits = {"read_gbps": 10.0, "fma_gflops": 100.0}
    r = bench.stats_from_times(times, name="k", bytes=5e6, flops=4e7, limits=limits, inner=2)
    assert r.name == "k" and r.reps == 4 and r.inner == 2
    assert r.median_s == pytest.approx(2.5e-3)
    assert r.min_s == pytest.approx(1e-3)
    assert r.mean_s == pytest.approx(3e-3)
    assert r.std_s == pytest.approx(math.sqrt(np.mean((np.array(times) - 3e-3) ** 2)))
    assert r.gbps == pytest.approx(5e6 / 2.5e-3 / 1e9)  # 2.0 GB/s
    assert r.gflops == pytest.approx(4e7 / 2.5e-3 / 1e9)  # 16 GFLOP/s
    assert r.frac_bw == pytest.approx(0.2)
    assert r.frac_fma == pytest.approx(0.16)


def test_stats_without_work_or_limits():
    r = bench.stats_from_times([1.0])
    assert r.gbps is None and r.gflops is None and r.frac_bw is None and r.frac_fma is None
    assert r.std_s == 0.0
    r = bench.stats_from_times([1.0], bytes=1e9, limits={"read_gbps": 0})  # unknown limit
    assert r.gbps == pytest.approx(1.0) and r.frac_bw is None
    with pytest.raises(ValueError, match="no samples"):
        bench.stats_from_times([])


# ---- measure: call accounting ----


class Counter:
    def __init__(self):
        self.calls = 0
        self.seen = []

    def __call__(self, *args, **kw):
        self.calls += 1
        self.seen.append((args, kw))


def test_measure_counts_warmup_and_reps():
    f = Counter()
    r = bench.measure(f, 1, 2, warmup=3, reps=5, min_time=0, inner=1, flag=True)
    assert f.calls == 3 + 5
    assert r.reps == 5 and r.inner == 1
    assert all(s == ((1, 2), {"flag": True}) for s in f.seen)  # args and kwargs forwarded
    assert r.name == "fn"  # callables without __name__


def test_measure_min_time_extends_until_max_reps():
    f = Counter()
    # min_time cannot be reached by a no-op in 50 samples: max_reps stops it.
    r = bench.measure(f, warmup=0, reps=2, min_time=60.0, inner=1, max_reps=50)
    assert r.reps == 50 and f.calls == 50


def test_measure_batches_fast_calls():
    f = Counter()
    r = bench.measure(f, warmup=2, reps=4, min_time=0, name="noop")
    assert r.name == "noop"
    assert r.inner > 1  # a no-op is far below the 0.2 ms sample floor
    assert f.calls == 2 + r.reps * r.inner
    assert r.min_s <= r.median_s and r.min_s <= r.mean_s
    assert all(math.isfinite(x) and x >= 0 for x in (r.median_s, r.mean_s, r.std_s))


def test_measure_rates_follow_median():
    a = np.ones(1 << 14, np.float32)
    r = bench.measure(
        np.sum,
        a,
        warmup=1,
        reps=3,
        min_time=0,
        bytes=a.nbytes,
        flops=a.size,
        limits={"read_gbps": 1.0, "fma_gflops": 2.0},
    )
    assert r.gbps == pytest.approx(a.nbytes / r.median_s * 1e-9)
    assert r.gflops == pytest.approx(a.size / r.median_s * 1e-9)
    assert r.frac_bw == pytest.approx(r.gbps / 1.0)
    assert r.frac_fma == pytest.approx(r.gflops / 2.0)
    assert r.isa == pylm.active_isa() and r.threads == pylm.get_threads()
    d = r.to_dict()
    for k in (
        "name",
        "median_s",
        "min_s",
        "mean_s",
        "std_s",
        "reps",
        "gbps",
        "gflops",
        "frac_bw",
        "frac_fma",
    ):
        assert k in d


@pytest.mark.parametrize(
    "kw, word",
    [
        ({"reps": 0}, "reps=0"),
        ({"warmup": -1}, "warmup=-1"),
        ({"min_time": -1.0}, "min_time=-1"),
        ({"inner": 0}, "inner must be >= 1, got 0"),
        ({"reps": 5, "max_reps": 2}, "max_reps=2"),
    ],
)
def test_measure_rejects_bad_budget(kw, word):
    with pytest.raises(ValueError, match=word):
        bench.measure(Counter(), **kw)


# ---- probes (each ISA; values only need to be real measurements: positive and finite) ----


def test_probe_read_bandwidth(isa):
    for threads in (1, 2):
        gbps = _core.probe_read_bandwidth(1 << 20, 1, threads)
        assert math.isfinite(gbps) and gbps > 0
    s = _core.probe_read_bandwidth_stats(512 << 10, 3, 2)
    assert s["unit"] == "GB/s" and 1 <= s["threads"] <= 2
    assert 0 < s["median"] <= s["best"] and math.isfinite(s["best"])


def test_probe_fma_peak(isa):
    for threads in (1, 2):
        gflops = _core.probe_fma_peak(20000, threads, 1)
        assert math.isfinite(gflops) and gflops > 0
    s = _core.probe_fma_peak_stats(iters=20000, threads=1, reps=3)
    assert s["unit"] == "GFLOP/s" and s["threads"] == 1
    assert 0 < s["median"] <= s["best"]


def test_probe_errors_name_the_value():
    with pytest.raises(ValueError, match="reps must be >= 1, got 0"):
        _core.probe_read_bandwidth(1 << 20, 0, 1)
    with pytest.raises(ValueError, match="nbytes must be >= 0.*-5"):
        _core.probe_read_bandwidth(-5, 1, 1)
    with pytest.raises(ValueError, match="nbytes=100 "):
        _core.probe_read_bandwidth(100, 1, 1)
    with pytest.raises(ValueError, match="threads must be >= 0, got -2"):
        _core.probe_fma_peak(1000, -2, 1)
    with pytest.raises(ValueError, match="iters must be >= 0.*-1"):
        _core.probe_fma_peak(-1, 1, 1)
    with pytest.raises(ValueError, match="cache level must be 2 or 3, got 1"):
        _core.cache_bytes(1)


def test_default_read_bytes_beyond_llc():
    llc = _core.cache_bytes(3)
    d = _core.default_read_bytes()
    assert d == min(max(256 << 20, 2 * llc), 1 << 30)


def test_machine_limits_cached_per_isa_and_threads(isa):
    lim = bench.machine_limits(threads=1, isa=isa, reps=1, read_bytes=4 << 20, refresh=True)
    assert lim["isa"] == isa and lim["threads"] == 1 and lim["read_bytes"] == 4 << 20
    for k in ("read_gbps", "l2_read_gbps", "fma_gflops"):
        assert math.isfinite(lim[k]) and lim[k] > 0
    assert bench.machine_limits(threads=1, isa=isa) == lim  # cached: no new measurement
    # measure() picks up the cached limits of the active ISA and thread count.
    prev = pylm.get_threads()
    pylm.set_threads(1)
    try:
        r = bench.measure(Counter(), warmup=0, reps=1, min_time=0, bytes=1e3)
        assert r.frac_bw == pytest.approx(r.gbps / lim["read_gbps"])
    finally:
        pylm.set_threads(prev)


# ---- output ----


def test_table_and_doctests():
    t = bench.Table([("c", "case", ""), ("x", "GB/s", ".1f"), ("f", "%bw", "pct")])
    t.add(c="a", x=12.34, f=0.5)
    t.add({"c": "longer"})
    assert t.render().splitlines() == [
        "case    GB/s  %bw",
        "------  ----  ---",
        "a       12.3  50%",
        "longer     -    -",
    ]
    assert doctest.testmod(bench).failed == 0


def test_to_json_cleans_values(tmp_path):
    r = bench.stats_from_times([1e-3], name="k", bytes=1e6)
    p = tmp_path / "out.json"
    text = bench.to_json(
        [r, {"x": float("nan"), "y": np.float32(2.5)}], str(p), meta={"a": 1}, skipped=[]
    )
    doc = json.loads(p.read_text())
    assert doc == json.loads(text)
    assert doc["meta"] == {"a": 1} and doc["skipped"] == []
    assert doc["results"][0]["gbps"] == pytest.approx(1.0)
    assert doc["results"][1] == {"x": None, "y": 2.5}


# ---- bench-kernels ----


def test_select_and_compare():
    cases = bench_cases.all_cases(1 << 20)
    quick = bench_kernels.select(cases, True, None)
    assert 0 < len(quick) < len(cases) and all(c.quick for c in quick)
    picked = bench_kernels.select(cases, False, "SILU, rmsnorm")
    assert {c.kernel for c in picked} == {"silu", "rmsnorm"}
    ref = np.array([1.0, -2.0], np.float32)
    assert bench_kernels.compare(ref + np.float32(0.5), ref, False) == pytest.approx(0.25)
    assert bench_kernels.compare(ref[:1], ref, False) is None
    b = np.array([1, 2, 3, 4], np.uint8)
    assert bench_kernels.compare(np.array([1, 2, 0, 4], np.uint8), b, True) == pytest.approx(0.25)


def test_k_quant_weights_are_finite():
    raw, w = bench_cases.make_weight("Q4_K", (4, 512), np.random.default_rng(0))
    assert raw.dtype == np.uint8 and raw.shape == (4, 2 * 144)
    assert w.shape == (4, 512) and np.isfinite(w).all() and np.abs(w).max() > 0


def test_numpy_attention_reference_matches_float64_loop():
    rng = np.random.default_rng(1)
    q, k, v = (rng.standard_normal(s).astype(np.float32) for s in ((3, 4, 8), (5, 2, 8), (5, 2, 8)))
    out = bench_cases.np_attention(q, k, v, causal=True)
    for t in range(3):
        for h in range(4):
            n = 5 - 3 + t + 1  # keys visible to query t (aligned to the end)
            s = k[:n, h // 2].astype(np.float64) @ q[t, h] / math.sqrt(8)
            p = np.exp(s - s.max())
            np.testing.assert_allclose(
                out[t, h], (p / p.sum()) @ v[:n, h // 2], rtol=1e-5, atol=1e-6
            )
    assert bench_cases.attention_pairs(3, 5) == 3 + 4 + 5


REPORT_RESULT_KEYS = {
    "case",
    "kernel",
    "isa",
    "threads",
    "median_s",
    "min_s",
    "mean_s",
    "std_s",
    "reps",
    "inner",
    "bytes",
    "flops",
    "gbps",
    "gflops",
    "frac_bw",
    "frac_fma",
    "numpy_s",
    "numpy_ratio",
    "err",
}


def _run_cli(tmp_path, kernels, isa):
    path = tmp_path / "bench.json"
    rc = cli.main(
        [
            "bench-kernels",
            "--quick",
            "--json",
            str(path),
            "--isa",
            isa,
            "--threads",
            "1",
            "--kernels",
            kernels,
            "--warmup",
            "0",
            "--reps",
            "1",
            "--min-time",
            "0",
            "--probe-reps",
            "1",
            "--read-mib",
            "8",
        ]
    )
    assert rc == 0
    return json.loads(path.read_text())


def test_bench_kernels_cli_json(tmp_path, capsys):
    isa = pylm.available_isas()[-1]
    # Cheap cases only; whichever of them pylm.ops lacks are reported under "skipped".
    doc = _run_cli(tmp_path, "silu,dequantize q4_1,qmatmul q8_0 m=1 1536", isa)
    assert set(doc) == {"meta", "results", "skipped"}
    meta = doc["meta"]
    for k in ("version", "threads", "isas", "quick", "budget", "limits", "cold_bytes"):
        assert k in meta
    assert meta["isas"] == [isa] and meta["threads"] == 1 and meta["cold_bytes"] == 8 << 20
    lim = meta["limits"][isa]
    assert lim["read_gbps"] > 0 and lim["fma_gflops"] > 0
    names = {r["case"] for r in doc["results"]} | {s["case"] for s in doc["skipped"]}
    assert names == {"silu 512x1536", "dequantize Q4_1 1536x576", "qmatmul Q8_0 M=1 1536x576"}
    for row in doc["results"]:
        assert set(row) == REPORT_RESULT_KEYS and row["isa"] == isa and row["median_s"] > 0
    assert "machine limits" in capsys.readouterr().out


def test_bench_kernels_rows_with_a_stand_in_op(tmp_path, monkeypatch):
    # A numpy stand-in for silu exercises the result rows whether or not the kernel is merged:
    # its output equals the reference exactly, so err is 0.
    monkeypatch.setattr(pylm.ops, "silu", bench_cases.np_silu, raising=False)
    isa = pylm.available_isas()[0]
    doc = _run_cli(tmp_path, "silu", isa)
    (row,) = doc["results"]
    assert set(row) == REPORT_RESULT_KEYS
    assert row["case"] == "silu 512x1536" and row["kernel"] == "silu" and row["isa"] == isa
    assert row["bytes"] == 2 * 512 * 1536 * 4 and row["flops"] is None
    assert row["gbps"] == pytest.approx(row["bytes"] / row["median_s"] * 1e-9)
    lim = doc["meta"]["limits"][isa]
    assert row["frac_bw"] == pytest.approx(row["gbps"] / lim["read_gbps"])
    assert row["numpy_ratio"] == pytest.approx(row["numpy_s"] / row["median_s"])
    assert row["err"] == 0.0


def test_bench_kernels_rejects_unknown_isa():
    with pytest.raises(ValueError, match="'avx9000'"):
        bench_kernels.run(isas=["avx9000"])
    assert cli.main(["bench-kernels", "--isa", "avx9000"]) == 2


def test_median_is_statistics_median():
    # The harness reports the median of per-call times (robust to one slow outlier).
    r = bench.stats_from_times([1.0, 1.0, 100.0])
    assert r.median_s == statistics.median([1.0, 1.0, 100.0]) == 1.0
