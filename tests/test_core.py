import os
import subprocess
import sys

import pytest

import pylm


def test_backend_info_keys():
    info = pylm.backend_info()
    for k in ("version", "isa", "isas_available", "threads", "cuda_built", "cuda_available", "gpu_name"):
        assert k in info
    assert info["isa"] in info["isas_available"]
    assert info["isas_available"][0] == "scalar"
    assert info["version"] == pylm.__version__


def test_use_isa_restores(isa):
    assert pylm.active_isa() == isa
    with pylm.use_isa("scalar"):
        assert pylm.active_isa() == "scalar"
    assert pylm.active_isa() == isa


def test_set_isa_unknown_raises():
    with pytest.raises(ValueError, match="bogus"):
        pylm.set_isa("bogus")


def _run_with_env(env_value):
    env = dict(os.environ, PYLM_FORCE_ISA=env_value)
    return subprocess.run(
        [sys.executable, "-c", "import pylm; print(pylm.active_isa())"],
        env=env, capture_output=True, text=True,
        cwd=os.path.dirname(os.path.abspath(__file__)),  # not the checkout root: see test_cli_info
    )


@pytest.mark.parametrize("name", pylm.available_isas())
def test_force_isa_env(name):
    r = _run_with_env(name)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == name


def test_force_isa_env_unknown_is_clear_error():
    r = _run_with_env("avx9000")
    assert r.returncode != 0
    assert "avx9000" in r.stderr


@pytest.mark.skipif("avx512" in pylm.available_isas(), reason="CPU has AVX-512")
def test_force_unsupported_isa_errors():
    r = _run_with_env("avx512")
    assert r.returncode != 0 and "avx512" in r.stderr


def test_threads_setting():
    old = pylm.get_threads()
    try:
        pylm.set_threads(1)
        assert pylm.get_threads() == 1
        with pytest.raises(ValueError, match="0"):
            pylm.set_threads(0)
    finally:
        pylm.set_threads(old)
