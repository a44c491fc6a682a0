// Device tensors handed in from Python (owner: cuda/interop.cpp).
//
// dev_tensor() accepts anything exposing __cuda_array_interface__ (torch, cupy, numba,
// pylm.cuda.Array) and raises ValueError naming `name` otherwise (a host numpy array included:
// no silent copies). Bindings validate shapes/dtypes with the helpers below and pass raw pointers
// to the launchers.
#pragma once
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common.cuh"

namespace pylm {
namespace cuda {

struct DevTensor {
    void* ptr = nullptr;
    DType dtype = DType::F32;
    std::vector<int64_t> shape;
    std::vector<int64_t> strides;  // in elements
    bool readonly = false;
    int64_t numel() const;
    bool contiguous() const;
    std::string shape_str() const;
};

DevTensor dev_tensor(pybind11::handle obj, const char* name);
// Throws ValueError "<name>: expected <dtypes>, got <dtype>" / "... expected ndim ..." etc.
void expect_dtype(const DevTensor& t, const char* name, std::initializer_list<DType> allowed);
void expect_ndim(const DevTensor& t, const char* name, int ndim);
void expect_contiguous(const DevTensor& t, const char* name);
// Stream handle as an integer (0 = legacy default stream).
inline cudaStream_t as_stream(uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }
// Raises RuntimeError unless a usable device exists; selects `device`.
void require_device(int device);
int device_count();

}  // namespace cuda
}  // namespace pylm
