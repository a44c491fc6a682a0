"""pylm.train: train Llama-architecture models with native hand-written backward passes."""

from . import ops

__all__ = ["ops"]
