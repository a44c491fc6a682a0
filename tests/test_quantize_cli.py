"""`pylm quantize`: a real model to Q8_0, and a small synthetic GGUF to Q4_K (with fallbacks).

Values are checked with gguf-py's own dequantizer (independent of pylm's).
"""

from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType as GT
from gguf import GGUFReader, GGUFValueType, GGUFWriter
from gguf.quants import dequantize as gguf_dequantize

from pylm.cli import main


def _values(t) -> np.ndarray:
    shape = tuple(int(s) for s in reversed(t.shape.tolist()))
    return gguf_dequantize(t.data, t.tensor_type).reshape(shape).astype(np.float32)


def _fields(reader) -> dict:
    out = {}
    for key, f in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        if f.types[0] == GGUFValueType.ARRAY and f.types[-1] == GGUFValueType.STRING:
            out[key] = [bytes(f.parts[i]) for i in f.data]
        else:
            out[key] = f.contents()
    return out


def _is_weight_matrix(t) -> bool:
    return t.name.endswith(".weight") and len(t.shape) == 2 and "norm" not in t.name


def test_quantize_smollm2_to_q8_0(smollm2_path, tmp_path):
    out = tmp_path / "smollm2-q8_0.gguf"
    assert main(["quantize", str(smollm2_path), str(out), "q8_0", "--quiet"]) == 0
    src, dst = GGUFReader(smollm2_path), GGUFReader(out)

    assert [t.name for t in dst.tensors] == [t.name for t in src.tensors]
    f_src, f_dst = _fields(src), _fields(dst)
    assert list(f_dst) == list(f_src)
    assert f_dst.pop("general.file_type") == 7  # MOSTLY_Q8_0
    f_src.pop("general.file_type")
    assert f_dst == f_src

    n_requantized = 0
    for ts, td in zip(src.tensors, dst.tensors):
        assert td.shape.tolist() == ts.shape.tolist(), ts.name
        if not _is_weight_matrix(ts):
            assert td.tensor_type == ts.tensor_type, ts.name
            assert np.array_equal(
                np.asarray(td.data).view(np.uint8), np.asarray(ts.data).view(np.uint8)
            )
            continue
        assert td.tensor_type == GT.Q8_0, ts.name
        if ts.tensor_type == GT.Q8_0:  # already the target type: copied byte for byte
            assert np.array_equal(td.data, ts.data), ts.name
            continue
        n_requantized += 1
        x, y = _values(ts), _values(td)
        # Q8_0 error per 32-block: |y - x| <= d/2 + 127 * |d - fp16(d)| <= 0.6 * amax / 127.
        amax = np.abs(x.reshape(-1, 32)).max(axis=1, keepdims=True)
        err = np.abs((y - x).reshape(-1, 32))
        assert (err <= 0.6 * amax / 127 + 1e-12).all(), ts.name
    assert n_requantized == 210  # every Q4_1 matrix of SmolLM2-135M


def _write_synthetic(path, rng) -> dict:
    w = GGUFWriter(path, "llama")
    w.add_name("tiny")
    w.add_uint32("llama.block_count", 1)
    w.add_float32("llama.rope.freq_base", 10000.0)
    w.add_bool("tiny.flag", True)
    w.add_array("tokenizer.ggml.tokens", ["<s>", "a", "\u00e9", "\xff"])
    w.add_array("tokenizer.ggml.scores", [0.0, -1.5, -2.0, -3.0])
    w.add_file_type(0)
    tensors = {
        "token_embd.weight": rng.standard_normal((64, 512)).astype(np.float32),  # -> Q4_K
        "blk.0.attn_norm.weight": rng.standard_normal(512).astype(np.float32),  # 1-D: copied
        "blk.0.ffn_up.weight": rng.standard_normal((32, 96)).astype(np.float16),  # row 96 -> Q5_0
        "blk.0.ffn_norm.weight": rng.standard_normal((2, 256)).astype(np.float32),  # norm: copied
        "rope_freqs": rng.standard_normal((4, 256)).astype(np.float32),  # not .weight: copied
        "blk.0.odd.weight": rng.standard_normal((3, 20)).astype(np.float32),  # row 20: copied
    }
    for name, x in tensors.items():
        w.add_tensor(name, x)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return tensors


def test_quantize_synthetic_q4_k(tmp_path):
    rng = np.random.default_rng(0)
    src_path, out = tmp_path / "tiny.gguf", tmp_path / "tiny-q4_k.gguf"
    tensors = _write_synthetic(src_path, rng)
    assert main(["quantize", str(src_path), str(out), "Q4_K", "--quiet", "--threads", "2"]) == 0
    src, dst = GGUFReader(src_path), GGUFReader(out)
    f_src, f_dst = _fields(src), _fields(dst)
    assert f_dst.pop("general.file_type") == 14  # MOSTLY_Q4_K_S
    f_src.pop("general.file_type")
    assert f_dst == f_src
    assert f_dst["tokenizer.ggml.tokens"] == [b"<s>", b"a", "\u00e9".encode(), "\xff".encode()]

    types = {t.name: t.tensor_type for t in dst.tensors}
    assert [t.name for t in dst.tensors] == list(tensors)
    assert types == {
        "token_embd.weight": GT.Q4_K,
        "blk.0.attn_norm.weight": GT.F32,
        "blk.0.ffn_up.weight": GT.Q5_0,
        "blk.0.ffn_norm.weight": GT.F32,
        "rope_freqs": GT.F32,
        "blk.0.odd.weight": GT.F32,
    }
    for t in dst.tensors:
        x = tensors[t.name].astype(np.float32)
        y = _values(t)
        assert y.shape == x.shape, t.name
        if types[t.name] == GT.F32:
            assert np.array_equal(y, x), t.name
        else:  # relative RMSE: Q4_K ~0.07, Q5_0 ~0.04 on N(0, 1)
            rel = np.sqrt(np.mean((y - x) ** 2)) / x.std()
            assert rel < {GT.Q4_K: 0.10, GT.Q5_0: 0.06}[types[t.name]], (t.name, rel)


def test_quantize_synthetic_bf16(tmp_path):
    # BF16: gguf-py's own rounding (round to nearest even, NaN kept quiet), bit for bit.
    from gguf.quants import quantize as gguf_quantize

    rng = np.random.default_rng(2)
    src_path, out = tmp_path / "tiny.gguf", tmp_path / "tiny-bf16.gguf"
    tensors = _write_synthetic(src_path, rng)
    assert main(["quantize", str(src_path), str(out), "bf16", "--quiet"]) == 0
    dst = GGUFReader(out)
    assert _fields(dst)["general.file_type"] == 32  # MOSTLY_BF16
    types = {t.name: t.tensor_type for t in dst.tensors}
    assert types["token_embd.weight"] == GT.BF16 and types["blk.0.ffn_up.weight"] == GT.BF16
    assert types["blk.0.odd.weight"] == GT.BF16  # 1-element blocks: any row length
    for t in dst.tensors:
        if t.tensor_type != GT.BF16:
            continue
        want = gguf_quantize(tensors[t.name].astype(np.float32), GT.BF16)
        assert np.array_equal(np.asarray(t.data).view(np.uint8).reshape(-1),
                              np.asarray(want).view(np.uint8).reshape(-1)), t.name


def test_quantize_cli_errors(tmp_path, capsys):
    rng = np.random.default_rng(1)
    src_path = tmp_path / "tiny.gguf"
    _write_synthetic(src_path, rng)
    assert main(["quantize", str(src_path), str(src_path), "Q8_0"]) == 2
    assert "is the input file" in capsys.readouterr().err
    assert main(["quantize", str(tmp_path / "missing.gguf"), str(tmp_path / "o.gguf"), "Q8_0"]) == 2
    with pytest.raises(SystemExit):
        main(["quantize", str(src_path), str(tmp_path / "o.gguf"), "Q3_K"])
    assert not (tmp_path / "o.gguf").exists()
