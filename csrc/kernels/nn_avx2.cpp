// AVX2+FMA RMSNorm / RoPE rotation / softmax, 8 lanes; tails use masked loads and stores.
// Contracts: nn.h; vectorized exp: vmath_avx2.h.
//
// Row sums (sum of squares, sum of exponentials) accumulate in float vectors within blocks of
// kBlock elements and in double across blocks: float speed, error independent of C. They follow
// the canonical order of nn_ref.cpp (AVX-512's natural one) exactly: 16 virtual lanes held as
// two __m256 (lanes 0-7, 8-15), and vm_hsum(lo + hi) is the canonical 16-lane tree.
#include <immintrin.h>

#include <cmath>

#include "kernels/nn.h"
#include "kernels/vmath_avx2.h"

namespace pylm {
namespace avx2 {

namespace {

constexpr int64_t kBlock = 512;

inline int64_t block_end(int64_t b, int64_t C) { return b + kBlock < C ? b + kBlock : C; }

// The first n (clamped to [0, 8]) floats at p, zeros after.
inline __m256 load_n(const float* p, int64_t n) {
    return n >= 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, vm_tail_mask(n < 0 ? 0 : n));
}

// sum(x[i]^2) over [0, C), canonical order: chunk k of 16 -> 16-lane accumulator a[k % 2].
inline double sum_squares(const float* x, int64_t C) {
    double total = 0.0;
    for (int64_t b = 0; b < C; b += kBlock) {
        const int64_t e = block_end(b, C);
        __m256 a0l = _mm256_setzero_ps(), a0h = _mm256_setzero_ps();
        __m256 a1l = _mm256_setzero_ps(), a1h = _mm256_setzero_ps();
        int64_t i = b;
        for (; i + 32 <= e; i += 32) {
            const __m256 v0 = _mm256_loadu_ps(x + i), v1 = _mm256_loadu_ps(x + i + 8);
            const __m256 v2 = _mm256_loadu_ps(x + i + 16), v3 = _mm256_loadu_ps(x + i + 24);
            a0l = _mm256_fmadd_ps(v0, v0, a0l);
            a0h = _mm256_fmadd_ps(v1, v1, a0h);
            a1l = _mm256_fmadd_ps(v2, v2, a1l);
            a1h = _mm256_fmadd_ps(v3, v3, a1h);
        }
        if (i < e) {  // one or two chunks left: a0, then a1
            const __m256 v0 = load_n(x + i, e - i), v1 = load_n(x + i + 8, e - i - 8);
            a0l = _mm256_fmadd_ps(v0, v0, a0l);
            a0h = _mm256_fmadd_ps(v1, v1, a0h);
            i += 16;
            if (i < e) {
                const __m256 v2 = load_n(x + i, e - i), v3 = load_n(x + i + 8, e - i - 8);
                a1l = _mm256_fmadd_ps(v2, v2, a1l);
                a1h = _mm256_fmadd_ps(v3, v3, a1h);
            }
        }
        total += vm_hsum(_mm256_add_ps(_mm256_add_ps(a0l, a1l), _mm256_add_ps(a0h, a1h)));
    }
    return total;
}

// y[i] = x[i] * s (* w[i]) over [0, C).
inline void scale_row(const float* x, const float* w, float* y, int64_t C, float s) {
    const __m256 vs = _mm256_set1_ps(s);
    int64_t i = 0;
    for (; i + 8 <= C; i += 8) {
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i), vs);
        if (w) v = _mm256_mul_ps(v, _mm256_loadu_ps(w + i));
        _mm256_storeu_ps(y + i, v);
    }
    if (i < C) {
        const __m256i m = vm_tail_mask(C - i);
        __m256 v = _mm256_mul_ps(_mm256_maskload_ps(x + i, m), vs);
        if (w) v = _mm256_mul_ps(v, _mm256_maskload_ps(w + i, m));
        _mm256_maskstore_ps(y + i, m, v);
    }
}

inline void zero_row(float* y, int64_t C) {
    int64_t i = 0;
    for (; i + 8 <= C; i += 8) _mm256_storeu_ps(y + i, _mm256_setzero_ps());
    if (i < C) _mm256_maskstore_ps(y + i, vm_tail_mask(C - i), _mm256_setzero_ps());
}

// max(scale * x[i]) over [0, C).
inline float scaled_max(const float* x, int64_t C, __m256 vs) {
    __m256 vmax = _mm256_set1_ps(-INFINITY);
    int64_t i = 0;
    for (; i + 8 <= C; i += 8)
        vmax = _mm256_max_ps(vmax, _mm256_mul_ps(_mm256_loadu_ps(x + i), vs));
    if (i < C) {
        const __m256i m = vm_tail_mask(C - i);
        const __m256 v = _mm256_mul_ps(_mm256_maskload_ps(x + i, m), vs);
        vmax = _mm256_max_ps(
            vmax, _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), v, _mm256_castsi256_ps(m)));
    }
    return vm_hmax(vmax);
}

// y[i] = exp(scale * x[i] - mx) over [0, C); returns their sum (canonical order: one 16-lane
// accumulator per block, held as lo/hi).
inline double exp_row(const float* x, float* y, int64_t C, __m256 vs, float mx) {
    const __m256 vm = _mm256_set1_ps(mx);
    double total = 0.0;
    for (int64_t b = 0; b < C; b += kBlock) {
        const int64_t e = block_end(b, C);
        __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
        int64_t i = b;
        for (; i + 16 <= e; i += 16) {
            const __m256 v0 = vm_exp(_mm256_fmsub_ps(_mm256_loadu_ps(x + i), vs, vm));
            const __m256 v1 = vm_exp(_mm256_fmsub_ps(_mm256_loadu_ps(x + i + 8), vs, vm));
            _mm256_storeu_ps(y + i, v0);
            _mm256_storeu_ps(y + i + 8, v1);
            lo = _mm256_add_ps(lo, v0);
            hi = _mm256_add_ps(hi, v1);
        }
        for (int half = 0; i < e; i += 8, ++half) {  // tail: masked lanes add nothing
            const __m256i m = vm_tail_mask(e - i < 8 ? e - i : 8);
            __m256 v = vm_exp(_mm256_fmsub_ps(_mm256_maskload_ps(x + i, m), vs, vm));
            _mm256_maskstore_ps(y + i, m, v);
            v = _mm256_and_ps(v, _mm256_castsi256_ps(m));
            if (half == 0)
                lo = _mm256_add_ps(lo, v);
            else
                hi = _mm256_add_ps(hi, v);
        }
        total += vm_hsum(_mm256_add_ps(lo, hi));
    }
    return total;
}

}  // namespace

void rmsnorm_f32(const float* x, const float* w, float* y, int64_t R, int64_t C, float eps) {
    for (int64_t r = 0; r < R; ++r) {
        const double ms = sum_squares(x + r * C, C) / static_cast<double>(C);
        const float s = static_cast<float>(1.0 / __builtin_sqrt(ms + eps));
        scale_row(x + r * C, w, y + r * C, C, s);
    }
}

void rope_rotate_f32(float* x, const float* cos2, const float* sin2, int H, int D, int n_dims,
                     int mode) {
    const int half = n_dims / 2;
    for (int h = 0; h < H; ++h) {
        float* xh = x + static_cast<int64_t>(h) * D;
        int i = 0;
        if (mode == kRopeNeox) {
            // (x[i], x[i + half]) pairs: two contiguous halves.
            for (; i < half; i += 8) {
                const __m256i m = vm_tail_mask(half - i < 8 ? half - i : 8);
                const __m256 a = _mm256_maskload_ps(xh + i, m);
                const __m256 b = _mm256_maskload_ps(xh + half + i, m);
                const __m256 c = _mm256_maskload_ps(cos2 + i, m);
                const __m256 s = _mm256_maskload_ps(sin2 + i, m);
                _mm256_maskstore_ps(xh + i, m, _mm256_fmsub_ps(a, c, _mm256_mul_ps(b, s)));
                _mm256_maskstore_ps(xh + half + i, m, _mm256_fmadd_ps(a, s, _mm256_mul_ps(b, c)));
            }
        } else {
            // Adjacent pairs: y = x * cos2 + swap_pairs(x) * sin2.
            for (; i < n_dims; i += 8) {
                const __m256i m = vm_tail_mask(n_dims - i < 8 ? n_dims - i : 8);
                const __m256 v = _mm256_maskload_ps(xh + i, m);
                const __m256 sw = _mm256_permute_ps(v, 0xB1);
                const __m256 c = _mm256_maskload_ps(cos2 + i, m);
                const __m256 s = _mm256_maskload_ps(sin2 + i, m);
                _mm256_maskstore_ps(xh + i, m, _mm256_fmadd_ps(v, c, _mm256_mul_ps(sw, s)));
            }
        }
    }
}

void softmax_f32(const float* x, float* y, int64_t R, int64_t C, float scale) {
    const __m256 vs = _mm256_set1_ps(scale);
    for (int64_t r = 0; r < R; ++r) {
        const float* xr = x + r * C;
        float* yr = y + r * C;
        const float mx = scaled_max(xr, C, vs);
        if (mx == -INFINITY) {  // fully masked row: zeros, not 0/0
            zero_row(yr, C);
            continue;
        }
        const double sum = exp_row(xr, yr, C, vs, mx);
        scale_row(yr, nullptr, yr, C, static_cast<float>(1.0 / sum));
    }
}

}  // namespace avx2
}  // namespace pylm
