// CUDA-core GEMM kernels (FFMA, fp32 accumulate):
//  - simt: 64x64 CTA tile, BK=16, 256 threads with 4x4 outputs each. The fp32 GEMM, and the
//    fallback for f16/bf16 operands the tensor-core path cannot take (unaligned rows/pointers).
//    Any strides, any transposes (a run-time branch per load), bounds-checked loads.
//  - skinny: decode shapes (M <= 16) with B in the linear-layer layout [N, K] (trans_b): one warp
//    per two output columns streams two rows of B with 16-byte loads; the M rows of A are read
//    with 16-byte loads too and stay in L1/L2. Bandwidth-bound, like the GEMV it is.
#include <stdexcept>

#include "gemm_kernels.cuh"

namespace pylm {
namespace cuda {
namespace gemm_detail {

namespace {

constexpr int S_BM = 64, S_BN = 64, S_BK = 16, S_THREADS = 256;

template <typename T>
__global__ void __launch_bounds__(S_THREADS) simt_gemm_kernel(const GemmParams p) {
    __shared__ float As[S_BK][S_BM + 4];  // As[k][m]
    __shared__ float Bs[S_BK][S_BN + 4];  // Bs[k][n]
    const T* A = static_cast<const T*>(p.A);
    const T* B = static_cast<const T*>(p.B);
    const int m0 = blockIdx.y * S_BM, n0 = blockIdx.x * S_BN;
    const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
    float acc[4][4] = {};

    for (int k0 = 0; k0 < p.K; k0 += S_BK) {
#pragma unroll
        for (int it = 0; it < (S_BM * S_BK) / S_THREADS; ++it) {
            const int e = tid + it * S_THREADS;
            // Walk the operand's contiguous dimension with consecutive threads (coalesced).
            int m, k;
            if (p.trans_a) { m = e % S_BM; k = e / S_BM; }  // A is [K, M]
            else           { k = e % S_BK; m = e / S_BK; }  // A is [M, K]
            const int gm = m0 + m, gk = k0 + k;
            float v = 0.f;
            if (gm < p.M && gk < p.K)
                v = to_f32(p.trans_a ? A[(int64_t)gk * p.lda + gm] : A[(int64_t)gm * p.lda + gk]);
            As[k][m] = v;
        }
#pragma unroll
        for (int it = 0; it < (S_BN * S_BK) / S_THREADS; ++it) {
            const int e = tid + it * S_THREADS;
            int n, k;
            if (p.trans_b) { k = e % S_BK; n = e / S_BK; }  // B is [N, K]
            else           { n = e % S_BN; k = e / S_BN; }  // B is [K, N]
            const int gn = n0 + n, gk = k0 + k;
            float v = 0.f;
            if (gn < p.N && gk < p.K)
                v = to_f32(p.trans_b ? B[(int64_t)gn * p.ldb + gk] : B[(int64_t)gk * p.ldb + gn]);
            Bs[k][n] = v;
        }
        __syncthreads();
#pragma unroll
        for (int k = 0; k < S_BK; ++k) {
            float a[4], b[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) a[i] = As[k][ty + 16 * i];
#pragma unroll
            for (int j = 0; j < 4; ++j) b[j] = Bs[k][tx + 16 * j];
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }
        __syncthreads();
    }
    // Outputs (ty + 16i, tx + 16j): consecutive lanes write consecutive columns.
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            GemmParams q = p;
            q.c_pair = false;
            store_c2<T>(q, m0 + ty + 16 * i, n0 + tx + 16 * j, acc[i][j], 0.f);
        }
}

// 16-byte vector of T -> VEC floats.
template <typename T>
__device__ __forceinline__ void unpack16(const uint4& v, float* f) {
    if constexpr (sizeof(T) == 4) {
        f[0] = __uint_as_float(v.x);
        f[1] = __uint_as_float(v.y);
        f[2] = __uint_as_float(v.z);
        f[3] = __uint_as_float(v.w);
    } else {
        unpack8<T>(v, f);
    }
}

constexpr int SK_WARPS = 8, SK_ROWS = 2;  // output columns per warp

template <typename T>
__global__ void __launch_bounds__(SK_WARPS * 32) skinny_gemm_kernel(const GemmParams p) {
    constexpr int VEC = 16 / sizeof(T);
    constexpr int MM = kSkinnyMaxM;
    const T* A = static_cast<const T*>(p.A);
    const T* B = static_cast<const T*>(p.B);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int n0 = (blockIdx.x * SK_WARPS + warp) * SK_ROWS;
    if (n0 >= p.N) return;  // no barriers below: whole warps may leave
    const T* brow[SK_ROWS];
    bool bval[SK_ROWS];
#pragma unroll
    for (int r = 0; r < SK_ROWS; ++r) {
        bval[r] = n0 + r < p.N;
        brow[r] = B + (int64_t)(bval[r] ? n0 + r : n0) * p.ldb;
    }
    float acc[SK_ROWS][MM];
#pragma unroll
    for (int r = 0; r < SK_ROWS; ++r)
#pragma unroll
        for (int m = 0; m < MM; ++m) acc[r][m] = 0.f;

    constexpr int STEP = 32 * VEC;
    for (int kb = lane * VEC; kb < p.K; kb += 2 * STEP) {
        // Two k-chunks of both rows in flight before any math.
        uint4 w[2][SK_ROWS];
#pragma unroll
        for (int u = 0; u < 2; ++u)
#pragma unroll
            for (int r = 0; r < SK_ROWS; ++r) {
                const int k = kb + u * STEP;
                w[u][r] = (bval[r] && k < p.K) ? __ldg(reinterpret_cast<const uint4*>(brow[r] + k))
                                               : make_uint4(0, 0, 0, 0);
            }
#pragma unroll
        for (int u = 0; u < 2; ++u) {
            const int k = kb + u * STEP;
            if (k >= p.K) break;
            float wf[SK_ROWS][VEC];
#pragma unroll
            for (int r = 0; r < SK_ROWS; ++r) unpack16<T>(w[u][r], wf[r]);
#pragma unroll
            for (int m = 0; m < MM; ++m) {
                if (m < p.M) {
                    float af[VEC];
                    unpack16<T>(__ldg(reinterpret_cast<const uint4*>(A + (int64_t)m * p.lda + k)), af);
#pragma unroll
                    for (int r = 0; r < SK_ROWS; ++r)
#pragma unroll
                        for (int e = 0; e < VEC; ++e) acc[r][m] = fmaf(wf[r][e], af[e], acc[r][m]);
                }
            }
        }
    }
#pragma unroll
    for (int m = 0; m < MM; ++m) {
        if (m < p.M) {
#pragma unroll
            for (int r = 0; r < SK_ROWS; ++r) acc[r][m] = warp_sum(acc[r][m]);
            if (lane == 0) {
                GemmParams q = p;
                q.c_pair = false;
                store_c2<T>(q, m, n0, acc[0][m], SK_ROWS > 1 ? acc[1][m] : 0.f);
            }
        }
    }
}

}  // namespace

template <typename T>
void launch_simt(const GemmParams& p, cudaStream_t stream) {
    const dim3 grid(ceil_div(p.N, S_BN), ceil_div(p.M, S_BM));
    if (grid.y > 65535) throw std::invalid_argument("gemm: M too large for the fp32 path");
    simt_gemm_kernel<T><<<grid, S_THREADS, 0, stream>>>(p);
    PYLM_CUDA_CHECK_LAUNCH("gemm (simt)");
}

template <typename T>
void launch_skinny(const GemmParams& p, cudaStream_t stream) {
    const int cols_per_cta = SK_WARPS * SK_ROWS;
    skinny_gemm_kernel<T><<<ceil_div(p.N, cols_per_cta), SK_WARPS * 32, 0, stream>>>(p);
    PYLM_CUDA_CHECK_LAUNCH("gemm (skinny)");
}

template void launch_simt<float>(const GemmParams&, cudaStream_t);
template void launch_simt<__half>(const GemmParams&, cudaStream_t);
template void launch_simt<__nv_bfloat16>(const GemmParams&, cudaStream_t);
template void launch_skinny<float>(const GemmParams&, cudaStream_t);
template void launch_skinny<__half>(const GemmParams&, cudaStream_t);
template void launch_skinny<__nv_bfloat16>(const GemmParams&, cudaStream_t);

}  // namespace gemm_detail
}  // namespace cuda
}  // namespace pylm
