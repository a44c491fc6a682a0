// The GPU engine's fused kernels; contracts in engine_kernels.cuh.
#include <cuda_fp16.h>

#include <string>

#include "engine/engine_kernels.cuh"

namespace pylm {
namespace cuda {

namespace {

__device__ __forceinline__ float load_f(const float* p) { return *p; }
__device__ __forceinline__ float load_f(const __half* p) { return __half2float(*p); }
__device__ __forceinline__ void store_f(float* p, float v) { *p = v; }
__device__ __forceinline__ void store_f(__half* p, float v) { *p = __float2half_rn(v); }

// Sum over the block. blockDim.x must be a multiple of 32 (<= 1024); every thread calls it.
// sh: 32 floats of shared memory; the leading __syncthreads makes back-to-back calls safe.
__device__ float block_sum(float v, float* sh) {
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    __syncthreads();
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    float t = 0.f;
    for (int i = 0; i < nw; ++i) t += sh[i];
    return t;
}

// grid (N, Hq + 2*Hkv), block round_up(D/2, 32): thread t owns the element pair (e0, e1) of one
// head of one row; RoPE rotates pair index t when t < rot_dim/2.
template <typename KV>
__global__ void qkv_post_kernel(QkvPostParams p) {
    __shared__ float sh[32];
    const int64_t r = blockIdx.x;
    const int hh = blockIdx.y;
    const int t = threadIdx.x, D = p.D, half = p.rot_dim / 2;
    const int kind = hh < p.Hq ? 0 : (hh < p.Hq + p.Hkv ? 1 : 2);  // q, k, v
    const int h = kind == 0 ? hh : (kind == 1 ? hh - p.Hq : hh - p.Hq - p.Hkv);
    const float* src = kind == 0 ? p.q + r * p.ldq : (kind == 1 ? p.k + r * p.ldk : p.v + r * p.ldv);
    const float* bias = kind == 0 ? p.bq : (kind == 1 ? p.bk : p.bv);
    const float* nw = kind == 0 ? p.q_norm : (kind == 1 ? p.k_norm : nullptr);
    src += static_cast<int64_t>(h) * D;
    if (bias) bias += static_cast<int64_t>(h) * D;

    const bool active = t < D / 2;
    const bool rotate = active && kind != 2 && t < half;
    int e0 = 2 * t, e1 = 2 * t + 1;
    if (p.neox && t < half) e0 = t, e1 = t + half;
    float a = 0.f, b = 0.f;
    if (active) {
        a = src[e0];
        b = src[e1];
        if (bias) a += bias[e0], b += bias[e1];
    }
    if (nw) {  // uniform per block: every thread reaches block_sum
        const float ss = block_sum(a * a + b * b, sh);
        const float scale = 1.0f / sqrtf(ss / static_cast<float>(D) + p.eps);
        if (active) a = (a * scale) * nw[e0], b = (b * scale) * nw[e1];
    }
    if (rotate) {
        // theta_t = pos * freq_scale * base^(-2t/rot_dim), in fp64 like the CPU engine.
        const double inv = static_cast<double>(p.freq_scale) *
                           pow(static_cast<double>(p.rope_base), -2.0 * t / p.rot_dim);
        double sd, cd;
        sincos(static_cast<double>(p.pos[r]) * inv, &sd, &cd);
        const float c = static_cast<float>(cd), s = static_cast<float>(sd);
        const float a2 = a * c - b * s, b2 = a * s + b * c;
        a = a2, b = b2;
    }
    if (!active) return;
    if (kind == 0) {
        float* dst = p.q_out + (r * p.Hq + h) * D;
        dst[e0] = a;
        dst[e1] = b;
    } else {
        KV* cache = static_cast<KV*>(kind == 1 ? p.k_cache : p.v_cache);
        KV* dst = cache + (static_cast<int64_t>(p.slot[r]) * p.Hkv + h) * D;
        store_f(dst + e0, a);
        store_f(dst + e1, b);
    }
}

constexpr int kNormThreads = 256;

__global__ void add_rmsnorm_kernel(float* x, const float* o, const float* bias, const float* post_w,
                                   const float* w, float* h, const int32_t* rows, int64_t C,
                                   float eps) {
    __shared__ float sh[32];
    const int64_t i = blockIdx.x;
    const int64_t r = rows ? rows[i] : i;
    float* xr = x + r * C;
    if (o) {
        const float* orow = o + r * C;
        float scale = 1.f;
        if (post_w) {
            float ss = 0.f;
            for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
                const float v = orow[c] + (bias ? bias[c] : 0.f);
                ss += v * v;
            }
            ss = block_sum(ss, sh);
            scale = 1.0f / sqrtf(ss / static_cast<float>(C) + eps);
        }
        for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
            float v = orow[c] + (bias ? bias[c] : 0.f);
            if (post_w) v = (v * scale) * post_w[c];
            xr[c] += v;
        }
    }
    float ss = 0.f;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) ss += xr[c] * xr[c];
    ss = block_sum(ss, sh);
    const float scale = 1.0f / sqrtf(ss / static_cast<float>(C) + eps);
    float* hr = h + i * C;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) hr[c] = (xr[c] * scale) * w[c];
}

__global__ void softcap_kernel(float* y, int64_t n, float cap) {
    const float inv = 1.0f / cap;
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x)
        y[i] = cap * tanhf(y[i] * inv);
}

template <typename KV>
__global__ void gather_kv_kernel(const KV* k_cache, const KV* v_cache, const int32_t* table,
                                 int block_size, int64_t kv_dim, float* k_out, float* v_out) {
    const int64_t t = blockIdx.x;
    const int64_t slot = static_cast<int64_t>(table[t / block_size]) * block_size + t % block_size;
    const KV* ks = k_cache + slot * kv_dim;
    const KV* vs = v_cache + slot * kv_dim;
    for (int64_t c = threadIdx.x; c < kv_dim; c += blockDim.x) {
        k_out[t * kv_dim + c] = load_f(ks + c);
        v_out[t * kv_dim + c] = load_f(vs + c);
    }
}

}  // namespace

void qkv_post(const QkvPostParams& p, cudaStream_t stream) {
    if (p.N <= 0) return;
    if (p.D <= 0 || p.D % 2 != 0 || p.D > 2048)
        throw std::invalid_argument("qkv_post: head_dim=" + std::to_string(p.D) +
                                    " must be even and <= 2048");
    if (p.rot_dim < 0 || p.rot_dim % 2 != 0 || p.rot_dim > p.D)
        throw std::invalid_argument("qkv_post: rope dims=" + std::to_string(p.rot_dim) +
                                    " must be even and <= head_dim=" + std::to_string(p.D));
    if (p.Hq + 2 * p.Hkv > 65535)
        throw std::invalid_argument("qkv_post: too many heads (" + std::to_string(p.Hq) + ")");
    const dim3 grid(static_cast<unsigned>(p.N), static_cast<unsigned>(p.Hq + 2 * p.Hkv));
    const int threads = (p.D / 2 + 31) / 32 * 32;
    if (p.kv_dtype == DType::F16)
        qkv_post_kernel<__half><<<grid, threads, 0, stream>>>(p);
    else if (p.kv_dtype == DType::F32)
        qkv_post_kernel<float><<<grid, threads, 0, stream>>>(p);
    else
        throw std::invalid_argument(std::string("qkv_post: unsupported cache dtype ") +
                                    dtype_name(p.kv_dtype));
    PYLM_CUDA_CHECK_LAUNCH("qkv_post");
}

void add_rmsnorm(float* x, const float* o, const float* bias, const float* post_w, const float* w,
                 float* h, const int32_t* rows, int64_t R, int64_t C, float eps,
                 cudaStream_t stream) {
    if (R <= 0) return;
    add_rmsnorm_kernel<<<static_cast<unsigned>(R), kNormThreads, 0, stream>>>(x, o, bias, post_w, w,
                                                                             h, rows, C, eps);
    PYLM_CUDA_CHECK_LAUNCH("add_rmsnorm");
}

void softcap(float* y, int64_t n, float cap, cudaStream_t stream) {
    if (n <= 0) return;
    const int64_t blocks = ceil_div<int64_t>(n, 256) < 4096 ? ceil_div<int64_t>(n, 256) : 4096;
    softcap_kernel<<<static_cast<unsigned>(blocks), 256, 0, stream>>>(y, n, cap);
    PYLM_CUDA_CHECK_LAUNCH("softcap");
}

void gather_kv(DType kv_dtype, const void* k_cache, const void* v_cache, const int32_t* table,
               int block_size, int64_t T, int64_t kv_dim, float* k_out, float* v_out,
               cudaStream_t stream) {
    if (T <= 0) return;
    if (kv_dtype == DType::F16)
        gather_kv_kernel<__half><<<static_cast<unsigned>(T), 128, 0, stream>>>(
            static_cast<const __half*>(k_cache), static_cast<const __half*>(v_cache), table,
            block_size, kv_dim, k_out, v_out);
    else if (kv_dtype == DType::F32)
        gather_kv_kernel<float><<<static_cast<unsigned>(T), 128, 0, stream>>>(
            static_cast<const float*>(k_cache), static_cast<const float*>(v_cache), table,
            block_size, kv_dim, k_out, v_out);
    else
        throw std::invalid_argument(std::string("gather_kv: unsupported cache dtype ") +
                                    dtype_name(kv_dtype));
    PYLM_CUDA_CHECK_LAUNCH("gather_kv");
}

}  // namespace cuda
}  // namespace pylm
