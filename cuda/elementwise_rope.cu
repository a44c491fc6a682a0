// Rotary position embedding on the GPU (contract: elementwise.cuh; CPU oracle:
// csrc/kernels/nn.cpp + nn_ref.cpp). One thread block per token: the block first computes the
// token's rot_dim/2 angles in double (pos * freq_scale * base^(-2i/rot_dim), then cos/sin in
// double, rounded once to float, as the CPU does: a float angle is off by ~2e-3 rad at
// pos = 32768), then rotates the pairs of every head with those shared cos/sin.
#include "elementwise.cuh"
#include "elementwise_util.cuh"

namespace pylm {
namespace cuda {

namespace {

using namespace ew;

// x: [T, H, D], token t at x + t * row_stride, heads D apart; rotated in place. pos: [T].
// Dynamic shared memory: half doubles (inverse frequencies) + 2 * half floats (cos, sin).
template <typename T>
__global__ void rope_kernel(T* x, const int32_t* __restrict__ pos, int64_t ntok, int H, int D,
                            int64_t row_stride, int rot_dim, float base, float freq_scale,
                            bool neox) {
    extern __shared__ double smem[];
    const int half = rot_dim / 2;
    double* inv_freq = smem;                                // [half]
    float* cs = reinterpret_cast<float*>(smem + half);      // [half] cos, then [half] sin
    for (int i = threadIdx.x; i < half; i += blockDim.x)
        inv_freq[i] = (double)freq_scale * pow((double)base, -2.0 * i / rot_dim);
    const int64_t pairs = (int64_t)H * half;
    for (int64_t t = blockIdx.x; t < ntok; t += gridDim.x) {
        __syncthreads();  // inv_freq written / the previous token's readers of cs are done
        const double p = (double)pos[t];
        for (int i = threadIdx.x; i < half; i += blockDim.x) {
            double s, c;
            sincos(p * inv_freq[i], &s, &c);
            cs[i] = (float)c;
            cs[half + i] = (float)s;
        }
        __syncthreads();
        T* xt = x + t * row_stride;
        for (int64_t q = threadIdx.x; q < pairs; q += blockDim.x) {
            const int h = (int)(q / half), i = (int)(q % half);
            T* xh = xt + (int64_t)h * D;
            const int ia = neox ? i : 2 * i, ib = neox ? i + half : 2 * i + 1;
            const float a = to_f32(xh[ia]), b = to_f32(xh[ib]);
            const float c = cs[i], s = cs[half + i];
            // Rounded like the CPU reference (no FMA contraction).
            xh[ia] = from_f32<T>(__fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s)));
            xh[ib] = from_f32<T>(__fadd_rn(__fmul_rn(a, s), __fmul_rn(b, c)));
        }
    }
}

struct RopeLaunch {
    void* x;
    const int32_t* pos;
    int64_t T, H, D, row_stride;
    int rot_dim;
    float base, freq_scale;
    bool neox;
    cudaStream_t stream;
    template <typename S>
    void operator()() const {
        const int half = rot_dim / 2;
        const int threads = row_threads(H * half, 256);
        const size_t smem = (size_t)half * (sizeof(double) + 2 * sizeof(float));
        const unsigned grid = (unsigned)(T < kMaxGrid ? T : kMaxGrid);
        rope_kernel<S><<<grid, threads, smem, stream>>>(static_cast<S*>(x), pos, T, (int)H,
                                                        (int)D, row_stride, rot_dim, base,
                                                        freq_scale, neox);
        PYLM_CUDA_CHECK_LAUNCH("rope");
    }
};

}  // namespace

void rope(DType dt, void* x, const int32_t* pos, int64_t T, int64_t H, int64_t D,
          int64_t row_stride, int rot_dim, float base, float freq_scale, bool neox,
          cudaStream_t stream) {
    if (rot_dim <= 0 || rot_dim % 2 != 0 || rot_dim > D)
        throw std::invalid_argument("rope: rot_dim=" + std::to_string(rot_dim) +
                                    " must be even and in [2, D=" + std::to_string(D) + "]");
    if (H > 0x7fffffff || D > 0x7fffffff || row_stride < H * D)
        throw std::invalid_argument("rope: H=" + std::to_string(H) + ", D=" + std::to_string(D) +
                                    ", row_stride=" + std::to_string(row_stride) +
                                    " (expected row_stride >= H * D)");
    if (T <= 0 || H <= 0) return;
    visit_float(dt, "rope", RopeLaunch{x, pos, T, H, D, row_stride, rot_dim, base, freq_scale,
                                       neox, stream});
}

}  // namespace cuda
}  // namespace pylm
