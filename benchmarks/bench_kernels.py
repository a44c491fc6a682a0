#!/usr/bin/env python
"""Kernel benchmark: each pylm kernel x each ISA, with time, GB/s or GFLOP/s, the fraction of the
machine limits measured in the same run, and numpy's time. Same as `pylm bench-kernels`.

    python benchmarks/bench_kernels.py --quick
    python benchmarks/bench_kernels.py --kernels qmatmul --json qmatmul.json
"""

import argparse
import sys

from pylm.commands import bench_kernels

if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    bench_kernels.add_arguments(parser)
    sys.exit(bench_kernels.main(parser.parse_args()))
