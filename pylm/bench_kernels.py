"""``pylm bench-kernels``: every kernel on every ISA, against the machine's limits and numpy.

For each ISA it first measures the machine limits (DRAM read bandwidth, FMA peak) with the same
thread count, then times each case of pylm/bench_cases.py on each ISA, and the numpy equivalent
once. Kernels that pylm.ops does not have (yet) are skipped with a note.

JSON report (``run`` returns it; ``--json FILE``, or ``-`` for stdout, writes it):
    meta:    version, threads, isas, quick, budget {warmup, reps, min_time, probe_reps},
             numpy, hardware_threads, cold_bytes, limits {isa: machine_limits dict}
    results: one per (case, isa): case, kernel, isa, threads, median_s, min_s, mean_s, std_s,
             reps, inner, bytes, flops, gbps, gflops, frac_bw, frac_fma (fractions of that ISA's
             limits), numpy_s (median of the numpy equivalent, or null), numpy_ratio
             (numpy_s / median_s: > 1 means pylm is faster), err (max |pylm - numpy| / max |numpy|,
             or for quantize the fraction of bytes that differ; null when not compared)
    skipped: {case, isa (or null), reason} for cases that could not run
"""

from __future__ import annotations

import sys
from typing import Callable

import numpy as np

from . import _core
from .bench import Table, machine_limits, measure
from .bench_cases import Case, all_cases

QUICK = {"warmup": 1, "reps": 3, "min_time": 0.02, "probe_reps": 3}
FULL = {"warmup": 3, "reps": 20, "min_time": 0.2, "probe_reps": 5}

RESULT_COLUMNS = [
    ("case", "case", ""),
    ("isa", "isa", ""),
    ("median_s", "time", "time"),
    ("gbps", "GB/s", ".1f"),
    ("gflops", "GFLOP/s", ".1f"),
    ("frac_bw", "%bw", "pct"),
    ("frac_fma", "%fma", "pct"),
    ("numpy_s", "numpy", "time"),
    ("numpy_ratio", "np/pylm", ".2f"),
    ("err", "err", ".1e"),
]
LIMIT_COLUMNS = [
    ("isa", "isa", ""),
    ("threads", "threads", "d"),
    ("read_gbps", "DRAM read GB/s", ".1f"),
    ("l2_read_gbps", "L2 read GB/s", ".1f"),
    ("fma_gflops", "FMA GFLOP/s", ".1f"),
]


def select(cases: list, quick: bool, kernels: str | None) -> list:
    """Cases in --quick (when quick) whose name contains one of the comma-separated substrings."""
    subs = [s.strip().lower() for s in (kernels or "").split(",") if s.strip()]
    return [
        c
        for c in cases
        if (c.quick or not quick) and (not subs or any(s in c.name.lower() for s in subs))
    ]


def has_op(name: str) -> bool:
    """True when pylm.ops has the function (pylm.ops.<area> submodules do not count)."""
    import types

    import pylm.ops

    op = getattr(pylm.ops, name, None)
    return callable(op) and not isinstance(op, types.ModuleType)


def compare(out, ref, exact: bool) -> float | None:
    """Relative max error of a kernel's output against numpy's (None when shapes differ)."""
    out, ref = np.asarray(out), np.asarray(ref)
    if out.shape != ref.shape:
        return None
    if exact:
        return float(np.mean(out.view(np.uint8) != ref.view(np.uint8))) if out.size else 0.0
    diff = np.max(np.abs(out.astype(np.float64) - ref), initial=0.0)
    return float(diff / max(float(np.max(np.abs(ref), initial=0.0)), 1e-30))


def _run_case(
    case: Case, inp: dict, isas: list, limits: dict, budget: dict, results: list, skipped: list
) -> None:
    import pylm

    timing = {k: budget[k] for k in ("warmup", "reps", "min_time")}
    nbytes, flops = case.bytes(inp), case.flops(inp)
    np_s = ref_out = None
    if case.ref is not None:
        try:
            ref_out = case.ref(inp)
            np_s = measure(case.ref, inp, name=case.name, **timing).median_s
        except Exception as e:  # noqa: BLE001 -- a numpy failure must not hide the pylm figures
            skipped.append({"case": case.name, "isa": None, "reason": f"numpy: {e!r}"})
    for isa in isas:
        with pylm.use_isa(isa):
            try:
                out = (case.check or case.run)(inp)
                r = measure(
                    case.run,
                    inp,
                    name=case.name,
                    bytes=nbytes,
                    flops=flops,
                    limits=limits[isa],
                    **timing,
                )
            except Exception as e:  # noqa: BLE001 -- an op whose contract differs: report, keep going
                skipped.append(
                    {"case": case.name, "isa": isa, "reason": f"{type(e).__name__}: {e}"}
                )
                continue
        row = {"case": case.name, "kernel": case.kernel, **r.to_dict()}
        del row["name"]
        row["numpy_s"] = np_s
        row["numpy_ratio"] = np_s / r.median_s if np_s and r.median_s > 0 else None
        row["err"] = compare(out, ref_out, case.exact) if ref_out is not None else None
        results.append(row)


def run(
    isas: list | None = None,
    threads: int | None = None,
    quick: bool = False,
    kernels: str | None = None,
    read_bytes: int = 0,
    log: Callable | None = None,
    **budget_overrides,
) -> dict:
    """Runs the benchmark and returns the JSON report described in the module docstring.

    Args:
        isas: ISAs to run (default: every one this CPU has).
        threads: threads for kernels and probes (default: pylm's default).
        quick: a subset of cases with a small timing budget (about a minute in all).
        kernels: comma-separated substrings of case names to keep.
        read_bytes: DRAM probe buffer, also the size of the rotating out-of-cache weights
            (0: max(256 MiB, 2 x LLC)).
        log: called with a progress line per case (None: silent).
        budget_overrides: warmup, reps, min_time, probe_reps.
    """
    import pylm

    available = pylm.available_isas()
    isas = list(isas or available)
    for isa in isas:
        if isa not in available:
            raise ValueError(f"bench-kernels: ISA '{isa}' is not available here ({available})")
    budget = dict(QUICK if quick else FULL)
    for k, v in budget_overrides.items():
        if k not in budget:
            raise ValueError(f"bench-kernels: unknown budget option '{k}'")
        if v is not None:
            budget[k] = v
    prev_threads = pylm.get_threads()
    threads = int(threads or prev_threads)
    read_bytes = int(read_bytes) or _core.default_read_bytes()
    results, skipped = [], []
    pylm.set_threads(threads)
    try:
        limits = {
            isa: machine_limits(threads, isa, reps=budget["probe_reps"], read_bytes=read_bytes)
            for isa in isas
        }
        rng = np.random.default_rng(0)
        for case in select(all_cases(read_bytes), quick, kernels):
            if not has_op(case.kernel):
                skipped.append(
                    {
                        "case": case.name,
                        "isa": None,
                        "reason": f"pylm.ops.{case.kernel} is not available",
                    }
                )
                continue
            if log:
                log(f"bench-kernels: {case.name}")
            inp = case.setup(rng)
            _run_case(case, inp, isas, limits, budget, results, skipped)
            del inp  # the out-of-cache case holds hundreds of MB
    finally:
        pylm.set_threads(prev_threads)
    meta = {
        "version": pylm.__version__,
        "threads": threads,
        "isas": isas,
        "quick": quick,
        "budget": budget,
        "numpy": np.__version__,
        "hardware_threads": _core.hardware_threads(),
        "cold_bytes": read_bytes,
        "limits": limits,
        "note": "numpy times use numpy's own BLAS threads; pylm's use `threads`",
    }
    return {"meta": meta, "results": results, "skipped": skipped}


def render(report: dict) -> str:
    """The report as text: machine limits, then one row per (case, ISA), then skipped cases."""
    lim = Table(LIMIT_COLUMNS)
    for v in report["meta"]["limits"].values():
        lim.add(v)
    res = Table(RESULT_COLUMNS)
    for row in report["results"]:
        res.add(row)
    out = [f"machine limits (measured now, {report['meta']['threads']} threads):", lim.render(), ""]
    out += [res.render() if report["results"] else "(no kernel ran)"]
    if report["skipped"]:
        out += ["", "skipped:"]
        out += [
            f"  {s['case']}" + (f" [{s['isa']}]" if s.get("isa") else "") + f": {s['reason']}"
            for s in report["skipped"]
        ]
    return "\n".join(out)


def log_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
