"""`pylm bench-kernels`: time every kernel on every ISA against the machine's measured limits.

    pylm bench-kernels --quick                 # a subset, about a minute
    pylm bench-kernels --kernels qmatmul,silu --isa avx512 --threads 2 --json out.json

The logic lives in pylm/bench_kernels.py (report format documented there).
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=0, help="threads (default: pylm's default)")
    p.add_argument("--isa", default="", help="comma-separated ISAs (default: all this CPU has)")
    p.add_argument("--quick", action="store_true", help="a subset, small budget (~1 min)")
    p.add_argument("--kernels", default="", help="comma-separated substrings of case names")
    p.add_argument(
        "--json",
        metavar="FILE",
        default=None,
        help="write the JSON report to FILE ('-': stdout, the table then goes to stderr)",
    )
    p.add_argument("--warmup", type=int, default=None, help="untimed calls per case")
    p.add_argument("--reps", type=int, default=None, help="minimum timed samples per case")
    p.add_argument("--min-time", type=float, default=None, help="minimum timed seconds per case")
    p.add_argument("--probe-reps", type=int, default=None, help="repetitions per machine probe")
    p.add_argument(
        "--read-mib",
        type=int,
        default=0,
        help="DRAM probe buffer and out-of-cache weight set, MiB (default: 2 x LLC)",
    )


def main(args: argparse.Namespace) -> int:
    from pylm import bench, bench_kernels

    for name, v in (("threads", args.threads), ("read-mib", args.read_mib)):
        if v < 0:
            raise ValueError(f"--{name} must be >= 0, got {v}")
    report = bench_kernels.run(
        isas=[s.strip() for s in args.isa.split(",") if s.strip()] or None,
        threads=args.threads or None,
        quick=args.quick,
        kernels=args.kernels or None,
        read_bytes=args.read_mib << 20,
        log=bench_kernels.log_stderr,
        warmup=args.warmup,
        reps=args.reps,
        min_time=args.min_time,
        probe_reps=args.probe_reps,
    )
    to_stdout = args.json == "-"
    print(bench_kernels.render(report), file=sys.stderr if to_stdout else sys.stdout)
    if args.json:
        text = bench.to_json(
            report["results"],
            None if to_stdout else args.json,
            meta=report["meta"],
            skipped=report["skipped"],
        )
        if to_stdout:
            print(text)
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "bench-kernels",
        help="benchmark the CPU kernels against measured machine limits",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(p)
    p.set_defaults(func=main)
