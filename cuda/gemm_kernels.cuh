// Internal to the gemm area: the parameter block shared by the GEMM kernels and their launchers
// (cuda/gemm_mma.cu, cuda/gemm_simt.cu), plus the small PTX wrappers the kernels use.
// The public contract is cuda/gemm.cuh; nothing outside cuda/gemm*.cu and cuda/qmatmul*.cu
// includes this file.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "common.cuh"

namespace pylm {
namespace cuda {
namespace gemm_detail {

// C[M,N] = alpha * op(A)[M,K] · op(B)[K,N] + beta * C. Element (m,k) of op(A) lives at
// A[m*lda + k] (!trans_a) or A[k*lda + m] (trans_a); (k,n) of op(B) at B[k*ldb + n] (!trans_b)
// or B[n*ldb + k] (trans_b). C is float (c_f32) or the 16-bit type of A/B; row stride ldc.
struct GemmParams {
    int M, N, K;
    const void* A;
    int64_t lda;
    const void* B;
    int64_t ldb;
    void* C;
    int64_t ldc;
    float alpha, beta;
    bool c_f32;
    bool c_pair;  // C rows allow 2-element vector stores (ldc even, C aligned to 2 elements)
    bool trans_a, trans_b;
};

// Tensor-core path (mma.sync m16n8k16, cp.async pipeline). Needs A, B 16-byte aligned and
// lda, ldb multiples of 8 elements. T = __half or __nv_bfloat16.
template <typename T>
void launch_mma(const GemmParams& p, cudaStream_t stream);
// Register-tiled FFMA path: any alignment, any strides. T = float, __half or __nv_bfloat16.
template <typename T>
void launch_simt(const GemmParams& p, cudaStream_t stream);
// Decode path (M <= kSkinnyMaxM, !trans_a, trans_b, 16-byte aligned rows, K % (16/sizeof(T)) == 0):
// one warp per two output columns streams B's rows once.
constexpr int kSkinnyMaxM = 16;
template <typename T>
void launch_skinny(const GemmParams& p, cudaStream_t stream);

// ---- device helpers ----
__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T> __device__ __forceinline__ T from_f32(float v);
template <> __device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_f32<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) {
    return __float2bfloat16_rn(v);
}

// Eight 16-bit values packed in a uint4 -> floats.
template <typename T>
__device__ __forceinline__ void unpack8(const uint4& v, float* f) {
    const T* h = reinterpret_cast<const T*>(&v);
#pragma unroll
    for (int i = 0; i < 8; ++i) f[i] = to_f32(h[i]);
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Epilogue for one or two adjacent outputs (m, n), (m, n+1): alpha*acc + beta*C, bounds-checked.
template <typename T>
__device__ __forceinline__ void store_c2(const GemmParams& p, int m, int n, float v0, float v1) {
    if (m >= p.M || n >= p.N) return;
    const bool two = n + 1 < p.N;
    const int64_t off = (int64_t)m * p.ldc + n;
    v0 *= p.alpha;
    v1 *= p.alpha;
    if (p.c_f32) {
        float* c = static_cast<float*>(p.C) + off;
        if (two && p.c_pair) {
            float2 o = make_float2(v0, v1);
            if (p.beta != 0.f) {
                const float2 old = *reinterpret_cast<const float2*>(c);
                o.x += p.beta * old.x;
                o.y += p.beta * old.y;
            }
            *reinterpret_cast<float2*>(c) = o;
        } else {
            c[0] = p.beta != 0.f ? v0 + p.beta * c[0] : v0;
            if (two) c[1] = p.beta != 0.f ? v1 + p.beta * c[1] : v1;
        }
    } else {
        T* c = static_cast<T*>(p.C) + off;
        if (p.beta != 0.f) {
            v0 += p.beta * to_f32(c[0]);
            if (two) v1 += p.beta * to_f32(c[1]);
        }
        if (sizeof(T) == 2 && two && p.c_pair) {
            T pair[2] = {from_f32<T>(v0), from_f32<T>(v1)};
            *reinterpret_cast<uint32_t*>(c) = *reinterpret_cast<const uint32_t*>(pair);
        } else {
            c[0] = from_f32<T>(v0);
            if (two) c[1] = from_f32<T>(v1);
        }
    }
}

}  // namespace gemm_detail
}  // namespace cuda
}  // namespace pylm
