// The DLPack ABI (https://github.com/dmlc/dlpack, include/dlpack/dlpack.h), only the structs
// pylm reads and writes: DLPack 0.8 (`DLManagedTensor`, capsule "dltensor") and 1.x
// (`DLManagedTensorVersioned`, capsule "dltensor_versioned"). Field order and types are the ABI:
// do not reorder. The sizes below are asserted for the x86-64 / aarch64 LP64 ABI.
#pragma once
#include <cstddef>
#include <cstdint>

namespace pylm {
namespace dlpack {

constexpr uint32_t kMajorVersion = 1;  // the versioned layout we understand
constexpr uint32_t kMinorVersion = 0;

enum DeviceType : int32_t { kDLCPU = 1, kDLCUDA = 2, kDLCUDAHost = 3, kDLCUDAManaged = 13 };
enum TypeCode : uint8_t { kDLInt = 0, kDLUInt = 1, kDLFloat = 2, kDLBfloat = 4 };
constexpr uint64_t kFlagReadOnly = 1ull << 0;

struct DLDevice {
    int32_t device_type;
    int32_t device_id;
};

struct DLDataType {
    uint8_t code;
    uint8_t bits;
    uint16_t lanes;
};

struct DLTensor {
    void* data;
    DLDevice device;
    int32_t ndim;
    DLDataType dtype;
    int64_t* shape;
    int64_t* strides;  // in elements; NULL = compact row-major
    uint64_t byte_offset;
};

struct DLManagedTensor {
    DLTensor dl_tensor;
    void* manager_ctx;
    void (*deleter)(DLManagedTensor* self);
};

struct DLPackVersion {
    uint32_t major;
    uint32_t minor;
};

struct DLManagedTensorVersioned {
    DLPackVersion version;
    void* manager_ctx;
    void (*deleter)(DLManagedTensorVersioned* self);
    uint64_t flags;
    DLTensor dl_tensor;
};

static_assert(sizeof(DLDevice) == 8, "DLDevice");
static_assert(sizeof(DLDataType) == 4, "DLDataType");
static_assert(sizeof(DLTensor) == 48, "DLTensor");
static_assert(sizeof(DLManagedTensor) == 64, "DLManagedTensor");
static_assert(offsetof(DLManagedTensorVersioned, dl_tensor) == 32, "DLManagedTensorVersioned");

}  // namespace dlpack
}  // namespace pylm
