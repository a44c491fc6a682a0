"""Timing harness for pylm kernels, with the machine's limits measured in the same run.

``measure`` times a callable (warm-up, adaptive repetition count, median) and turns bytes/flops
into GB/s and GFLOP/s; ``machine_limits`` measures what this machine sustains (DRAM read
bandwidth, FMA peak) on a given ISA and thread count, so a kernel's figure can be read as a
fraction of the roofline rather than of a datasheet number. ``Table`` prints results, ``to_json``
saves them.

>>> import numpy as np
>>> from pylm.bench import measure
>>> a = np.ones(1 << 16, np.float32)
>>> r = measure(np.sum, a, warmup=1, reps=3, min_time=0.0, bytes=a.nbytes)
>>> r.reps >= 3 and r.gbps > 0
True

Units: GB/s = 1e9 bytes/s, GFLOP/s = 1e9 flop/s.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import math
import statistics
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Callable

from . import _core

__all__ = ["Result", "Table", "machine_limits", "measure", "stats_from_times", "to_json"]


@dataclass
class Result:
    """Timing statistics of one benchmarked callable (times are per call, in seconds).

    gbps / gflops are bytes / median_s and flops / median_s (None when bytes / flops were not
    given); frac_bw / frac_fma divide them by the machine limits (None when unknown).
    """

    name: str
    median_s: float
    min_s: float
    mean_s: float
    std_s: float
    reps: int  # timed samples
    gbps: float | None = None
    gflops: float | None = None
    frac_bw: float | None = None
    frac_fma: float | None = None
    inner: int = 1  # calls per timed sample (fast callables are batched)
    bytes: float | None = None
    flops: float | None = None
    isa: str | None = None
    threads: int | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def stats_from_times(
    times_s: Iterable[float],
    name: str = "",
    bytes: float | None = None,
    flops: float | None = None,
    limits: dict | None = None,
    inner: int = 1,
    isa: str | None = None,
    threads: int | None = None,
) -> Result:
    """Builds a Result from per-call times (the arithmetic of ``measure``, exposed for tests).

    >>> stats_from_times([2e-3, 1e-3, 3e-3], bytes=2e6).gbps
    1.0
    """
    t = [float(x) for x in times_s]
    if not t:
        raise ValueError("stats_from_times: no samples")
    med = statistics.median(t)
    gbps = bytes / med * 1e-9 if bytes is not None and med > 0 else None
    gflops = flops / med * 1e-9 if flops is not None and med > 0 else None
    frac_bw = frac_fma = None
    if limits:
        if gbps is not None and limits.get("read_gbps"):
            frac_bw = gbps / limits["read_gbps"]
        if gflops is not None and limits.get("fma_gflops"):
            frac_fma = gflops / limits["fma_gflops"]
    return Result(
        name=name,
        median_s=med,
        min_s=min(t),
        mean_s=statistics.fmean(t),
        std_s=statistics.pstdev(t) if len(t) > 1 else 0.0,
        reps=len(t),
        gbps=gbps,
        gflops=gflops,
        frac_bw=frac_bw,
        frac_fma=frac_fma,
        inner=inner,
        bytes=bytes,
        flops=flops,
        isa=isa,
        threads=threads,
    )


# A timed sample should last at least this long, so perf_counter_ns resolution and the loop's
# own overhead stay well under 1% of it; faster callables are called `inner` times per sample.
_MIN_SAMPLE_NS = 200_000


def measure(
    fn: Callable,
    *args: Any,
    warmup: int = 3,
    reps: int = 20,
    min_time: float = 0.2,
    bytes: float | None = None,
    flops: float | None = None,
    name: str | None = None,
    limits: dict | None = None,
    inner: int | None = None,
    max_reps: int = 10_000,
    **kw: Any,
) -> Result:
    """Times ``fn(*args, **kw)``.

    Calls fn ``warmup`` times untimed (caches, page faults, thread-pool wake-up), then takes
    timed samples until there are at least ``reps`` of them AND they add up to ``min_time``
    seconds (at most ``max_reps`` samples). Each sample times ``inner`` back-to-back calls
    (inner=None: 1, or more when a warm-up call took under 0.2 ms) with time.perf_counter_ns;
    the garbage collector is paused meanwhile. Statistics are per call; the median is the figure
    that GB/s and GFLOP/s come from.

    Args:
        bytes / flops: work per call (bytes moved, floating-point operations), for GB/s, GFLOP/s.
        name: label (default: fn.__name__).
        limits: a ``machine_limits`` dict for frac_bw / frac_fma; default: the cached limits of
            the active ISA and default thread count when they were measured, else None.
        The remaining keyword arguments go to fn (so fn cannot take these names).

    Returns:
        Result.
    """
    if warmup < 0 or reps < 1 or min_time < 0 or max_reps < reps:
        raise ValueError(
            f"measure: need warmup >= 0, 1 <= reps <= max_reps, min_time >= 0; got "
            f"warmup={warmup}, reps={reps}, max_reps={max_reps}, min_time={min_time}"
        )
    if inner is not None and inner < 1:
        raise ValueError(f"measure: inner must be >= 1, got {inner}")
    clock = time.perf_counter_ns
    fastest_warm = None
    for _ in range(warmup):
        t0 = clock()
        fn(*args, **kw)
        dt = clock() - t0
        fastest_warm = dt if fastest_warm is None else min(fastest_warm, dt)
    if inner is None:
        inner = 1
        if fastest_warm is not None and fastest_warm < _MIN_SAMPLE_NS:
            inner = int(min(10_000, math.ceil(_MIN_SAMPLE_NS / max(fastest_warm, 1))))
    times: list[float] = []
    total_ns = 0
    min_ns = min_time * 1e9
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        while len(times) < max_reps and (len(times) < reps or total_ns < min_ns):
            t0 = clock()
            for _ in range(inner):
                fn(*args, **kw)
            dt = clock() - t0
            total_ns += dt
            times.append(dt * 1e-9 / inner)
    finally:
        if gc_was_enabled:
            gc.enable()
    isa, threads = _core.active_isa(), _core.get_threads()
    if limits is None:
        limits = _LIMITS.get((isa, threads))
    return stats_from_times(
        times,
        name=name or getattr(fn, "__name__", "fn"),
        bytes=bytes,
        flops=flops,
        limits=limits,
        inner=inner,
        isa=isa,
        threads=threads,
    )


# (isa, threads) -> machine_limits dict
_LIMITS: dict = {}


def machine_limits(
    threads: int | None = None,
    isa: str | None = None,
    *,
    reps: int = 5,
    read_bytes: int = 0,
    refresh: bool = False,
) -> dict:
    """Measures this machine's limits on one ISA and thread count (cached per (isa, threads)).

    Args:
        threads: threads streaming / computing together (None: pylm's default).
        isa: "scalar" | "avx2" | "avx512" (None: the active ISA).
        reps: repetitions per probe (the best one is kept).
        read_bytes: DRAM probe buffer (0: max(256 MiB, 2 x LLC), capped at 1 GiB).
        refresh: measure again even when cached.

    Returns:
        dict with read_gbps (DRAM read bandwidth), l2_read_gbps (a buffer of a quarter of L2
        per thread), fma_gflops (FMA peak; mul+add on scalar), isa, threads, read_bytes,
        llc_bytes.
    """
    import pylm

    threads = int(threads) if threads else _core.get_threads()
    isa = isa or _core.active_isa()
    key = (isa, threads)
    if not refresh and key in _LIMITS:
        return dict(_LIMITS[key])
    nbytes = int(read_bytes) or _core.default_read_bytes()
    l2_slice = max(64 << 10, _core.cache_bytes(2) // 4 or (256 << 10))
    with pylm.use_isa(isa):
        read = _core.probe_read_bandwidth(nbytes, reps, threads)
        l2 = _core.probe_read_bandwidth(l2_slice * threads, reps, threads)
        fma = _core.probe_fma_peak(0, threads, reps)
    out = {
        "read_gbps": read,
        "l2_read_gbps": l2,
        "fma_gflops": fma,
        "isa": isa,
        "threads": threads,
        "read_bytes": nbytes,
        "llc_bytes": _core.cache_bytes(3),
    }
    _LIMITS[key] = out
    return dict(out)


def _fmt(value: Any, spec: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if spec == "time":
        return _fmt_time(float(value))
    if spec == "pct":
        return f"{100 * value:.0f}%"
    return format(value, spec) if spec else str(value)


def _fmt_time(s: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


class Table:
    """A plain-text table: columns of (key, header, format); rows are dicts.

    Format: a format spec ("8.1f"), "time" (auto s/ms/us/ns), "pct" (a fraction as %), or ""
    (str). Missing or None cells print as "-".

    >>> t = Table([("name", "kernel", ""), ("t", "time", "time")])
    >>> t.add(name="silu", t=1.52e-5)
    >>> print(t.render())
    kernel     time
    ------  -------
    silu    15.2 us
    """

    def __init__(self, columns: list[tuple[str, str, str]]):
        self.columns = [tuple(c) for c in columns]
        self.rows: list[dict] = []

    def add(self, row: dict | None = None, **cells: Any) -> None:
        self.rows.append({**(row or {}), **cells})

    def render(self) -> str:
        cells = [[_fmt(r.get(k), spec) for k, _, spec in self.columns] for r in self.rows]
        widths = [
            max([len(h)] + [len(c[i]) for c in cells]) for i, (_, h, _) in enumerate(self.columns)
        ]
        # Text columns align left, numbers right.
        left = [spec == "" for _, _, spec in self.columns]

        def line(vals: list[str]) -> str:
            parts = [v.ljust(w) if lf else v.rjust(w) for v, w, lf in zip(vals, widths, left)]
            return "  ".join(parts).rstrip()

        out = [line([h for _, h, _ in self.columns]), line(["-" * w for w in widths])]
        out += [line(c) for c in cells]
        return "\n".join(out)

    def __str__(self) -> str:
        return self.render()


def to_json(
    results: Iterable[Any], path: str | None = None, meta: dict | None = None, **extra: Any
) -> str:
    """Serializes results (Result objects or dicts) as {"meta": meta, "results": [...], **extra}.

    Writes the text to ``path`` when given; returns it either way. Non-finite floats and numpy
    scalars become JSON null and plain numbers.
    """

    def clean(v: Any) -> Any:
        if isinstance(v, Result):
            v = v.to_dict()
        if isinstance(v, dict):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if hasattr(v, "item") and callable(v.item):  # numpy scalars
            return clean(v.item())
        return v

    doc = {"meta": clean(meta or {}), "results": clean(list(results))}
    doc.update({k: clean(v) for k, v in extra.items()})
    text = json.dumps(doc, indent=2)
    if path:
        with open(path, "w") as f:
            f.write(text + "\n")
    return text
