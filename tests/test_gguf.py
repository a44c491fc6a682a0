"""pylm.gguf: round trip through the writer, agreement with gguf.GGUFReader (the reference
parser) on synthetic and real files, zero-copy tensor views, and one test per validation error
(type + the bad value in the message) on hand-built byte strings."""

from __future__ import annotations

import struct

import gguf
import numpy as np
import pytest
from gguf.constants import GGMLQuantizationType as QT
from gguf.constants import GGUFValueType as VT

from pylm import gguf as pg
from pylm.errors import GGUFError, GGUFFormatError, GGUFTruncatedError, GGUFUnsupportedError

# ---------------------------------------------------------------------------------------------
# Hand-built GGUF bytes: every field explicit, so each test breaks exactly one thing.


def gstr(x: str | bytes) -> bytes:
    b = x.encode() if isinstance(x, str) else x
    return struct.pack("<Q", len(b)) + b


def kv(key: str | bytes, vt: int, payload: bytes) -> bytes:
    return gstr(key) + struct.pack("<I", vt) + payload


def tinfo(name: str, ne, qtype: int, offset: int) -> bytes:
    dims = b"".join(struct.pack("<Q", n) for n in ne)
    return gstr(name) + struct.pack("<I", len(ne)) + dims + struct.pack("<IQ", qtype, offset)


ARCH = kv("general.architecture", VT.STRING, gstr("llama"))
W = tinfo("w", (32, 2), QT.F32, 0)  # 256 bytes of F32 at offset 0


def build(kvs=(ARCH,), tis=(W,), data=bytes(256), *, magic=b"GGUF", version=3,
          n_tensors=None, n_kv=None, alignment=32) -> bytes:
    n_tensors = len(tis) if n_tensors is None else n_tensors
    n_kv = len(kvs) if n_kv is None else n_kv
    body = magic + struct.pack("<IQQ", version, n_tensors, n_kv) + b"".join(kvs) + b"".join(tis)
    return body + bytes(-len(body) % alignment) + data


def open_bytes(tmp_path, raw: bytes) -> pg.GGUFFile:
    p = tmp_path / "x.gguf"
    p.write_bytes(raw)
    return pg.GGUFFile(p)


def expect(tmp_path, raw: bytes, exc: type, *fragments: str) -> str:
    with pytest.raises(exc) as ei:
        open_bytes(tmp_path, raw)
    msg = str(ei.value)
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in {msg!r}"
    return msg


def test_built_file_matches_gguf_reader(tmp_path):
    raw = build(tis=(W, tinfo("b", (64,), QT.Q8_0, 256)), data=bytes(256 + 68))
    f = open_bytes(tmp_path, raw)
    r = gguf.GGUFReader(tmp_path / "x.gguf")
    assert f.version == 3 and f.alignment == 32 and f.architecture == "llama"
    assert [t.name for t in r.tensors] == list(f.tensors)
    for t in r.tensors:
        ti = f.tensors[t.name]
        assert (list(t.shape), int(t.tensor_type), t.data_offset, t.n_bytes) == (
            list(ti.ne), ti.qtype_id, ti.offset, ti.nbytes)
    assert f.tensors["w"].shape == (2, 32) and f.tensors["b"].qtype == "Q8_0"


# ---------------------------------------------------------------------------------------------
# Round trip: every value type, tensors of several types.

METADATA = {
    "general.architecture": "llama",
    "t.u8": np.uint8(250), "t.i8": np.int8(-128), "t.u16": np.uint16(65535),
    "t.i16": np.int16(-32768), "t.u32": np.uint32(4_000_000_000), "t.i32": -7,
    "t.u64": np.uint64(2**64 - 1), "t.i64": -(2**40), "t.f32": 1.5, "t.f64": np.float64(1 / 3),
    "t.bool": True, "t.false": False, "t.str": "héllo ✓", "t.empty_str": "",
    "a.u8": np.arange(5, dtype=np.uint8), "a.i16": np.array([-3, 4], np.int16),
    "a.u64": np.array([2**63, 1], np.uint64), "a.f64": np.array([0.25, -1e300]),
    "a.ints": [1, 2, 3], "a.big": [1, 2**40], "a.floats": [1.0, 2.5],
    "a.bools": [True, False, True], "a.strs": ["a", "", "ü" * 3],
    "a.empty": np.array([], np.int32), "a.nested": [[1, 2], ["x", "y"], [[True], [False]]],
    "general.alignment": 64,
}
TYPES = {
    "t.u8": VT.UINT8, "t.i8": VT.INT8, "t.u16": VT.UINT16, "t.i16": VT.INT16, "t.u32": VT.UINT32,
    "t.i32": VT.INT32, "t.u64": VT.UINT64, "t.i64": VT.INT64, "t.f32": VT.FLOAT32,
    "t.f64": VT.FLOAT64, "t.bool": VT.BOOL, "t.str": VT.STRING, "general.alignment": VT.UINT32,
    "a.u8": (VT.ARRAY, VT.UINT8), "a.i16": (VT.ARRAY, VT.INT16), "a.u64": (VT.ARRAY, VT.UINT64),
    "a.f64": (VT.ARRAY, VT.FLOAT64), "a.ints": (VT.ARRAY, VT.INT32),
    "a.big": (VT.ARRAY, VT.INT64), "a.floats": (VT.ARRAY, VT.FLOAT32),
    "a.bools": (VT.ARRAY, VT.BOOL), "a.strs": (VT.ARRAY, VT.STRING),
    "a.empty": (VT.ARRAY, VT.INT32), "a.nested": (VT.ARRAY, VT.ARRAY),
}


def same(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(np.asarray(a), np.asarray(b))
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(same, a, b))
    return type(a) is type(b) and a == b


def make_tensors(rng):
    f32 = rng.standard_normal((3, 64)).astype(np.float32)
    q80 = rng.standard_normal((4, 64)).astype(np.float32)
    return {
        "f32": f32, "f16": rng.standard_normal((2, 8)).astype(np.float16),
        "i32": np.arange(6, dtype=np.int32), "i8": (np.arange(12, dtype=np.int8) - 6),
        "q8_0": (q80, "Q8_0"), "q4_k": (rng.integers(0, 256, (2, 144), dtype=np.uint8), QT.Q4_K),
        "bf16": (f32, "BF16"), "f32_as_f16": (f32, QT.F16),
    }


def test_roundtrip_all_value_types_and_tensors(tmp_path):
    rng = np.random.default_rng(0)
    tensors = make_tensors(rng)
    path = pg.write(tmp_path / "rt.gguf", METADATA, tensors)
    with pg.GGUFFile(path) as f:
        assert list(f.metadata) == list(METADATA)
        for key, want in METADATA.items():
            got = f.metadata[key]
            if isinstance(want, np.generic):
                want = want.item()
            if isinstance(want, list) and key != "a.nested":
                want = np.array(want) if key not in ("a.strs", "a.bools") else want
            if key == "a.nested":
                assert same(got, [np.array([1, 2]), ["x", "y"], [[True], [False]]])
            else:
                assert same(got, want), key
            t = TYPES.get(key)
            if t is not None:
                assert f.types[key] == (t if isinstance(t, tuple) else (t,)), key
        ints = f.metadata["a.ints"]
        assert isinstance(ints, np.ndarray) and ints.dtype == np.int32
        assert f.alignment == 64 and f.data_offset % 64 == 0
        assert list(f.tensors) == list(tensors)
        assert [t.qtype for t in f.tensors.values()] == \
            ["F32", "F16", "I32", "I8", "Q8_0", "Q4_K", "BF16", "F16"]
        for ti in f.tensors.values():
            assert ti.offset % 64 == 0 and ti.offset >= f.data_offset
        np.testing.assert_array_equal(f.tensor("f32"), tensors["f32"])
        np.testing.assert_array_equal(f.tensor("f16"), tensors["f16"])
        np.testing.assert_array_equal(f.tensor("i8"), tensors["i8"])
        np.testing.assert_array_equal(f.tensor("f32_as_f16"), tensors["f32"].astype(np.float16))
        q = gguf.quants.quantize(tensors["q8_0"][0], QT.Q8_0)
        assert f.tensors["q8_0"].shape == (4, 64) and f.tensor("q8_0").shape == q.shape
        np.testing.assert_array_equal(f.tensor("q8_0"), q)
        np.testing.assert_array_equal(f.tensor_data("q4_k"), tensors["q4_k"][0].ravel())
        assert f.tensors["q4_k"].shape == (2, 256) and f.tensors["q4_k"].nbytes == 288
        bf = gguf.quants.quantize(tensors["f32"], QT.BF16).view(np.uint16)
        np.testing.assert_array_equal(f.tensor("bf16"), bf)


def test_roundtrip_matches_gguf_reader(tmp_path):
    path = pg.write(tmp_path / "rt.gguf", METADATA, make_tensors(np.random.default_rng(1)))
    compare_with_gguf_reader(path)


def compare_with_gguf_reader(path) -> None:
    r = gguf.GGUFReader(path)
    with pg.GGUFFile(path) as f:
        fields = {k: v for k, v in r.fields.items() if not k.startswith("GGUF.")}
        assert list(fields) == list(f.metadata)
        for key, field in fields.items():
            n = len(field.types[:2])  # GGUFReader gives no element type for empty arrays
            assert tuple(field.types[:2]) == f.types[key][:n], key
            if field.types[:2] == [VT.ARRAY, VT.ARRAY]:
                continue  # GGUFReader.contents() does not decode nested arrays
            got, want = f.metadata[key], field.contents()
            if isinstance(got, np.ndarray):
                np.testing.assert_array_equal(got, np.array(want, dtype=got.dtype), err_msg=key)
            else:
                assert got == want, key
        assert [t.name for t in r.tensors] == list(f.tensors)
        for t in r.tensors:
            ti = f.tensors[t.name]
            assert list(map(int, t.shape)) == list(ti.ne), t.name
            assert ti.shape == tuple(reversed(ti.ne))
            assert int(t.tensor_type) == ti.qtype_id and t.tensor_type.name == ti.qtype
            assert (t.data_offset, int(t.n_bytes), int(t.n_elements)) == (
                ti.offset, ti.nbytes, ti.n_elements), t.name
            assert np.array_equal(np.asarray(t.data).view(np.uint8).ravel(),
                                  f.tensor_data(t.name)), t.name


def test_write_type_inference_and_rejections(tmp_path):
    md = {"general.architecture": "x", "i": 2**31, "u": 2**63, "l": [0, 2**63],
          "n": [np.uint16(1), np.uint16(2)], "s": np.array(["a", "b"])}
    with pg.GGUFFile(pg.write(tmp_path / "a.gguf", md)) as f:
        assert f.types["i"] == (VT.INT64,) and f.types["u"] == (VT.UINT64,)
        assert f.types["l"] == (VT.ARRAY, VT.UINT64) and f.types["n"] == (VT.ARRAY, VT.UINT16)
        assert f.metadata["s"] == ["a", "b"] and f.tensors == {}
    bad = [({"e": []}, "empty list"), ({"m": [1, "a"]}, "mixed"), ({"m": [-1, 2**63]}, "fit"),
           ({"o": object()}, "unsupported"), ({"general.alignment": 48}, "48"),
           ({"i": 2**64}, str(2**64))]
    for extra, frag in bad:
        with pytest.raises(ValueError, match=frag):
            pg.write(tmp_path / "b.gguf", {"general.architecture": "x", **extra})
        assert not (tmp_path / "b.gguf").exists() and not (tmp_path / "b.gguf.tmp").exists()
    with pytest.raises(ValueError, match="architecture"):
        pg.write(tmp_path / "c.gguf", {})
    with pytest.raises(ValueError, match="'Q9_9'"):
        pg.write(tmp_path / "c.gguf", {}, {"w": (np.zeros(32, np.float32), "Q9_9")}, arch="x")


# ---------------------------------------------------------------------------------------------
# Zero-copy views, context manager, lookups.


def test_tensor_views_are_zero_copy_and_read_only(tmp_path):
    path = pg.write(tmp_path / "v.gguf", {}, make_tensors(np.random.default_rng(2)), arch="x")
    raw = path.read_bytes()
    with pg.GGUFFile(path) as f:
        for name, ti in f.tensors.items():
            d = f.tensor_data(name)
            assert d.dtype == np.uint8 and d.shape == (ti.nbytes,)
            assert not d.flags.writeable and not d.flags.owndata
            assert d.tobytes() == raw[ti.offset : ti.offset + ti.nbytes]
            assert f.tensor(name).nbytes == ti.nbytes
        with pytest.raises(KeyError, match="nope"):
            f.tensor_data("nope")
        assert f.get("general.architecture") == "x" and f.get("missing", 7) == 7
        view = f.tensor("f32")
    assert f._mm is None  # closed; `view` keeps the mapping alive until it is dropped
    assert view.shape == (3, 64) and np.isfinite(view).all()
    with pytest.raises(ValueError, match="closed"):
        f.tensor_data("f32")


# ---------------------------------------------------------------------------------------------
# Real models: fast invariants here, full comparison with GGUFReader in the slow test.


def test_real_model_layout(real_model_path):
    with pg.GGUFFile(real_model_path) as f, open(real_model_path, "rb") as fh:
        version, n_tensors, n_kv = struct.unpack("<IQQ", fh.read(24)[4:])
        assert (f.version, len(f.tensors), len(f.metadata)) == (version, n_tensors, n_kv)
        assert f.architecture in ("llama", "gemma3")
        arch = f.architecture
        n_vocab = len(f.metadata["tokenizer.ggml.tokens"])
        n_embd = f.metadata[f"{arch}.embedding_length"]
        assert f.tensors["token_embd.weight"].shape == (n_vocab, n_embd)
        assert isinstance(f.metadata["tokenizer.ggml.token_type"], np.ndarray)
        spans = sorted((t.offset, t.nbytes) for t in f.tensors.values())
        assert spans[0][0] == f.data_offset
        assert spans[-1][0] + spans[-1][1] <= f.file_size
        for name in (next(iter(f.tensors)), "output_norm.weight"):
            ti = f.tensors[name]
            fh.seek(ti.offset)
            assert f.tensor_data(name).tobytes() == fh.read(ti.nbytes)
        norm = f.tensor("output_norm.weight")
        assert norm.dtype == np.float32 and norm.shape == (n_embd,)


@pytest.mark.slow
def test_real_model_matches_gguf_reader(real_model_path):
    compare_with_gguf_reader(real_model_path)


# ---------------------------------------------------------------------------------------------
# One test per validation error.


def test_bad_magic(tmp_path):
    expect(tmp_path, build(magic=b"GGML"), GGUFFormatError, "b'GGML'", "47474d4c")


@pytest.mark.parametrize("version", [0, 1, 4, 0xDEAD])
def test_unsupported_version(tmp_path, version):
    expect(tmp_path, build(version=version), GGUFUnsupportedError, f"version {version}")


def test_big_endian_unsupported(tmp_path):
    expect(tmp_path, build(version=3 << 24), GGUFUnsupportedError, "big-endian", "0x3000000")


@pytest.mark.parametrize("cut", [0, 3, 10, 23, 30, 40, 60, 100])
def test_truncated_header_and_metadata(tmp_path, cut):
    raw = build()
    msg = expect(tmp_path, raw[:cut], GGUFTruncatedError, f"{cut}")
    assert "reading" in msg or "smaller than" in msg or "bytes left" in msg or "need" in msg


def test_truncated_tensor_data(tmp_path):
    raw = build()
    n = len(raw) - 10
    expect(tmp_path, raw[:n], GGUFTruncatedError, "'w'", "256 bytes", f"file size {n}")


def test_string_length_beyond_file(tmp_path):
    bad = struct.pack("<Q", 2**40) + b"key"
    expect(tmp_path, build(kvs=(ARCH, bad + struct.pack("<I", 4))), GGUFTruncatedError,
           str(2**40), "bytes left")


def test_string_value_length_beyond_file(tmp_path):
    bad = kv("s", VT.STRING, struct.pack("<Q", 2**63 + 5))
    expect(tmp_path, build(kvs=(ARCH, bad)), GGUFTruncatedError, str(2**63 + 5), "'s'")


@pytest.mark.parametrize("et", [VT.UINT32, VT.STRING, VT.ARRAY, VT.FLOAT64])
def test_array_length_beyond_file(tmp_path, et):
    bad = kv("arr", VT.ARRAY, struct.pack("<IQ", et, 2**62))
    expect(tmp_path, build(kvs=(ARCH, bad)), GGUFTruncatedError, str(2**62), "'arr'")


def test_string_array_item_beyond_file(tmp_path):
    bad = kv("arr", VT.ARRAY, struct.pack("<IQ", VT.STRING, 2) + gstr("ok") +
             struct.pack("<Q", 10**6))
    expect(tmp_path, build(kvs=(ARCH, bad)), GGUFTruncatedError, "'arr'[1]", str(10**6))


def test_tensor_out_of_bounds(tmp_path):
    raw = build(tis=(tinfo("w", (32, 2), QT.F32, 4096),))
    expect(tmp_path, raw, GGUFTruncatedError, "'w'", "offset 4096", "256 bytes",
           f"file size {len(raw)}")


def test_misaligned_offset(tmp_path):
    raw = build(tis=(tinfo("w", (8,), QT.F32, 8),), data=bytes(64))
    expect(tmp_path, raw, GGUFFormatError, "'w'", "offset 8", "alignment 32")


@pytest.mark.parametrize("align", [0, 48, 3])
def test_alignment_not_power_of_two(tmp_path, align):
    al = kv("general.alignment", VT.UINT32, struct.pack("<I", align))
    expect(tmp_path, build(kvs=(ARCH, al)), GGUFFormatError, f"general.alignment {align}")


def test_alignment_wrong_type(tmp_path):
    al = kv("general.alignment", VT.STRING, gstr("32"))
    expect(tmp_path, build(kvs=(ARCH, al)), GGUFFormatError, "'32'", "STRING")


def test_custom_alignment_is_used(tmp_path):
    al = kv("general.alignment", VT.UINT32, struct.pack("<I", 256))
    f = open_bytes(tmp_path, build(kvs=(ARCH, al), alignment=256))
    assert f.alignment == 256 and f.data_offset == 256 and f.tensors["w"].offset == 256


def test_unknown_tensor_type(tmp_path):
    raw = build(tis=(tinfo("blk.0.w", (32,), 99, 0),))
    expect(tmp_path, raw, GGUFUnsupportedError, "99", "'blk.0.w'")


def test_removed_tensor_type_q4_2(tmp_path):
    expect(tmp_path, build(tis=(tinfo("w", (32,), 4, 0),)), GGUFUnsupportedError, "type id 4")


def test_unknown_value_type(tmp_path):
    bad = kv("odd", 13, struct.pack("<I", 0))
    expect(tmp_path, build(kvs=(ARCH, bad)), GGUFFormatError, "value type 13", "'odd'")


def test_duplicate_tensor_name(tmp_path):
    raw = build(tis=(W, tinfo("w", (32, 2), QT.F32, 256)), data=bytes(512))
    expect(tmp_path, raw, GGUFFormatError, "duplicate tensor name 'w'")


def test_duplicate_metadata_key(tmp_path):
    expect(tmp_path, build(kvs=(ARCH, ARCH)), GGUFFormatError,
           "duplicate metadata key 'general.architecture'")


def test_too_many_dims(tmp_path):
    expect(tmp_path, build(tis=(tinfo("w", (1,) * 5, QT.F32, 0),)), GGUFFormatError,
           "n_dims 5", "'w'")


@pytest.mark.parametrize("ne", [(32, 0), (0,), (32, 2**63), (32, 2**64 - 1)])
def test_bad_dim(tmp_path, ne):
    expect(tmp_path, build(tis=(tinfo("w", ne, QT.F32, 0),)), GGUFFormatError,
           f"= {ne[-1]}", "'w'")


def test_element_count_overflows_int64(tmp_path):
    raw = build(tis=(tinfo("w", (2**32, 2**32), QT.F32, 0),))
    expect(tmp_path, raw, GGUFFormatError, str(2**64), "overflowing int64")


@pytest.mark.parametrize("which", ["tensor_count", "kv_count"])
def test_absurd_counts(tmp_path, which):
    n = 2**60
    raw = build(**{"n_tensors" if which == "tensor_count" else "n_kv": n})
    expect(tmp_path, raw, GGUFFormatError, f"{which} {n}")


def test_counts_just_too_large(tmp_path):
    # kv_count one more than the entries present: the parser runs off the end, cleanly
    raw = build(n_kv=2, tis=(), data=b"", alignment=1)
    expect(tmp_path, raw, GGUFTruncatedError, f"offset {len(raw)}", "key of metadata entry 1")


def test_row_not_multiple_of_block(tmp_path):
    raw = build(tis=(tinfo("q", (33, 2), QT.Q4_0, 0),))
    expect(tmp_path, raw, GGUFFormatError, "row length 33", "block size 32", "'q'")


def test_overlapping_tensors(tmp_path):
    raw = build(tis=(W, tinfo("v", (32,), QT.F32, 64)))
    expect(tmp_path, raw, GGUFFormatError, "'w'", "'v'", "overlap")


def test_bad_bool(tmp_path):
    expect(tmp_path, build(kvs=(ARCH, kv("b", VT.BOOL, b"\x02"))), GGUFFormatError,
           "value 2", "'b'")
    arr = kv("ba", VT.ARRAY, struct.pack("<IQ", VT.BOOL, 3) + b"\x01\x00\x07")
    expect(tmp_path, build(kvs=(ARCH, arr)), GGUFFormatError, "'ba'[2]", "value 7")


def test_bad_utf8(tmp_path):
    expect(tmp_path, build(kvs=(ARCH, kv(b"k\xff", VT.UINT8, b"\x00"))), GGUFFormatError,
           "UTF-8", "\\xff")
    arr = kv("toks", VT.ARRAY, struct.pack("<IQ", VT.STRING, 2) + gstr("a") + gstr(b"\xc3("))
    expect(tmp_path, build(kvs=(ARCH, arr)), GGUFFormatError, "'toks'[1]", "\\xc3(")


def test_nested_arrays(tmp_path):
    def nest(depth: int) -> bytes:
        inner = struct.pack("<IQ", VT.UINT8, 1) + b"\x05"
        for _ in range(depth):
            inner = struct.pack("<IQ", VT.ARRAY, 1) + inner
        return inner

    f = open_bytes(tmp_path, build(kvs=(ARCH, kv("n", VT.ARRAY, nest(6)))))
    v = f.metadata["n"]
    for _ in range(6):
        assert isinstance(v, list) and len(v) == 1
        v = v[0]
    assert v.tolist() == [5]
    f.close()
    expect(tmp_path, build(kvs=(ARCH, kv("n", VT.ARRAY, nest(20)))), GGUFFormatError,
           "deeper than 8")


def test_scalar_tensor_and_empty_file(tmp_path):
    f = open_bytes(tmp_path, build(tis=(tinfo("s", (), QT.F32, 0),), data=bytes(32)))
    assert f.tensors["s"].shape == () and f.tensor("s").shape == () and f.tensors["s"].nbytes == 4
    f.close()
    expect(tmp_path, b"", GGUFTruncatedError, "file size 0")


def test_errors_are_value_errors():
    assert issubclass(GGUFTruncatedError, GGUFFormatError)
    for e in (GGUFFormatError, GGUFTruncatedError, GGUFUnsupportedError):
        assert issubclass(e, GGUFError) and issubclass(e, ValueError)
