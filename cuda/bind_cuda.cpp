// pylm._cuda: the CUDA extension (built only when nvcc is found). Host-side bindings; kernels
// live in the .cu files. Every call checks for a usable device and raises RuntimeError otherwise:
// a GPU that was asked for is never silently replaced by the CPU.
#include <cuda_runtime.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "bind.h"
#include "common.cuh"
#include "dequant.cuh"
#include "interop.h"
#include "quant/blocks.h"

namespace py = pybind11;
using namespace pylm;
using pylm::cuda::device_count;
using pylm::cuda::require_device;

namespace {

const QTypeInfo& lookup(const std::string& qtype) {
    const QTypeInfo* info = qtype_info_by_name(qtype.c_str());
    if (!info || !cuda::dequant_supported(static_cast<int>(info->type)))
        throw std::invalid_argument("CUDA dequantize: unsupported qtype '" + qtype + "'");
    return *info;
}

struct DeviceBuffer {
    void* ptr = nullptr;
    explicit DeviceBuffer(size_t bytes) { PYLM_CUDA_CHECK(cudaMalloc(&ptr, bytes ? bytes : 1)); }
    ~DeviceBuffer() { cudaFree(ptr); }
};

py::array_t<float> dequantize_host(py::array raw_in, const std::string& qtype, std::vector<int64_t> shape,
                                   int device) {
    const QTypeInfo& info = lookup(qtype);
    auto raw = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>::ensure(raw_in);
    if (!raw) throw std::invalid_argument("raw: expected a uint8 numpy array");
    int64_t n = 1;
    for (int64_t d : shape) {
        if (d < 0) throw std::invalid_argument("shape: negative dimension " + std::to_string(d));
        n *= d;
    }
    if (shape.empty() || shape.back() % info.block_size != 0)
        throw std::invalid_argument("shape: last dimension must be a multiple of " +
                                    std::to_string(info.block_size) + " for " + qtype);
    const int64_t nbytes = n / info.block_size * info.type_size;
    if (raw.size() != nbytes)
        throw std::invalid_argument("raw: " + std::to_string(raw.size()) + " bytes, but " + qtype +
                                    " of that shape needs " + std::to_string(nbytes));
    require_device(device);
    py::array_t<float> out(shape);
    {
        py::gil_scoped_release nogil;
        DeviceBuffer src(nbytes), dst(n * sizeof(float));
        PYLM_CUDA_CHECK(cudaMemcpy(src.ptr, raw.data(), nbytes, cudaMemcpyHostToDevice));
        cuda::dequantize(static_cast<int>(info.type), src.ptr, static_cast<float*>(dst.ptr), n, 0);
        PYLM_CUDA_CHECK(cudaMemcpy(out.mutable_data(), dst.ptr, n * sizeof(float), cudaMemcpyDeviceToHost));
    }
    return out;
}

}  // namespace

PYBIND11_MODULE(_cuda, m) {
    m.doc() = "pylm CUDA extension";
    m.def("device_count", &device_count, "Number of usable CUDA devices (0 when none).");
    m.def("device_name", [](int device) {
        require_device(device);
        cudaDeviceProp prop;
        PYLM_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
        return std::string(prop.name);
    }, py::arg("device") = 0);
    m.def("runtime_version", [] {
        int v = 0;
        PYLM_CUDA_CHECK(cudaRuntimeGetVersion(&v));
        return v;
    });
    m.def("dequantize", &dequantize_host, py::arg("raw"), py::arg("qtype"), py::arg("shape"),
          py::arg("device") = 0,
          "Dequantize GGUF tensor bytes on the GPU (host arrays in and out).");
    m.def("dequantize_ptr", [](uintptr_t src, const std::string& qtype, int64_t n, uintptr_t dst,
                               uintptr_t stream) {
        const QTypeInfo& info = lookup(qtype);
        if (n % info.block_size != 0)
            throw std::invalid_argument("n=" + std::to_string(n) + " is not a multiple of " +
                                        std::to_string(info.block_size));
        py::gil_scoped_release nogil;
        cuda::dequantize(static_cast<int>(info.type), reinterpret_cast<const void*>(src),
                         reinterpret_cast<float*>(dst), n, reinterpret_cast<cudaStream_t>(stream));
    }, py::arg("src"), py::arg("qtype"), py::arg("n"), py::arg("dst"), py::arg("stream") = 0,
       "Dequantize between device pointers (e.g. from torch/cupy .data_ptr()).");
    cuda::bind_device(m);
    cuda::bind_elementwise(m);
    cuda::bind_gemm(m);
    cuda::bind_attention(m);
    cuda::bind_engine(m);
    cuda::bind_train(m);
}
