// Element-wise training ops (train_ops.cuh; CPU twins in csrc/train/pointwise.h): SwiGLU and its
// backward, embedding gather / scatter-add, and the fp32 -> storage cast. Grid-stride loops,
// one element per thread per iteration; memory-bound.
//
//   SwiGLU  h = silu(g) * u, s = sigmoid(g):  dg = dh * u * s * (1 + g (1 - s)),  du = dh * g * s
#include "train/storage.cuh"
#include "train/train_ops.cuh"

namespace pylm {
namespace cuda {
namespace train {

namespace {

int grid_for(int64_t n, int threads) {
    const int64_t b = ceil_div<int64_t>(n, threads);
    return static_cast<int>(b < 65535 * 16 ? (b > 0 ? b : 1) : 65535 * 16);
}

#define PYLM_GRID_LOOP(i, n)                                                         \
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
         i += static_cast<int64_t>(gridDim.x) * blockDim.x)

template <typename T>
__global__ void swiglu_fwd_kernel(const T* __restrict__ gu, T* __restrict__ h, int64_t N,
                                  int64_t F) {
    PYLM_GRID_LOOP(idx, N * F) {
        const int64_t n = idx / F, i = idx % F;
        const float g = ld_f(gu + n * 2 * F + i), u = ld_f(gu + n * 2 * F + F + i);
        st_f(h + idx, g / (1.f + expf(-g)) * u);
    }
}

template <typename T>
__global__ void swiglu_bwd_kernel(const T* __restrict__ gu, const float* __restrict__ dh,
                                  T* __restrict__ dgu, int64_t N, int64_t F) {
    PYLM_GRID_LOOP(idx, N * F) {
        const int64_t n = idx / F, i = idx % F;
        const float g = ld_f(gu + n * 2 * F + i), u = ld_f(gu + n * 2 * F + F + i);
        const float s = 1.f / (1.f + expf(-g));
        const float d = dh[idx];
        st_f(dgu + n * 2 * F + i, d * u * s * (1.f + g * (1.f - s)));
        st_f(dgu + n * 2 * F + F + i, d * g * s);
    }
}

__global__ void embedding_fwd_kernel(const int32_t* __restrict__ ids, const float* __restrict__ W,
                                     float* __restrict__ out, int64_t N, int64_t C) {
    PYLM_GRID_LOOP(idx, N * C) {
        const int64_t n = idx / C, c = idx % C;
        out[idx] = W[static_cast<int64_t>(ids[n]) * C + c];
    }
}

__global__ void embedding_bwd_kernel(const int32_t* __restrict__ ids,
                                     const float* __restrict__ dout, float* __restrict__ dW,
                                     int64_t N, int64_t C) {
    PYLM_GRID_LOOP(idx, N * C) {
        const int64_t n = idx / C, c = idx % C;
        atomicAdd(dW + static_cast<int64_t>(ids[n]) * C + c, dout[idx]);
    }
}

template <typename T>
__global__ void cast_kernel(const float* __restrict__ x, T* __restrict__ y, int64_t n) {
    PYLM_GRID_LOOP(i, n) { st_f(y + i, x[i]); }
}

#undef PYLM_GRID_LOOP

}  // namespace

void swiglu_fwd(DType dt, const void* gu, void* h, int64_t N, int64_t F, cudaStream_t stream) {
    if (N * F == 0) return;
    PYLM_TRAIN_DISPATCH(dt, "swiglu_fwd",
        swiglu_fwd_kernel<T><<<grid_for(N * F, 256), 256, 0, stream>>>(
            static_cast<const T*>(gu), static_cast<T*>(h), N, F));
    PYLM_CUDA_CHECK_LAUNCH("train::swiglu_fwd");
}

void swiglu_bwd(DType dt, const void* gu, const float* dh, void* dgu, int64_t N, int64_t F,
                cudaStream_t stream) {
    if (N * F == 0) return;
    PYLM_TRAIN_DISPATCH(dt, "swiglu_bwd",
        swiglu_bwd_kernel<T><<<grid_for(N * F, 256), 256, 0, stream>>>(
            static_cast<const T*>(gu), dh, static_cast<T*>(dgu), N, F));
    PYLM_CUDA_CHECK_LAUNCH("train::swiglu_bwd");
}

void embedding_fwd(const int32_t* ids, const float* W, float* out, int64_t N, int64_t C,
                   cudaStream_t stream) {
    if (N * C == 0) return;
    embedding_fwd_kernel<<<grid_for(N * C, 256), 256, 0, stream>>>(ids, W, out, N, C);
    PYLM_CUDA_CHECK_LAUNCH("train::embedding_fwd");
}

void embedding_bwd(const int32_t* ids, const float* dout, float* dW, int64_t N, int64_t C,
                   cudaStream_t stream) {
    if (N * C == 0) return;
    embedding_bwd_kernel<<<grid_for(N * C, 256), 256, 0, stream>>>(ids, dout, dW, N, C);
    PYLM_CUDA_CHECK_LAUNCH("train::embedding_bwd");
}

void cast_f32(DType dt, const float* x, void* y, int64_t n, cudaStream_t stream) {
    if (n == 0) return;
    PYLM_TRAIN_DISPATCH(dt, "cast_f32",
        cast_kernel<T><<<grid_for(n, 256), 256, 0, stream>>>(x, static_cast<T*>(y), n));
    PYLM_CUDA_CHECK_LAUNCH("train::cast_f32");
}

}  // namespace train
}  // namespace cuda
}  // namespace pylm
