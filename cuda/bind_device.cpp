// Python bindings of the device area (see bind.h): device properties, raw device buffers and
// copies for pylm.cuda.Array (pylm/cuda/array.py), DLPack export, stream helpers, and two
// parsing probes used by the tests (they read array descriptions without touching a GPU).
#include <cuda_runtime.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "bind.h"
#include "common.cuh"
#include "interop.h"
#include "interop_dlpack.h"

namespace py = pybind11;

namespace pylm {
namespace cuda {

namespace {

// Makes `device` current for a scope (RuntimeError when it does not exist), then restores.
class DeviceSwitch {
  public:
    explicit DeviceSwitch(int device) {
        PYLM_CUDA_CHECK(device_count() > 0 ? cudaGetDevice(&prev_) : cudaSuccess);
        require_device(device);
        device_ = device;
    }
    ~DeviceSwitch() {
        if (prev_ >= 0 && prev_ != device_) cudaSetDevice(prev_);
    }

  private:
    int prev_ = -1, device_ = -1;
};

// cudaMalloc'd bytes on one device, freed (cudaFree) when the last Python reference goes.
// Never managed memory.
class DeviceBuffer {
  public:
    DeviceBuffer(int64_t nbytes, int device) : nbytes_(nbytes), device_(device) {
        if (nbytes < 0)
            throw std::invalid_argument("DeviceBuffer: nbytes=" + std::to_string(nbytes) + " < 0");
        DeviceSwitch on(device);
        PYLM_CUDA_CHECK(cudaMalloc(&ptr_, nbytes > 0 ? static_cast<size_t>(nbytes) : 1));
    }
    ~DeviceBuffer() {
        // Errors are ignored: at interpreter exit the runtime may already be unloaded.
        int prev = -1;
        if (cudaGetDevice(&prev) == cudaSuccess && prev != device_) cudaSetDevice(device_);
        cudaFree(ptr_);
        if (prev >= 0 && prev != device_) cudaSetDevice(prev);
        cudaGetLastError();
    }
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
    uintptr_t ptr() const { return reinterpret_cast<uintptr_t>(ptr_); }
    int64_t nbytes() const { return nbytes_; }
    int device() const { return device_; }

  private:
    void* ptr_ = nullptr;
    int64_t nbytes_;
    int device_;
};

DType dtype_from_name(const std::string& s) {
    if (s == "float32") return DType::F32;
    if (s == "float16") return DType::F16;
    if (s == "bfloat16") return DType::BF16;
    if (s == "int32") return DType::I32;
    if (s == "uint8") return DType::U8;
    throw std::invalid_argument("dtype '" + s +
                                "' (expected float32, float16, bfloat16, int32 or uint8)");
}

py::dict describe(const DevTensor& t) {
    py::dict d;
    d["ptr"] = reinterpret_cast<uintptr_t>(t.ptr);
    d["dtype"] = dtype_name(t.dtype);
    d["shape"] = py::tuple(py::cast(t.shape));
    d["strides"] = py::tuple(py::cast(t.strides));
    d["readonly"] = t.readonly;
    d["device"] = t.device;
    d["producer_stream"] = t.producer_stream == kNoSync ? py::object(py::none())
                                                       : py::object(py::int_(t.producer_stream));
    d["contiguous"] = t.contiguous();
    return d;
}

py::dict device_properties(int device) {
    DeviceSwitch on(device);
    cudaDeviceProp p;
    PYLM_CUDA_CHECK(cudaGetDeviceProperties(&p, device));
    py::dict d;
    d["name"] = std::string(p.name);
    d["compute_capability"] = py::make_tuple(p.major, p.minor);
    d["total_memory"] = static_cast<int64_t>(p.totalGlobalMem);
    d["multiprocessor_count"] = p.multiProcessorCount;
    d["l2_cache_size"] = p.l2CacheSize;
    d["shared_memory_per_block_optin"] = static_cast<int64_t>(p.sharedMemPerBlockOptin);
    d["warp_size"] = p.warpSize;
    return d;
}

void check_host_bytes(const py::buffer_info& b, int64_t nbytes, const char* what) {
    const int64_t have = static_cast<int64_t>(b.size) * static_cast<int64_t>(b.itemsize);
    if (have != nbytes)
        throw std::invalid_argument(std::string(what) + ": host array has " + std::to_string(have) +
                                    " bytes, expected " + std::to_string(nbytes));
}

// A usable GPU must exist; the current device is left as it is (copies work across devices).
void need_gpu() {
    if (device_count() == 0)
        throw std::runtime_error("CUDA requested but no usable CUDA device was found");
}

}  // namespace

void bind_device(py::module_& m) {
    m.def("driver_version", [] {
        int v = 0;
        PYLM_CUDA_CHECK(cudaDriverGetVersion(&v));
        return v;
    }, "CUDA driver version as an integer (e.g. 12080 = 12.8); 0 when no driver is installed.");
    m.def("device_properties", &device_properties, py::arg("device") = 0,
          "Name, compute capability, memory and multiprocessor count of a device.");
    m.def("mem_get_info", [](int device) {
        DeviceSwitch on(device);
        size_t free_b = 0, total_b = 0;
        PYLM_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
        return py::make_tuple(static_cast<int64_t>(free_b), static_cast<int64_t>(total_b));
    }, py::arg("device") = 0, "(free, total) bytes of device memory.");
    m.def("synchronize", [](int device) {
        DeviceSwitch on(device);
        py::gil_scoped_release nogil;
        PYLM_CUDA_CHECK(cudaDeviceSynchronize());
    }, py::arg("device") = 0);
    m.def("stream_synchronize", [](uintptr_t stream) {
        need_gpu();
        py::gil_scoped_release nogil;
        PYLM_CUDA_CHECK(cudaStreamSynchronize(as_stream(stream)));
    }, py::arg("stream"));
    m.def("stream_wait", [](int64_t consumer, int64_t producer) {
        need_gpu();
        stream_wait(consumer, producer);
    }, py::arg("consumer"), py::arg("producer"),
       "Make stream `consumer` wait for the work queued on `producer` (CAI v3 integers).");

    py::class_<DeviceBuffer, std::shared_ptr<DeviceBuffer>>(m, "DeviceBuffer")
        .def(py::init<int64_t, int>(), py::arg("nbytes"), py::arg("device") = 0)
        .def_property_readonly("ptr", &DeviceBuffer::ptr)
        .def_property_readonly("nbytes", &DeviceBuffer::nbytes)
        .def_property_readonly("device", &DeviceBuffer::device);

    m.def("memcpy_htod", [](uintptr_t dst, py::buffer src, int64_t nbytes, uintptr_t stream) {
        py::buffer_info b = src.request();
        check_host_bytes(b, nbytes, "memcpy_htod");
        need_gpu();
        py::gil_scoped_release nogil;
        PYLM_CUDA_CHECK(cudaMemcpyAsync(reinterpret_cast<void*>(dst), b.ptr, nbytes,
                                        cudaMemcpyHostToDevice, as_stream(stream)));
        PYLM_CUDA_CHECK(cudaStreamSynchronize(as_stream(stream)));
    }, py::arg("dst"), py::arg("src"), py::arg("nbytes"), py::arg("stream") = 0,
       "Copy a C-contiguous host buffer to device memory; returns when the copy is done.");
    m.def("memcpy_dtoh", [](py::buffer dst, uintptr_t src, int64_t nbytes, uintptr_t stream) {
        py::buffer_info b = dst.request(true);
        check_host_bytes(b, nbytes, "memcpy_dtoh");
        need_gpu();
        py::gil_scoped_release nogil;
        PYLM_CUDA_CHECK(cudaMemcpyAsync(b.ptr, reinterpret_cast<const void*>(src), nbytes,
                                        cudaMemcpyDeviceToHost, as_stream(stream)));
        PYLM_CUDA_CHECK(cudaStreamSynchronize(as_stream(stream)));
    }, py::arg("dst"), py::arg("src"), py::arg("nbytes"), py::arg("stream") = 0,
       "Copy device memory into a writable C-contiguous host buffer after the stream's work.");
    m.def("memcpy_dtod", [](uintptr_t dst, uintptr_t src, int64_t nbytes, uintptr_t stream) {
        need_gpu();
        PYLM_CUDA_CHECK(cudaMemcpyAsync(reinterpret_cast<void*>(dst),
                                        reinterpret_cast<const void*>(src), nbytes,
                                        cudaMemcpyDeviceToDevice, as_stream(stream)));
    }, py::arg("dst"), py::arg("src"), py::arg("nbytes"), py::arg("stream") = 0);
    m.def("memset", [](uintptr_t dst, int value, int64_t nbytes, uintptr_t stream) {
        need_gpu();
        PYLM_CUDA_CHECK(cudaMemsetAsync(reinterpret_cast<void*>(dst), value, nbytes,
                                        as_stream(stream)));
    }, py::arg("dst"), py::arg("value"), py::arg("nbytes"), py::arg("stream") = 0);

    m.def("dlpack_capsule", [](py::object owner, uintptr_t ptr, const std::string& dtype,
                               std::vector<int64_t> shape, std::vector<int64_t> strides,
                               int device, bool versioned, bool readonly) {
        return make_dlpack_capsule(std::move(owner), ptr, dtype_from_name(dtype), shape, strides,
                                   device, versioned, readonly);
    }, py::arg("owner"), py::arg("ptr"), py::arg("dtype"), py::arg("shape"), py::arg("strides"),
       py::arg("device"), py::arg("versioned"), py::arg("readonly") = false,
       "A DLPack capsule over device memory that keeps `owner` alive (strides in elements).");

    // Test probes: what dev_tensor() reads from an object / a capsule (no device needed).
    m.def("_describe", [](py::handle obj, int64_t stream) {
        return describe(dev_tensor(obj, "array", stream));
    }, py::arg("obj"), py::arg("stream") = kNoSync);
    m.def("_describe_capsule", [](py::object capsule) {
        return describe(parse_dlpack_capsule(std::move(capsule), "capsule"));
    }, py::arg("capsule"));
}

}  // namespace cuda
}  // namespace pylm
