"""Shared fixtures: every ISA this CPU has, and the real models when they are cached.

Real models come from `pylm pull` (cache: $PYLM_CACHE or ~/.cache/pylm); tests that need one
skip when it is absent. CI pulls both before running the suite.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import pylm

ISAS = pylm.available_isas()

MODEL_FILES = {
    "smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "gemma3-270m": "gemma-3-270m-q4_k_m.gguf",
}


def cache_dir() -> Path:
    return Path(os.environ.get("PYLM_CACHE") or Path.home() / ".cache" / "pylm")


def model_path(name: str) -> Path:
    p = cache_dir() / MODEL_FILES[name]
    if not p.exists():
        pytest.skip(f"model {name} not cached at {p} (run `pylm pull {name}`)")
    return p


@pytest.fixture(params=ISAS)
def isa(request):
    """Runs the test once per ISA this CPU supports, with that ISA forced."""
    with pylm.use_isa(request.param):
        yield request.param


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    return model_path("smollm2")


@pytest.fixture(scope="session")
def gemma3_path() -> Path:
    return model_path("gemma3-270m")


@pytest.fixture(params=list(MODEL_FILES))
def real_model_path(request) -> Path:
    return model_path(request.param)
