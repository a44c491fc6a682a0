// Scalar reference of the optimizer updates (optim.h). Oracle and fallback.
#include <cmath>

#include "train/optim.h"

namespace pylm {
namespace ref {
namespace train {

void adamw_chunk(float* p, const float* grad, float* m, float* v, int64_t n, float b1, float b2,
                 float eps, float decay, float step_size, float inv_sqrt_bc2, float grad_scale) {
    for (int64_t i = 0; i < n; ++i) {
        const float g = grad[i] * grad_scale;
        p[i] *= decay;
        m[i] = b1 * m[i] + (1.0f - b1) * g;
        v[i] = b2 * v[i] + (1.0f - b2) * g * g;
        p[i] -= step_size * m[i] / (std::sqrt(v[i]) * inv_sqrt_bc2 + eps);
    }
}

void sgd_chunk(float* p, const float* grad, int64_t n, float lr) {
    for (int64_t i = 0; i < n; ++i) p[i] -= lr * grad[i];
}

double sum_squares_chunk(const float* x, int64_t n) {
    double s = 0.0;
    for (int64_t i = 0; i < n; ++i) s += static_cast<double>(x[i]) * x[i];
    return s;
}

void scale_chunk(float* x, int64_t n, float s) {
    for (int64_t i = 0; i < n; ++i) x[i] *= s;
}

}  // namespace train
}  // namespace ref
}  // namespace pylm
