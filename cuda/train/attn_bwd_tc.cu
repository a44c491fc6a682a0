// Flash attention backward, bf16 tensor-core main kernel (WMMA 16x16x16, fp32 accumulators),
// the fast path of attention_bwd (attn_bwd.cu) for bf16 activations. Same algorithm as the
// SIMT kernel there: one block per (key tile of 64 keys, sequence, kv head); 4 warps; warp w
// owns query rows 16w.. of S / dP / dQ and key rows 16w.. of dK / dV.
//
// Per query tile (64 rows) of each query head of the group:
//   S = Q K^T, dP = dO V^T                      (bf16 smem operands -> f32 smem, own rows)
//   P = exp(scale S - lse) (causal mask), dS = scale P (dP - delta)   -> bf16 smem
//   dV += P^T dO, dK += dS^T Q                  (accumulators stay in registers)
//   dQ = dS K  -> f32 smem -> fp32 atomics into the dq accumulator
// Shared memory (bytes, D = 64 / 128): K, V, Q, dO bf16 [64][D+8]; S, dP f32 [64][68] (also
// the f32 staging of dQ / dK / dV); P, dS bf16 [64][72]; lse, delta [64]. Row paddings keep
// WMMA pointers 32-byte aligned and spread the banks.
#include <mma.h>

#include "train/attn_bwd_impl.cuh"
#include "train/storage.cuh"

namespace pylm {
namespace cuda {
namespace train {

namespace {

using bf16 = __nv_bfloat16;

template <int D>
struct TcCfg {
    static constexpr int Br = 64, Bc = 64, NT = 128;
    static constexpr int LDK = D + 8;   // bf16 K / V / Q / dO rows
    static constexpr int LDS = Bc + 4;  // f32 S / dP rows
    static constexpr int LDP = Bc + 8;  // bf16 P / dS rows
    static constexpr int LDQ = D + 4;   // f32 staging rows (dQ, dK, dV)
    static constexpr size_t kK = 0;
    static constexpr size_t kV = kK + size_t(Bc) * LDK * 2;
    static constexpr size_t kQ = kV + size_t(Bc) * LDK * 2;
    static constexpr size_t kdO = kQ + size_t(Br) * LDK * 2;
    static constexpr size_t kS = kdO + size_t(Br) * LDK * 2;
    static constexpr size_t kdP = kS + size_t(Br) * LDS * 4;
    static constexpr size_t kP = kdP + size_t(Br) * LDS * 4;
    static constexpr size_t kdS = kP + size_t(Br) * LDP * 2;
    static constexpr size_t kL = kdS + size_t(Br) * LDP * 2;
    static constexpr size_t bytes = kL + 2 * Br * 4;
    static_assert(size_t(Br) * LDQ * 4 <= 2 * size_t(Br) * LDS * 4, "staging fits in S + dP");
    static_assert(kV % 128 == 0 && kS % 128 == 0 && kP % 128 == 0 && kL % 128 == 0, "alignment");
};

// rows [r0, r0 + R) of a [*, ld] bf16 matrix at column col, D wide, into smem [R][LDK];
// rows at or past T are zero.
template <int D, int R>
__device__ __forceinline__ void load_tile(bf16* dst, const bf16* src, int64_t row0, int r0, int T,
                                          int64_t ld, int64_t col) {
    constexpr int VPR = D / 8;  // 16-byte vectors per row
    for (int e = threadIdx.x; e < R * VPR; e += TcCfg<D>::NT) {
        const int r = e / VPR, c = (e % VPR) * 8;
        uint4 x = make_uint4(0, 0, 0, 0);
        if (r0 + r < T) x = *reinterpret_cast<const uint4*>(src + (row0 + r0 + r) * ld + col + c);
        *reinterpret_cast<uint4*>(dst + r * TcCfg<D>::LDK + c) = x;
    }
}

// staging [64][LDQ] f32 -> rows j0.. of dst [*, ld] (bf16) at kv head hk; rows >= T dropped
template <int D>
__device__ __forceinline__ void store_rows(bf16* dst, const float* stage, int64_t row0, int j0,
                                           int T, int64_t ld, int hk) {
    for (int e = threadIdx.x; e < TcCfg<D>::Bc * D; e += TcCfg<D>::NT) {
        const int j = e / D, c = e % D;
        if (j0 + j < T)
            dst[(row0 + j0 + j) * ld + static_cast<int64_t>(hk) * D + c] =
                __float2bfloat16(stage[j * TcCfg<D>::LDQ + c]);
    }
}

template <int D>
__global__ void __launch_bounds__(128)
    attn_bwd_tc_kernel(const bf16* __restrict__ q, const bf16* __restrict__ k,
                       const bf16* __restrict__ v, const bf16* __restrict__ dout,
                       const float* __restrict__ lse, const float* __restrict__ delta,
                       float* __restrict__ dq_acc, bf16* __restrict__ dk, bf16* __restrict__ dv,
                       int T, int H, int Hkv, int64_t ld, int64_t ldo, float scale) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    using namespace nvcuda;
    using Cf = TcCfg<D>;
    constexpr int Br = Cf::Br, Bc = Cf::Bc, NF = D / 16;
    extern __shared__ __align__(128) unsigned char smem[];
    bf16* Ks = reinterpret_cast<bf16*>(smem + Cf::kK);
    bf16* Vs = reinterpret_cast<bf16*>(smem + Cf::kV);
    bf16* Qs = reinterpret_cast<bf16*>(smem + Cf::kQ);
    bf16* dOs = reinterpret_cast<bf16*>(smem + Cf::kdO);
    float* Sf = reinterpret_cast<float*>(smem + Cf::kS);
    float* dPf = reinterpret_cast<float*>(smem + Cf::kdP);
    float* stage = Sf;  // [64][LDQ] f32, aliases S and dP once they are consumed
    bf16* Pb = reinterpret_cast<bf16*>(smem + Cf::kP);
    bf16* dSb = reinterpret_cast<bf16*>(smem + Cf::kdS);
    float* lse_s = reinterpret_cast<float*>(smem + Cf::kL);
    float* del_s = lse_s + Br;

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int j0 = blockIdx.x * Bc;
    const int b = blockIdx.y / Hkv, hk = blockIdx.y % Hkv, G = H / Hkv;
    const int64_t row0 = static_cast<int64_t>(b) * T;

    load_tile<D, Bc>(Ks, k, row0, j0, T, ld, static_cast<int64_t>(hk) * D);
    load_tile<D, Bc>(Vs, v, row0, j0, T, ld, static_cast<int64_t>(hk) * D);

    wmma::fragment<wmma::accumulator, 16, 16, 16, float> dKf[NF], dVf[NF];
#pragma unroll
    for (int n = 0; n < NF; ++n) {
        wmma::fill_fragment(dKf[n], 0.f);
        wmma::fill_fragment(dVf[n], 0.f);
    }

    for (int g = 0; g < G; ++g) {
        const int h = hk * G + g;
        const float* lse_h = lse + (static_cast<int64_t>(b) * H + h) * T;
        const float* del_h = delta + (static_cast<int64_t>(b) * H + h) * T;
        for (int i0 = j0; i0 < T; i0 += Br) {  // causal: query tiles at or after the keys
            __syncthreads();  // the previous tile's readers are done
            load_tile<D, Br>(Qs, q, row0, i0, T, ld, static_cast<int64_t>(h) * D);
            load_tile<D, Br>(dOs, dout, row0, i0, T, ldo, static_cast<int64_t>(h) * D);
            if (tid < Br) {
                const bool ok = i0 + tid < T;
                lse_s[tid] = ok ? lse_h[i0 + tid] : 0.f;
                del_s[tid] = ok ? del_h[i0 + tid] : 0.f;
            }
            __syncthreads();
            {  // S = Q K^T, dP = dO V^T for rows 16w..16w+15
                wmma::fragment<wmma::accumulator, 16, 16, 16, float> s[Bc / 16], dp[Bc / 16];
#pragma unroll
                for (int n = 0; n < Bc / 16; ++n) {
                    wmma::fill_fragment(s[n], 0.f);
                    wmma::fill_fragment(dp[n], 0.f);
                }
#pragma unroll
                for (int kk = 0; kk < D / 16; ++kk) {
                    wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> qa, da;
                    wmma::load_matrix_sync(qa, Qs + 16 * warp * Cf::LDK + 16 * kk, Cf::LDK);
                    wmma::load_matrix_sync(da, dOs + 16 * warp * Cf::LDK + 16 * kk, Cf::LDK);
#pragma unroll
                    for (int n = 0; n < Bc / 16; ++n) {
                        wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> kb, vb;
                        wmma::load_matrix_sync(kb, Ks + 16 * n * Cf::LDK + 16 * kk, Cf::LDK);
                        wmma::mma_sync(s[n], qa, kb, s[n]);
                        wmma::load_matrix_sync(vb, Vs + 16 * n * Cf::LDK + 16 * kk, Cf::LDK);
                        wmma::mma_sync(dp[n], da, vb, dp[n]);
                    }
                }
#pragma unroll
                for (int n = 0; n < Bc / 16; ++n) {
                    wmma::store_matrix_sync(Sf + 16 * warp * Cf::LDS + 16 * n, s[n], Cf::LDS,
                                            wmma::mem_row_major);
                    wmma::store_matrix_sync(dPf + 16 * warp * Cf::LDS + 16 * n, dp[n], Cf::LDS,
                                            wmma::mem_row_major);
                }
            }
            __syncwarp();
            for (int e = lane; e < 16 * Bc; e += 32) {  // this warp's rows only
                const int r = 16 * warp + e / Bc, c = e % Bc;
                const int qi = i0 + r, kj = j0 + c;
                const bool ok = qi < T && kj <= qi;
                const float p = ok ? expf(scale * Sf[r * Cf::LDS + c] - lse_s[r]) : 0.f;
                const float ds = p * (dPf[r * Cf::LDS + c] - del_s[r]) * scale;
                Pb[r * Cf::LDP + c] = __float2bfloat16(p);
                dSb[r * Cf::LDP + c] = __float2bfloat16(ds);
            }
            __syncthreads();  // P / dS rows of every warp are needed below
            // dV[16w..] += P^T dO, dK[16w..] += dS^T Q
#pragma unroll
            for (int kk = 0; kk < Br / 16; ++kk) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::col_major> pa, sa;
                wmma::load_matrix_sync(pa, Pb + 16 * kk * Cf::LDP + 16 * warp, Cf::LDP);
                wmma::load_matrix_sync(sa, dSb + 16 * kk * Cf::LDP + 16 * warp, Cf::LDP);
#pragma unroll
                for (int n = 0; n < NF; ++n) {
                    wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> ob, qb;
                    wmma::load_matrix_sync(ob, dOs + 16 * kk * Cf::LDK + 16 * n, Cf::LDK);
                    wmma::mma_sync(dVf[n], pa, ob, dVf[n]);
                    wmma::load_matrix_sync(qb, Qs + 16 * kk * Cf::LDK + 16 * n, Cf::LDK);
                    wmma::mma_sync(dKf[n], sa, qb, dKf[n]);
                }
            }
            // dQ[16w..] = dS K -> staging (S / dP are dead: every warp passed the barrier)
#pragma unroll
            for (int n = 0; n < NF; ++n) {
                wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
                wmma::fill_fragment(acc, 0.f);
#pragma unroll
                for (int kk = 0; kk < Bc / 16; ++kk) {
                    wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> a;
                    wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> bk;
                    wmma::load_matrix_sync(a, dSb + 16 * warp * Cf::LDP + 16 * kk, Cf::LDP);
                    wmma::load_matrix_sync(bk, Ks + 16 * kk * Cf::LDK + 16 * n, Cf::LDK);
                    wmma::mma_sync(acc, a, bk, acc);
                }
                wmma::store_matrix_sync(stage + 16 * warp * Cf::LDQ + 16 * n, acc, Cf::LDQ,
                                        wmma::mem_row_major);
            }
            __syncwarp();
            for (int e = lane; e < 16 * D; e += 32) {
                const int r = 16 * warp + e / D, c = e % D;
                if (i0 + r < T)
                    atomicAdd(dq_acc + (row0 + i0 + r) * (static_cast<int64_t>(H) * D) +
                                  static_cast<int64_t>(h) * D + c,
                              stage[r * Cf::LDQ + c]);
            }
        }
    }
    // dK, dV of this key tile: registers -> staging -> bf16 rows (rows past T dropped).
    // NOTE: two explicit copies: a run-time choice between the fragment arrays would move
    // them to local memory.
    __syncthreads();
#pragma unroll
    for (int n = 0; n < NF; ++n)
        wmma::store_matrix_sync(stage + 16 * warp * Cf::LDQ + 16 * n, dKf[n], Cf::LDQ,
                                wmma::mem_row_major);
    __syncthreads();
    store_rows<D>(dk, stage, row0, j0, T, ld, hk);
    __syncthreads();
#pragma unroll
    for (int n = 0; n < NF; ++n)
        wmma::store_matrix_sync(stage + 16 * warp * Cf::LDQ + 16 * n, dVf[n], Cf::LDQ,
                                wmma::mem_row_major);
    __syncthreads();
    store_rows<D>(dv, stage, row0, j0, T, ld, hk);
#endif
}

template <int D>
bool launch_tc(const AttnBwdParams& p, const float* delta, float* dq_acc, cudaStream_t stream) {
    using Cf = TcCfg<D>;
    int dev = 0, optin = 0;
    PYLM_CUDA_CHECK(cudaGetDevice(&dev));
    PYLM_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    if (static_cast<size_t>(optin) < Cf::bytes) return false;
    auto kern = attn_bwd_tc_kernel<D>;
    PYLM_CUDA_CHECK(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(Cf::bytes)));
    dim3 grid(ceil_div(p.T, Cf::Bc), p.B * p.Hkv);
    kern<<<grid, Cf::NT, Cf::bytes, stream>>>(
        static_cast<const bf16*>(p.q), static_cast<const bf16*>(p.k), static_cast<const bf16*>(p.v),
        static_cast<const bf16*>(p.dout), p.lse, delta, dq_acc, static_cast<bf16*>(p.dk),
        static_cast<bf16*>(p.dv), p.T, p.H, p.Hkv, p.ld, p.ldo, p.scale);
    PYLM_CUDA_CHECK_LAUNCH("train::attention_bwd tc");
    return true;
}

bool aligned16(const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15) == 0; }

}  // namespace

bool attention_bwd_main_tc(const AttnBwdParams& p, const float* delta, float* dq_acc,
                           cudaStream_t stream) {
    if (p.dt != DType::BF16 || p.ld % 8 || p.ldo % 8) return false;
    if (!aligned16(p.q) || !aligned16(p.k) || !aligned16(p.v) || !aligned16(p.dout)) return false;
    if (p.D == 64) return launch_tc<64>(p, delta, dq_acc, stream);
    if (p.D == 128) return launch_tc<128>(p, delta, dq_acc, stream);
    return false;
}

}  // namespace train
}  // namespace cuda
}  // namespace pylm
