// DLPack import/export (see interop_dlpack.h; ABI structs in dlpack.h).
//
// Import follows the Python array API protocol: call obj.__dlpack__(stream=..., max_version=
// (1, 0)) (retrying without max_version for producers that predate DLPack 1.0), read the capsule
// without consuming it, and keep it alive while the tensor is in use; when the last reference
// goes, the producer's capsule destructor releases the memory reference as for an unused capsule.
// Export wraps device memory owned by a Python object (pylm.cuda.Array's buffer) in a capsule
// whose deleter drops that reference with the GIL taken (consumers may call it from any thread).
#include "interop_dlpack.h"

#include <stdexcept>
#include <string>

#include "dlpack.h"

namespace py = pybind11;

namespace pylm {
namespace cuda {

namespace {

using namespace dlpack;

const char* kLegacyName = "dltensor";
const char* kVersionedName = "dltensor_versioned";

DType parse_dtype(DLDataType t, const char* name) {
    if (t.lanes == 1) {
        if (t.code == kDLFloat && t.bits == 32) return DType::F32;
        if (t.code == kDLFloat && t.bits == 16) return DType::F16;
        if (t.code == kDLBfloat && t.bits == 16) return DType::BF16;
        if (t.code == kDLInt && t.bits == 32) return DType::I32;
        if (t.code == kDLUInt && t.bits == 8) return DType::U8;
    }
    throw std::invalid_argument(std::string(name) + ": unsupported DLPack dtype (code " +
                                std::to_string(t.code) + ", bits " + std::to_string(t.bits) +
                                ", lanes " + std::to_string(t.lanes) +
                                "); expected float32, float16, bfloat16, int32 or uint8");
}

DLDataType to_dl(DType d) {
    switch (d) {
    case DType::F32: return {kDLFloat, 32, 1};
    case DType::F16: return {kDLFloat, 16, 1};
    case DType::BF16: return {kDLBfloat, 16, 1};
    case DType::I32: return {kDLInt, 32, 1};
    case DType::U8: return {kDLUInt, 8, 1};
    }
    throw std::invalid_argument("dlpack: bad dtype");
}

DevTensor from_dl(const DLTensor& dl, const char* name) {
    if (dl.ndim < 0) throw std::invalid_argument(std::string(name) + ": negative DLPack ndim");
    DevTensor t;
    t.dtype = parse_dtype(dl.dtype, name);
    t.ptr = static_cast<char*>(dl.data) + dl.byte_offset;
    t.shape.assign(dl.shape, dl.shape + dl.ndim);
    if (dl.strides) {
        t.strides.assign(dl.strides, dl.strides + dl.ndim);
    } else {
        t.strides.assign(dl.ndim, 0);
        int64_t s = 1;
        for (int i = dl.ndim - 1; i >= 0; --i) t.strides[i] = s, s *= t.shape[i];
    }
    t.device = dl.device.device_id;
    return t;
}

// Drops the capsule reference with the GIL held (the last DevTensor copy may die anywhere).
std::shared_ptr<void> hold(py::object capsule) {
    return std::shared_ptr<void>(capsule.release().ptr(), [](void* p) {
        py::gil_scoped_acquire gil;
        Py_DECREF(static_cast<PyObject*>(p));
    });
}

// Export context: the owner reference plus the shape/strides arrays the DLTensor points into.
struct ExportCtx {
    PyObject* owner;
    std::vector<int64_t> shape, strides;
};

void release_ctx(void* ctx) {
    auto* c = static_cast<ExportCtx*>(ctx);
    {
        py::gil_scoped_acquire gil;
        Py_XDECREF(c->owner);
    }
    delete c;
}

void legacy_deleter(DLManagedTensor* self) {
    release_ctx(self->manager_ctx);
    delete self;
}

void versioned_deleter(DLManagedTensorVersioned* self) {
    release_ctx(self->manager_ctx);
    delete self;
}

// Capsule destructor: an unconsumed capsule (name unchanged) still owns its tensor.
void capsule_destructor(PyObject* cap) {
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);  // may run while an exception is pending
    if (PyCapsule_IsValid(cap, kLegacyName)) {
        auto* m = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(cap, kLegacyName));
        if (m && m->deleter) m->deleter(m);
    } else if (PyCapsule_IsValid(cap, kVersionedName)) {
        auto* m = static_cast<DLManagedTensorVersioned*>(PyCapsule_GetPointer(cap, kVersionedName));
        if (m && m->deleter) m->deleter(m);
    }
    PyErr_Restore(type, value, tb);
}

}  // namespace

DevTensor parse_dlpack_capsule(py::object capsule, const char* name) {
    PyObject* cap = capsule.ptr();
    DevTensor t;
    if (PyCapsule_IsValid(cap, kVersionedName)) {
        auto* m = static_cast<DLManagedTensorVersioned*>(PyCapsule_GetPointer(cap, kVersionedName));
        if (m->version.major != kMajorVersion)
            throw std::invalid_argument(std::string(name) + ": DLPack version " +
                                        std::to_string(m->version.major) + "." +
                                        std::to_string(m->version.minor) + " (pylm reads 1.x)");
        t = from_dl(m->dl_tensor, name);
        t.readonly = (m->flags & kFlagReadOnly) != 0;
    } else if (PyCapsule_IsValid(cap, kLegacyName)) {
        auto* m = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(cap, kLegacyName));
        t = from_dl(m->dl_tensor, name);
    } else {
        PyErr_Clear();
        throw std::invalid_argument(std::string(name) +
                                    ": __dlpack__ did not return an unused DLPack capsule");
    }
    t.keep = hold(std::move(capsule));
    return t;
}

DevTensor dev_tensor_dlpack(py::handle obj, const char* name, int64_t stream) {
    py::tuple dev = obj.attr("__dlpack_device__")();
    const int dev_type = dev[0].cast<int>();
    if (dev_type != kDLCUDA && dev_type != kDLCUDAManaged)
        throw std::invalid_argument(std::string(name) +
                                    ": expected a CUDA device array, got one on DLPack device type " +
                                    std::to_string(dev_type) + (dev_type == kDLCPU ? " (CPU)" : ""));
    // Protocol values: -1 = no synchronization, 1 = the legacy default stream (0 is ambiguous).
    const int64_t s = stream == kNoSync ? -1 : (stream == 0 ? 1 : stream);
    py::object fn = obj.attr("__dlpack__"), capsule;
    try {
        try {
            capsule = fn(py::arg("stream") = s, py::arg("max_version") = py::make_tuple(1, 0));
        } catch (py::error_already_set& e) {
            if (!e.matches(PyExc_TypeError)) throw;
            capsule = fn(py::arg("stream") = s);  // producer predates DLPack 1.0
        }
    } catch (py::error_already_set& e) {
        throw std::invalid_argument(std::string(name) + ": __dlpack__ failed: " + e.what());
    }
    DevTensor t = parse_dlpack_capsule(std::move(capsule), name);
    if (t.device < 0) t.device = dev[1].cast<int>();
    return t;
}

py::object make_dlpack_capsule(py::object owner, uintptr_t ptr, DType dtype,
                               const std::vector<int64_t>& shape,
                               const std::vector<int64_t>& strides, int device, bool versioned,
                               bool readonly) {
    if (shape.size() != strides.size())
        throw std::invalid_argument("dlpack: shape and strides differ in length");
    auto* ctx = new ExportCtx{owner.release().ptr(), shape, strides};
    DLTensor dl{};
    dl.data = reinterpret_cast<void*>(ptr);
    dl.device = {kDLCUDA, device};
    dl.ndim = static_cast<int32_t>(shape.size());
    dl.dtype = to_dl(dtype);
    dl.shape = ctx->shape.data();
    dl.strides = ctx->strides.data();
    dl.byte_offset = 0;
    PyObject* cap;
    if (versioned) {
        auto* m = new DLManagedTensorVersioned{};
        m->version = {kMajorVersion, kMinorVersion};
        m->manager_ctx = ctx;
        m->deleter = versioned_deleter;
        m->flags = readonly ? kFlagReadOnly : 0;
        m->dl_tensor = dl;
        cap = PyCapsule_New(m, kVersionedName, capsule_destructor);
        if (!cap) versioned_deleter(m);
    } else {
        auto* m = new DLManagedTensor{};
        m->dl_tensor = dl;
        m->manager_ctx = ctx;
        m->deleter = legacy_deleter;
        cap = PyCapsule_New(m, kLegacyName, capsule_destructor);
        if (!cap) legacy_deleter(m);
    }
    if (!cap) throw py::error_already_set();
    return py::reinterpret_steal<py::object>(cap);
}

}  // namespace cuda
}  // namespace pylm
