// Shared CUDA helpers: error checks that throw (never abort), dtypes, small launch helpers.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace pylm {
namespace cuda {

inline void check(cudaError_t err, const char* what) {
    if (err != cudaSuccess)
        throw std::runtime_error(std::string("CUDA error in ") + what + ": " +
                                 cudaGetErrorString(err));
}

#define PYLM_CUDA_CHECK(expr) ::pylm::cuda::check((expr), #expr)
// After a kernel launch: surfaces launch-configuration errors as RuntimeError.
#define PYLM_CUDA_CHECK_LAUNCH(name) ::pylm::cuda::check(cudaGetLastError(), name)

// Element types of device tensors. Quantized GGUF weights are passed as raw bytes plus a ggml
// type id (csrc/quant/blocks.h QType), never as a DType.
enum class DType : int { F32 = 0, F16 = 1, BF16 = 2, I32 = 3, U8 = 4 };

inline const char* dtype_name(DType t) {
    switch (t) {
        case DType::F32: return "float32";
        case DType::F16: return "float16";
        case DType::BF16: return "bfloat16";
        case DType::I32: return "int32";
        case DType::U8: return "uint8";
    }
    return "?";
}

inline int dtype_size(DType t) {
    switch (t) {
        case DType::F32: case DType::I32: return 4;
        case DType::F16: case DType::BF16: return 2;
        case DType::U8: return 1;
    }
    return 0;
}

template <typename T>
constexpr T ceil_div(T a, T b) { return (a + b - 1) / b; }

}  // namespace cuda
}  // namespace pylm
