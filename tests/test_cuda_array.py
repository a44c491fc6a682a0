"""pylm.cuda.Array, device-array interop (__cuda_array_interface__, DLPack) and stream resolution.

The parsing, validation and no-GPU tests run anywhere the CUDA extension is built (they never
touch a device); the rest needs a usable GPU (and torch with CUDA for the interop ones).
"""

import gc
import sys

import numpy as np
import pytest

import pylm
import pylm.cuda
from pylm.cuda.array import bf16_bits_to_f32, f32_to_bf16_bits
from pylm.cuda.stream import resolve_stream, stream_handle, use_stream

pytestmark = pytest.mark.cuda

needs_ext = pytest.mark.skipif(not pylm.cuda.is_built(), reason="pylm built without CUDA")
needs_gpu = pytest.mark.skipif(not pylm.cuda.is_available(), reason="no usable CUDA device")


class FakeCAI:
    """A device-array description without a device: the extension only parses it."""

    def __init__(self, shape, typestr="<f4", ptr=4096, strides=None, readonly=False, stream=None):
        self.__cuda_array_interface__ = {
            "shape": tuple(shape), "typestr": typestr, "data": (ptr, readonly), "version": 3,
            "strides": strides, "stream": stream}


# ---------------------------------------------------------------- no device needed

def test_no_gpu_is_an_error_not_a_fallback():
    if pylm.cuda.is_available():
        pytest.skip("a GPU is available")
    with pytest.raises(RuntimeError):
        pylm.cuda.Array((2, 3))
    with pytest.raises(RuntimeError):
        pylm.cuda.Array.from_numpy(np.zeros(3, np.float32))


def test_is_device_array():
    torch = pytest.importorskip("torch")
    assert not pylm.cuda.is_device_array(np.zeros(3, np.float32))
    assert not pylm.cuda.is_device_array([1.0, 2.0])
    assert not pylm.cuda.is_device_array(torch.zeros(3))  # CPU tensor: DLPack says CPU
    assert pylm.cuda.is_device_array(FakeCAI((3,)))

    class FakeDL:
        def __dlpack_device__(self):
            return (2, 0)

    assert pylm.cuda.is_device_array(FakeDL())


@pytest.mark.parametrize("typestr,dtype,size", [("<f4", "float32", 4), ("<f2", "float16", 2),
                                                 ("<V2", "bfloat16", 2), ("<i4", "int32", 4),
                                                 ("|u1", "uint8", 1)])
@needs_ext
def test_cai_parsing(typestr, dtype, size):
    d = pylm.cuda.ops.describe(FakeCAI((3, 5), typestr, ptr=1 << 20, stream=7))
    assert d["dtype"] == dtype and d["shape"] == (3, 5) and d["strides"] == (5, 1)
    assert d["ptr"] == 1 << 20 and d["producer_stream"] == 7 and d["contiguous"]
    d = pylm.cuda.ops.describe(FakeCAI((3, 5), typestr, strides=(10 * size, size)))
    assert d["strides"] == (10, 1) and not d["contiguous"]


@needs_ext
def test_cai_bad_inputs_are_value_errors():
    with pytest.raises(ValueError, match="'<f8'"):
        pylm.cuda.ops.describe(FakeCAI((3,), "<f8"))
    with pytest.raises(ValueError, match="misaligned"):
        pylm.cuda.ops.describe(FakeCAI((3,), "<f4", strides=(2,)))
    with pytest.raises(ValueError, match="CPU"):
        pylm.cuda.ops.describe(np.zeros(3, np.float32))


@needs_ext
@pytest.mark.parametrize("versioned", [False, True])
def test_dlpack_capsule_abi_with_torch(versioned):
    """The ABI structs read a real producer's capsule (torch, CPU memory) field by field."""
    torch = pytest.importorskip("torch")
    base = torch.arange(24, dtype=torch.bfloat16).reshape(4, 6)
    t = base[1:, 2:]  # byte offset / strided view
    cap = t.__dlpack__(max_version=(1, 0)) if versioned else torch.utils.dlpack.to_dlpack(t)
    d = pylm.cuda._module()._describe_capsule(cap)
    assert d["dtype"] == "bfloat16" and d["shape"] == (3, 4) and d["strides"] == (6, 1)
    assert d["ptr"] == t.data_ptr() and d["device"] == 0 and not d["contiguous"]


@needs_ext
def test_dlpack_cpu_producer_is_rejected():
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError, match="CPU"):
        pylm.cuda.ops.describe(torch.zeros(3, dtype=torch.bfloat16))


@needs_ext
@pytest.mark.parametrize("versioned", [False, True])
def test_dlpack_export_roundtrip_and_release(versioned):
    owner = np.zeros(4)  # any Python object the capsule must keep alive
    before = sys.getrefcount(owner)
    cap = pylm.cuda._module().dlpack_capsule(owner, 0x1000, "float16", [2, 3], [3, 1], 0,
                                             versioned)
    assert sys.getrefcount(owner) == before + 1
    d = pylm.cuda._module()._describe_capsule(cap)
    assert (d["ptr"], d["dtype"], d["shape"], d["strides"]) == (0x1000, "float16", (2, 3), (3, 1))
    del cap, d
    gc.collect()
    assert sys.getrefcount(owner) == before  # the unconsumed capsule ran its deleter


def test_bf16_conversion_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal(1000).astype(np.float32) * 100,
                        np.array([0, -0.0, np.inf, -np.inf, 1e-40, 3.4e38], np.float32)])
    ref = torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    np.testing.assert_array_equal(f32_to_bf16_bits(x), ref)
    np.testing.assert_array_equal(bf16_bits_to_f32(ref), torch.from_numpy(x).to(
        torch.bfloat16).float().numpy())
    assert np.isnan(bf16_bits_to_f32(f32_to_bf16_bits(np.array([np.nan], np.float32))))[0]


def test_stream_resolution():
    assert resolve_stream(None) == 0
    assert resolve_stream(77) == 77

    class TorchLike:
        cuda_stream = 1234

    class CupyLike:
        ptr = 99

    assert stream_handle(TorchLike()) == 1234 and stream_handle(CupyLike()) == 99
    with use_stream(TorchLike()):
        assert resolve_stream(None) == 1234
        with use_stream(5):
            assert resolve_stream(None) == 5
        assert resolve_stream(None, np.zeros(1)) == 1234
        assert resolve_stream(8) == 8  # explicit beats the context
    assert resolve_stream(None) == 0
    with pytest.raises(ValueError, match="-3"):
        stream_handle(-3)
    with pytest.raises(ValueError, match="str"):
        stream_handle("default")


def test_backend_info_gpu_keys():
    info = pylm.backend_info()
    for k in ("gpu_count", "gpu_compute_capability", "gpu_memory_total", "cuda_driver_version",
              "cuda_runtime_version"):
        assert k in info
    if info["cuda_available"]:
        major, _minor = map(int, info["gpu_compute_capability"].split("."))
        assert major >= 7 and info["gpu_memory_total"] > 0 and info["gpu_count"] >= 1
    else:
        assert info["gpu_compute_capability"] is None


# ---------------------------------------------------------------- GPU

@needs_gpu
@pytest.mark.parametrize("dtype", ["float32", "float16", "int32", "uint8"])
def test_array_roundtrip(dtype):
    rng = np.random.default_rng(1)
    h = (rng.standard_normal((5, 7)) * 50).astype(dtype)
    a = pylm.cuda.Array.from_numpy(h)
    assert a.shape == (5, 7) and a.dtype == dtype and a.nbytes == h.nbytes
    np.testing.assert_array_equal(a.numpy(), h)
    cai = a.__cuda_array_interface__
    assert cai["version"] == 3 and cai["data"][0] == a.ptr and cai["shape"] == (5, 7)
    assert a.__dlpack_device__() == (2, 0)
    np.testing.assert_array_equal(a.reshape(35).numpy(), h.reshape(35))


@needs_gpu
def test_array_bfloat16_and_zeros():
    x = np.array([1.0, -2.5, 3.140625, 1e-3], np.float32)
    a = pylm.cuda.Array.from_numpy(x, dtype="bfloat16")
    np.testing.assert_array_equal(a.numpy(bf16="bits"), f32_to_bf16_bits(x))
    np.testing.assert_array_equal(a.numpy(), bf16_bits_to_f32(f32_to_bf16_bits(x)))
    b = pylm.cuda.Array.from_numpy(f32_to_bf16_bits(x), dtype="bfloat16")  # raw bits in
    np.testing.assert_array_equal(b.numpy(bf16="bits"), f32_to_bf16_bits(x))
    z = pylm.cuda.zeros((3, 4), "float16")
    np.testing.assert_array_equal(z.numpy(), np.zeros((3, 4), np.float16))


@needs_gpu
def test_array_freed_on_gc():
    free0 = pylm.cuda.device_info()["free_memory"]
    a = pylm.cuda.Array((256, 1024, 1024), "uint8")  # 256 MiB
    assert pylm.cuda.device_info()["free_memory"] <= free0 - (200 << 20)
    del a
    gc.collect()
    assert pylm.cuda.device_info()["free_memory"] >= free0 - (32 << 20)


@pytest.fixture
def torch_cuda():
    torch = pytest.importorskip("torch")
    if not (pylm.cuda.is_available() and torch.cuda.is_available()):
        pytest.skip("needs pylm CUDA and torch CUDA")
    return torch


def test_torch_reads_pylm_array(torch_cuda):
    torch = torch_cuda
    h = np.arange(12, dtype=np.float32).reshape(3, 4)
    a = pylm.cuda.Array.from_numpy(h)
    t1 = torch.as_tensor(a, device="cuda")  # __cuda_array_interface__
    t2 = torch.from_dlpack(a)  # DLPack
    assert t1.data_ptr() == a.ptr == t2.data_ptr()
    np.testing.assert_array_equal(t2.cpu().numpy(), h)
    b = pylm.cuda.Array.from_numpy(h, dtype="bfloat16")
    tb = torch.from_dlpack(b)
    assert tb.dtype == torch.bfloat16
    np.testing.assert_array_equal(tb.float().cpu().numpy(), h)
    del a, b
    gc.collect()
    np.testing.assert_array_equal(t2.cpu().numpy(), h)  # the capsule kept the memory alive


def test_pylm_reads_torch_bf16_through_dlpack(torch_cuda):
    torch = torch_cuda
    t = torch.arange(8, dtype=torch.bfloat16, device="cuda").reshape(2, 4)
    d = pylm.cuda.ops.describe(t)
    assert d["dtype"] == "bfloat16" and d["ptr"] == t.data_ptr() and d["shape"] == (2, 4)
    d = pylm.cuda.ops.describe(t.float())  # float32: __cuda_array_interface__
    assert d["dtype"] == "float32"


def test_stream_follows_torch(torch_cuda):
    torch = torch_cuda
    t = torch.zeros(4, device="cuda")
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        assert resolve_stream(None, t) == s.cuda_stream
    assert resolve_stream(None, t) == torch.cuda.current_stream().cuda_stream
