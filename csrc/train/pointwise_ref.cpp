// Scalar reference of the training pointwise ops (pointwise.h). Oracle and fallback.
#include <cmath>

#include "train/pointwise.h"

namespace pylm {
namespace ref {
namespace train {

void swiglu_fwd(const float* gu, float* h, int64_t N, int64_t F) {
    for (int64_t n = 0; n < N; ++n) {
        const float* g = gu + n * 2 * F;  // [F] gate, then [F] up
        const float* u = g + F;
        for (int64_t i = 0; i < F; ++i) h[n * F + i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
    }
}

void swiglu_bwd(const float* gu, const float* dh, float* dgu, int64_t N, int64_t F) {
    for (int64_t n = 0; n < N; ++n) {
        const float* g = gu + n * 2 * F;
        const float* u = g + F;
        float* dg = dgu + n * 2 * F;
        float* du = dg + F;
        for (int64_t i = 0; i < F; ++i) {
            const float s = 1.0f / (1.0f + std::exp(-g[i]));
            const float d = dh[n * F + i];
            dg[i] = d * u[i] * s * (1.0f + g[i] * (1.0f - s));
            du[i] = d * g[i] * s;
        }
    }
}

void rope_rows(float* x, int64_t ld, int64_t R, int64_t pos0, int64_t T, int H, int D,
               const float* cos2, const float* sin2) {
    for (int64_t r = 0; r < R; ++r) {
        const int64_t p = (pos0 + r) % T;
        const float* c = cos2 + p * D;  // [D]
        const float* s = sin2 + p * D;  // [D], s[2i] = -sin, s[2i+1] = +sin
        for (int h = 0; h < H; ++h) {
            float* xh = x + r * ld + static_cast<int64_t>(h) * D;
            for (int i = 0; i < D; i += 2) {
                const float x0 = xh[i], x1 = xh[i + 1];
                xh[i] = x0 * c[i] + x1 * s[i];
                xh[i + 1] = x1 * c[i + 1] + x0 * s[i + 1];
            }
        }
    }
}

void embedding_bwd_cols(const int32_t* ids, const float* dout, float* dW, int64_t N, int64_t C,
                        int64_t c0, int64_t c1) {
    for (int64_t n = 0; n < N; ++n) {
        float* row = dW + static_cast<int64_t>(ids[n]) * C;
        for (int64_t i = c0; i < c1; ++i) row[i] += dout[n * C + i];
    }
}

void add(const float* a, const float* b, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = a[i] + b[i];
}

}  // namespace train
}  // namespace ref
}  // namespace pylm
