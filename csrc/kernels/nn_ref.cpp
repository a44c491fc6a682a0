// Scalar RMSNorm / RoPE rotation / softmax: the fallback on CPUs without AVX2, and the
// canonical evaluation written out lane by lane. Every ISA performs exactly these float
// operations in this order, so all of them return the same bits (contracts: nn.h):
//   rmsnorm sum of squares: blocks of kBlock = 512 elements; inside a block, chunk k of 16
//     elements goes to accumulator a[k % 2] (16 lanes each, lane = element % 16, one FMA per
//     element, the last chunk zero-padded); per block vr_hsum16(a[0] + a[1]) is added to a
//     double total. scale = float(1 / sqrt(total / C + eps)) in double; y = (x * scale) * w.
//   softmax: m = max(scale * x); e = exp(fma(x, scale, -m)); the sum as above but with one
//     16-lane accumulator per block; y = e * float(1 / total).
//   rope: the nn.h tables, and per pair the FMA forms of the SIMD kernels.
#include <cmath>

#include "kernels/nn.h"
#include "kernels/vmath_ref.h"

namespace pylm {
namespace ref {

namespace {

constexpr int64_t kBlock = 512;

// sum(x[i]^2) over [0, C), canonical order.
double sum_squares(const float* x, int64_t C) {
    double total = 0.0;
    for (int64_t b = 0; b < C; b += kBlock) {
        const int64_t e = b + kBlock < C ? b + kBlock : C;
        float a[2][16] = {};
        for (int64_t i = b; i < e; i += 16) {
            float* acc = a[((i - b) / 16) % 2];
            for (int l = 0; l < 16; ++l) {
                const float v = i + l < e ? x[i + l] : 0.0f;
                acc[l] = std::fmaf(v, v, acc[l]);
            }
        }
        float v[16];
        for (int l = 0; l < 16; ++l) v[l] = a[0][l] + a[1][l];
        total += vref::vr_hsum16(v);
    }
    return total;
}

}  // namespace

// x, y: [R, C]; w: [C] or nullptr.
void rmsnorm_f32(const float* x, const float* w, float* y, int64_t R, int64_t C, float eps) {
    for (int64_t r = 0; r < R; ++r) {
        const float* xr = x + r * C;
        float* yr = y + r * C;
        const double ms = sum_squares(xr, C) / static_cast<double>(C);
        const float scale = static_cast<float>(1.0 / std::sqrt(ms + eps));
        if (w) {
            for (int64_t i = 0; i < C; ++i) yr[i] = (xr[i] * scale) * w[i];
        } else {
            for (int64_t i = 0; i < C; ++i) yr[i] = xr[i] * scale;
        }
    }
}

// x: [H, D] one token; cos2/sin2 in the per-mode layout of nn.h.
void rope_rotate_f32(float* x, const float* cos2, const float* sin2, int H, int D, int n_dims,
                     int mode) {
    const int half = n_dims / 2;
    for (int h = 0; h < H; ++h) {
        float* xh = x + static_cast<int64_t>(h) * D;
        for (int i = 0; i < half; ++i) {
            if (mode == kRopeNeox) {  // (x[i], x[i + half]): a c - b s, a s + b c
                const float a = xh[i], b = xh[i + half], c = cos2[i], s = sin2[i];
                xh[i] = std::fmaf(a, c, -(b * s));
                xh[i + half] = std::fmaf(a, s, b * c);
            } else {  // (x[2i], x[2i+1]): y = x * cos2 + swap_pairs(x) * sin2, sin2 = (-s, s)
                const float a = xh[2 * i], b = xh[2 * i + 1];
                xh[2 * i] = std::fmaf(a, cos2[2 * i], b * sin2[2 * i]);
                xh[2 * i + 1] = std::fmaf(b, cos2[2 * i + 1], a * sin2[2 * i + 1]);
            }
        }
    }
}

// x, y: [R, C]; y[r] = softmax(scale * x[r]).
void softmax_f32(const float* x, float* y, int64_t R, int64_t C, float scale) {
    for (int64_t r = 0; r < R; ++r) {
        const float* xr = x + r * C;
        float* yr = y + r * C;
        float m = -INFINITY;
        for (int64_t i = 0; i < C; ++i) {
            const float s = xr[i] * scale;
            m = m > s ? m : s;  // _mm*_max_ps(m, s)
        }
        if (m == -INFINITY) {  // fully masked row: zeros, not 0/0
            for (int64_t i = 0; i < C; ++i) yr[i] = 0.0f;
            continue;
        }
        double total = 0.0;
        for (int64_t b = 0; b < C; b += kBlock) {
            const int64_t e = b + kBlock < C ? b + kBlock : C;
            float acc[16] = {};
            for (int64_t i = b; i < e; ++i) {
                const float v = vref::vr_exp(std::fmaf(xr[i], scale, -m));
                yr[i] = v;
                acc[(i - b) % 16] += v;
            }
            total += vref::vr_hsum16(acc);
        }
        const float inv = static_cast<float>(1.0 / total);
        for (int64_t i = 0; i < C; ++i) yr[i] *= inv;
    }
}

}  // namespace ref
}  // namespace pylm
