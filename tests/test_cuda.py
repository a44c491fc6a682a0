"""CUDA dequantization vs gguf.quants (bit-exact). Runs only where a GPU is usable."""

import numpy as np
import pytest

import pylm.cuda

gguf = pytest.importorskip("gguf")
from gguf import GGMLQuantizationType as T  # noqa: E402
from gguf import quants  # noqa: E402

pytestmark = pytest.mark.cuda


def test_unavailable_is_an_error_not_a_fallback():
    if pylm.cuda.is_available():
        pytest.skip("a GPU is available")
    with pytest.raises(RuntimeError):
        pylm.cuda.dequantize(np.zeros(18, np.uint8), "Q4_0", (32,))


needs_gpu = pytest.mark.skipif(not pylm.cuda.is_available(), reason="no usable CUDA device")


@needs_gpu
@pytest.mark.parametrize("qtype", ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"])
def test_legacy_bit_exact(qtype):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((64, 256)) * 3).astype(np.float32)
    raw = quants.quantize(x, T[qtype])
    ref = quants.dequantize(raw, T[qtype])
    got = pylm.cuda.dequantize(raw, qtype, x.shape)
    np.testing.assert_array_equal(got, ref)


@needs_gpu
@pytest.mark.parametrize("qtype", ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "F16", "BF16"])
def test_random_blocks_bit_exact(qtype):
    rng = np.random.default_rng(1)
    bs, ts = gguf.GGML_QUANT_SIZES[T[qtype]]
    nblk = 64
    raw = rng.integers(0, 256, size=(nblk, ts), dtype=np.uint8)
    if qtype.endswith("_K"):  # keep the fp16 scales finite
        off = {"Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2],
               "Q6_K": [208]}[qtype]
        for o in off:
            raw[:, o: o + 2] = np.frombuffer(
                rng.uniform(-2, 2, nblk).astype(np.float16).tobytes(), np.uint8).reshape(nblk, 2)
    else:
        raw = np.frombuffer(rng.standard_normal(nblk * ts // 2).astype(
            np.float16 if qtype == "F16" else np.float32).tobytes()[: nblk * ts], np.uint8).reshape(nblk, ts).copy()
    ref = quants.dequantize(raw.reshape(-1), T[qtype]).reshape(-1)
    got = pylm.cuda.dequantize(raw, qtype, (nblk * bs,))
    np.testing.assert_array_equal(got, ref)


@needs_gpu
def test_f32_passthrough():
    x = np.random.default_rng(2).standard_normal((4, 64)).astype(np.float32)
    np.testing.assert_array_equal(pylm.cuda.dequantize(x.view(np.uint8), "F32", x.shape), x)
