// Quantized matmul kernels on GGUF weight bytes (decoders in cuda/qmatmul_decode.cuh):
//  - qgemv: Y[M,N] (+)= X[M,K] · W[N,K]^T for M <= kGemvMaxM (decode). One warp per weight row;
//    lane i decodes units i, i+32, ... of the row straight from global memory (consecutive lanes,
//    consecutive blocks: coalesced), dots them with the M rows of X (16-byte loads, L1-resident)
//    and the warp reduces. fp32 throughout. W is read exactly once.
//  - dequant16: W -> f16/bf16 [N,K] scratch, one thread per unit, 16-byte stores; the prefill
//    path then runs the tensor-core GEMM on it (cuda/qmatmul.cu).
//  - convert: elementwise dtype conversion of X for that GEMM.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <stdexcept>

#include "gemm_kernels.cuh"
#include "qmatmul_decode.cuh"
#include "qmatmul_kernels.cuh"

namespace pylm {
namespace cuda {
namespace qmm_detail {

namespace {

using gemm_detail::from_f32;
using gemm_detail::to_f32;
using gemm_detail::unpack8;
using gemm_detail::warp_sum;

constexpr int GEMV_WARPS = 8;

// x[0..7] = X[off .. off+8) as floats; off is a multiple of 8 and X is 16-byte aligned.
__device__ __forceinline__ void load_x8(const void* X, DType dt, int64_t off, float* x) {
    if (dt == DType::F32) {
        const float4* p = reinterpret_cast<const float4*>(static_cast<const float*>(X) + off);
        const float4 a = __ldg(p), b = __ldg(p + 1);
        x[0] = a.x; x[1] = a.y; x[2] = a.z; x[3] = a.w;
        x[4] = b.x; x[5] = b.y; x[6] = b.z; x[7] = b.w;
    } else {
        const uint4 v = __ldg(reinterpret_cast<const uint4*>(static_cast<const uint16_t*>(X) + off));
        if (dt == DType::F16) unpack8<__half>(v, x);
        else                  unpack8<__nv_bfloat16>(v, x);
    }
}

template <int QT>
__global__ void __launch_bounds__(GEMV_WARPS * 32)
    qgemv_kernel(const uint8_t* __restrict__ W, int64_t row_bytes, int N, int K, DType xdt,
                 const void* __restrict__ X, int M, float* __restrict__ Y, bool accumulate) {
    using F = qdec::Fmt<QT>;
    constexpr int U = F::UNIT;
    const int lane = threadIdx.x & 31;
    const int n = blockIdx.x * GEMV_WARPS + (threadIdx.x >> 5);
    if (n >= N) return;  // no barriers: a whole warp leaves
    const uint8_t* row = W + (int64_t)n * row_bytes;
    float acc[kGemvMaxM];
#pragma unroll
    for (int m = 0; m < kGemvMaxM; ++m) acc[m] = 0.f;

    const int units = K / U;
    for (int u = lane; u < units; u += 32) {
        float w[U];
        F::decode(row, u, w);
        const int64_t k0 = (int64_t)u * U;
#pragma unroll
        for (int m = 0; m < kGemvMaxM; ++m) {
            if (m < M) {
#pragma unroll
                for (int c = 0; c < U / 8; ++c) {
                    float x[8];
                    load_x8(X, xdt, (int64_t)m * K + k0 + 8 * c, x);
#pragma unroll
                    for (int e = 0; e < 8; ++e) acc[m] = fmaf(w[8 * c + e], x[e], acc[m]);
                }
            }
        }
    }
#pragma unroll
    for (int m = 0; m < kGemvMaxM; ++m) {
        if (m < M) {
            const float v = warp_sum(acc[m]);
            if (lane == 0) {
                float* y = Y + (int64_t)m * N + n;
                *y = accumulate ? *y + v : v;
            }
        }
    }
}

template <int QT, typename T>
__global__ void dequant16_kernel(const uint8_t* __restrict__ W, int64_t row_bytes, int N, int K,
                                 T* __restrict__ out) {
    using F = qdec::Fmt<QT>;
    constexpr int U = F::UNIT;
    const int per_row = K / U;
    const int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (int64_t)N * per_row) return;
    const int64_t n = idx / per_row;
    const int u = (int)(idx % per_row);
    float w[U];
    F::decode(W + n * row_bytes, u, w);
    uint4* dst = reinterpret_cast<uint4*>(out + n * K + (int64_t)u * U);
#pragma unroll
    for (int c = 0; c < U / 8; ++c) {
        T h[8];
#pragma unroll
        for (int e = 0; e < 8; ++e) h[e] = from_f32<T>(w[8 * c + e]);
        dst[c] = *reinterpret_cast<const uint4*>(h);
    }
}

template <typename S, typename D>
__global__ void convert_kernel(const S* __restrict__ src, D* __restrict__ dst, int64_t n) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = from_f32<D>(to_f32(src[i]));
}

template <typename S>
void convert_from(const S* src, DType dst_dt, void* dst, int64_t n, cudaStream_t stream) {
    const int blocks = (int)(n / 256 + 1 < 65536 ? n / 256 + 1 : 65536);
    switch (dst_dt) {
        case DType::F32: convert_kernel<<<blocks, 256, 0, stream>>>(src, (float*)dst, n); break;
        case DType::F16: convert_kernel<<<blocks, 256, 0, stream>>>(src, (__half*)dst, n); break;
        case DType::BF16:
            convert_kernel<<<blocks, 256, 0, stream>>>(src, (__nv_bfloat16*)dst, n);
            break;
        default: throw std::invalid_argument("qmatmul: bad conversion target");
    }
    PYLM_CUDA_CHECK_LAUNCH("qmatmul (convert)");
}

}  // namespace

template <int QT>
void launch_qgemv(const uint8_t* W, int64_t row_bytes, int N, int K, DType xdt, const void* X,
                  int M, float* Y, bool accumulate, cudaStream_t stream) {
    qgemv_kernel<QT><<<ceil_div(N, GEMV_WARPS), GEMV_WARPS * 32, 0, stream>>>(
        W, row_bytes, N, K, xdt, X, M, Y, accumulate);
    PYLM_CUDA_CHECK_LAUNCH("qmatmul (gemv)");
}

template <int QT>
void launch_dequant16(const uint8_t* W, int64_t row_bytes, int N, int K, DType out_dt, void* out,
                      cudaStream_t stream) {
    const int64_t units = (int64_t)N * (K / qdec::Fmt<QT>::UNIT);
    const int64_t blocks = ceil_div<int64_t>(units, 256);
    if (out_dt == DType::BF16)
        dequant16_kernel<QT><<<(unsigned)blocks, 256, 0, stream>>>(W, row_bytes, N, K,
                                                                   (__nv_bfloat16*)out);
    else
        dequant16_kernel<QT><<<(unsigned)blocks, 256, 0, stream>>>(W, row_bytes, N, K, (__half*)out);
    PYLM_CUDA_CHECK_LAUNCH("qmatmul (dequant16)");
}

void launch_convert(DType src_dt, const void* src, DType dst_dt, void* dst, int64_t n,
                    cudaStream_t stream) {
    if (n <= 0) return;
    switch (src_dt) {
        case DType::F32: return convert_from((const float*)src, dst_dt, dst, n, stream);
        case DType::F16: return convert_from((const __half*)src, dst_dt, dst, n, stream);
        case DType::BF16: return convert_from((const __nv_bfloat16*)src, dst_dt, dst, n, stream);
        default: throw std::invalid_argument("qmatmul: bad conversion source");
    }
}

#define PYLM_QMM_INSTANTIATE(QT)                                                                 \
    template void launch_qgemv<(int)QType::QT>(const uint8_t*, int64_t, int, int, DType,         \
                                               const void*, int, float*, bool, cudaStream_t);   \
    template void launch_dequant16<(int)QType::QT>(const uint8_t*, int64_t, int, int, DType,     \
                                                   void*, cudaStream_t);
PYLM_QMM_INSTANTIATE(Q4_0)
PYLM_QMM_INSTANTIATE(Q4_1)
PYLM_QMM_INSTANTIATE(Q5_0)
PYLM_QMM_INSTANTIATE(Q8_0)
PYLM_QMM_INSTANTIATE(Q4_K)
PYLM_QMM_INSTANTIATE(Q5_K)
PYLM_QMM_INSTANTIATE(Q6_K)
#undef PYLM_QMM_INSTANTIATE

}  // namespace qmm_detail
}  // namespace cuda
}  // namespace pylm
