// Device tensors handed in from Python (owner: cuda/interop.cpp).
//
// dev_tensor() accepts anything exposing __cuda_array_interface__ (torch, cupy, numba,
// pylm.cuda.Array) or, failing that, DLPack (__dlpack__ + __dlpack_device__ reporting a CUDA
// device: jax, torch bfloat16 tensors, whose __cuda_array_interface__ raises). Anything else —
// a host numpy array or a CPU torch tensor included — raises ValueError naming `name`: no silent
// copies. Bindings validate shapes/dtypes with the helpers below, then open a DeviceScope (which
// raises RuntimeError when no usable GPU exists) and pass raw pointers to the launchers.
//
// Streams: `stream` is the consumer's cudaStream_t as an integer (0 = legacy default stream), or
// kNoSync. DLPack producers are asked to make their data ready on it (the protocol's `stream`
// argument); a __cuda_array_interface__ v3 "stream" is recorded in producer_stream and the
// DeviceScope makes the consumer stream wait on it (an event) when the two differ.
#pragma once
#include <pybind11/pybind11.h>

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "common.cuh"

namespace pylm {
namespace cuda {

constexpr int64_t kNoSync = -1;

struct DevTensor {
    void* ptr = nullptr;
    DType dtype = DType::F32;
    std::vector<int64_t> shape;
    std::vector<int64_t> strides;  // in elements
    bool readonly = false;
    int device = -1;                // known from DLPack; -1: ask the driver (DeviceScope)
    int64_t producer_stream = kNoSync;  // CAI v3 "stream" (1 = legacy, 2 = per-thread default)
    std::shared_ptr<void> keep;     // keeps a DLPack capsule alive (released with the GIL taken)
    int64_t numel() const;
    bool contiguous() const;
    std::string shape_str() const;
};

DevTensor dev_tensor(pybind11::handle obj, const char* name, int64_t stream = kNoSync);
// Throws ValueError "<name>: expected <dtypes>, got <dtype>" / "... expected ndim ..." etc.
void expect_dtype(const DevTensor& t, const char* name, std::initializer_list<DType> allowed);
void expect_ndim(const DevTensor& t, const char* name, int ndim);
void expect_contiguous(const DevTensor& t, const char* name);
// Stream handle as an integer (0 = legacy default stream).
inline cudaStream_t as_stream(uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }
// Raises RuntimeError unless a usable device exists; selects `device`.
void require_device(int device);
int device_count();

// For a binding's launch: requires a usable device (RuntimeError), finds the device the tensors
// live on (ValueError when they disagree or a pointer is not device memory), makes it current
// for the scope (restoring the caller's device after), and orders `stream` after the tensors'
// CAI producer streams. Tensors with no elements are ignored.
class DeviceScope {
  public:
    DeviceScope(std::initializer_list<const DevTensor*> tensors,
                std::initializer_list<const char*> names, int64_t stream);
    ~DeviceScope();
    DeviceScope(const DeviceScope&) = delete;
    DeviceScope& operator=(const DeviceScope&) = delete;
    int device() const { return device_; }

  private:
    int device_ = 0;
    int prev_ = -1;
};

// Makes `consumer` wait for the work queued so far on `producer` (no-op when they are the same
// stream). Both are integers in the CAI v3 convention: 1 = legacy default, 2 = per-thread
// default, else a cudaStream_t; consumer 0 also means the legacy default stream.
void stream_wait(int64_t consumer, int64_t producer);

}  // namespace cuda
}  // namespace pylm
