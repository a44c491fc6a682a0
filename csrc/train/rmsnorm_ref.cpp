// Scalar reference of the training RMSNorm (rmsnorm.h): sums in double. Oracle and fallback.
#include <cmath>

#include "train/rmsnorm.h"

namespace pylm {
namespace ref {
namespace train {

void rmsnorm_fwd(const float* x, const float* w, float* y, float* rstd, int64_t R, int64_t C,
                 float eps) {
    for (int64_t r = 0; r < R; ++r) {
        const float* xr = x + r * C;  // [C]
        double ss = 0.0;
        for (int64_t i = 0; i < C; ++i) ss += static_cast<double>(xr[i]) * xr[i];
        const float rs = static_cast<float>(1.0 / std::sqrt(ss / C + eps));
        rstd[r] = rs;
        for (int64_t i = 0; i < C; ++i) y[r * C + i] = xr[i] * rs * w[i];
    }
}

void rmsnorm_bwd_rows(const float* x, const float* w, const float* rstd, const float* dy, float* dx,
                      float* dw_part, int64_t R, int64_t C) {
    for (int64_t r = 0; r < R; ++r) {
        const float* xr = x + r * C;    // [C]
        const float* dyr = dy + r * C;  // [C]
        const float rs = rstd[r];
        double s = 0.0;  // sum(dy * w * x)
        for (int64_t i = 0; i < C; ++i) s += static_cast<double>(dyr[i]) * w[i] * xr[i];
        // mean(g * xhat) * r = s * r^2 / C: the coefficient of x in dx.
        const float k = static_cast<float>(s * rs * rs / C);
        for (int64_t i = 0; i < C; ++i) {
            dx[r * C + i] += rs * (dyr[i] * w[i] - xr[i] * k);
            dw_part[i] += dyr[i] * xr[i] * rs;
        }
    }
}

}  // namespace train
}  // namespace ref
}  // namespace pylm
