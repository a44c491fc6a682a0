"""Fuzzing pylm.gguf: mutated GGUF files must either parse (and then every tensor view and
metadata value must be readable) or raise a pylm GGUFError subclass: never another exception,
never a hang (a per-example SIGALRM budget plus hypothesis' deadline), never a MemoryError.

Seeds: a synthetic GGUF from pylm.gguf.write holding every value type, nested arrays, a string
array and tensors of several types (always available), and the first 64 KiB of SmolLM2 (when
cached). Mutations: bit flips, interesting integers (0, 0xFF.., 2**63, 2**64-1, ...) written as
u8/u32/u64, truncation, splices (copy a chunk elsewhere, inserting or overwriting), random
bytes. Set PYLM_FUZZ_EXAMPLES=20000 for a longer, randomized run.
"""

from __future__ import annotations

import os
import signal
import struct
from datetime import timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pylm import gguf as pg
from pylm.errors import GGUFError

N_EXAMPLES = int(os.environ.get("PYLM_FUZZ_EXAMPLES", "0"))
SETTINGS = dict(
    max_examples=N_EXAMPLES or 400,
    derandomize=not N_EXAMPLES,  # reproducible in CI; random when asked for a long run
    database=None,
    deadline=timedelta(seconds=2),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
BUDGET_S = 5.0  # hard per-example limit: a parse loop that ignores the file size fails here

INTERESTING = [0, 1, 2, 3, 4, 5, 8, 9, 12, 13, 31, 32, 33, 0x7F, 0x80, 0xFF, 0x100, 0xFFFF,
               0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 2**32, 2**40, 2**62, 2**63 - 1, 2**63,
               2**64 - 1]


class Hang(Exception):
    """Raised by SIGALRM: the parser took longer than BUDGET_S."""


def synthetic_seed(path) -> bytes:
    rng = np.random.default_rng(0)
    md = {
        "general.architecture": "llama", "general.name": "fuzz",
        "llama.block_count": np.uint32(2), "llama.context_length": np.uint64(2048),
        "x.i8": np.int8(-1), "x.u16": np.uint16(7), "x.i16": np.int16(-7), "x.i64": -(2**40),
        "x.f32": 0.5, "x.f64": np.float64(2.5), "x.bool": True, "x.u8": np.uint8(9),
        "tokenizer.ggml.tokens": ["<s>", "</s>", "a", "bb", "ccc", "▁d", "é"],
        "tokenizer.ggml.scores": np.linspace(0, 1, 7, dtype=np.float32),
        "tokenizer.ggml.token_type": np.array([3, 3, 1, 1, 1, 1, 1], np.int32),
        "x.bools": [True, False], "x.nested": [[1, 2], ["s"], [[3]]],
        "general.alignment": 32,
    }
    tensors = {
        "token_embd.weight": rng.standard_normal((7, 32)).astype(np.float32),
        "blk.0.attn_q.weight": (rng.standard_normal((2, 64)).astype(np.float32), "Q8_0"),
        "blk.0.ffn.weight": (rng.integers(0, 256, (1, 144), dtype=np.uint8), "Q4_K"),
        "output_norm.weight": np.ones(32, np.float16),
    }
    return pg.write(path, md, tensors).read_bytes()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def seed(workdir) -> tuple[bytes, int]:
    raw = synthetic_seed(workdir / "seed.gguf")
    with pg.GGUFFile(workdir / "seed.gguf") as f:
        return raw, f.data_offset


def mutation(size: int, header_end: int):
    """One mutation; positions favour the header (magic, counts) and the metadata and tensor
    table region [0, header_end) over the tensor data."""
    pos = st.one_of(st.integers(0, 64), st.integers(0, max(header_end - 1, 0)),
                    st.integers(0, max(size - 1, 0)))
    return st.one_of(
        st.tuples(st.just("flip"), pos, st.integers(0, 7)),
        st.tuples(st.just("int"), pos, st.sampled_from(INTERESTING), st.sampled_from([1, 4, 8])),
        st.tuples(st.just("trunc"), st.integers(0, size)),
        st.tuples(st.just("splice"), pos, pos, st.integers(1, 64), st.booleans()),
        st.tuples(st.just("bytes"), pos, st.binary(min_size=1, max_size=16)),
    )


def apply(raw: bytes, ops) -> bytes:
    b = bytearray(raw)
    for op in ops:
        kind = op[0]
        if kind == "flip" and op[1] < len(b):
            b[op[1]] ^= 1 << op[2]
        elif kind == "int":
            _, p, v, width = op
            b[p : p + width] = (v & ((1 << (8 * width)) - 1)).to_bytes(width, "little")
        elif kind == "trunc":
            del b[op[1] :]
        elif kind == "splice":
            _, src, dst, n, insert = op
            chunk = bytes(b[src : src + n])
            b[dst : dst if insert else dst + len(chunk)] = chunk
        elif kind == "bytes":
            b[op[1] : op[1] + len(op[2])] = op[2]
    return bytes(b)


def _alarm(signum, frame):
    raise Hang(f"parse took longer than {BUDGET_S} s")


def check_parses_or_gguf_error(path, raw: bytes) -> None:
    path.write_bytes(raw)
    timer = hasattr(signal, "setitimer")  # POSIX; elsewhere hypothesis' deadline remains
    if timer:
        old = signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, BUDGET_S)
    try:
        with pg.GGUFFile(path) as f:
            for key, value in f.metadata.items():
                assert f.types[key] and (value is not None)
            for name, ti in f.tensors.items():
                assert f.tensor_data(name).nbytes == ti.nbytes
                assert f.tensor(name).nbytes == ti.nbytes
                assert f.data_offset <= ti.offset and ti.offset + ti.nbytes <= len(raw)
    except GGUFError:
        pass  # the only acceptable failure
    finally:
        if timer:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)


@st.composite
def mutated(draw, raw: bytes, header_end: int) -> bytes:
    ops = draw(st.lists(mutation(len(raw), header_end), min_size=1, max_size=4))
    return apply(raw, ops)


def test_seed_parses(seed, workdir):
    with pg.GGUFFile(workdir / "seed.gguf") as f:
        assert len(f.tensors) == 4 and f.metadata["x.nested"][2] == [np.array([3])]


def test_fuzz_synthetic(seed, workdir):
    @settings(**{**SETTINGS, "max_examples": N_EXAMPLES or 300})
    @given(st.data())
    def run(data):
        check_parses_or_gguf_error(workdir / "m.gguf", data.draw(mutated(*seed)))

    run()


def test_fuzz_random_body(workdir):
    header = b"GGUF" + struct.pack("<I", 3)

    @settings(**{**SETTINGS, "max_examples": N_EXAMPLES or 150})
    @given(st.binary(max_size=512))
    def run(body):
        check_parses_or_gguf_error(workdir / "r.gguf", header + body)

    run()


def test_fuzz_real_header(workdir, smollm2_path):
    with open(smollm2_path, "rb") as fh:
        head = fh.read(64 * 1024)

    @settings(**{**SETTINGS, "max_examples": N_EXAMPLES or 100})
    @given(st.data())
    def run(data):
        check_parses_or_gguf_error(workdir / "h.gguf", data.draw(mutated(head, len(head))))

    run()
