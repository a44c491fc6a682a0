// Flash attention forward for F16/BF16 (FlashAttention-2, Dao 2023), mma.sync m16n8k16.
//
// One CTA = 4 warps = one (batch, query head, tile of BM query rows); each warp owns 16*MI rows.
// K/V tiles of BN keys stream through shared memory with cp.async, double buffered; rows are
// padded by 16 bytes so ldmatrix reads are bank-conflict free.
// S = Q K^T stays in registers, the fp32 online softmax runs in the log2 domain (scale folded
// into log2e), P is re-packed to 16-bit in registers as the A operand of O += P V.
// Causal tiles above the diagonal and tiles left of a sliding window are never loaded; only
// tiles that straddle a boundary pay for the per-element mask.
//
// Shapes: q [B, Tq, Hq, D], k/v [B, Tk, Hkv, D], o [B, Tq, Hq, D], lse [B, Hq, Tq] (fp32, opt).
// Requirements (checked by the binding): 16-byte aligned pointers, strides multiples of 8.
#pragma once
#include "attention.cuh"
#include "attention_launch.cuh"
#include "attention_util.cuh"

namespace pylm {
namespace cuda {
namespace attn {

template <int D_, int MI_, int BN_>
struct FlashCfg {
    static constexpr int D = D_, MI = MI_, BN = BN_;
    static constexpr int kWarps = 4, kThreads = 128;
    static constexpr int BM = 16 * MI * kWarps;  // query rows per CTA
    static constexpr int CH = D / 8;             // 16-byte chunks per row
    static constexpr int LD = D + 8;                      // padded row (elements)
    static constexpr int kSmemElems = (BM + 4 * BN) * LD;  // Q + 2 stages of K and V
};

// Per head dim: rows per warp (MI) and keys per tile (BN), chosen so that the accumulators
// fit in registers without spills and shared memory stays <= 96 KB (2 CTAs per SM on Hopper,
// one on sm_89).
template <int D>
struct FlashCfgFor;
template <>
struct FlashCfgFor<64> : FlashCfg<64, 2, 64> {};
template <>
struct FlashCfgFor<128> : FlashCfg<128, 2, 32> {};
template <>
struct FlashCfgFor<256> : FlashCfg<256, 1, 32> {};

// Element offset of 16-byte chunk `chunk` of row `row` in a [rows][D + 8] tile. The 16-byte
// pad per row puts the 8 rows of an ldmatrix in 8 different bank groups, and (unlike an XOR
// swizzle) keeps every fragment address a per-lane base plus a compile-time offset, which
// saves the registers the accumulators need.
template <int D>
__device__ __forceinline__ int swz(int row, int chunk) {
    return row * (D + 8) + chunk * 8;
}

template <typename T, typename Cfg>
__global__ void __launch_bounds__(128) flash_fwd_kernel(const FlashAttnParams p) {
    constexpr int D = Cfg::D, MI = Cfg::MI, BN = Cfg::BN, BM = Cfg::BM, CH = Cfg::CH;
    constexpr int NT = Cfg::kThreads;
    extern __shared__ __align__(128) unsigned char smem_raw[];
    constexpr int LD = Cfg::LD;
    T* sQ = reinterpret_cast<T*>(smem_raw);  // [BM][LD], later the O staging tile
    T* sK = sQ + BM * LD;                    // [2][BN][LD]
    T* sV = sK + 2 * BN * LD;                // [2][BN][LD]

    // Heaviest causal tiles (last query rows) are scheduled first.
    const int m_block = gridDim.x - 1 - blockIdx.x;
    const int h = blockIdx.y, b = blockIdx.z;
    const int hkv = h / (p.Hq / p.Hkv);
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int m0 = m_block * BM;
    const int q_rows = min(BM, p.Tq - m0);

    const T* qg = static_cast<const T*>(p.q) + b * p.q_stride_b + m0 * p.q_stride_t + h * D;
    const T* kg = static_cast<const T*>(p.k) + b * p.k_stride_b + hkv * D;
    const T* vg = static_cast<const T*>(p.v) + b * p.v_stride_b + hkv * D;
    T* og = static_cast<T*>(p.o) + b * p.o_stride_b + m0 * p.o_stride_t + h * D;
    float* lse = p.lse ? p.lse + (static_cast<int64_t>(b) * p.Hq + h) * p.Tq + m0 : nullptr;

    // Keys any row of this tile can see: [n_beg, n_end).
    const int p_min = p.q_offset + m0;
    const int p_max = p.q_offset + m0 + q_rows - 1;
    const int n_end = p.causal ? min(p.Tk, p_max + 1) : p.Tk;
    int n_beg = p.window > 0 ? max(0, p_min - p.window + 1) : 0;
    n_beg = n_beg / BN * BN;
    const int n_tiles = n_end > n_beg ? (n_end - n_beg + BN - 1) / BN : 0;

    if (n_tiles == 0) {  // no visible key: zeros, lse = -inf
        for (int c = tid; c < BM * CH; c += NT) {
            const int r = c / CH, ch = c % CH;
            if (r < q_rows)
                *reinterpret_cast<uint4*>(og + r * p.o_stride_t + ch * 8) = make_uint4(0, 0, 0, 0);
        }
        if (lse)
            for (int r = tid; r < q_rows; r += NT) lse[r] = neg_inf();
        return;
    }

    // Q tile (rows past Tq zero-filled).
    for (int c = tid; c < BM * CH; c += NT) {
        const int r = c / CH, ch = c % CH;
        const bool ok = r < q_rows;
        cp_async_16(smem_u32(sQ + swz<D>(r, ch)), ok ? qg + r * p.q_stride_t + ch * 8 : qg, ok);
    }
    auto load_kv = [&](int tile, int stage) {
        const int n0 = n_beg + tile * BN;
        T* dk = sK + stage * BN * LD;
        T* dv = sV + stage * BN * LD;
        for (int c = tid; c < BN * CH; c += NT) {
            const int r = c / CH, ch = c % CH;
            const bool ok = n0 + r < p.Tk;  // keys past Tk: zeros (P is 0 there, V must not be NaN)
            const int64_t n = ok ? n0 + r : 0;
            cp_async_16(smem_u32(dk + swz<D>(r, ch)), kg + n * p.k_stride_t + ch * 8, ok);
            cp_async_16(smem_u32(dv + swz<D>(r, ch)), vg + n * p.v_stride_t + ch * 8, ok);
        }
    };
    load_kv(0, 0);
    cp_async_commit();

    float o[MI][D / 8][4];
    float m_r[MI][2], l_r[MI][2];
#pragma unroll
    for (int mi = 0; mi < MI; ++mi) {
#pragma unroll
        for (int dn = 0; dn < D / 8; ++dn)
#pragma unroll
            for (int e = 0; e < 4; ++e) o[mi][dn][e] = 0.f;
#pragma unroll
        for (int hh = 0; hh < 2; ++hh) {
            m_r[mi][hh] = neg_inf();
            l_r[mi][hh] = 0.f;
        }
    }
    const float scale_log2 = p.scale * kLog2e;
    const int wrow = warp * 16 * MI;  // first CTA-local row of this warp
    const int g = lane >> 2, t4 = lane & 3;

    for (int it = 0; it < n_tiles; ++it) {
        const int stage = it & 1;
        if (it + 1 < n_tiles) {
            load_kv(it + 1, stage ^ 1);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        const T* kS = sK + stage * BN * LD;
        const T* vS = sV + stage * BN * LD;

        // S[16*MI, BN] = Q K^T for this warp's rows.
        float s[MI][BN / 8][4];
#pragma unroll
        for (int mi = 0; mi < MI; ++mi)
#pragma unroll
            for (int nj = 0; nj < BN / 8; ++nj)
#pragma unroll
                for (int e = 0; e < 4; ++e) s[mi][nj][e] = 0.f;
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) {
            uint32_t a[MI][4];
#pragma unroll
            for (int mi = 0; mi < MI; ++mi) {
                const int r = wrow + mi * 16 + (lane & 7) + ((lane >> 3) & 1) * 8;
                ldsm_x4(a[mi], smem_u32(sQ + swz<D>(r, 2 * kk + (lane >> 4))));
            }
#pragma unroll
            for (int nj = 0; nj < BN / 16; ++nj) {
                uint32_t bk[4];
                const int r = nj * 16 + (lane & 7) + (lane >> 4) * 8;
                ldsm_x4(bk, smem_u32(kS + swz<D>(r, 2 * kk + ((lane >> 3) & 1))));
#pragma unroll
                for (int mi = 0; mi < MI; ++mi) {
                    MmaOp<T>::run(s[mi][2 * nj], a[mi], bk[0], bk[1]);
                    MmaOp<T>::run(s[mi][2 * nj + 1], a[mi], bk[2], bk[3]);
                }
            }
        }

        // Scale (+softcap), mask, online softmax. Element e of s[mi][nj] is row
        // wrow + 16mi + g + 8(e/2), key n0 + 8nj + 2t4 + (e%2).
        const int n0 = n_beg + it * BN;
        const bool need_mask = n0 + BN > p.Tk || (p.causal && n0 + BN - 1 > p_min) ||
                               (p.window > 0 && n0 <= p_max - p.window);
#pragma unroll
        for (int mi = 0; mi < MI; ++mi) {
#pragma unroll
            for (int hh = 0; hh < 2; ++hh) {
                const int pos = p.q_offset + m0 + wrow + mi * 16 + g + hh * 8;
                float mx = neg_inf();
#pragma unroll
                for (int nj = 0; nj < BN / 8; ++nj) {
#pragma unroll
                    for (int e = 0; e < 2; ++e) {
                        float x = s[mi][nj][2 * hh + e];
                        if (p.softcap > 0.f)
                            x = p.softcap * tanhf(x * p.scale / p.softcap) * kLog2e;
                        else
                            x *= scale_log2;
                        if (need_mask) {
                            const int j = n0 + nj * 8 + 2 * t4 + e;
                            const bool ok = j < p.Tk && (!p.causal || j <= pos) &&
                                            (p.window <= 0 || pos - j < p.window);
                            if (!ok) x = neg_inf();
                        }
                        s[mi][nj][2 * hh + e] = x;
                        mx = fmaxf(mx, x);
                    }
                }
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                const float m_new = fmaxf(m_r[mi][hh], mx);
                const float m_use = m_new == neg_inf() ? 0.f : m_new;  // all masked so far
                const float corr = fast_exp2(m_r[mi][hh] - m_use);
                m_r[mi][hh] = m_new;
                float sum = 0.f;
#pragma unroll
                for (int nj = 0; nj < BN / 8; ++nj) {
#pragma unroll
                    for (int e = 0; e < 2; ++e) {
                        const float pe = fast_exp2(s[mi][nj][2 * hh + e] - m_use);
                        s[mi][nj][2 * hh + e] = pe;
                        sum += pe;
                    }
                }
                // l stays a per-thread partial (the quad sums it at the end).
                l_r[mi][hh] = l_r[mi][hh] * corr + sum;
#pragma unroll
                for (int dn = 0; dn < D / 8; ++dn) {
                    o[mi][dn][2 * hh] *= corr;
                    o[mi][dn][2 * hh + 1] *= corr;
                }
            }
        }

        // O += P V, P re-packed to 16 bits as the A operand straight from the S accumulators.
        uint32_t pa[MI][BN / 16][4];
#pragma unroll
        for (int mi = 0; mi < MI; ++mi) {
#pragma unroll
            for (int kk = 0; kk < BN / 16; ++kk) {
                pa[mi][kk][0] = pack2<T>(s[mi][2 * kk][0], s[mi][2 * kk][1]);
                pa[mi][kk][1] = pack2<T>(s[mi][2 * kk][2], s[mi][2 * kk][3]);
                pa[mi][kk][2] = pack2<T>(s[mi][2 * kk + 1][0], s[mi][2 * kk + 1][1]);
                pa[mi][kk][3] = pack2<T>(s[mi][2 * kk + 1][2], s[mi][2 * kk + 1][3]);
            }
        }
#pragma unroll
        for (int dj = 0; dj < D / 16; ++dj) {
#pragma unroll
            for (int kk = 0; kk < BN / 16; ++kk) {
                uint32_t bv[4];
                const int r = kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8;
                ldsm_x4_trans(bv, smem_u32(vS + swz<D>(r, 2 * dj + (lane >> 4))));
#pragma unroll
                for (int mi = 0; mi < MI; ++mi) {
                    MmaOp<T>::run(o[mi][2 * dj], pa[mi][kk], bv[0], bv[1]);
                    MmaOp<T>::run(o[mi][2 * dj + 1], pa[mi][kk], bv[2], bv[3]);
                }
            }
        }
        __syncthreads();  // this stage is refilled by the next iteration's prefetch
    }

    // Epilogue: normalize, stage this warp's rows in its own part of sQ (no other warp reads
    // them), then 16-byte coalesced stores.
#pragma unroll
    for (int mi = 0; mi < MI; ++mi) {
#pragma unroll
        for (int hh = 0; hh < 2; ++hh) {
            float l = l_r[mi][hh];
            l += __shfl_xor_sync(0xffffffffu, l, 1);
            l += __shfl_xor_sync(0xffffffffu, l, 2);
            const float inv = l > 0.f ? 1.f / l : 0.f;
            const int r = wrow + mi * 16 + g + hh * 8;
#pragma unroll
            for (int dn = 0; dn < D / 8; ++dn)
                *reinterpret_cast<uint32_t*>(sQ + swz<D>(r, dn) + 2 * t4) =
                    pack2<T>(o[mi][dn][2 * hh] * inv, o[mi][dn][2 * hh + 1] * inv);
            if (lse && t4 == 0 && r < q_rows)
                lse[r] = l > 0.f ? (m_r[mi][hh] + log2f(l)) * kLn2 : neg_inf();
        }
    }
    __syncwarp();
    for (int c = lane; c < 16 * MI * CH; c += 32) {
        const int r = wrow + c / CH, ch = c % CH;
        if (r < q_rows)
            *reinterpret_cast<uint4*>(og + r * p.o_stride_t + ch * 8) =
                *reinterpret_cast<const uint4*>(sQ + swz<D>(r, ch));
    }
}

// Launch for one (dtype, head dim); instantiated in cuda/instances/attn_fwd_*.cu.
template <typename T, int D>
void launch_flash_fwd(const FlashAttnParams& p, cudaStream_t stream) {
    using Cfg = FlashCfgFor<D>;
    static std::atomic<unsigned> smem_set{0};
    constexpr int smem = Cfg::kSmemElems * static_cast<int>(sizeof(T));
    auto kernel = flash_fwd_kernel<T, Cfg>;
    set_max_dynamic_smem(reinterpret_cast<const void*>(kernel), smem, smem_set);
    const dim3 grid(ceil_div(p.Tq, Cfg::BM), p.Hq, p.B);
    kernel<<<grid, Cfg::kThreads, smem, stream>>>(p);
    PYLM_CUDA_CHECK_LAUNCH("flash_attn_fwd");
}

}  // namespace attn
}  // namespace cuda
}  // namespace pylm
