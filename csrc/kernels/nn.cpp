// Dispatchers for RMSNorm / RoPE / softmax (nn.h): thread over rows (tokens for RoPE) and call
// the active ISA's kernel. RoPE's angle tables are built here, in double. Baseline TU.
#include "kernels/nn.h"

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/isa.h"
#include "core/thread_pool.h"

namespace pylm {

namespace {

// Rows per chunk so that a chunk touches ~16K floats: decode-sized calls stay on one thread.
int64_t rows_grain(int64_t row_elems) {
    constexpr int64_t kChunkElems = 1 << 14;
    return row_elems >= kChunkElems ? 1 : kChunkElems / (row_elems > 0 ? row_elems : 1);
}

}  // namespace

void rmsnorm_f32(const float* x, const float* w, float* y, int64_t R, int64_t C, float eps,
                 int nthreads) {
    if (R <= 0 || C <= 0) return;
    parallel_for(R, rows_grain(C), nthreads, [&](int64_t b, int64_t e, int) {
        PYLM_DISPATCH(rmsnorm_f32, x + b * C, w, y + b * C, e - b, C, eps);
    });
}

void softmax_f32(const float* x, float* y, int64_t R, int64_t C, float scale, int nthreads) {
    if (R <= 0 || C <= 0) return;
    parallel_for(R, rows_grain(C), nthreads, [&](int64_t b, int64_t e, int) {
        PYLM_DISPATCH(softmax_f32, x + b * C, y + b * C, e - b, C, scale);
    });
}

void rope_f32(float* x, const int32_t* pos, int64_t T, int H, int D, int n_dims, float base,
              float freq_scale, int mode, int nthreads) {
    if (n_dims <= 0 || n_dims % 2 != 0 || n_dims > D)
        throw std::invalid_argument("rope: n_dims=" + std::to_string(n_dims) +
                                    " must be even and in [2, D=" + std::to_string(D) + "]");
    if (mode != kRopeNormal && mode != kRopeNeox)
        throw std::invalid_argument("rope: mode=" + std::to_string(mode) +
                                    " (expected 0 = normal or 2 = neox)");
    if (T <= 0 || H <= 0) return;
    const int half = n_dims / 2;
    // theta_i = pos * base^(-2i/n_dims) * freq_scale, all in double: at pos = 32768 a float
    // angle would be off by up to ~2e-3 rad. step_c/step_s = cos/sin(theta_i at pos 1).
    std::vector<double> inv_freq(half), step_c(half), step_s(half);
    for (int i = 0; i < half; ++i) {
        inv_freq[i] = static_cast<double>(freq_scale) *
                      std::pow(static_cast<double>(base), -2.0 * i / n_dims);
        step_c[i] = std::cos(inv_freq[i]);
        step_s[i] = std::sin(inv_freq[i]);
    }
    const int64_t token_elems = static_cast<int64_t>(H) * D;
    parallel_for(T, rows_grain(token_elems), nthreads, [&](int64_t b, int64_t e, int) {
        std::vector<double> c(half), s(half);           // cos/sin(pos[t] * theta_i)
        std::vector<float> cos2(n_dims), sin2(n_dims);  // [n_dims] normal, [n_dims/2] neox
        for (int64_t t = b; t < e; ++t) {
            if (t > b && pos[t] == pos[t - 1] + 1) {
                // Consecutive positions (prefill): rotate the previous angles by one step,
                // 6 flops instead of a cos and a sin; the double recurrence drifts by ~1e-16
                // per token, far below float rounding.
                for (int i = 0; i < half; ++i) {
                    const double cn = c[i] * step_c[i] - s[i] * step_s[i];
                    s[i] = s[i] * step_c[i] + c[i] * step_s[i];
                    c[i] = cn;
                }
            } else {
                const double p = static_cast<double>(pos[t]);
                for (int i = 0; i < half; ++i) {
                    c[i] = std::cos(p * inv_freq[i]);
                    s[i] = std::sin(p * inv_freq[i]);
                }
            }
            for (int i = 0; i < half; ++i) {
                const float cf = static_cast<float>(c[i]), sf = static_cast<float>(s[i]);
                if (mode == kRopeNeox) {
                    cos2[i] = cf;
                    sin2[i] = sf;
                } else {
                    cos2[2 * i] = cos2[2 * i + 1] = cf;
                    sin2[2 * i] = -sf;
                    sin2[2 * i + 1] = sf;
                }
            }
            PYLM_DISPATCH(rope_rotate_f32, x + t * token_elems, cos2.data(), sin2.data(), H, D,
                          n_dims, mode);
        }
    });
}

}  // namespace pylm
