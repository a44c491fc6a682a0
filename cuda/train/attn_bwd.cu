// Flash attention backward (train_ops.cuh; FlashAttention-2, Dao 2023, algorithm 2; CPU twin
// csrc/train/attention.h). Causal, grouped-query.
//
//   P = exp(scale Q K^T - lse)  (recomputed; the forward saved only lse)
//   delta_i = dO_i . O_i,  dV = P^T dO,  dP = dO V^T,  dS = scale P (dP - delta)
//   dQ = dS K,  dK = dS^T Q
// Three kernels: (1) delta [B, H, T] and a zeroed fp32 dQ accumulator [B*T, H*D];
// (2) one block per (key tile of kBc keys, sequence, kv head): dK and dV of the tile live in
// registers while the block walks every query tile at or after it, for all G = H / Hkv query
// heads of the kv head (so dK / dV need no atomics), and adds its share of dQ with fp32
// atomics; (3) dQ accumulator -> dq in the storage dtype.
// The main kernel here is SIMT fp32 math from shared memory (exact enough to match the CPU in
// fp32); bf16 runs attn_bwd_tc.cu's tensor-core version of it when the shapes fit.
#include <cstdlib>
#include <cstring>

#include "train/attn_bwd_impl.cuh"
#include "train/storage.cuh"
#include "train/train_ops.cuh"

namespace pylm {
namespace cuda {
namespace train {

namespace {

constexpr int kBr = 32;       // query rows per tile
constexpr int kBc = 32;       // key rows per block
constexpr int kThreads = 256;  // 8 warps

template <typename T>
__global__ void attn_bwd_pre(const T* __restrict__ o, const T* __restrict__ dout,
                             float* __restrict__ delta, int B, int T_, int H, int D, int64_t ldo) {
    // one warp per (b, t, h) row
    const int64_t w = static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
    const int lane = threadIdx.x & 31;
    if (w >= static_cast<int64_t>(B) * T_ * H) return;
    const int h = static_cast<int>(w % H);
    const int64_t n = w / H;  // row b * T + t
    const T* orow = o + n * ldo + static_cast<int64_t>(h) * D;
    const T* drow = dout + n * ldo + static_cast<int64_t>(h) * D;
    float s = 0.f;
    for (int d = lane; d < D; d += 32) s += ld_f(orow + d) * ld_f(drow + d);
    s = warp_sum(s);
    if (lane == 0) {
        const int64_t b = n / T_, t = n % T_;
        delta[(b * H + h) * T_ + t] = s;
    }
}

template <typename T, int D>
__global__ void __launch_bounds__(kThreads)
    attn_bwd_main(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                  const T* __restrict__ dout, const float* __restrict__ lse,
                  const float* __restrict__ delta, float* __restrict__ dq_acc,
                  T* __restrict__ dk, T* __restrict__ dv, int T_, int H, int Hkv, int64_t ld,
                  int64_t ldo, float scale) {
    constexpr int DP = D + 1;        // padded row (conflict-free column walks)
    constexpr int PP = kBc + 1;
    constexpr int KPT = D / 8;       // accumulator columns per thread
    extern __shared__ float smem[];
    float* Ks = smem;                // [kBc][DP]
    float* Vs = Ks + kBc * DP;       // [kBc][DP]
    float* Qs = Vs + kBc * DP;       // [kBr][DP]
    float* dOs = Qs + kBr * DP;      // [kBr][DP]
    float* Ps = dOs + kBr * DP;      // [kBr][PP]
    float* dSs = Ps + kBr * PP;      // [kBr][PP] (includes scale)
    float* lse_s = dSs + kBr * PP;   // [kBr]
    float* del_s = lse_s + kBr;      // [kBr]

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int j0 = blockIdx.x * kBc;
    const int b = blockIdx.y / Hkv, hk = blockIdx.y % Hkv;
    const int G = H / Hkv;
    const int64_t row0 = static_cast<int64_t>(b) * T_;  // first row of this sequence

    for (int e = tid; e < kBc * D; e += kThreads) {
        const int j = e / D, d = e % D;
        const bool ok = j0 + j < T_;
        const int64_t off = (row0 + j0 + j) * ld + static_cast<int64_t>(hk) * D + d;
        Ks[j * DP + d] = ok ? ld_f(k + off) : 0.f;
        Vs[j * DP + d] = ok ? ld_f(v + off) : 0.f;
    }
    // accumulators: key row ja = tid / 8, columns ca + 8 c
    const int ja = tid >> 3, ca = tid & 7;
    float dk_acc[KPT], dv_acc[KPT];
#pragma unroll
    for (int c = 0; c < KPT; ++c) dk_acc[c] = dv_acc[c] = 0.f;

    for (int g = 0; g < G; ++g) {
        const int h = hk * G + g;
        const float* lse_h = lse + (static_cast<int64_t>(b) * H + h) * T_;
        const float* del_h = delta + (static_cast<int64_t>(b) * H + h) * T_;
        for (int i0 = j0; i0 < T_; i0 += kBr) {  // causal: query tiles at or after the keys
            __syncthreads();  // previous tile's readers are done (and K/V are loaded)
            for (int e = tid; e < kBr * D; e += kThreads) {
                const int i = e / D, d = e % D;
                const bool ok = i0 + i < T_;
                const int64_t r = row0 + i0 + i;
                Qs[i * DP + d] = ok ? ld_f(q + r * ld + static_cast<int64_t>(h) * D + d) : 0.f;
                dOs[i * DP + d] = ok ? ld_f(dout + r * ldo + static_cast<int64_t>(h) * D + d) : 0.f;
            }
            if (tid < kBr) {
                const bool ok = i0 + tid < T_;
                lse_s[tid] = ok ? lse_h[i0 + tid] : 0.f;
                del_s[tid] = ok ? del_h[i0 + tid] : 0.f;
            }
            __syncthreads();
            // P and dS: row i = lane, keys j = warp + 8 m
#pragma unroll
            for (int m = 0; m < kBc / 8; ++m) {
                const int i = lane, j = warp + 8 * m;
                float s = 0.f, dp = 0.f;
#pragma unroll 16
                for (int d = 0; d < D; ++d) {
                    s += Qs[i * DP + d] * Ks[j * DP + d];
                    dp += dOs[i * DP + d] * Vs[j * DP + d];
                }
                const int qi = i0 + i, kj = j0 + j;
                const bool ok = qi < T_ && kj < T_ && kj <= qi;
                const float p = ok ? expf(scale * s - lse_s[i]) : 0.f;
                Ps[i * PP + j] = p;
                dSs[i * PP + j] = p * (dp - del_s[i]) * scale;
            }
            __syncthreads();
            // dV[ja] += sum_i P[i][ja] dO[i],  dK[ja] += sum_i dS[i][ja] Q[i]
            for (int i = 0; i < kBr; ++i) {
                const float p = Ps[i * PP + ja], ds = dSs[i * PP + ja];
#pragma unroll
                for (int c = 0; c < KPT; ++c) {
                    dv_acc[c] += p * dOs[i * DP + ca + 8 * c];
                    dk_acc[c] += ds * Qs[i * DP + ca + 8 * c];
                }
            }
            // dQ[i] += sum_j dS[i][j] K[j]: row i = tid / 8, columns ca + 8 c
            {
                const int i = tid >> 3;
                if (i0 + i < T_) {
                    float acc[KPT];
#pragma unroll
                    for (int c = 0; c < KPT; ++c) acc[c] = 0.f;
                    for (int j = 0; j < kBc; ++j) {
                        const float ds = dSs[i * PP + j];
#pragma unroll
                        for (int c = 0; c < KPT; ++c) acc[c] += ds * Ks[j * DP + ca + 8 * c];
                    }
                    float* dst = dq_acc + (row0 + i0 + i) * (static_cast<int64_t>(H) * D) +
                                 static_cast<int64_t>(h) * D;
#pragma unroll
                    for (int c = 0; c < KPT; ++c) atomicAdd(dst + ca + 8 * c, acc[c]);
                }
            }
        }
    }
    if (j0 + ja < T_) {
        const int64_t off = (row0 + j0 + ja) * ld + static_cast<int64_t>(hk) * D;
#pragma unroll
        for (int c = 0; c < KPT; ++c) {
            st_f(dk + off + ca + 8 * c, dk_acc[c]);
            st_f(dv + off + ca + 8 * c, dv_acc[c]);
        }
    }
}

template <typename T>
__global__ void attn_bwd_dq(const float* __restrict__ dq_acc, T* __restrict__ dq, int64_t N,
                            int HD, int64_t ld) {
    for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < N * HD;
         e += static_cast<int64_t>(gridDim.x) * blockDim.x)
        st_f(dq + (e / HD) * ld + e % HD, dq_acc[e]);
}

template <typename T, int D>
void launch_main(const AttnBwdParams& p, const float* delta, float* dq_acc, cudaStream_t stream) {
    constexpr int DP = D + 1;
    const size_t smem = sizeof(float) * ((2 * kBc + 2 * kBr) * DP + 2 * kBr * (kBc + 1) + 2 * kBr);
    auto kern = attn_bwd_main<T, D>;
    PYLM_CUDA_CHECK(
        cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    dim3 grid(ceil_div(p.T, kBc), p.B * p.Hkv);
    kern<<<grid, kThreads, smem, stream>>>(
        static_cast<const T*>(p.q), static_cast<const T*>(p.k), static_cast<const T*>(p.v),
        static_cast<const T*>(p.dout), p.lse, delta, dq_acc, static_cast<T*>(p.dk),
        static_cast<T*>(p.dv), p.T, p.H, p.Hkv, p.ld, p.ldo, p.scale);
}

}  // namespace

size_t attention_bwd_workspace(const AttnBwdParams& p) {
    const size_t N = static_cast<size_t>(p.B) * p.T;
    return N * p.H * sizeof(float) + N * p.H * p.D * sizeof(float);
}

void attention_bwd(const AttnBwdParams& p, void* ws, cudaStream_t stream) {
    if (p.D != 64 && p.D != 128)
        throw std::invalid_argument("train::attention_bwd: head dim D=" + std::to_string(p.D) +
                                    " is not supported (64 or 128)");
    if (p.H <= 0 || p.Hkv <= 0 || p.H % p.Hkv)
        throw std::invalid_argument("train::attention_bwd: H=" + std::to_string(p.H) +
                                    " is not a multiple of Hkv=" + std::to_string(p.Hkv));
    const int64_t N = static_cast<int64_t>(p.B) * p.T;
    if (N == 0) return;
    float* delta = static_cast<float*>(ws);            // [B, H, T]
    float* dq_acc = delta + N * p.H;                   // [N, H*D]
    PYLM_CUDA_CHECK(cudaMemsetAsync(dq_acc, 0, sizeof(float) * N * p.H * p.D, stream));
    PYLM_TRAIN_DISPATCH(p.dt, "attention_bwd", {
        const int64_t rows = N * p.H;
        attn_bwd_pre<T><<<ceil_div<int64_t>(rows, 8), 256, 0, stream>>>(
            static_cast<const T*>(p.o), static_cast<const T*>(p.dout), delta, p.B, p.T, p.H, p.D,
            p.ldo);
        PYLM_CUDA_CHECK_LAUNCH("train::attention_bwd delta");
        // bf16: the tensor-core kernel unless PYLM_TRAIN_ATTN_BWD=simt (a cross-check)
        const char* force = std::getenv("PYLM_TRAIN_ATTN_BWD");
        const bool simt = force && std::strcmp(force, "simt") == 0;
        if (simt || !attention_bwd_main_tc(p, delta, dq_acc, stream)) {
            if (p.D == 64)
                launch_main<T, 64>(p, delta, dq_acc, stream);
            else
                launch_main<T, 128>(p, delta, dq_acc, stream);
        }
        PYLM_CUDA_CHECK_LAUNCH("train::attention_bwd main");
        const int64_t total = N * p.H * p.D;
        int64_t blocks = ceil_div<int64_t>(total, 256);
        if (blocks > 65535 * 8) blocks = 65535 * 8;
        attn_bwd_dq<T><<<static_cast<unsigned>(blocks), 256, 0, stream>>>(
            dq_acc, static_cast<T*>(p.dq), N, p.H * p.D, p.ld);
        PYLM_CUDA_CHECK_LAUNCH("train::attention_bwd dq");
    });
}

}  // namespace train
}  // namespace cuda
}  // namespace pylm
