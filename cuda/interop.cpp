// __cuda_array_interface__ (v2/v3) -> DevTensor. See interop.h.
#include "interop.h"

#include <stdexcept>

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
    // bfloat16 has no numpy typestr; torch reports it as "<V2" is not given — torch raises
    // instead, so bf16 arrives through pylm.cuda.Array (typestr "<V2" with descr "bfloat16").
    if (ts == "<V2" || ts == "|V2") return DType::BF16;
    throw std::invalid_argument(std::string(name) + ": unsupported device dtype '" + ts + "'");
}

DevTensor dev_tensor(py::handle obj, const char* name) {
    if (!py::hasattr(obj, "__cuda_array_interface__"))
        throw std::invalid_argument(std::string(name) +
                                    ": expected a CUDA device array (__cuda_array_interface__), got " +
                                    std::string(py::str(py::type::of(obj))));
    py::dict cai = obj.attr("__cuda_array_interface__");
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
    return t;
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

}  // namespace cuda
}  // namespace pylm
