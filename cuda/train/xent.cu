// Fused softmax + cross-entropy over the vocabulary (train_ops.cuh; CPU twin csrc/train/xent.h).
//
//   loss[n]  = logsumexp(z[n]) - z[n, t[n]]
//   dz[n, v] = (softmax(z[n])[v] - [v == t[n]]) * grad_scale      (in place, when grad)
// One block per row: an online max / sum pass (each thread folds its strided elements, then
// the block combines the (max, sum) pairs), then one pass that writes the gradient. The row is
// read twice and written once; no probability tensor exists.
#include "train/storage.cuh"
#include "train/train_ops.cuh"

namespace pylm {
namespace cuda {
namespace train {

namespace {

constexpr int kThreads = 512;

template <typename T>
__global__ void __launch_bounds__(kThreads)
    softmax_xent_kernel(T* __restrict__ z, const int32_t* __restrict__ t, float* __restrict__ loss,
                        int64_t V, float grad_scale, bool grad) {
    __shared__ float red[32];
    const int64_t n = blockIdx.x;
    T* zr = z + n * V;  // [V]
    const int32_t tn = t[n];
    if (tn < 0) {  // ignored row: loss 0, gradient 0
        if (threadIdx.x == 0) loss[n] = 0.f;
        if (grad)
            for (int64_t v = threadIdx.x; v < V; v += blockDim.x) st_f(zr + v, 0.f);
        return;
    }
    float m = -INFINITY, s = 0.f;
    for (int64_t v = threadIdx.x; v < V; v += blockDim.x) {
        const float x = ld_f(zr + v);
        if (x > m) {
            s = s * expf(m - x) + 1.f;
            m = x;
        } else {
            s += expf(x - m);
        }
    }
    const float zt = ld_f(zr + tn);  // read before any thread overwrites the row
    const float mb = block_max(m, red);
    s = block_sum(m == -INFINITY ? 0.f : s * expf(m - mb), red);
    const float lse = mb + logf(s);
    if (threadIdx.x == 0) loss[n] = lse - zt;
    if (!grad) return;
    for (int64_t v = threadIdx.x; v < V; v += blockDim.x) {
        const float p = expf(ld_f(zr + v) - lse) * grad_scale;
        st_f(zr + v, v == tn ? p - grad_scale : p);
    }
}

}  // namespace

void softmax_xent(DType dt, void* z, const int32_t* t, float* loss, int64_t N, int64_t V,
                  float grad_scale, bool grad, cudaStream_t stream) {
    if (N == 0) return;
    if (N > 0x7fffffffLL)
        throw std::invalid_argument("train::softmax_xent: N=" + std::to_string(N) + " too large");
    PYLM_TRAIN_DISPATCH(dt, "softmax_xent",
        softmax_xent_kernel<T><<<static_cast<unsigned>(N), kThreads, 0, stream>>>(
            static_cast<T*>(z), t, loss, V, grad_scale, grad));
    PYLM_CUDA_CHECK_LAUNCH("train::softmax_xent");
}

}  // namespace train
}  // namespace cuda
}  // namespace pylm
