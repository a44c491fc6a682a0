// Device-side helpers shared by the train kernels: fp32 <-> storage dtype (float or bf16),
// block reductions, and the DType -> template switch.
#pragma once
#include <cuda_bf16.h>

#include <stdexcept>
#include <string>

#include "common.cuh"

namespace pylm {
namespace cuda {
namespace train {

__device__ __forceinline__ float ld_f(const float* p) { return *p; }
__device__ __forceinline__ float ld_f(const __nv_bfloat16* p) { return __bfloat162float(*p); }
__device__ __forceinline__ void st_f(float* p, float x) { *p = x; }
__device__ __forceinline__ void st_f(__nv_bfloat16* p, float x) { *p = __float2bfloat16(x); }

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}
__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}

// Sum over the block (blockDim.x a multiple of 32, <= 1024); every thread gets the result.
// `sh` holds 32 floats; the leading __syncthreads makes back-to-back calls safe.
__device__ __forceinline__ float block_sum(float x, float* sh) {
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    x = warp_sum(x);
    __syncthreads();
    if (lane == 0) sh[wid] = x;
    __syncthreads();
    x = lane < nw ? sh[lane] : 0.f;
    return warp_sum(x);
}
__device__ __forceinline__ float block_max(float x, float* sh) {
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    x = warp_max(x);
    __syncthreads();
    if (lane == 0) sh[wid] = x;
    __syncthreads();
    x = lane < nw ? sh[lane] : -INFINITY;
    return warp_max(x);
}

inline void expect_act_dtype(DType dt, const char* op) {
    if (dt != DType::F32 && dt != DType::BF16)
        throw std::invalid_argument(std::string(op) + ": dtype must be float32 or bfloat16, got " +
                                    dtype_name(dt));
}

}  // namespace train
}  // namespace cuda
}  // namespace pylm

// Runs `body` with `T` bound to float or __nv_bfloat16 according to `dt`.
#define PYLM_TRAIN_DISPATCH(dt, op, ...)                                  \
    do {                                                                  \
        ::pylm::cuda::train::expect_act_dtype(dt, op);                    \
        if ((dt) == ::pylm::cuda::DType::F32) {                           \
            using T = float;                                              \
            __VA_ARGS__;                                                  \
        } else {                                                          \
            using T = __nv_bfloat16;                                      \
            __VA_ARGS__;                                                  \
        }                                                                 \
    } while (0)
