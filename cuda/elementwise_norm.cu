// Row reductions on the GPU: RMSNorm and softmax (contracts: elementwise.cuh; CPU oracle:
// csrc/kernels/nn_ref.cpp). One thread block per row (grid-strided past 2^31-1 rows); each
// thread walks the row in 16-byte vectors when the row and pointers allow it, else element-wise.
// The row is read twice (reduce, then write); the second read mostly hits L1/L2.
#include <cmath>

#include "elementwise.cuh"
#include "elementwise_util.cuh"

namespace pylm {
namespace cuda {

namespace {

using namespace ew;

// x, y: [R, C] (may alias); w: [C] f32 or null. VEC: C % N == 0 and x, y, w 16-byte aligned.
template <typename T, bool VEC>
__global__ void rmsnorm_kernel(const T* x, const float* __restrict__ w, T* y, int64_t R, int64_t C,
                               float eps) {
    __shared__ float scratch[32];
    constexpr int N = Vec<T>::N;
    for (int64_t r = blockIdx.x; r < R; r += gridDim.x) {
        const T* xr = x + r * C;
        T* yr = y + r * C;
        float ss = 0.f;
        if constexpr (VEC) {
            for (int64_t v = threadIdx.x; v < C / N; v += blockDim.x) {
                const Vec<T> a = load_vec(xr + v * N);
#pragma unroll
                for (int k = 0; k < N; ++k) {
                    const float f = to_f32(a.v[k]);
                    ss += f * f;
                }
            }
        } else {
            for (int64_t i = threadIdx.x; i < C; i += blockDim.x) {
                const float f = to_f32(xr[i]);
                ss += f * f;
            }
        }
        ss = block_sum(ss, scratch);
        const float scale = 1.0f / sqrtf(ss / (float)C + eps);
        // y = (x * scale) * w, rounded in that order like the CPU reference.
        if constexpr (VEC) {
            for (int64_t v = threadIdx.x; v < C / N; v += blockDim.x) {
                Vec<T> a = load_vec(xr + v * N);
                float wv[N];
                if (w) {
#pragma unroll
                    for (int k = 0; k < N; k += 4) {
                        const float4 w4 = *reinterpret_cast<const float4*>(w + v * N + k);
                        wv[k] = w4.x, wv[k + 1] = w4.y, wv[k + 2] = w4.z, wv[k + 3] = w4.w;
                    }
                }
#pragma unroll
                for (int k = 0; k < N; ++k) {
                    float f = __fmul_rn(to_f32(a.v[k]), scale);
                    if (w) f = __fmul_rn(f, wv[k]);
                    a.v[k] = from_f32<T>(f);
                }
                store_vec(yr + v * N, a);
            }
        } else {
            for (int64_t i = threadIdx.x; i < C; i += blockDim.x) {
                float f = __fmul_rn(to_f32(xr[i]), scale);
                if (w) f = __fmul_rn(f, w[i]);
                yr[i] = from_f32<T>(f);
            }
        }
    }
}

// Online softmax state: running max m and sum s of exp(v - m) over the values seen.
// -inf values (masks) are skipped; NaN makes s NaN, which then poisons the row as on the CPU.
__device__ __forceinline__ void online_add(float& m, float& s, float v) {
    if (v == -INFINITY) return;
    if (v > m) {
        s = __fmaf_rn(s, expf(m - v), 1.0f);  // m = -inf initially: s = 0 * 0 + 1
        m = v;
    } else {
        s += expf(v - m);
    }
}

__device__ __forceinline__ void online_merge(float& m, float& s, float m2, float s2) {
    const float M = fmaxf(m, m2);
    // s == 0 means "nothing seen" (m may be -inf, and -inf - -inf would be NaN).
    const float a = s == 0.f ? 0.f : s * expf(m - M);
    const float b = s2 == 0.f ? 0.f : s2 * expf(m2 - M);
    m = M;
    s = a + b;
}

// x: [R, C] T; y: [R, C] f32 (may alias x when T is f32). VEC: C % N == 0, x and y aligned.
template <typename T, bool VEC>
__global__ void softmax_kernel(const T* x, float* y, int64_t R, int64_t C, float scale) {
    __shared__ float sm[32], ss[32];
    constexpr int N = Vec<T>::N;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    for (int64_t r = blockIdx.x; r < R; r += gridDim.x) {
        const T* xr = x + r * C;
        float* yr = y + r * C;
        float m = -INFINITY, s = 0.f;
        if constexpr (VEC) {
            for (int64_t v = threadIdx.x; v < C / N; v += blockDim.x) {
                const Vec<T> a = load_vec(xr + v * N);
#pragma unroll
                for (int k = 0; k < N; ++k) online_add(m, s, __fmul_rn(scale, to_f32(a.v[k])));
            }
        } else {
            for (int64_t i = threadIdx.x; i < C; i += blockDim.x)
                online_add(m, s, __fmul_rn(scale, to_f32(xr[i])));
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            const float m2 = __shfl_xor_sync(0xffffffffu, m, o);
            const float s2 = __shfl_xor_sync(0xffffffffu, s, o);
            online_merge(m, s, m2, s2);
        }
        __syncthreads();  // the previous row's readers of sm/ss are done
        if (lane == 0) sm[warp] = m, ss[warp] = s;
        __syncthreads();
        m = -INFINITY, s = 0.f;
        for (int k = 0; k < nwarps; ++k) online_merge(m, s, sm[k], ss[k]);
        const bool masked = m == -INFINITY;  // every entry -inf: zeros, as on the CPU
        const float inv = 1.0f / s;
        if constexpr (VEC) {
            for (int64_t v = threadIdx.x; v < C / N; v += blockDim.x) {
                const Vec<T> a = load_vec(xr + v * N);
                Vec<float> o[N / 4];
#pragma unroll
                for (int k = 0; k < N; ++k) {
                    const float e = expf(__fmul_rn(scale, to_f32(a.v[k])) - m);
                    o[k / 4].v[k % 4] = masked ? 0.f : e * inv;
                }
#pragma unroll
                for (int k = 0; k < N / 4; ++k) store_vec(yr + v * N + 4 * k, o[k]);
            }
        } else {
            for (int64_t i = threadIdx.x; i < C; i += blockDim.x) {
                const float e = expf(__fmul_rn(scale, to_f32(xr[i])) - m);
                yr[i] = masked ? 0.f : e * inv;
            }
        }
    }
}

unsigned rows_grid(int64_t R) { return (unsigned)(R < kMaxGrid ? R : kMaxGrid); }

struct RmsnormLaunch {
    const void* x;
    const float* w;
    void* y;
    int64_t R, C;
    float eps;
    cudaStream_t stream;
    template <typename T>
    void operator()() const {
        constexpr int N = Vec<T>::N;
        const bool vec = C % N == 0 && aligned16(x) && aligned16(y) && (!w || aligned16(w));
        const int threads = row_threads(vec ? C / N : C, R < 512 ? 1024 : 256);
        const T* xp = static_cast<const T*>(x);
        T* yp = static_cast<T*>(y);
        if (vec)
            rmsnorm_kernel<T, true><<<rows_grid(R), threads, 0, stream>>>(xp, w, yp, R, C, eps);
        else
            rmsnorm_kernel<T, false><<<rows_grid(R), threads, 0, stream>>>(xp, w, yp, R, C, eps);
        PYLM_CUDA_CHECK_LAUNCH("rmsnorm");
    }
};

struct SoftmaxLaunch {
    const void* x;
    float* y;
    int64_t R, C;
    float scale;
    cudaStream_t stream;
    template <typename T>
    void operator()() const {
        constexpr int N = Vec<T>::N;
        const bool vec = C % N == 0 && aligned16(x) && aligned16(y);
        const int threads = row_threads(vec ? C / N : C, R < 512 ? 1024 : 256);
        const T* xp = static_cast<const T*>(x);
        if (vec)
            softmax_kernel<T, true><<<rows_grid(R), threads, 0, stream>>>(xp, y, R, C, scale);
        else
            softmax_kernel<T, false><<<rows_grid(R), threads, 0, stream>>>(xp, y, R, C, scale);
        PYLM_CUDA_CHECK_LAUNCH("softmax");
    }
};

}  // namespace

void rmsnorm(DType dt, const void* x, const float* w, void* y, int64_t R, int64_t C, float eps,
             cudaStream_t stream) {
    if (R <= 0 || C <= 0) return;
    visit_float(dt, "rmsnorm", RmsnormLaunch{x, w, y, R, C, eps, stream});
}

void softmax(DType dt, const void* x, float* y, int64_t R, int64_t C, float scale,
             cudaStream_t stream) {
    if (R <= 0 || C <= 0) return;
    visit_float(dt, "softmax", SoftmaxLaunch{x, y, R, C, scale, stream});
}

}  // namespace cuda
}  // namespace pylm
