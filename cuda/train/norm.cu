// RMSNorm forward / backward and RoPE for training (train_ops.cuh; CPU twins in
// csrc/train/rmsnorm.h and csrc/train/pointwise.h).
//
//   forward:  r = 1 / sqrt(mean(x^2) + eps),  y = x * r * w
//   backward: g = dy * w,  dx = r * (g - x * r^2 * mean(g * x)),  dw = sum_rows dy * x * r
// The forward is one warp per row; the backward one block per chunk of kRowsPerBlock rows, each
// thread owning the columns tid, tid + blockDim, ... so that its share of dw sums in shared
// memory without races; the per-block partials [nblocks, C] are added in block order by a
// second kernel (deterministic, no atomics).
#include "train/storage.cuh"
#include "train/train_ops.cuh"

namespace pylm {
namespace cuda {
namespace train {

namespace {

constexpr int kRowsPerBlock = 32;
constexpr int kBwdThreads = 256;
constexpr int64_t kMaxC = 12288;  // dw partial in shared memory: 48 KB

template <typename T>
__global__ void rmsnorm_fwd_kernel(const float* __restrict__ x, const float* __restrict__ w,
                                   T* __restrict__ y, float* __restrict__ rstd, int64_t R,
                                   int64_t C, float eps) {
    const int64_t row = static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
    const int lane = threadIdx.x & 31;
    if (row >= R) return;
    const float* xr = x + row * C;  // [C]
    float ss = 0.f;
    for (int64_t c = lane; c < C; c += 32) ss += xr[c] * xr[c];
    ss = warp_sum(ss);
    const float r = rsqrtf(ss / static_cast<float>(C) + eps);
    if (lane == 0) rstd[row] = r;
    T* yr = y + row * C;
    for (int64_t c = lane; c < C; c += 32) st_f(yr + c, xr[c] * r * w[c]);
}

template <typename T>
__global__ void rmsnorm_bwd_kernel(const float* __restrict__ x, const float* __restrict__ w,
                                   const float* __restrict__ rstd, const float* __restrict__ dy,
                                   float* __restrict__ dx, bool accumulate, T* __restrict__ dx_cast,
                                   float* __restrict__ dw_part, int64_t R, int64_t C) {
    extern __shared__ float dwp[];  // [C] this block's dw partial (when dw_part)
    __shared__ float red[32];
    if (dw_part)
        for (int64_t c = threadIdx.x; c < C; c += blockDim.x) dwp[c] = 0.f;
    const int64_t r0 = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock;
    const int64_t r1 = r0 + kRowsPerBlock < R ? r0 + kRowsPerBlock : R;
    for (int64_t row = r0; row < r1; ++row) {
        const float* xr = x + row * C;    // [C]
        const float* dyr = dy + row * C;  // [C]
        float s = 0.f;
        for (int64_t c = threadIdx.x; c < C; c += blockDim.x) s += dyr[c] * w[c] * xr[c];
        s = block_sum(s, red);
        const float r = rstd[row];
        const float k = s * r * r / static_cast<float>(C);
        float* dxr = dx + row * C;
        for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
            const float d = r * (dyr[c] * w[c] - xr[c] * k);
            const float v = accumulate ? dxr[c] + d : d;
            dxr[c] = v;
            if (dx_cast) st_f(dx_cast + row * C + c, v);
            if (dw_part) dwp[c] += dyr[c] * xr[c] * r;
        }
    }
    if (dw_part)
        for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
            dw_part[static_cast<int64_t>(blockIdx.x) * C + c] = dwp[c];
}

// dw [C] += sum over nb partial rows [nb, C], in row order.
__global__ void colsum_add_kernel(const float* __restrict__ part, float* __restrict__ dw,
                                  int64_t nb, int64_t C) {
    const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float s = 0.f;
    for (int64_t b = 0; b < nb; ++b) s += part[b * C + c];
    dw[c] += s;
}

template <typename T>
__global__ void rope_kernel(T* __restrict__ x, int64_t ld, int64_t N, int64_t T_, int H, int D,
                            const float* __restrict__ cos, const float* __restrict__ sin,
                            float sign) {
    const int half = D / 2;
    const int64_t total = N * H * half;
    for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
         idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const int i = static_cast<int>(idx % half);
        const int h = static_cast<int>((idx / half) % H);
        const int64_t n = idx / (static_cast<int64_t>(half) * H);
        const int64_t pos = n % T_;
        const float c = cos[pos * half + i], s = sign * sin[pos * half + i];
        T* p = x + n * ld + static_cast<int64_t>(h) * D + 2 * i;
        const float x0 = ld_f(p), x1 = ld_f(p + 1);
        st_f(p, x0 * c - x1 * s);
        st_f(p + 1, x0 * s + x1 * c);
    }
}

int grid_for(int64_t n, int threads) {
    const int64_t b = ceil_div<int64_t>(n, threads);
    return static_cast<int>(b < 65535 * 16 ? (b > 0 ? b : 1) : 65535 * 16);
}

}  // namespace

void rmsnorm_fwd(DType dt, const float* x, const float* w, void* y, float* rstd, int64_t R,
                 int64_t C, float eps, cudaStream_t stream) {
    if (R == 0) return;
    const int rows_per = 8;
    PYLM_TRAIN_DISPATCH(dt, "rmsnorm_fwd",
        rmsnorm_fwd_kernel<T><<<ceil_div<int64_t>(R, rows_per), rows_per * 32, 0, stream>>>(
            x, w, static_cast<T*>(y), rstd, R, C, eps));
    PYLM_CUDA_CHECK_LAUNCH("train::rmsnorm_fwd");
}

size_t rmsnorm_bwd_workspace(int64_t R, int64_t C) {
    return static_cast<size_t>(ceil_div<int64_t>(R, kRowsPerBlock) * C) * sizeof(float);
}

void rmsnorm_bwd(DType dt, const float* x, const float* w, const float* rstd, const float* dy,
                 float* dx, bool accumulate, void* dx_cast, float* dw, int64_t R, int64_t C,
                 void* ws, cudaStream_t stream) {
    if (R == 0) return;
    if (C > kMaxC)
        throw std::invalid_argument("train::rmsnorm_bwd: C=" + std::to_string(C) +
                                    " exceeds the supported " + std::to_string(kMaxC));
    const int64_t nb = ceil_div<int64_t>(R, kRowsPerBlock);
    float* part = dw ? static_cast<float*>(ws) : nullptr;
    const size_t smem = dw ? static_cast<size_t>(C) * sizeof(float) : 0;
    PYLM_TRAIN_DISPATCH(dt, "rmsnorm_bwd",
        rmsnorm_bwd_kernel<T><<<static_cast<unsigned>(nb), kBwdThreads, smem, stream>>>(
            x, w, rstd, dy, dx, accumulate, static_cast<T*>(dx_cast), part, R, C));
    PYLM_CUDA_CHECK_LAUNCH("train::rmsnorm_bwd");
    if (dw) {
        colsum_add_kernel<<<ceil_div<int64_t>(C, 256), 256, 0, stream>>>(part, dw, nb, C);
        PYLM_CUDA_CHECK_LAUNCH("train::rmsnorm_bwd colsum");
    }
}

void rope(DType dt, void* x, int64_t ld, int64_t N, int64_t seq_len, int H, int D,
          const float* cos, const float* sin, bool inverse, cudaStream_t stream) {
    const int64_t total = N * H * (D / 2);
    if (total == 0) return;
    PYLM_TRAIN_DISPATCH(dt, "rope",
        rope_kernel<T><<<grid_for(total, 256), 256, 0, stream>>>(
            static_cast<T*>(x), ld, N, seq_len, H, D, cos, sin, inverse ? -1.f : 1.f));
    PYLM_CUDA_CHECK_LAUNCH("train::rope");
}

}  // namespace train
}  // namespace cuda
}  // namespace pylm
