// Gated activations (SwiGLU, GeGLU with the tanh GELU) and the residual add on the GPU
// (contracts: elementwise.cuh; CPU oracle: csrc/kernels/act_ref.cpp, same formulas and the same
// rounding order: every op is an explicitly rounded intrinsic, expf is CUDA's (<= 2 ulp)).
// Grid-stride loops over 16-byte vectors when rows and pointers allow it, else elements.
#include <cfloat>

#include "elementwise.cuh"
#include "elementwise_util.cuh"

namespace pylm {
namespace cuda {

namespace {

using namespace ew;

constexpr float kSqrt2OverPi = 0.79788456080286535588f;
constexpr float kGeluCoef = 0.044715f;
enum Act { kSilu = 0, kGelu = 1 };

// -inf is clamped to -FLT_MAX (so x / (1 + exp(-x)) gives -0, not NaN); NaN passes through.
__device__ __forceinline__ float clamp_neg_inf(float x) { return x < -FLT_MAX ? -FLT_MAX : x; }

__device__ __forceinline__ float silu(float x) {
    x = clamp_neg_inf(x);
    return __fdiv_rn(x, __fadd_rn(1.0f, expf(-x)));
}

// 0.5 x (1 + tanh(y)) == x / (1 + exp(-2y)), y = sqrt(2/pi) (x + 0.044715 x^3).
__device__ __forceinline__ float gelu(float x) {
    x = clamp_neg_inf(x);
    const float y = __fmul_rn(__fmul_rn(kSqrt2OverPi, x),
                              __fadd_rn(1.0f, __fmul_rn(__fmul_rn(kGeluCoef, x), x)));
    return __fdiv_rn(x, __fadd_rn(1.0f, expf(__fmul_rn(-2.0f, y))));
}

template <int ACT>
__device__ __forceinline__ float glu(float g, float u) {
    return __fmul_rn(ACT == kSilu ? silu(g) : gelu(g), u);
}

unsigned flat_grid(int64_t items, int threads) {
    const int64_t b = ceil_div<int64_t>(items, threads);
    return (unsigned)(b < (1 << 20) ? (b > 0 ? b : 1) : (1 << 20));
}

// gate, up: rows r at r * ld; out: [R, F] contiguous. VEC: F % N == 0, ld % N == 0, aligned.
template <typename T, int ACT, bool VEC>
__global__ void glu_kernel(const T* __restrict__ gate, const T* __restrict__ up, int64_t ld,
                           T* __restrict__ out, int64_t R, int64_t F) {
    constexpr int N = VEC ? Vec<T>::N : 1;
    const int64_t per_row = F / N, total = R * per_row;
    for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = idx / per_row, c = (idx - r * per_row) * N;
        if constexpr (VEC) {
            const Vec<T> g = load_vec(gate + r * ld + c), u = load_vec(up + r * ld + c);
            Vec<T> o;
#pragma unroll
            for (int k = 0; k < N; ++k) o.v[k] = from_f32<T>(glu<ACT>(to_f32(g.v[k]), to_f32(u.v[k])));
            store_vec(out + r * F + c, o);
        } else {
            out[r * F + c] = from_f32<T>(glu<ACT>(to_f32(gate[r * ld + c]), to_f32(up[r * ld + c])));
        }
    }
}

// y[n] = a[n] + b[n]; y may alias a (each element is read before it is written, by one thread).
template <typename T, bool VEC>
__global__ void add_kernel(const T* a, const T* b, T* y, int64_t n) {
    constexpr int N = VEC ? Vec<T>::N : 1;
    const int64_t total = n / N;
    for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (int64_t)gridDim.x * blockDim.x) {
        if constexpr (VEC) {
            const Vec<T> va = load_vec(a + idx * N), vb = load_vec(b + idx * N);
            Vec<T> o;
#pragma unroll
            for (int k = 0; k < N; ++k) o.v[k] = from_f32<T>(__fadd_rn(to_f32(va.v[k]), to_f32(vb.v[k])));
            store_vec(y + idx * N, o);
        } else {
            y[idx] = from_f32<T>(__fadd_rn(to_f32(a[idx]), to_f32(b[idx])));
        }
    }
}

template <int ACT>
struct GluLaunch {
    const void *gate, *up;
    int64_t ld;
    void* out;
    int64_t R, F;
    cudaStream_t stream;
    template <typename T>
    void operator()() const {
        constexpr int N = Vec<T>::N, threads = 256;
        const bool vec = F % N == 0 && ld % N == 0 && aligned16(gate) && aligned16(up) &&
                         aligned16(out);
        const T *g = static_cast<const T*>(gate), *u = static_cast<const T*>(up);
        T* o = static_cast<T*>(out);
        if (vec)
            glu_kernel<T, ACT, true><<<flat_grid(R * F / N, threads), threads, 0, stream>>>(
                g, u, ld, o, R, F);
        else
            glu_kernel<T, ACT, false><<<flat_grid(R * F, threads), threads, 0, stream>>>(
                g, u, ld, o, R, F);
        PYLM_CUDA_CHECK_LAUNCH(ACT == kSilu ? "swiglu" : "geglu");
    }
};

struct AddLaunch {
    const void *a, *b;
    void* y;
    int64_t n;
    cudaStream_t stream;
    template <typename T>
    void operator()() const {
        constexpr int N = Vec<T>::N, threads = 256;
        const bool vec = n % N == 0 && aligned16(a) && aligned16(b) && aligned16(y);
        const T *pa = static_cast<const T*>(a), *pb = static_cast<const T*>(b);
        T* py = static_cast<T*>(y);
        if (vec)
            add_kernel<T, true><<<flat_grid(n / N, threads), threads, 0, stream>>>(pa, pb, py, n);
        else
            add_kernel<T, false><<<flat_grid(n, threads), threads, 0, stream>>>(pa, pb, py, n);
        PYLM_CUDA_CHECK_LAUNCH("add");
    }
};

void check_glu(const char* op, int64_t ld_in, int64_t F) {
    if (ld_in < F)
        throw std::invalid_argument(std::string(op) + ": ld_in=" + std::to_string(ld_in) +
                                    " < F=" + std::to_string(F));
}

}  // namespace

void swiglu(DType dt, const void* gate, const void* up, int64_t ld_in, void* out, int64_t R,
            int64_t F, cudaStream_t stream) {
    check_glu("swiglu", ld_in, F);
    if (R <= 0 || F <= 0) return;
    visit_float(dt, "swiglu", GluLaunch<kSilu>{gate, up, ld_in, out, R, F, stream});
}

void geglu(DType dt, const void* gate, const void* up, int64_t ld_in, void* out, int64_t R,
           int64_t F, cudaStream_t stream) {
    check_glu("geglu", ld_in, F);
    if (R <= 0 || F <= 0) return;
    visit_float(dt, "geglu", GluLaunch<kGelu>{gate, up, ld_in, out, R, F, stream});
}

void add(DType dt, const void* a, const void* b, void* y, int64_t n, cudaStream_t stream) {
    if (n <= 0) return;
    visit_float(dt, "add", AddLaunch{a, b, y, n, stream});
}

}  // namespace cuda
}  // namespace pylm
