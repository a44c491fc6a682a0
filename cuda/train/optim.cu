// Optimizer kernels (train_ops.cuh; CPU twin csrc/train/optim.h): fused AdamW (PyTorch's order
// of operations, with the bf16 GEMM copy of the weights written in the same pass) and the
// deterministic sum of squares of global-norm clipping.
//
//   g = grad * grad_scale;  p *= 1 - lr wd;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps),   bc_i = 1 - beta_i^step
#include <cmath>

#include "train/storage.cuh"
#include "train/train_ops.cuh"

namespace pylm {
namespace cuda {
namespace train {

namespace {

constexpr int kSSBlocks = 1024;  // fixed: the reduction order does not depend on the device
constexpr int kSSThreads = 256;

__global__ void adamw_kernel(float* __restrict__ p, const float* __restrict__ grad,
                             float* __restrict__ m, float* __restrict__ v,
                             __nv_bfloat16* __restrict__ p_bf16, int64_t n, float b1, float b2,
                             float eps, float decay, float step_size, float inv_sqrt_bc2,
                             float grad_scale) {
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const float g = grad[i] * grad_scale;
        float pi = p[i] * decay;
        const float mi = b1 * m[i] + (1.f - b1) * g;
        const float vi = b2 * v[i] + (1.f - b2) * g * g;
        pi -= step_size * mi / (sqrtf(vi) * inv_sqrt_bc2 + eps);
        p[i] = pi;
        m[i] = mi;
        v[i] = vi;
        if (p_bf16) p_bf16[i] = __float2bfloat16(pi);
    }
}

__device__ __forceinline__ double block_sum_d(double x, double* sh) {
    sh[threadIdx.x] = x;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {  // fixed tree: deterministic
        if (threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
        __syncthreads();
    }
    return sh[0];
}

__global__ void sum_squares_part(const float* __restrict__ x, int64_t n, double* __restrict__ part) {
    __shared__ double sh[kSSThreads];
    double s = 0.0;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x)
        s += static_cast<double>(x[i]) * x[i];
    s = block_sum_d(s, sh);
    if (threadIdx.x == 0) part[blockIdx.x] = s;
}

__global__ void sum_squares_final(const double* __restrict__ part, double* __restrict__ out) {
    __shared__ double sh[kSSBlocks];
    const double s = block_sum_d(part[threadIdx.x], sh);
    if (threadIdx.x == 0) *out = s;
}

}  // namespace

void adamw(float* p, const float* g, float* m, float* v, void* p_bf16, int64_t n,
           const AdamWArgs& a, cudaStream_t stream) {
    if (n == 0) return;
    const double bc1 = 1.0 - std::pow(static_cast<double>(a.beta1), static_cast<double>(a.step));
    const double bc2 = 1.0 - std::pow(static_cast<double>(a.beta2), static_cast<double>(a.step));
    const float decay = 1.0f - a.lr * a.weight_decay;
    const float step_size = static_cast<float>(a.lr / bc1);
    const float inv_sqrt_bc2 = static_cast<float>(1.0 / std::sqrt(bc2));
    int64_t blocks = ceil_div<int64_t>(n, 256);
    if (blocks > 65535 * 8) blocks = 65535 * 8;
    adamw_kernel<<<static_cast<unsigned>(blocks), 256, 0, stream>>>(
        p, g, m, v, static_cast<__nv_bfloat16*>(p_bf16), n, a.beta1, a.beta2, a.eps, decay,
        step_size, inv_sqrt_bc2, a.grad_scale);
    PYLM_CUDA_CHECK_LAUNCH("train::adamw");
}

size_t sum_squares_workspace() { return kSSBlocks * sizeof(double); }

void sum_squares(const float* x, int64_t n, double* out, void* ws, cudaStream_t stream) {
    double* part = static_cast<double*>(ws);
    sum_squares_part<<<kSSBlocks, kSSThreads, 0, stream>>>(x, n, part);
    PYLM_CUDA_CHECK_LAUNCH("train::sum_squares");
    sum_squares_final<<<1, kSSBlocks, 0, stream>>>(part, out);
    PYLM_CUDA_CHECK_LAUNCH("train::sum_squares final");
}

}  // namespace train
}  // namespace cuda
}  // namespace pylm
