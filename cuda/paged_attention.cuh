// Paged decode attention kernel (vLLM's PagedAttention v2 layout, Kwon et al. 2023), fp32 math
// on CUDA cores.
//
// One CTA = (split of the context, kv head, chunk of <= 16 query rows, sequence). The rows of a
// chunk are the G = Hq/Hkv query heads of the kv head times the Tq query tokens (row
// r -> token r / G, head hkv*G + r % G), so every K/V byte is read once per chunk. Tiles of TILE
// tokens (16 KB of K) come through the block table into shared memory with cp.async, double
// buffered; each tile runs three phases separated by barriers:
//   1. scores   S[r][j] = (q_r * scale) . k_j, softcap, mask, log2 domain (thread = key j)
//   2. softmax  per row (one warp per row): running max/sum, P = exp2(S - m), rescale factor
//   3. P V      thread = 2 output columns x a few rows, acc = acc * corr + P V
// With one split the CTA writes the normalized output; with several it writes (m, l, acc)
// partials to the workspace and paged_attn_reduce (paged_attention.cu) combines them.
//
// Shapes: q/o [S, Tq, Hq, D] contiguous; k/v cache [num_blocks, block_size, Hkv, D]
// contiguous; block_tables [S, max_blocks_per_seq]; context_lens [S].
#pragma once
#include <type_traits>

#include "attention.cuh"
#include "attention_util.cuh"

namespace pylm {
namespace cuda {
namespace attn {

constexpr int kPagedThreads = 128;
constexpr int kPagedRows = 16;  // query rows per CTA

// The split-K plan shared by the launcher, the workspace size and the kernels.
struct SplitPlan {
    int splits = 1;           // CTAs along the context
    int part = 0;             // keys per split (multiple of 64)
    int chunks = 1;           // row chunks per kv head: ceil(G * Tq / kPagedRows)
    float2* ml = nullptr;     // [S * Tq * Hq, splits] (running max in log2 units, sum)
    float* acc = nullptr;     // [S * Tq * Hq, splits, D] unnormalized P V
};

template <typename KV, int D>
struct PagedCfg {
    static constexpr int ES = sizeof(KV);
    static constexpr int RAW = 16384 / (D * ES);
    static constexpr int TILE = RAW < 16 ? 16 : (RAW > 64 ? 64 : RAW);  // tokens per tile
    static constexpr int CPR = D * ES / 16;  // 16-byte chunks per token row
    static constexpr int LDB = D * ES + 16;  // padded smem row in bytes (phase-1 bank spread)
    static constexpr int NE = 16 / ES;       // elements per chunk
    static constexpr int NRG1 = kPagedThreads / TILE;  // phase 1: row groups
    static constexpr int RPT1 = kPagedRows / NRG1;     //          rows per thread
    static constexpr int NCT = D / 2;                  // phase 3: threads per row (2 columns each)
    static constexpr int NRG3 = kPagedThreads / NCT;   //          row groups
    static constexpr int RPT3 = kPagedRows / NRG3;     //          rows per thread
    static constexpr int kSmemBytes = 4 * TILE * LDB + kPagedRows * D * 4 +
                                      kPagedRows * TILE * 4 + 3 * kPagedRows * 4;
    static_assert(TILE % 4 == 0 && kPagedThreads % TILE == 0 && kPagedThreads % NCT == 0, "");
};

// 16 bytes of K -> NE floats; two V elements -> floats.
__device__ __forceinline__ void chunk_to_f32(const uint4& u, float (&f)[4]) {
    f[0] = __uint_as_float(u.x);
    f[1] = __uint_as_float(u.y);
    f[2] = __uint_as_float(u.z);
    f[3] = __uint_as_float(u.w);
}
__device__ __forceinline__ void chunk_to_f32(const uint4& u, float (&f)[8], __half) {
    const __half2* h = reinterpret_cast<const __half2*>(&u);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const float2 x = __half22float2(h[i]);
        f[2 * i] = x.x;
        f[2 * i + 1] = x.y;
    }
}
__device__ __forceinline__ void chunk_to_f32(const uint4& u, float (&f)[8], __nv_bfloat16) {
    const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&u);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const float2 x = __bfloat1622float2(h[i]);
        f[2 * i] = x.x;
        f[2 * i + 1] = x.y;
    }
}
template <typename KV>
__device__ __forceinline__ void load_chunk(const unsigned char* p, float (&f)[16 / sizeof(KV)]) {
    const uint4 u = *reinterpret_cast<const uint4*>(p);
    if constexpr (sizeof(KV) == 4)
        chunk_to_f32(u, f);
    else
        chunk_to_f32(u, f, KV());
}
template <typename KV>
__device__ __forceinline__ float2 load_pair(const unsigned char* p) {
    if constexpr (sizeof(KV) == 4) {
        return *reinterpret_cast<const float2*>(p);
    } else if constexpr (std::is_same<KV, __half>::value) {
        return __half22float2(*reinterpret_cast<const __half2*>(p));
    } else {
        return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(p));
    }
}

template <typename KV, int D>
__global__ void __launch_bounds__(kPagedThreads)
    paged_attn_kernel(const PagedAttnParams p, const SplitPlan plan) {
    using C = PagedCfg<KV, D>;
    constexpr int TILE = C::TILE, CPR = C::CPR, LDB = C::LDB, NE = C::NE;
    extern __shared__ __align__(16) unsigned char smem_p[];
    unsigned char* sKV = smem_p;                                // [2 stages][K, V][TILE][LDB]
    float* sQ = reinterpret_cast<float*>(smem_p + 4 * TILE * LDB);  // [16][D] q * scale
    float* sS = sQ + kPagedRows * D;                            // [16][TILE] scores, then P
    float* sM = sS + kPagedRows * TILE;                         // [16] running max (log2)
    float* sL = sM + kPagedRows;                                // [16] running sum
    float* sC = sL + kPagedRows;                                // [16] this tile's rescale

    const int split = blockIdx.x, s = blockIdx.z;
    const int G = p.Hq / p.Hkv;
    const int R = G * p.Tq;
    const int hkv = blockIdx.y / plan.chunks, chunk = blockIdx.y % plan.chunks;
    const int r0 = chunk * kPagedRows;
    const int Rc = min(kPagedRows, R - r0);
    const int ctx = p.context_lens[s];
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;

    for (int c = tid; c < kPagedRows * D; c += kPagedThreads) {
        const int r = c / D, d = c % D;
        float x = 0.f;
        if (r < Rc) {
            const int rr = r0 + r, i = rr / G, hq = hkv * G + rr % G;
            x = load_as_f32(p.q, p.q_dtype,
                            ((static_cast<int64_t>(s) * p.Tq + i) * p.Hq + hq) * D + d) *
                p.scale;
        }
        sQ[c] = x;
    }
    if (tid < kPagedRows) {
        sM[tid] = neg_inf();
        sL[tid] = 0.f;
    }

    // Keys of this split any row may see: [kb, k_hi).
    const int pos_lo = ctx - p.Tq + r0 / G;
    const int pos_hi = ctx - p.Tq + (r0 + Rc - 1) / G;
    const int k_lo = split * plan.part;
    const int k_hi = min(min(ctx, k_lo + plan.part), pos_hi + 1);
    int kb = k_lo;
    if (p.window > 0) kb = max(kb, (pos_lo - p.window + 1) / 16 * 16);
    const int n_tiles = k_hi > kb ? (k_hi - kb + TILE - 1) / TILE : 0;

    const int32_t* bt = p.block_tables + static_cast<int64_t>(s) * p.max_blocks_per_seq;
    const unsigned char* kc = static_cast<const unsigned char*>(p.k_cache);
    const unsigned char* vc = static_cast<const unsigned char*>(p.v_cache);
    auto load_tile = [&](int t, int stage) {
        const int t0 = kb + t * TILE;
        unsigned char* dk = sKV + stage * 2 * TILE * LDB;
        unsigned char* dv = dk + TILE * LDB;
        for (int c = tid; c < TILE * CPR; c += kPagedThreads) {
            const int row = c / CPR, ch = c % CPR;
            const int tok = t0 + row;
            const bool ok = tok < k_hi;
            int64_t off = 0;
            if (ok) {
                const int64_t blk = bt[tok / p.block_size];
                off = ((blk * p.block_size + tok % p.block_size) * p.Hkv + hkv) * (D * C::ES) +
                      ch * 16;
            }
            cp_async_16(smem_u32(dk + row * LDB + ch * 16), kc + off, ok);
            cp_async_16(smem_u32(dv + row * LDB + ch * 16), vc + off, ok);
        }
    };

    const int j1 = tid % TILE, rg1 = tid / TILE;              // phase-1 roles
    const int c3 = (tid % C::NCT) * 2, rg3 = tid / C::NCT;    // phase-3 roles
    float acc[C::RPT3][2];
#pragma unroll
    for (int k = 0; k < C::RPT3; ++k) acc[k][0] = acc[k][1] = 0.f;

    if (n_tiles > 0) {
        load_tile(0, 0);
        cp_async_commit();
    }
    for (int it = 0; it < n_tiles; ++it) {
        const int stage = it & 1;
        if (it + 1 < n_tiles) {
            load_tile(it + 1, stage ^ 1);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();  // tile `it` (and, first time, sQ/sM/sL) visible to all
        const unsigned char* kS = sKV + stage * 2 * TILE * LDB;
        const unsigned char* vS = kS + TILE * LDB;
        const int t0 = kb + it * TILE;

        // Phase 1: scores of key t0 + j1 for rows rg1, rg1 + NRG1, ...
        {
            float sc[C::RPT1];
#pragma unroll
            for (int k = 0; k < C::RPT1; ++k) sc[k] = 0.f;
            const unsigned char* krow = kS + j1 * LDB;
#pragma unroll 4
            for (int ch = 0; ch < CPR; ++ch) {
                float kf[NE];
                load_chunk<KV>(krow + ch * 16, kf);
#pragma unroll
                for (int k = 0; k < C::RPT1; ++k) {
                    const int r = rg1 + C::NRG1 * k;
                    if (r < Rc) {
                        const float4* qv = reinterpret_cast<const float4*>(sQ + r * D + ch * NE);
#pragma unroll
                        for (int e4 = 0; e4 < NE / 4; ++e4) {
                            const float4 q4 = qv[e4];
                            sc[k] = fmaf(q4.x, kf[4 * e4], sc[k]);
                            sc[k] = fmaf(q4.y, kf[4 * e4 + 1], sc[k]);
                            sc[k] = fmaf(q4.z, kf[4 * e4 + 2], sc[k]);
                            sc[k] = fmaf(q4.w, kf[4 * e4 + 3], sc[k]);
                        }
                    }
                }
            }
            const int j = t0 + j1;
#pragma unroll
            for (int k = 0; k < C::RPT1; ++k) {
                const int r = rg1 + C::NRG1 * k;
                if (r < Rc) {
                    const int pos = ctx - p.Tq + (r0 + r) / G;
                    float x = sc[k];
                    if (p.softcap > 0.f) x = p.softcap * tanhf(x / p.softcap);
                    const bool ok = j < k_hi && j <= pos && (p.window <= 0 || pos - j < p.window);
                    sS[r * TILE + j1] = ok ? x * kLog2e : neg_inf();
                }
            }
        }
        __syncthreads();

        // Phase 2: online softmax, warp w owns rows w, w + 4, ...
        for (int r = warp; r < Rc; r += 4) {
            constexpr int PER = (TILE + 31) / 32;
            float v[PER];
            float mx = neg_inf();
#pragma unroll
            for (int i = 0; i < PER; ++i) {
                const int j = lane + 32 * i;
                v[i] = j < TILE ? sS[r * TILE + j] : neg_inf();
                mx = fmaxf(mx, v[i]);
            }
#pragma unroll
            for (int off = 16; off > 0; off >>= 1)
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
            const float m_old = sM[r], l_old = sL[r];
            const float m_new = fmaxf(m_old, mx);
            const float m_use = m_new == neg_inf() ? 0.f : m_new;
            float sum = 0.f;
#pragma unroll
            for (int i = 0; i < PER; ++i) {
                const int j = lane + 32 * i;
                const float pe = fast_exp2(v[i] - m_use);
                if (j < TILE) sS[r * TILE + j] = pe;
                sum += j < TILE ? pe : 0.f;
            }
#pragma unroll
            for (int off = 16; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
            __syncwarp();  // every lane has read sM/sL before lane 0 updates them
            if (lane == 0) {
                const float corr = fast_exp2(m_old - m_use);
                sM[r] = m_new;
                sL[r] = l_old * corr + sum;
                sC[r] = corr;
            }
        }
        __syncthreads();

        // Phase 3: acc = acc * corr + P V for columns c3, c3 + 1 of rows rg3, rg3 + NRG3, ...
#pragma unroll
        for (int k = 0; k < C::RPT3; ++k) {
            const int r = rg3 + C::NRG3 * k;
            if (r < Rc) {
                const float corr = sC[r];
                acc[k][0] *= corr;
                acc[k][1] *= corr;
            }
        }
#pragma unroll 2
        for (int j = 0; j < TILE; j += 4) {
            float2 vv[4];
#pragma unroll
            for (int jj = 0; jj < 4; ++jj) vv[jj] = load_pair<KV>(vS + (j + jj) * LDB + c3 * C::ES);
#pragma unroll
            for (int k = 0; k < C::RPT3; ++k) {
                const int r = rg3 + C::NRG3 * k;
                if (r < Rc) {
                    const float4 pp = *reinterpret_cast<const float4*>(sS + r * TILE + j);
                    acc[k][0] = fmaf(pp.x, vv[0].x, acc[k][0]);
                    acc[k][1] = fmaf(pp.x, vv[0].y, acc[k][1]);
                    acc[k][0] = fmaf(pp.y, vv[1].x, acc[k][0]);
                    acc[k][1] = fmaf(pp.y, vv[1].y, acc[k][1]);
                    acc[k][0] = fmaf(pp.z, vv[2].x, acc[k][0]);
                    acc[k][1] = fmaf(pp.z, vv[2].y, acc[k][1]);
                    acc[k][0] = fmaf(pp.w, vv[3].x, acc[k][0]);
                    acc[k][1] = fmaf(pp.w, vv[3].y, acc[k][1]);
                }
            }
        }
        __syncthreads();  // stage and sS are rewritten by the next iteration
    }
    __syncthreads();  // sM/sL from the init when there was no tile

#pragma unroll
    for (int k = 0; k < C::RPT3; ++k) {
        const int r = rg3 + C::NRG3 * k;
        if (r >= Rc) continue;
        const int rr = r0 + r, i = rr / G, hq = hkv * G + rr % G;
        const int64_t row = (static_cast<int64_t>(s) * p.Tq + i) * p.Hq + hq;
        if (plan.splits == 1) {
            const float l = sL[r];
            const float inv = l > 0.f ? 1.f / l : 0.f;
            store_from_f32(p.o, p.q_dtype, row * D + c3, acc[k][0] * inv);
            store_from_f32(p.o, p.q_dtype, row * D + c3 + 1, acc[k][1] * inv);
        } else {
            const int64_t slot = row * plan.splits + split;
            *reinterpret_cast<float2*>(plan.acc + slot * D + c3) = make_float2(acc[k][0], acc[k][1]);
            if (c3 == 0) plan.ml[slot] = make_float2(sM[r], sL[r]);
        }
    }
}

}  // namespace attn
}  // namespace cuda
}  // namespace pylm
