"""The `pylm` command line. Each subcommand lives in pylm/commands/<name>.py and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a callable(args) -> int."""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = ["info", "pull", "generate", "bench", "quantize", "tokenize", "train", "distill",
            "bench_kernels"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pylm", description="pylm: a small LLM engine")
    parser.add_argument("--version", action="store_true", help="print version and backend info")
    sub = parser.add_subparsers(dest="command")
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"pylm.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"pylm.commands.{name}":
                continue
            raise
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        import json

        import pylm

        print(json.dumps(pylm.backend_info(), indent=2))
        return 0
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except (ValueError, OSError, RuntimeError) as e:
        print(f"pylm {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
