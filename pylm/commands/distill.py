"""`pylm distill TARGET OUT.gguf`: train a draft model for speculative decoding on the target's
own greedy outputs (see pylm.train.distill)."""

from __future__ import annotations


def register(subparsers) -> None:
    from ..train import distill

    p = subparsers.add_parser(
        "distill", help="train a small draft model for speculative decoding from a target",
        description=distill.__doc__.split("\n\n")[0])
    distill.add_arguments(p)
    p.set_defaults(func=distill.run)
