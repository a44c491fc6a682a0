// Scalar reference RMSNorm / RoPE rotation / softmax: the oracle for the SIMD variants and the
// fallback on CPUs without AVX2. Contracts: nn.h.
#include <algorithm>
#include <cmath>

#include "kernels/nn.h"

namespace pylm {
namespace ref {

// x, y: [R, C]; w: [C] or nullptr.
void rmsnorm_f32(const float* x, const float* w, float* y, int64_t R, int64_t C, float eps) {
    for (int64_t r = 0; r < R; ++r) {
        const float* xr = x + r * C;
        float* yr = y + r * C;
        double ss = 0.0;
        for (int64_t i = 0; i < C; ++i) ss += static_cast<double>(xr[i]) * xr[i];
        const float scale = static_cast<float>(1.0 / std::sqrt(ss / C + eps));
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
            // (a, b) is the rotated pair; c, s the cosine and sine of its angle.
            const int ia = mode == kRopeNeox ? i : 2 * i;
            const int ib = mode == kRopeNeox ? i + half : 2 * i + 1;
            const float c = mode == kRopeNeox ? cos2[i] : cos2[2 * i];
            const float s = mode == kRopeNeox ? sin2[i] : sin2[2 * i + 1];
            const float a = xh[ia], b = xh[ib];
            xh[ia] = a * c - b * s;
            xh[ib] = a * s + b * c;
        }
    }
}

// x, y: [R, C]; y[r] = softmax(scale * x[r]).
void softmax_f32(const float* x, float* y, int64_t R, int64_t C, float scale) {
    for (int64_t r = 0; r < R; ++r) {
        const float* xr = x + r * C;
        float* yr = y + r * C;
        float m = -INFINITY;
        for (int64_t i = 0; i < C; ++i) m = std::max(m, scale * xr[i]);
        if (m == -INFINITY) {  // fully masked row: zeros, not 0/0
            std::fill(yr, yr + C, 0.0f);
            continue;
        }
        double sum = 0.0;
        for (int64_t i = 0; i < C; ++i) {
            const float e = std::exp(scale * xr[i] - m);
            yr[i] = e;
            sum += e;
        }
        const float inv = static_cast<float>(1.0 / sum);
        for (int64_t i = 0; i < C; ++i) yr[i] *= inv;
    }
}

}  // namespace ref
}  // namespace pylm
