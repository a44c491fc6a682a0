// Shared CUDA helpers: error checks that throw (never abort), fp16 bits -> float.
#pragma once
#include <cuda_runtime.h>

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

}  // namespace cuda
}  // namespace pylm
