// Helpers shared by the elementwise kernels (elementwise_*.cu): storage types <-> fp32,
// 16-byte vectors, block reductions, and the DType switch. Internal to the CUDA extension.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "common.cuh"

namespace pylm {
namespace cuda {
namespace ew {

__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_f32(float v);
template <>
__device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_f32<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) {
    return __float2bfloat16_rn(v);
}

// N elements of T in one 16-byte access (N = 4 for f32, 8 for f16/bf16).
template <typename T>
struct alignas(16) Vec {
    static constexpr int N = 16 / sizeof(T);
    T v[N];
};

template <typename T>
__device__ __forceinline__ Vec<T> load_vec(const T* p) {
    return *reinterpret_cast<const Vec<T>*>(p);
}
template <typename T>
__device__ __forceinline__ void store_vec(T* p, const Vec<T>& v) {
    *reinterpret_cast<Vec<T>*>(p) = v;
}

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Sum over the block (blockDim.x a multiple of 32, <= 1024); every thread gets the result.
// `scratch` is __shared__ float[32]; the function may be called repeatedly with the same one.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();  // scratch may still be read by a previous call
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < nwarps ? scratch[lane] : 0.f;
    return warp_sum(v);
}

// Threads per row-block: a multiple of 32 covering `work` items, in [32, max_threads].
inline int row_threads(int64_t work, int max_threads) {
    int64_t t = ceil_div<int64_t>(work, 32) * 32;
    if (t < 32) t = 32;
    if (t > max_threads) t = max_threads;
    return static_cast<int>(t);
}

// Runs f.template operator()<T>() with T the storage type of dt (F32/F16/BF16 only).
template <typename F>
void visit_float(DType dt, const char* op, F&& f) {
    switch (dt) {
    case DType::F32: f.template operator()<float>(); return;
    case DType::F16: f.template operator()<__half>(); return;
    case DType::BF16: f.template operator()<__nv_bfloat16>(); return;
    default:
        throw std::invalid_argument(std::string(op) + ": unsupported dtype " + dtype_name(dt) +
                                    " (expected float32, float16 or bfloat16)");
    }
}

// grid.x limit for 1-D launches (we never need more: kernels grid-stride beyond it).
constexpr int64_t kMaxGrid = 0x7fffffff;

}  // namespace ew
}  // namespace cuda
}  // namespace pylm
