// Scalar reference of the fused softmax + cross-entropy (xent.h): sums in double.
#include <cmath>

#include "train/xent.h"

namespace pylm {
namespace ref {
namespace train {

void softmax_xent(float* z, const int32_t* t, float* loss, int64_t N, int64_t V, float grad_scale,
                  bool grad) {
    for (int64_t n = 0; n < N; ++n) {
        float* zr = z + n * V;  // [V]
        if (t[n] < 0) {
            loss[n] = 0.0f;
            if (grad)
                for (int64_t v = 0; v < V; ++v) zr[v] = 0.0f;
            continue;
        }
        float mx = -INFINITY;
        for (int64_t v = 0; v < V; ++v) mx = zr[v] > mx ? zr[v] : mx;
        double sum = 0.0;
        for (int64_t v = 0; v < V; ++v) sum += std::exp(static_cast<double>(zr[v]) - mx);
        const double lse = mx + std::log(sum);
        loss[n] = static_cast<float>(lse - zr[t[n]]);
        if (!grad) continue;
        for (int64_t v = 0; v < V; ++v)
            zr[v] = static_cast<float>(std::exp(static_cast<double>(zr[v]) - lse)) * grad_scale;
        zr[t[n]] -= grad_scale;
    }
}

}  // namespace train
}  // namespace ref
}  // namespace pylm
