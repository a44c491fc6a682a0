// AVX-512 RMSNorm / RoPE rotation / softmax, 16 lanes; tails use k-masked loads and stores.
// Contracts: nn.h; vectorized exp: vmath_avx512.h. Same structure as nn_avx2.cpp.
//
// Row sums (sum of squares, sum of exponentials) accumulate in float vectors within blocks of
// kBlock elements and in double across blocks: float speed, error independent of C. The order
// of every float operation is the canonical one of nn_ref.cpp (bit-identical on every ISA);
// vm_hsum is the canonical 16-lane tree (vmath_ref.h).

#include <cmath>

#include "kernels/nn.h"
#include "kernels/vmath_avx512.h"

namespace pylm {
namespace avx512 {

namespace {

constexpr int64_t kBlock = 512;

inline int64_t block_end(int64_t b, int64_t C) { return b + kBlock < C ? b + kBlock : C; }

// sum(x[i]^2) over [0, C) in the canonical order (nn_ref.cpp): chunk k of a block -> a[k % 2].
inline double sum_squares(const float* x, int64_t C) {
    double total = 0.0;
    for (int64_t b = 0; b < C; b += kBlock) {
        const int64_t e = block_end(b, C);
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
        int64_t i = b;
        for (; i + 32 <= e; i += 32) {
            const __m512 v0 = _mm512_loadu_ps(x + i), v1 = _mm512_loadu_ps(x + i + 16);
            a0 = _mm512_fmadd_ps(v0, v0, a0);
            a1 = _mm512_fmadd_ps(v1, v1, a1);
        }
        if (i < e) {  // one or two chunks left: a0, then a1
            const __m512 v = _mm512_maskz_loadu_ps(vm_tail_mask(e - i < 16 ? e - i : 16), x + i);
            a0 = _mm512_fmadd_ps(v, v, a0);
            i += 16;
            if (i < e) {
                const __m512 w = _mm512_maskz_loadu_ps(vm_tail_mask(e - i), x + i);
                a1 = _mm512_fmadd_ps(w, w, a1);
            }
        }
        total += vm_hsum(_mm512_add_ps(a0, a1));
    }
    return total;
}

// y[i] = x[i] * s (* w[i]) over [0, C).
inline void scale_row(const float* x, const float* w, float* y, int64_t C, float s) {
    const __m512 vs = _mm512_set1_ps(s);
    int64_t i = 0;
    for (; i + 16 <= C; i += 16) {
        __m512 v = _mm512_mul_ps(_mm512_loadu_ps(x + i), vs);
        if (w) v = _mm512_mul_ps(v, _mm512_loadu_ps(w + i));
        _mm512_storeu_ps(y + i, v);
    }
    if (i < C) {
        const __mmask16 m = vm_tail_mask(C - i);
        __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), vs);
        if (w) v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, w + i));
        _mm512_mask_storeu_ps(y + i, m, v);
    }
}

inline void zero_row(float* y, int64_t C) {
    int64_t i = 0;
    for (; i + 16 <= C; i += 16) _mm512_storeu_ps(y + i, _mm512_setzero_ps());
    if (i < C) _mm512_mask_storeu_ps(y + i, vm_tail_mask(C - i), _mm512_setzero_ps());
}

// max(scale * x[i]) over [0, C).
inline float scaled_max(const float* x, int64_t C, __m512 vs) {
    __m512 vmax = _mm512_set1_ps(-INFINITY);
    int64_t i = 0;
    for (; i + 16 <= C; i += 16)
        vmax = _mm512_max_ps(vmax, _mm512_mul_ps(_mm512_loadu_ps(x + i), vs));
    if (i < C) {
        const __mmask16 m = vm_tail_mask(C - i);
        vmax =
            _mm512_mask_max_ps(vmax, m, vmax, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), vs));
    }
    return vm_hmax(vmax);
}

// y[i] = exp(scale * x[i] - mx) over [0, C); returns their sum.
inline double exp_row(const float* x, float* y, int64_t C, __m512 vs, float mx) {
    const __m512 vm = _mm512_set1_ps(mx);
    double total = 0.0;
    for (int64_t b = 0; b < C; b += kBlock) {
        const int64_t e = block_end(b, C);
        __m512 acc = _mm512_setzero_ps();
        int64_t i = b;
        for (; i + 16 <= e; i += 16) {
            const __m512 v = vm_exp(_mm512_fmsub_ps(_mm512_loadu_ps(x + i), vs, vm));
            _mm512_storeu_ps(y + i, v);
            acc = _mm512_add_ps(acc, v);
        }
        if (i < e) {
            const __mmask16 m = vm_tail_mask(e - i);
            const __m512 v = vm_exp(_mm512_fmsub_ps(_mm512_maskz_loadu_ps(m, x + i), vs, vm));
            _mm512_mask_storeu_ps(y + i, m, v);
            acc = _mm512_mask_add_ps(acc, m, acc, v);
        }
        total += vm_hsum(acc);
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
        if (mode == kRopeNeox) {
            // (x[i], x[i + half]) pairs: two contiguous halves.
            for (int i = 0; i < half; i += 16) {
                const __mmask16 m = vm_tail_mask(half - i < 16 ? half - i : 16);
                const __m512 a = _mm512_maskz_loadu_ps(m, xh + i);
                const __m512 b = _mm512_maskz_loadu_ps(m, xh + half + i);
                const __m512 c = _mm512_maskz_loadu_ps(m, cos2 + i);
                const __m512 s = _mm512_maskz_loadu_ps(m, sin2 + i);
                _mm512_mask_storeu_ps(xh + i, m, _mm512_fmsub_ps(a, c, _mm512_mul_ps(b, s)));
                _mm512_mask_storeu_ps(xh + half + i, m, _mm512_fmadd_ps(a, s, _mm512_mul_ps(b, c)));
            }
        } else {
            // Adjacent pairs: y = x * cos2 + swap_pairs(x) * sin2.
            for (int i = 0; i < n_dims; i += 16) {
                const __mmask16 m = vm_tail_mask(n_dims - i < 16 ? n_dims - i : 16);
                const __m512 v = _mm512_maskz_loadu_ps(m, xh + i);
                const __m512 sw = _mm512_permute_ps(v, 0xB1);
                const __m512 c = _mm512_maskz_loadu_ps(m, cos2 + i);
                const __m512 s = _mm512_maskz_loadu_ps(m, sin2 + i);
                _mm512_mask_storeu_ps(xh + i, m, _mm512_fmadd_ps(v, c, _mm512_mul_ps(sw, s)));
            }
        }
    }
}

void softmax_f32(const float* x, float* y, int64_t R, int64_t C, float scale) {
    const __m512 vs = _mm512_set1_ps(scale);
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

}  // namespace avx512
}  // namespace pylm
