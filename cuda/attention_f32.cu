// Flash attention forward in fp32 on CUDA cores: the simple, exact path (expf, no tensor cores).
//
// One CTA = 4 warps = 16 query rows (4 per warp) of one (batch, head). K/V tiles of 32 keys are
// staged in shared memory; lane j scores key j against the warp's 4 rows (K rows padded by one
// float so the 32 lanes hit 32 banks), the warp folds the tile into its online softmax, and each
// lane accumulates D/32 output columns. Masks and key ranges as in attention_flash.cuh.
//
// Shapes: q [B, Tq, Hq, D], k/v [B, Tk, Hkv, D], o [B, Tq, Hq, D], lse [B, Hq, Tq] (optional).
#include "attention_launch.cuh"
#include "attention_util.cuh"

namespace pylm {
namespace cuda {
namespace attn {
namespace {

constexpr int kRows = 16, kRowsPerWarp = 4, kKeys = 32, kThreads = 128;

template <int D>
constexpr int f32_smem_bytes() {
    return (kRows * D + kKeys * (D + 1) + kKeys * D) * static_cast<int>(sizeof(float));
}

template <int D>
__global__ void __launch_bounds__(kThreads) flash_fwd_f32_kernel(const FlashAttnParams p) {
    constexpr int DPL = D / 32;  // output columns per lane
    extern __shared__ float smem_f[];
    float* sQ = smem_f;                  // [kRows][D]
    float* sK = sQ + kRows * D;          // [kKeys][D + 1]
    float* sV = sK + kKeys * (D + 1);    // [kKeys][D]

    const int m0 = (gridDim.x - 1 - blockIdx.x) * kRows;
    const int h = blockIdx.y, b = blockIdx.z;
    const int hkv = h / (p.Hq / p.Hkv);
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int q_rows = min(kRows, p.Tq - m0);
    const float* qg = static_cast<const float*>(p.q) + b * p.q_stride_b + m0 * p.q_stride_t + h * D;
    const float* kg = static_cast<const float*>(p.k) + b * p.k_stride_b + hkv * D;
    const float* vg = static_cast<const float*>(p.v) + b * p.v_stride_b + hkv * D;
    float* og = static_cast<float*>(p.o) + b * p.o_stride_b + m0 * p.o_stride_t + h * D;

    for (int c = tid; c < kRows * D; c += kThreads) {
        const int r = c / D, d = c % D;
        sQ[c] = r < q_rows ? qg[r * p.q_stride_t + d] : 0.f;
    }

    const int p_min = p.q_offset + m0;
    const int p_max = p.q_offset + m0 + q_rows - 1;
    const int n_end = p.causal ? min(p.Tk, p_max + 1) : p.Tk;
    int n_beg = p.window > 0 ? max(0, p_min - p.window + 1) : 0;
    n_beg = n_beg / kKeys * kKeys;

    float acc[kRowsPerWarp][DPL];
    float m_r[kRowsPerWarp], l_r[kRowsPerWarp];
#pragma unroll
    for (int rr = 0; rr < kRowsPerWarp; ++rr) {
        m_r[rr] = neg_inf();
        l_r[rr] = 0.f;
#pragma unroll
        for (int c = 0; c < DPL; ++c) acc[rr][c] = 0.f;
    }

    for (int n0 = n_beg; n0 < n_end; n0 += kKeys) {
        __syncthreads();  // previous tile consumed (and sQ written, first time round)
        for (int c = tid; c < kKeys * D; c += kThreads) {
            const int r = c / D, d = c % D;
            const bool ok = n0 + r < p.Tk;
            const int64_t n = ok ? n0 + r : 0;
            sK[r * (D + 1) + d] = ok ? kg[n * p.k_stride_t + d] : 0.f;
            sV[c] = ok ? vg[n * p.v_stride_t + d] : 0.f;
        }
        __syncthreads();

        float s[kRowsPerWarp] = {};
        const float* kr = sK + lane * (D + 1);
        const float* qr = sQ + warp * kRowsPerWarp * D;
#pragma unroll 8
        for (int d = 0; d < D; ++d) {
            const float kv = kr[d];
#pragma unroll
            for (int rr = 0; rr < kRowsPerWarp; ++rr) s[rr] = fmaf(qr[rr * D + d], kv, s[rr]);
        }
        const int j = n0 + lane;
        float pj[kRowsPerWarp];
#pragma unroll
        for (int rr = 0; rr < kRowsPerWarp; ++rr) {
            const int pos = p.q_offset + m0 + warp * kRowsPerWarp + rr;
            float x = p.softcap > 0.f ? p.softcap * tanhf(s[rr] * p.scale / p.softcap)
                                      : s[rr] * p.scale;
            const bool ok = j < p.Tk && (!p.causal || j <= pos) &&
                            (p.window <= 0 || pos - j < p.window);
            if (!ok) x = neg_inf();
            float mx = x;
#pragma unroll
            for (int off = 16; off > 0; off >>= 1)
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
            const float m_new = fmaxf(m_r[rr], mx);
            const float m_use = m_new == neg_inf() ? 0.f : m_new;
            const float corr = expf(m_r[rr] - m_use);
            pj[rr] = expf(x - m_use);
            float sum = pj[rr];
#pragma unroll
            for (int off = 16; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
            m_r[rr] = m_new;
            l_r[rr] = l_r[rr] * corr + sum;
#pragma unroll
            for (int c = 0; c < DPL; ++c) acc[rr][c] *= corr;
        }
#pragma unroll 4
        for (int jj = 0; jj < kKeys; ++jj) {
            float v[DPL];
#pragma unroll
            for (int c = 0; c < DPL; ++c) v[c] = sV[jj * D + lane + 32 * c];
#pragma unroll
            for (int rr = 0; rr < kRowsPerWarp; ++rr) {
                const float pr = __shfl_sync(0xffffffffu, pj[rr], jj);
#pragma unroll
                for (int c = 0; c < DPL; ++c) acc[rr][c] = fmaf(pr, v[c], acc[rr][c]);
            }
        }
    }

#pragma unroll
    for (int rr = 0; rr < kRowsPerWarp; ++rr) {
        const int r = warp * kRowsPerWarp + rr;
        if (r >= q_rows) continue;
        const float l = l_r[rr];
        const float inv = l > 0.f ? 1.f / l : 0.f;
#pragma unroll
        for (int c = 0; c < DPL; ++c) og[r * p.o_stride_t + lane + 32 * c] = acc[rr][c] * inv;
        if (p.lse && lane == 0)
            p.lse[(static_cast<int64_t>(b) * p.Hq + h) * p.Tq + m0 + r] =
                l > 0.f ? m_r[rr] + logf(l) : neg_inf();
    }
}

}  // namespace

template <int D>
void launch_flash_fwd_f32(const FlashAttnParams& p, cudaStream_t stream) {
    static std::atomic<unsigned> smem_set{0};
    constexpr int smem = f32_smem_bytes<D>();
    auto kernel = flash_fwd_f32_kernel<D>;
    set_max_dynamic_smem(reinterpret_cast<const void*>(kernel), smem, smem_set);
    const dim3 grid(ceil_div(p.Tq, kRows), p.Hq, p.B);
    kernel<<<grid, kThreads, smem, stream>>>(p);
    PYLM_CUDA_CHECK_LAUNCH("flash_attn_fwd (f32)");
}

template void launch_flash_fwd_f32<64>(const FlashAttnParams&, cudaStream_t);
template void launch_flash_fwd_f32<128>(const FlashAttnParams&, cudaStream_t);
template void launch_flash_fwd_f32<256>(const FlashAttnParams&, cudaStream_t);

}  // namespace attn
}  // namespace cuda
}  // namespace pylm
