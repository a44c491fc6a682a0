// __cuda_array_interface__ (v2/v3) -> DevTensor, validation helpers, DeviceScope. See interop.h;
// the DLPack half is interop_dlpack.cpp.
#include "interop.h"

#include <stdexcept>

#include "interop_dlpack.h"

namespace py = pybind11;

namespace pylm {
namespace cuda {

int64_t DevTensor::numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
}

bool DevTensor::contiguous() const {
    int64_t expect = 1;
    for (int i = static_cast<int>(shape.size()) - 1; i >= 0; --i) {
        if (shape[i] != 1 && strides[i] != expect) return false;
        expect *= shape[i];
    }
    return true;
}

std::string DevTensor::shape_str() const {
    std::string s = "(";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + (shape.size() == 1 ? ",)" : ")");
}

static DType parse_typestr(const std::string& ts, const char* name) {
    if (ts == "<f4") return DType::F32;
    if (ts == "<f2") return DType::F16;
    if (ts == "<i4") return DType::I32;
    if (ts == "|u1" || ts == "<u1") return DType::U8;
    // bfloat16 has no numpy typestr: pylm.cuda.Array reports "<V2" (torch raises instead and
    // is read through DLPack).
    if (ts == "<V2" || ts == "|V2") return DType::BF16;
    throw std::invalid_argument(std::string(name) + ": unsupported device dtype '" + ts +
                                "' (expected float32, float16, bfloat16, int32 or uint8)");
}

// The attribute, or a null object when reading it fails (torch raises for CPU and bf16 tensors).
static py::object try_cai(py::handle obj) {
    PyObject* r = PyObject_GetAttrString(obj.ptr(), "__cuda_array_interface__");
    if (!r) {
        PyErr_Clear();
        return py::object();
    }
    return py::reinterpret_steal<py::object>(r);
}

static DevTensor from_cai(py::dict cai, const char* name) {
    DevTensor t;
    py::tuple data = cai["data"];
    t.ptr = reinterpret_cast<void*>(data[0].cast<uintptr_t>());
    t.readonly = data[1].cast<bool>();
    t.dtype = parse_typestr(cai["typestr"].cast<std::string>(), name);
    for (auto d : cai["shape"].cast<py::tuple>()) t.shape.push_back(d.cast<int64_t>());
    const int64_t esize = dtype_size(t.dtype);
    t.strides.assign(t.shape.size(), 0);
    if (cai.contains("strides") && !cai["strides"].is_none()) {
        py::tuple st = cai["strides"];
        if (st.size() != t.shape.size())
            throw std::invalid_argument(std::string(name) + ": strides and shape differ in length");
        for (size_t i = 0; i < t.shape.size(); ++i) {
            const int64_t b = st[i].cast<int64_t>();
            if (b % esize) throw std::invalid_argument(std::string(name) + ": misaligned strides");
            t.strides[i] = b / esize;
        }
    } else {
        int64_t s = 1;
        for (int i = static_cast<int>(t.shape.size()) - 1; i >= 0; --i) {
            t.strides[i] = s;
            s *= t.shape[i];
        }
    }
    if (cai.contains("mask") && !cai["mask"].is_none())
        throw std::invalid_argument(std::string(name) + ": masked arrays are not supported");
    if (cai.contains("stream") && !cai["stream"].is_none())
        t.producer_stream = cai["stream"].cast<int64_t>();
    return t;
}

DevTensor dev_tensor(py::handle obj, const char* name, int64_t stream) {
    py::object cai = try_cai(obj);
    if (cai && py::isinstance<py::dict>(cai)) return from_cai(cai, name);
    if (py::hasattr(obj, "__dlpack__") && py::hasattr(obj, "__dlpack_device__"))
        return dev_tensor_dlpack(obj, name, stream);
    throw std::invalid_argument(std::string(name) +
                                ": expected a CUDA device array (__cuda_array_interface__ or "
                                "DLPack on a CUDA device), got " +
                                std::string(py::str(py::type::of(obj))));
}

void expect_dtype(const DevTensor& t, const char* name, std::initializer_list<DType> allowed) {
    std::string names;
    for (DType d : allowed) {
        if (d == t.dtype) return;
        names += (names.empty() ? "" : "/") + std::string(dtype_name(d));
    }
    throw std::invalid_argument(std::string(name) + ": expected " + names + ", got " +
                                dtype_name(t.dtype));
}

void expect_ndim(const DevTensor& t, const char* name, int ndim) {
    if (static_cast<int>(t.shape.size()) != ndim)
        throw std::invalid_argument(std::string(name) + ": expected " + std::to_string(ndim) +
                                    " dims, got shape " + t.shape_str());
}

void expect_contiguous(const DevTensor& t, const char* name) {
    if (!t.contiguous())
        throw std::invalid_argument(std::string(name) + ": expected a contiguous array, shape " +
                                    t.shape_str());
}

int device_count() {
    int n = 0;
    const cudaError_t err = cudaGetDeviceCount(&n);
    if (err == cudaErrorNoDevice || err == cudaErrorInsufficientDriver) {
        cudaGetLastError();  // clear the sticky error
        return 0;
    }
    check(err, "cudaGetDeviceCount");
    return n;
}

void require_device(int device) {
    const int n = device_count();
    if (n == 0) throw std::runtime_error("CUDA requested but no usable CUDA device was found");
    if (device < 0 || device >= n)
        throw std::runtime_error("CUDA device " + std::to_string(device) + " out of range (have " +
                                 std::to_string(n) + ")");
    PYLM_CUDA_CHECK(cudaSetDevice(device));
}

static cudaStream_t cai_stream(int64_t s) {
    if (s == 0 || s == 1) return cudaStreamLegacy;
    if (s == 2) return cudaStreamPerThread;
    return reinterpret_cast<cudaStream_t>(static_cast<uintptr_t>(s));
}

void stream_wait(int64_t consumer, int64_t producer) {
    if (consumer == kNoSync || producer == kNoSync) return;
    cudaStream_t c = cai_stream(consumer), p = cai_stream(producer);
    if (c == p) return;
    cudaEvent_t ev;
    PYLM_CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
    cudaError_t err = cudaEventRecord(ev, p);
    if (err == cudaSuccess) err = cudaStreamWaitEvent(c, ev, 0);
    cudaEventDestroy(ev);  // released once the wait is satisfied
    check(err, "stream_wait");
}

DeviceScope::DeviceScope(std::initializer_list<const DevTensor*> tensors,
                         std::initializer_list<const char*> names, int64_t stream) {
    if (device_count() == 0)
        throw std::runtime_error("CUDA requested but no usable CUDA device was found");
    PYLM_CUDA_CHECK(cudaGetDevice(&prev_));
    int found = -1;
    const char* found_name = "";
    auto name_it = names.begin();
    for (const DevTensor* t : tensors) {
        const char* name = name_it != names.end() ? *name_it++ : "array";
        if (!t || !t->ptr || t->numel() == 0) continue;
        int dev = t->device;
        if (dev < 0) {
            cudaPointerAttributes attr;
            const cudaError_t err = cudaPointerGetAttributes(&attr, t->ptr);
            if (err != cudaSuccess || (attr.type != cudaMemoryTypeDevice &&
                                       attr.type != cudaMemoryTypeManaged)) {
                cudaGetLastError();
                throw std::invalid_argument(std::string(name) +
                                            ": data pointer is not CUDA device memory");
            }
            dev = attr.device;
        }
        if (found >= 0 && dev != found)
            throw std::invalid_argument(std::string(name) + " is on cuda:" + std::to_string(dev) +
                                        " but " + found_name + " is on cuda:" +
                                        std::to_string(found));
        found = dev, found_name = name;
    }
    device_ = found >= 0 ? found : prev_;
    if (device_ != prev_) PYLM_CUDA_CHECK(cudaSetDevice(device_));
    try {
        for (const DevTensor* t : tensors)
            if (t) stream_wait(stream, t->producer_stream);
    } catch (...) {
        if (device_ != prev_) cudaSetDevice(prev_);
        throw;
    }
}

DeviceScope::~DeviceScope() {
    if (prev_ >= 0 && prev_ != device_) cudaSetDevice(prev_);
}

}  // namespace cuda
}  // namespace pylm
